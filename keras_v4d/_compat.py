"""Process-level settings and private framework access, kept in one place.

MultiWorkerMirroredStrategy. Keras 3's TensorFlow trainer fails there (keras-team/keras#20585):
``prepare_fit`` works around it with Keras' private trainer helpers, for Keras 3 only.

Keras internals without a public API: the layout of ``.weights.h5`` files
(``keras_h5_layer_keys``), the TensorBoard callback's learning-rate entry
(``learning_rate_keeping_tensorboard``) and the progress bar's target (``set_progress_target``).

oneDNN on x86 CPUs. TensorFlow's Linux x86 packages run their oneDNN CPU kernels by default only on
CPUs with AVX512_VNNI, AVX512_BF16, AVX_VNNI or AMX (``DefaultOneDnnPolicy`` in TensorFlow's
``tensorflow/core/util/port.cc``, RFC 400 "Enabling oneDNN operations for x86 CPUs"); elsewhere,
e.g. on AVX2-only CPUs, they run Eigen's kernels, much slower for keras_v4d's convolutions
(docs/cpu.md). TensorFlow reads ``TF_ENABLE_ONEDNN_OPTS`` once, when it is
imported, so ``prefer_onednn`` runs at ``import keras_v4d``, before Keras imports TensorFlow.

LiteRT's interpreter lists a file's nodes, and the delegate nodes that replaced some of them, only
through its private ``_get_ops_details`` (``tflite_nodes``; no public API, google-ai-edge/LiteRT's
``interpreter.py``); ``keras_v4d.export.tflite_ops`` reads from it which ops the XNNPACK delegate took.

TensorFlow's C++ log in the command-line tools. TensorFlow writes information lines, and on a
machine without a GPU an ``E … failed call to cuInit: … UNKNOWN ERROR (303)`` line
(tensorflow/tensorflow#37689, "spurious error"), to stderr from its C++ library, which reads
``TF_CPP_MIN_LOG_LEVEL`` once, when it loads — at ``import keras_v4d``, before a tool has parsed its
flags. ``quiet_tensorflow_in_tools`` sets it there for the ``keras-v4d`` tools only, unless the user set
it or passed ``--tf_logs``.

Child processes that outlive a killed parent: ``end_with_parent`` (multiprocessing has no option for
it, python/cpython#111873).

A ``tf.data`` iterator blocked in ``get_next`` cannot be interrupted through TensorFlow's public API:
``cancellable_iterator`` runs each ``get_next`` with a private eager ``CancellationManager``, so that a
tf.data service reader can end an epoch whose job never ends and let go of its service client.
"""

import os
import platform
import re
import sys
import warnings

ONEDNN_VARIABLE = "TF_ENABLE_ONEDNN_OPTS"
# CPU flags (as /proc/cpuinfo names them) with which TensorFlow turns oneDNN on by itself.
ONEDNN_DEFAULT_FLAGS = ("avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16")
# (name shown, /proc/cpuinfo flag): the vector extensions a benchmark header reports.
VECTOR_EXTENSIONS = (("AVX2", "avx2"), ("AVX-512", "avx512f"), ("AVX512_VNNI", "avx512_vnni"),
                     ("AVX512_BF16", "avx512_bf16"), ("AVX_VNNI", "avx_vnni"), ("AMX", "amx_tile"))


def _cpuinfo_field(name, path="/proc/cpuinfo"):
    """The first ``name : value`` of ``path`` (``""`` where there is no such file or field)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() == name:
                    return value.strip()
    except OSError:
        pass
    return ""


def cpu_flags(path="/proc/cpuinfo"):
    """The CPU's feature flags as Linux names them (``{"avx2", "avx512f", …}``; empty elsewhere)."""
    return frozenset(_cpuinfo_field("flags", path).split())


def cpu_model(path="/proc/cpuinfo"):
    """The CPU's model name, e.g. ``"AMD EPYC"``."""
    return _cpuinfo_field("model name", path) or platform.processor() or platform.machine()


def is_linux_x86():
    return sys.platform.startswith("linux") and platform.machine().lower() in ("x86_64", "amd64")


def tensorflow_default_onednn(flags):
    """Whether TensorFlow's Linux x86 package turns oneDNN on by itself on a CPU with ``flags``."""
    return any(flag in flags for flag in ONEDNN_DEFAULT_FLAGS)


def _version(module):
    """``(major, minor)`` of ``module.__version__`` (``(0, 0)`` when unreadable)."""
    try:
        return tuple(int(part) for part in module.__version__.split(".")[:2])
    except (AttributeError, ValueError):
        return (0, 0)


def _read_bool(value):
    """``TF_ENABLE_ONEDNN_OPTS`` as TensorFlow reads it: ``True``/``False``, ``None`` if not a boolean."""
    return {"1": True, "true": True, "0": False, "false": False}.get(value.strip().lower())


def onednn_enabled():
    """Whether TensorFlow runs (or, not yet imported, will run) its oneDNN CPU kernels."""
    tensorflow = sys.modules.get("tensorflow")
    if tensorflow is not None and _version(tensorflow) >= (2, 9):
        # TensorFlow's own answer (its default policy and the variable as read at import). No public
        # API says it (tensorflow/tensorflow#17176); tensorflow/tensorflow#42054 names this one.
        try:
            from tensorflow.python.util import _pywrap_util_port

            return bool(_pywrap_util_port.IsMklEnabled())
        except (ImportError, AttributeError):
            pass
    if not is_linux_x86():
        return None
    default = tensorflow_default_onednn(cpu_flags())
    explicit = _read_bool(os.environ.get(ONEDNN_VARIABLE, ""))
    return default if explicit is None else explicit


def prefer_onednn():
    """Turns TensorFlow's oneDNN kernels on where TensorFlow would leave them off (Linux x86 CPUs
    without AVX512_VNNI/BF16, AVX_VNNI or AMX), before TensorFlow is imported.

    A ``TF_ENABLE_ONEDNN_OPTS`` set by the user always wins (``=0`` keeps Eigen's kernels). Where
    TensorFlow was imported first with oneDNN off, it can no longer change: warns how to get it.
    Returns ``True`` when it set the variable.
    """
    if ONEDNN_VARIABLE in os.environ or not is_linux_x86():
        return False
    if "tensorflow" not in sys.modules:
        if tensorflow_default_onednn(cpu_flags()):
            return False
        os.environ[ONEDNN_VARIABLE] = "1"
        return True
    if onednn_enabled() is False:
        warnings.warn(
            f"TensorFlow was imported before keras_v4d, with its oneDNN CPU kernels off on this CPU "
            f"({cpu_model()}, no AVX512_VNNI/BF16 or AMX): convolutions run about 1.3-1.5x slower. Import "
            f"keras_v4d before tensorflow or keras, or set {ONEDNN_VARIABLE}=1 before starting Python "
            f"({ONEDNN_VARIABLE}=0 keeps Eigen's kernels and silences this).", RuntimeWarning, stacklevel=3)
    return False


TF_LOG_VARIABLE = "TF_CPP_MIN_LOG_LEVEL"
SHOW_TF_LOGS_FLAG = "--tf_logs"


def is_tool_process(argv=None, orig_argv=None):
    """Whether this process is a ``keras-v4d`` command-line tool: the ``keras-v4d`` script, or
    ``python -m keras_v4d.cli[.<tool>]``."""
    argv = sys.argv if argv is None else argv
    orig_argv = getattr(sys, "orig_argv", []) if orig_argv is None else orig_argv
    if argv and os.path.basename(argv[0]) == "keras-v4d":
        return True
    modules = [orig_argv[i + 1] for i, arg in enumerate(orig_argv[:-1]) if arg == "-m"]
    return any(module == "keras_v4d.cli" or module.startswith("keras_v4d.cli.") for module in modules)


def quiet_tensorflow_in_tools():
    """In a ``keras-v4d`` tool, before TensorFlow loads: hides TensorFlow's C++ information, warning
    and error lines (``TF_CPP_MIN_LOG_LEVEL=3``; errors reach the tools as exceptions) unless the
    user set the variable or passed ``--tf_logs``. Returns ``True`` when it set the variable."""
    if TF_LOG_VARIABLE in os.environ or "tensorflow" in sys.modules or not is_tool_process():
        return False
    if any(arg in (SHOW_TF_LOGS_FLAG, SHOW_TF_LOGS_FLAG + "=true", SHOW_TF_LOGS_FLAG + "=1") for arg in sys.argv[1:]):
        return False
    os.environ[TF_LOG_VARIABLE] = "3"
    return True


def describe_machine():
    """One line: CPU model and cores, its vector extensions, whether oneDNN is on and why."""
    flags = cpu_flags()
    extensions = [name for name, flag in VECTOR_EXTENSIONS if flag in flags]
    state = onednn_enabled()
    if state is None:
        onednn = "oneDNN: n/a"
    else:
        explicit = os.environ.get(ONEDNN_VARIABLE)
        why = "TensorFlow's default on this CPU" if explicit is None else f"{ONEDNN_VARIABLE}={explicit}"
        isa = os.environ.get("ONEDNN_MAX_CPU_ISA")
        limit = f", ISA limited by ONEDNN_MAX_CPU_ISA={isa}" if state and isa else ""
        onednn = f"oneDNN {'on' if state else 'off'} ({why}{limit})"
    return (f"CPU: {cpu_model()}, {os.cpu_count()} cores; {'/'.join(extensions) or 'no AVX2'}; {onednn}")


def prepare_fit(model, dataset, strategy):
    """Makes ``model.fit(dataset)`` work under ``MultiWorkerMirroredStrategy`` (a no-op otherwise).

    Keras 3's TensorFlow trainer fails there twice (keras-team/keras#20585): its first-batch
    symbolic build reduces a ``PerReplica`` batch eagerly, and it averages per-replica scalar logs
    with ``axis=0``. The model is built here from the dataset's element spec under the strategy's
    scope, and scalar logs are averaged with ``axis=None``. Call after ``compile``.
    """
    import keras
    import tensorflow as tf

    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return model
    if _version(keras)[0] != 3:
        raise RuntimeError(f"prepare_fit: the keras-team/keras#20585 workaround is for Keras 3, "
                           f"not {keras.__version__}")
    from keras.src.backend.tensorflow import trainer as tf_trainer

    if not getattr(tf_trainer.reduce_per_replica, "_keras_v4d_fixed", False):
        original = tf_trainer.reduce_per_replica

        def reduce_per_replica(values, strategy, reduction):
            if reduction in ("mean", "auto") and tf_trainer._collective_all_reduce_multi_worker(strategy):
                return tf.nest.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
            return original(values, strategy, reduction)

        reduce_per_replica._keras_v4d_fixed = True
        tf_trainer.reduce_per_replica = reduce_per_replica
    spec = tuple(dataset.element_spec)
    with strategy.scope():
        model._symbolic_build(data_batch=spec + (None,) * (3 - len(spec)))
    model._maybe_symbolic_build = lambda *args, **kwargs: None
    return model


def _snake_case(name):
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def keras_h5_key_base(layer_class):
    """The key a ``.weights.h5`` file gives the first layer of ``layer_class`` (``Residual4D`` →
    ``residual4d``); the n-th is ``<base>_<n-1>`` (see ``keras_h5_layer_keys``)."""
    return _snake_case(layer_class.__name__)


def keras_h5_layer_keys(model):
    """``[(h5 key, layer)]``: where Keras 3's ``.weights.h5`` format stores each of ``model.layers``.

    Keras names them ``layers/<snake_case class name>[_n]``, numbered per class in the order of
    ``model.layers`` (``keras/src/saving/saving_lib.py``); no public API says it, so it is re-derived
    here, for Keras 3 only.
    """
    import keras

    if _version(keras)[0] != 3:
        raise RuntimeError(f"keras_h5_layer_keys: the .weights.h5 layout re-derived here is Keras 3's, not "
                           f"{keras.__version__}'s")
    used, keys = {}, []
    for layer in model.layers:
        base = _snake_case(layer.__class__.__name__)
        count = used.get(base, 0)
        used[base] = count + 1
        keys.append((base if count == 0 else f"{base}_{count}", layer))
    return keys


def learning_rate_keeping_tensorboard(log_dir, **kwargs):
    """Keras' TensorBoard callback, except that a ``learning_rate`` already in an epoch's logs is kept
    (``DataReport``'s: the rate the epoch trained with, not the one after its last step).

    Keras writes the rate from its private ``_collect_learning_rate``, which has no public switch
    (keras-team/keras#16087 is about how that method picks the rate); where a Keras version lacks
    it, the plain callback is used.
    """
    import keras

    base = keras.callbacks.TensorBoard
    if _version(keras)[0] != 3 or not hasattr(base, "_collect_learning_rate"):
        return base(log_dir, **kwargs)

    class TensorBoard(base):
        def _collect_learning_rate(self, logs):
            return logs if "learning_rate" in logs else super()._collect_learning_rate(logs)

    return TensorBoard(log_dir, **kwargs)


def set_progress_target(progbar_logger, steps, ended_early=False):
    """Sets the steps a ``keras.callbacks.ProgbarLogger`` shows an epoch out of: ``steps`` (the
    source's size; a filtered ``tf.data`` pipeline has no known length), or, ``ended_early``, the steps
    the epoch really ran when that is fewer. The logger's ``target``/``seen``/``progbar`` fields are
    not public API (Keras 3's ``progbar_logger.py``); no public way sets an epoch's target.
    """
    if ended_early:
        seen, target = getattr(progbar_logger, "seen", 0), getattr(progbar_logger, "target", None)
        if getattr(progbar_logger, "progbar", None) is not None and seen and target and seen < target:
            progbar_logger.target = progbar_logger.progbar.target = seen
    elif steps:
        progbar_logger.target = steps


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def end_with_parent():
    """Ends this ``multiprocessing`` child as soon as its parent process ends, also when the parent is
    killed (SIGKILL, the out-of-memory killer) and cannot stop it.

    Python leaves such children running, holding their memory (python/cpython#111873, #80180). On
    Linux the kernel kills the child (``prctl(PR_SET_PDEATHSIG, SIGKILL)``, prctl(2); "parent" is the
    thread that started the child); elsewhere a daemon thread waits on the parent's sentinel, which
    needs the child's main thread to let go of the GIL. A parent already gone ends the child at once.
    Call it first thing in the child; a no-op in a process that is not a ``multiprocessing`` child.
    """
    import multiprocessing
    import signal
    import threading
    from multiprocessing.connection import wait

    parent = multiprocessing.parent_process()
    if parent is None:
        return
    armed = False
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            armed = ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
        except (OSError, AttributeError):  # no prctl in this C library
            armed = False
    if not armed:
        def exit_with_parent():
            wait([parent.sentinel])
            os._exit(1)

        threading.Thread(target=exit_with_parent, name="end_with_parent", daemon=True).start()
    if not parent.is_alive():  # the parent died before the signal was armed
        os._exit(1)


def tflite_nodes(interpreter):
    """``[{"index", "op_name", "inputs", "outputs"}]`` of an allocated LiteRT ``Interpreter``: the file's
    nodes and, after them, one ``DELEGATE`` node per partition a delegate took (private
    ``Interpreter._get_ops_details``; ai-edge-litert 2.x has no public listing)."""
    return [{"index": int(op["index"]), "op_name": op["op_name"], "inputs": [int(i) for i in op["inputs"]],
             "outputs": [int(i) for i in op["outputs"]]} for op in interpreter._get_ops_details()]


_PY_CALLBACKS = {}  # token -> callback: TensorFlow's registry holds its functions by weak reference only


def register_py_callback(token, function, output_types):
    """Makes ``tf.raw_ops.EagerPyFunc(token=token, Tout=output_types)`` call ``function`` (eagerly, as
    ``tf.py_function`` would) in this process, under a name chosen here.

    A tf.data service worker cannot run the ``tf.py_function`` of another process: the graph names it
    by a token of that process's registry (``pyfunc_0``), and the service does not support Python in a
    dataset (tensorflow/tensorflow#50252; the service's "Limitations"). A worker registers the function
    under a token both sides derive from the data, so a graph built by the trainer runs it on the
    worker. TensorFlow has no public way to register under a given token: this uses the private
    ``script_ops._py_funcs`` registry and ``EagerFunc`` (TensorFlow 2.x).
    """
    import tensorflow as tf

    if _version(tf)[0] != 2:
        raise RuntimeError(f"register_py_callback: the py_func registry used here is TensorFlow 2's, not "
                           f"{tf.__version__}'s")
    from tensorflow.python.ops import script_ops

    callback = script_ops.EagerFunc(function, list(output_types), False)
    _PY_CALLBACKS[token] = callback
    script_ops._py_funcs._funcs[token] = callback
    return token


class _CancellableIterator:
    """``cancellable_iterator``'s iterator: ``next`` runs the ``IteratorGetNext`` op under its own
    cancellation manager (TensorFlow 2's private eager ``execute_with_cancellation``), ``cancel`` starts
    that manager's cancellation. Where those internals are missing it is a plain iterator, ``cancel``
    only marking it cancelled."""

    def __init__(self, dataset):
        import tensorflow as tf

        self._iterator, self._resource, self._cancelled = iter(dataset), None, False
        if _version(tf)[0] != 2:
            return
        try:
            from tensorflow.python.data.util import structure
            from tensorflow.python.eager import cancellation, context, execute

            iterator = self._iterator
            self._call = (execute.execute_with_cancellation, context, structure.from_compatible_tensor_list,
                          iterator._element_spec, len(iterator._flat_output_types),
                          ("output_types", [execute.make_type(t, "output_types") for t in iterator._flat_output_types],
                           "output_shapes", [execute.make_shape(s, "output_shapes")
                                             for s in iterator._flat_output_shapes]))
            self._manager, self._resource = cancellation.CancellationManager(), iterator._iterator_resource
        except (ImportError, AttributeError):
            self._resource = None

    def __iter__(self):
        return self

    def _get_next(self):
        execute_with_cancellation, context, from_tensor_list, spec, count, attrs = self._call
        # As the eager iterator's own get_next, in sync mode (the end of the data is an error status).
        with context.execution_mode(context.SYNC):
            flat = execute_with_cancellation("IteratorGetNext", num_outputs=count, inputs=[self._resource],
                                             attrs=attrs, ctx=context.context(), cancellation_manager=self._manager)
        return from_tensor_list(spec, flat)

    def __next__(self):
        import tensorflow as tf

        if self._iterator is None or self._cancelled:
            raise StopIteration
        try:
            return self._get_next() if self._resource is not None else next(self._iterator)
        except tf.errors.OutOfRangeError:
            raise StopIteration from None

    def cancel(self):
        self._cancelled = True
        if self._resource is not None:
            self._manager.start_cancel()

    def close(self):
        self.cancel()
        self._iterator = self._resource = None  # TensorFlow's iterator goes with its last reference


def cancellable_iterator(dataset):
    """An iterator over the eager ``tf.data.Dataset`` ``dataset`` with ``cancel()``, callable from any
    thread: a ``next`` blocked in it raises ``tf.errors.CancelledError`` and the iteration is over
    (later ``next`` calls raise ``StopIteration``); ``close()`` cancels it and drops TensorFlow's
    iterator (with it, e.g., a tf.data service client, which otherwise lives on, calling its dispatcher,
    as long as the iterator does). Call ``close()`` from the iterating thread once it is done.

    TensorFlow has no public way to interrupt a blocked ``get_next`` (a tf.data service client waiting
    for a job that never ends keeps its iterator, and itself, alive: tensorflow/tensorflow#56490 shows
    such clients still calling stopped servers). Cancelling the op running ``IteratorGetNext``
    cancels the iterator (TensorFlow links the op's cancellation manager to the iterator's), through
    the private eager ``execute_with_cancellation`` and ``CancellationManager`` and the eager
    iterator's private resource and flat types (TensorFlow 2.x; ``tf.function``'s
    ``get_cancelable_function`` is not used: it sets a process-wide manager that would also cancel
    other threads' functions). Elsewhere ``cancel`` cannot interrupt a blocked ``next``.
    """
    return _CancellableIterator(dataset)
