"""A griffe extension for the API reference: a function whose docstring is made when its module runs
(the model builders' docstrings are assembled at import from one argument list, ``keras_v4d.models``)
gets that docstring; griffe reads sources without running them and would leave it empty."""

import inspect

import griffe


class DocstringsAtImport(griffe.Extension):
    """Fills a function's missing docstring from the imported function's ``__doc__``."""

    def on_function_instance(self, *, node, func, agent, **kwargs):
        if func.docstring is not None or func.name.startswith("_") or not func.parent.is_module:
            return
        try:
            found = griffe.dynamic_import(func.path)
        except ImportError:
            return
        if getattr(found, "__doc__", None):
            func.docstring = griffe.Docstring(inspect.cleandoc(found.__doc__), parent=func)
