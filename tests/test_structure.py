"""The package's architecture as tests: the library apart from its command lines, no import cycle,
no private Keras or TensorFlow member outside ``_compat``, one name per module, tests that mirror the
package."""

import ast
import importlib
import inspect
import os
import re
import subprocess
import sys

import pytest

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


# The architecture, bottom to top: a sub-package imports only those before it in this list.
LAYERS = ("_compat", "records", "layers", "models", "data", "inference", "weights", "training", "export", "cli")


def _subpackage(module):
    """``keras_v4d.data.pipeline`` → ``data``; the package's own ``__init__`` → ``None`` (the façade)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def backward_imports(modules, imports_of):
    """``[(module, imported module)]`` where a module imports from a sub-package at or above its own
    rank in ``LAYERS`` (other than its own sub-package)."""
    found = []
    for module, path in modules.items():
        own = _subpackage(module)
        if own is None:
            continue
        assert own in LAYERS, f"{module}: sub-package '{own}' has no place in LAYERS"
        for dep in imports_of(path, modules):
            other = _subpackage(dep)
            if other not in (None, own) and LAYERS.index(other) > LAYERS.index(own):
                found.append((module, dep))
    return sorted(found)


def test_subpackages_import_one_way():
    found = backward_imports(_modules(), _imports)
    assert not found, "imports against the architecture (LAYERS):\n" + "\n".join(f"{a} imports {b}" for a, b in found)


def test_the_subpackage_check_catches_a_backward_import(tmp_path):
    """``models`` importing ``weights`` (above it) is caught; ``weights`` importing ``models`` is not."""
    modules = {"keras_v4d.models.resnet3d": str(tmp_path / "resnet3d.py"),
               "keras_v4d.weights.loading": str(tmp_path / "loading.py"),
               "keras_v4d.records.presets": str(tmp_path / "presets.py")}
    (tmp_path / "resnet3d.py").write_text("from keras_v4d.weights.loading import load_pretrained\n"
                                          "from keras_v4d.records.presets import resolve_weights\n")
    (tmp_path / "loading.py").write_text("def f():\n    from keras_v4d.models.resnet3d import build\n")
    (tmp_path / "presets.py").write_text("import json\n")
    assert backward_imports(modules, _imports) == [("keras_v4d.models.resnet3d", "keras_v4d.weights.loading")]


MAX_FUNCTION_LINES = 80
MAX_PARAMETERS = 12
# The builders keep keras.applications' signature (include_top, weights, input_tensor, …) plus the
# family's keywords; build_resnet3d is the one engine behind them and takes the same arguments.
BUILDER_SIGNATURES = ("keras_v4d.models.build_resnet3d", "keras_v4d.models.I3DSlowResNet18",
                      "keras_v4d.models.I3DSlowResNet50", "keras_v4d.models.TSNResNet18",
                      "keras_v4d.models.TSNResNet50", "keras_v4d.models.V4DResNet18", "keras_v4d.models.V4DResNet50",
                      "keras_v4d.models.F4DResNet18", "keras_v4d.models.F4DResNet50")


def oversized_functions(source, module):
    """``[(qualified name, lines, parameters)]`` of the functions in ``source`` over
    ``MAX_FUNCTION_LINES`` lines or over ``MAX_PARAMETERS`` parameters (``self``/``cls`` not counted;
    the builders' signature aside)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        args = node.args
        names = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs]
        count = len(names) + bool(args.vararg) + bool(args.kwarg) - (names[:1] in (["self"], ["cls"]))
        lines = node.end_lineno - node.lineno + 1
        builder = f"{module.rsplit('.', 1)[0]}.{node.name}" in BUILDER_SIGNATURES or \
            f"{module}.{node.name}" in BUILDER_SIGNATURES
        if lines > MAX_FUNCTION_LINES or (count > MAX_PARAMETERS and not builder):
            found.append((f"{module}.{node.name}", lines, count))
    return found


def test_no_function_does_a_whole_program():
    found = [hit for module, path in _modules().items()
             for hit in oversized_functions(open(path, encoding="utf-8").read(), module)]
    assert not found, (f"functions over {MAX_FUNCTION_LINES} lines or {MAX_PARAMETERS} parameters:\n"
                       + "\n".join(f"{name}: {lines} lines, {count} parameters" for name, lines, count in found))


def test_the_size_check_catches_a_long_function_and_a_long_signature():
    long_body = "def long():\n" + "    x = 1\n" * MAX_FUNCTION_LINES
    many = "def many(self, " + ", ".join(f"a{i}" for i in range(MAX_PARAMETERS + 1)) + "):\n    pass\n"
    fine = "def fine(self, " + ", ".join(f"a{i}" for i in range(MAX_PARAMETERS)) + "):\n    pass\n"
    assert [name for name, *_ in oversized_functions(long_body + many + fine, "keras_v4d.x.y")] == [
        "keras_v4d.x.y.long", "keras_v4d.x.y.many"]
    builder = "def V4DResNet18(" + ", ".join(f"a{i}" for i in range(14)) + "):\n    pass\n"
    assert oversized_functions(builder, "keras_v4d.models") == []


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


def _keras_bases(cls):
    """The Keras/TensorFlow classes among ``cls``'s ancestors."""
    return [base for base in inspect.getmro(cls)[1:] if base.__module__.split(".")[0] in ("keras", "tensorflow")]


def _base_instance(base):
    try:
        return base()
    except Exception:  # noqa: BLE001  (a base that needs arguments: its class attributes are checked)
        return base


def test_no_private_member_of_a_keras_object_outside_compat():
    """A class of the library that derives from a Keras (or TensorFlow) class may neither override nor
    touch one of that class's private members (``_name``), and no code may reach for ``x._name`` of
    an object that is not its own (only ``self``/``cls``)."""
    found = []
    for module, path in _modules().items():
        if module in ("keras_v4d._compat",) or module.startswith("keras_v4d.cli"):
            continue
        tree = ast.parse(open(path, encoding="utf-8").read())
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                    and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))):
                found.append(f"{path}:{node.lineno}: .{node.attr} of another object")
        classes = [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]
        if not classes:
            continue
        imported = importlib.import_module(module)
        for class_node in classes:
            cls = getattr(imported, class_node.name, None)
            if not inspect.isclass(cls):
                continue
            bases = [_base_instance(base) for base in _keras_bases(cls)]
            for node in ast.walk(class_node):
                name = None
                if isinstance(node, ast.FunctionDef):
                    name = node.name
                elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
                    name = node.attr
                if name and name.startswith("_") and not name.startswith("__") and any(
                        hasattr(base, name) for base in bases):
                    found.append(f"{path}:{node.lineno}: {class_node.name} uses Keras' private {name}")
    assert not found, "private Keras members outside keras_v4d/_compat.py:\n" + "\n".join(found)


def test_the_private_member_check_finds_an_override():
    """The check above is not vacuous: Keras' classes do have private members a subclass could touch."""
    import keras

    assert hasattr(keras.callbacks.TensorBoard, "_collect_learning_rate")
    assert hasattr(_base_instance(keras.layers.Layer), "_tracker")


def test_library_module_names_are_unique():
    names = {}
    for module in _modules():
        if module.startswith("keras_v4d.cli") or module.count(".") < 2 and module != "keras_v4d._compat":
            continue
        names.setdefault(module.rsplit(".", 1)[-1], []).append(module)
    clashes = {name: found for name, found in names.items() if len(found) > 1}
    assert not clashes, clashes


def test_the_tests_mirror_the_package():
    """A test folder per library folder, a test module per top-level library module."""
    tests = os.path.join(os.path.dirname(PACKAGE), "tests")
    missing = []
    for entry in sorted(os.listdir(PACKAGE)):
        path = os.path.join(PACKAGE, entry)
        if entry.startswith("__") or entry == "checkpoints":
            continue
        if os.path.isdir(path) and os.path.isfile(os.path.join(path, "__init__.py")):
            folder = os.path.join(tests, entry)
            if not (os.path.isdir(folder) and any(n.startswith("test_") for n in os.listdir(folder))):
                missing.append(f"tests/{entry}/test_*.py")
        elif entry.endswith(".py"):
            name = entry[:-3].lstrip("_")
            if not os.path.isfile(os.path.join(tests, f"test_{name}.py")):
                missing.append(f"tests/test_{name}.py")
    assert not missing, missing


@pytest.mark.parametrize("module", ["keras_v4d.layers.residual4d", "keras_v4d.layers.f4d_block"])
def test_the_4d_blocks_are_block4d(module):
    from keras_v4d.layers import Block4D

    classes = [c for _, c in inspect.getmembers(importlib.import_module(module), inspect.isclass)
               if c.__module__ == module]
    assert classes and all(issubclass(c, Block4D) for c in classes)
    for cls in classes:  # each defines the protocol itself
        for method in ("unit_output", "unit_radius", "count_macs"):
            assert method in vars(cls), (cls, method)


def test_every_library_module_imports_together():
    library = sorted(m for m in _modules() if not m.startswith("keras_v4d.cli"))
    result = subprocess.run([sys.executable, "-c", "import " + ", ".join(library)], capture_output=True, text=True,
                            env={**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"},
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
