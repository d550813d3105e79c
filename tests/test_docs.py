"""Every public name of the library has a docstring: the API reference (``docs/api/``, built by
MkDocs with mkdocstrings) is made of them, and a name without one would be missing from it.

Public, read statically with griffe (a function or class without a docstring in its source is looked up
once its module is imported: the builders' docstrings are made at import from one argument list):

- every module of ``keras_v4d`` whose dotted path has no part starting with ``_``, ``keras_v4d.cli``
  aside (the command-line tools document themselves in ``--help``);
- in each such module, every class and function defined there whose name does not start with ``_``,
  and each method or property of such a class whose name does not start with ``_``, except the Keras
  hooks a layer, model, metric, optimizer or callback overrides (``KERAS_HOOKS`` and ``on_*``: Keras
  documents them);
- every name a package lists in ``__all__``, followed to its definition, constants included (a
  constant's docstring is the string literal right below it); a name the package provides lazily, through
  a module-level ``__getattr__``, is looked up among its modules. ``__all__`` must be a literal list, or
  griffe cannot read it.

Unmarked, so ``tests/run.sh`` runs it once, in the TensorFlow phase.
"""

import importlib
import os
import sys

import griffe

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KERAS_HOOKS = frozenset({
    "build", "call", "compute_output_shape", "compute_output_spec", "get_config", "from_config", "get_build_config",
    "build_from_config", "update_state", "result", "reset_state", "update_step", "set_params", "set_model",
})


def _modules(module):
    """``module`` and every module below it (not modules imported into it)."""
    yield module
    for member in module.members.values():
        if not member.is_alias and member.is_module:
            yield from _modules(member)


def _public(path):
    return not any(part.startswith("_") for part in path.split("."))


def _is_method(member):
    return not member.is_alias and (member.is_function or (member.is_attribute and "property" in member.labels))


def _definition(package, name):
    """What ``package.name`` stands for: its member followed through imports, or (a name provided
    lazily by a module ``__getattr__``) the object of that name defined in one of its modules."""
    member = package.members.get(name)
    if member is not None:
        try:
            return member.final_target if member.is_alias else member
        except (griffe.AliasResolutionError, griffe.CyclicAliasError):
            return None
    for module in _modules(package):
        found = module.members.get(name)
        if found is not None and not found.is_alias:
            return found
    return None


def _docstring_at_import(member, search_path):
    """The ``__doc__`` a function or class gets when its module runs (the builders' docstrings are made
    from one argument list at import), or None."""
    sys.path.insert(0, search_path)
    try:
        found = importlib.import_module(member.parent.path)
        return getattr(getattr(found, member.name, None), "__doc__", None)
    finally:
        sys.path.remove(search_path)


def _exports(module):
    """``(names of __all__, problem)``: the names as strings, or a problem when griffe cannot read them."""
    if "__all__" not in module.members:
        return [], None
    names = [str(getattr(name, "name", name)) for name in module.exports or []]
    return names, None if names else f"{module.path}.__all__: not a literal list (griffe cannot read it)"


def missing_docstrings(package_name, search_path, excluded=("cli",)):
    """Sorted ``[problem]``: each public name of ``package_name`` (found under ``search_path``) without
    a docstring, each name of an ``__all__`` that does not resolve, each ``__all__`` griffe cannot read."""
    package = griffe.load(package_name, search_paths=[search_path], try_relative_path=False)
    skipped = tuple(f"{package_name}.{name}" for name in excluded)
    modules = [m for m in _modules(package) if _public(m.path) and not m.path.startswith(skipped)]
    problems = {}  # the object's path → the problem, said once
    for module in modules:
        if not module.docstring:
            problems[module.path] = f"{module.path} (module)"
        for name, member in module.members.items():
            if name.startswith("_") or member.is_alias or not (member.is_function or member.is_class):
                continue
            if not member.docstring and not _docstring_at_import(member, search_path):
                problems[member.path] = f"{member.path} ({member.kind.value})"
            if member.is_class:
                problems.update({method.path: f"{method.path} (method)"
                                 for method_name, method in member.members.items()
                                 if _is_method(method) and not method_name.startswith("_")
                                 and method_name not in KERAS_HOOKS and not method_name.startswith("on_")
                                 and not method.docstring})
    for module in modules:
        names, problem = _exports(module)
        if problem:
            problems[f"{module.path}.__all__"] = problem
        for name in names:
            target = _definition(module, name)
            if target is None:
                problems[f"{module.path}.{name}"] = f"{module.path}.{name} (in __all__, defined nowhere in " \
                                                    f"{package_name})"
            elif not target.docstring and not (target.is_function and _docstring_at_import(target, search_path)):
                problems.setdefault(target.path, f"{target.path} ({target.kind.value}, in {module.path}.__all__)")
    return sorted(problems.values())


def test_every_public_name_has_a_docstring():
    assert os.path.isfile(os.path.join(ROOT, "keras_v4d", "__init__.py"))
    missing = missing_docstrings("keras_v4d", ROOT)
    assert not missing, ("public names without a docstring (the API reference, docs/api/, is made of them):\n"
                         + "\n".join(missing))


def _write(folder, files):
    for relative, text in files.items():
        path = os.path.join(folder, relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)


def test_the_docstring_check_names_each_kind_of_gap(tmp_path):
    """The check is not vacuous: a missing docstring of each kind is named, and nothing else."""
    _write(str(tmp_path), {
        "fakepkg/__init__.py": (
            '"""A package."""\n'
            "import importlib\n"
            "from fakepkg.core import Layer, assembled, documented, undocumented\n"
            "LIMIT = 3\n"
            "DOCUMENTED_LIMIT = 4\n"
            '"""A constant with its docstring."""\n'
            "def __getattr__(name):\n"
            "    return getattr(importlib.import_module('fakepkg.lazy_module'), name)\n"
            "__all__ = ['DOCUMENTED_LIMIT', 'LIMIT', 'Layer', 'assembled', 'documented', 'undocumented', 'lazy',\n"
            "           'nowhere']\n"),
        "fakepkg/core.py": (
            '"""Core."""\n'
            "def documented():\n"
            '    """Documented."""\n'
            "def undocumented():\n"
            "    pass\n"
            "def assembled():\n"
            "    pass\n"
            "assembled.__doc__ = 'Made at import.'\n"
            "def _private():\n"
            "    pass\n"
            "class Layer:\n"
            '    """A layer."""\n'
            "    def call(self, x):\n"
            "        return x\n"
            "    def on_epoch_end(self, epoch):\n"
            "        pass\n"
            "    def helper(self):\n"
            "        pass\n"
            "    def _hidden(self):\n"
            "        pass\n"
            "    @property\n"
            "    def size(self):\n"
            "        return 1\n"),
        "fakepkg/lazy_module.py": "def lazy():\n    pass\n",
        "fakepkg/_private_module.py": "def anything():\n    pass\n",
        "fakepkg/cli/__init__.py": "def tool():\n    pass\n",
        "fakepkg/computed/__init__.py": '"""Computed __all__."""\nNAMES = ["a"]\n__all__ = list(NAMES) + ["b"]\n',
    })
    assert missing_docstrings("fakepkg", str(tmp_path)) == [
        "fakepkg.LIMIT (attribute, in fakepkg.__all__)",
        "fakepkg.computed.__all__: not a literal list (griffe cannot read it)",
        "fakepkg.core.Layer.helper (method)",
        "fakepkg.core.Layer.size (method)",
        "fakepkg.core.undocumented (function)",
        "fakepkg.lazy_module (module)",
        "fakepkg.lazy_module.lazy (function)",
        "fakepkg.nowhere (in __all__, defined nowhere in fakepkg)",
    ]
