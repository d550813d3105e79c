"""The package's architecture as tests: the library apart from its command lines, no import cycle,
no private Keras attribute."""

import ast
import os
import re
import subprocess
import sys

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "keras_v4d")
PRIVATE_KERAS = re.compile(r"_keras_history|_inbound_nodes|_nodes_by_depth|fill_in\(|_keras_mask")


def _modules():
    """``{dotted name: path}`` of every module of the package."""
    found = {}
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                dotted = os.path.relpath(path[:-3], os.path.dirname(PACKAGE)).replace(os.sep, ".")
                found[dotted.removesuffix(".__init__")] = path
    return found


def _imports(path, modules):
    """Package modules imported anywhere in ``path`` (module level or inside functions)."""
    deps = set()
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        deps.update(n for n in names if n in modules)
    return deps


def test_no_import_cycle():
    modules = _modules()
    graph = {m: _imports(p, modules) - {m} for m, p in modules.items()}
    state = {}

    def visit(module, path):
        state[module] = "open"
        for dep in graph[module]:
            assert state.get(dep) != "open", "import cycle: " + " -> ".join(path + [dep])
            if dep not in state:
                visit(dep, path + [dep])
        state[module] = "done"

    for module in graph:
        if module not in state:
            visit(module, [module])


def test_library_modules_define_no_flags_and_import_no_cli():
    for module, path in _modules().items():
        if module.startswith("keras_v4d.cli"):
            continue
        source = open(path, encoding="utf-8").read()
        assert "flags.DEFINE" not in source and "from absl import" not in source, module
        assert not any(d.startswith("keras_v4d.cli") for d in _imports(path, _modules())), module


PRIVATE_OUTSIDE_COMPAT = re.compile(r"keras\.src\b|tensorflow\.python\b|\._symbolic_build|\._maybe_symbolic_build")


def test_no_private_keras_attributes():
    for module, path in _modules().items():
        for number, line in enumerate(open(path, encoding="utf-8"), 1):
            if PRIVATE_KERAS.search(line):
                raise AssertionError(f"{path}:{number}: private Keras attribute: {line.strip()}")


def test_private_framework_access_only_in_compat():
    found = [f"{path}:{number}: {line.strip()}" for module, path in _modules().items() if module != "keras_v4d._compat"
             for number, line in enumerate(open(path, encoding="utf-8"), 1) if PRIVATE_OUTSIDE_COMPAT.search(line)]
    assert not found, "private Keras/TensorFlow access outside keras_v4d/_compat.py:\n" + "\n".join(found)
    compat = open(_modules()["keras_v4d._compat"], encoding="utf-8").read()
    assert "keras.src" in compat and "tensorflow.python" in compat  # the pattern finds what it is meant to


def test_every_library_module_imports_together():
    library = sorted(m for m in _modules() if not m.startswith("keras_v4d.cli"))
    result = subprocess.run([sys.executable, "-c", "import " + ", ".join(library)], capture_output=True, text=True,
                            env={**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"},
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
