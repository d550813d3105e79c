import csv
import glob
import os
import pty
import subprocess
import sys
import threading

import av
import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_v4d
from keras_v4d.inference.metrics import MeanClassAccuracy
from keras_v4d.records.sampling import VideoSampling
from keras_v4d.training import (
    EpochProgress,
    SGDWithL2,
    compile_for_training,
    paper_learning_rate,
    paper_optimizer,
    training_callbacks,
)
from tests.commands import run_tool
from tests.damaged import write_cut_faststart_mp4
from tests.training.runs import epochs_logged, train_command

# These tests start processes but race none and time nothing (deadlines of minutes): they run beside others.


def test_paper_learning_rate_drops_by_ten_at_35_60_80():
    schedule = paper_learning_rate(steps_per_epoch=10)
    rates = [float(schedule(step)) for step in (0, 349, 350, 599, 600, 800, 999)]
    np.testing.assert_allclose(rates, [1e-2, 1e-2, 1e-3, 1e-3, 1e-4, 1e-5, 1e-5], rtol=1e-6)


def test_weight_decay_skips_batchnorm_and_biases():
    model = keras_v4d.V4DResNet18(classes=3, input_shape=(2, 2, 32, 32, 3))
    optimizer = paper_optimizer(steps_per_epoch=1, weight_decay=0.1, base_lr=1.0, momentum=0.0)
    optimizer.build(model.trainable_variables)
    decayed = {v.path for v in model.trainable_variables if optimizer.decays(v)}
    assert any("conv/kernel" in p for p in decayed) and "predictions/kernel" in decayed
    assert not any(p.endswith(("gamma", "beta", "bias")) for p in decayed)
    assert optimizer.global_clipnorm == 20.0
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert isinstance(restored, SGDWithL2) and restored.l2 == 0.1 and restored.no_decay == optimizer.no_decay


@pytest.mark.backend_agnostic
def test_paper_optimizer_steps_as_torch_sgd_with_weight_decay_after_clipping():
    """The released code's update: clip_grad_norm_(20), then torch.optim.SGD(momentum=0.9,
    weight_decay=λ) with λ on kernels only; same gradients, same weights after four steps."""
    torch = pytest.importorskip("torch")
    inputs = keras.Input((4, 6, 6, 2))
    x = keras.layers.Conv3D(5, 3, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.GlobalAveragePooling3D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, name="fc")(x))
    variables = model.trainable_variables
    optimizer = paper_optimizer(steps_per_epoch=100, base_lr=0.1, weight_decay=0.05)
    params = [torch.tensor(keras.ops.convert_to_numpy(v), requires_grad=True) for v in variables]
    kernels = [p for p, v in zip(params, variables) if v.name == "kernel"]
    others = [p for p, v in zip(params, variables) if v.name != "kernel"]
    assert len(kernels) == 2 and len(others) == 4
    reference = torch.optim.SGD([{"params": kernels, "weight_decay": 0.05}, {"params": others, "weight_decay": 0.0}],
                                lr=0.1, momentum=0.9)
    rng = np.random.default_rng(0)
    for _ in range(4):
        gradients = [rng.normal(scale=5.0, size=v.shape).astype("float32") for v in variables]
        optimizer.apply([keras.ops.convert_to_tensor(g) for g in gradients], variables)
        for p, g in zip(params, gradients):
            p.grad = torch.tensor(g)  # a copy: clip_grad_norm_ scales it in place
        assert float(torch.nn.utils.clip_grad_norm_(params, 20.0)) > 20.0  # the clipping is exercised
        reference.step()
    for v, p in zip(variables, params):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(v), p.detach().numpy(), rtol=1e-5, atol=1e-6,
                                   err_msg=v.path)


@pytest.mark.backend_agnostic
def test_mean_class_accuracy_weighs_classes_equally():
    metric = MeanClassAccuracy(3)
    # class 0: 3/4 right, class 1: 0/1, class 2 absent  →  (0.75 + 0) / 2
    metric.update_state(np.array([0, 0, 0, 0, 1]), np.eye(3)[[0, 0, 0, 1, 0]])
    assert float(metric.result()) == pytest.approx(0.375)


@pytest.mark.backend_agnostic
def test_compiled_model_fits_and_reports_video_metrics():
    model = keras_v4d.TSNResNet18(classes=3, input_shape=(2, 2, 32, 32, 3))
    compile_for_training(model, steps_per_epoch=2)
    x = np.random.rand(4, 2, 2, 32, 32, 3).astype("float32")
    history = model.fit(x, np.array([0, 1, 2, 0]), batch_size=2, epochs=1, verbose=0)
    assert {"loss", "top1", "top3", "mean_class_accuracy"} <= set(history.history)


def _fresh_python(code, onednn=None):
    """Runs ``code`` in a new interpreter (TensorFlow backend, default allocator settings); ``onednn``
    ``"1"``/``"0"`` sets ``TF_ENABLE_ONEDNN_OPTS`` (an explicit setting holds on every x86 CPU)."""
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("TF_ONEDNN_USE_SYSTEM_ALLOCATOR", None)
    env.pop("TF_ENABLE_ONEDNN_OPTS", None)
    if onednn is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = onednn
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)


# glibc's mmap threshold, observed: by default glibc raises it to the size of a freed mmapped block
# (30 MB here), so a 24 MB block comes from the heap; fixed at 64 KiB, it is mmapped (mallinfo2's hblks).
_MMAPPED_24MB = ("import ctypes\n"
                 "class Info(ctypes.Structure): _fields_ = [(n, ctypes.c_size_t) for n in 'arena ordblks smblks hblks "
                 "hblkhd usmblks fsmblks uordblks fordblks keepcost'.split()]\n"
                 "libc = ctypes.CDLL('libc.so.6'); libc.mallinfo2.restype = Info; "
                 "libc.malloc.restype = ctypes.c_void_p\n"
                 "libc.free.argtypes = [ctypes.c_void_p]; libc.free(libc.malloc(30_000_000))\n"
                 "before = libc.mallinfo2().hblks; block = libc.malloc(24_000_000)\n"
                 "print('mmapped', libc.mallinfo2().hblks - before)\n")


def test_low_memory_allocator_takes_tensors_out_of_the_pool():
    # With oneDNN on, TensorFlow's pool counts the bytes it serves (get_memory_info); the system allocator none.
    probe = ("import tensorflow as tf\n"
             "x = tf.ones((1000, 1000)); y = tf.matmul(x, x)\n"
             "print(tf.config.experimental.get_memory_info('CPU:0')['current'])\n")
    default = _fresh_python(probe, onednn="1")
    low = _fresh_python("from keras_v4d.training import use_low_memory_allocator\nuse_low_memory_allocator()\n"
                        + probe + _MMAPPED_24MB, onednn="1")
    assert default.returncode == 0 and low.returncode == 0, default.stderr[-2000:] + low.stderr[-2000:]
    assert int(default.stdout.split()[-1]) >= 8_000_000  # both 4 MB tensors live in the pool by default
    assert int(low.stdout.split()[-3]) == 0 and low.stdout.split()[-1] == "1"


def test_low_memory_allocator_without_onednn_sets_the_mmap_threshold():
    # With oneDNN off TensorFlow keeps no pool (and no statistics): the option still works, at any time.
    late = ("import tensorflow as tf\nx = tf.matmul(tf.ones((1000, 1000)), tf.ones((1000, 1000)))\n"
            "from keras_v4d.training import use_low_memory_allocator\nuse_low_memory_allocator()\n")
    low = _fresh_python(late + _MMAPPED_24MB, onednn="0")
    default = _fresh_python("import tensorflow as tf\n" + _MMAPPED_24MB, onednn="0")
    assert low.returncode == 0 and default.returncode == 0, low.stderr[-2000:] + default.stderr[-2000:]
    assert low.stdout.split()[-1] == "1" and default.stdout.split()[-1] == "0"


def test_low_memory_allocator_refuses_once_tensorflow_has_allocated(tiny_dataset, tmp_path):
    late = _fresh_python("import tensorflow as tf\nx = tf.ones((1000, 1000))\n"
                         "from keras_v4d.training import use_low_memory_allocator\nuse_low_memory_allocator()\n",
                         onednn="1")
    assert late.returncode != 0 and "before building a model" in late.stderr
    # train() names its argument and leaves no setting behind for later subprocesses.
    train = _fresh_python(
        "import os, tensorflow as tf, keras_v4d.training\nx = tf.ones((1000, 1000))\n"
        "try:\n"
        f"    keras_v4d.training.train('TSNResNet18', keras_v4d.training.TrainingData({str(tiny_dataset)!r}, "
        f"num_classes=2), {str(tmp_path / 'run')!r}, recipe=keras_v4d.training.Recipe(epochs=1), "
        "distribution=keras_v4d.training.Distribution(low_memory=True))\n"
        "except ValueError as error:\n"
        "    print(error)\n"
        "print('left', os.environ.get('TF_ONEDNN_USE_SYSTEM_ALLOCATOR'))\n", onednn="1")
    assert train.returncode == 0, train.stderr[-2000:]
    assert "low_memory: " in train.stdout and "already allocates from its oneDNN pool" in train.stdout
    assert train.stdout.split()[-1] == "None"


def test_train_cli_trains_with_low_memory(tiny_dataset, tmp_path):
    output = tmp_path / "run"
    run = subprocess.run(train_command(tiny_dataset, output, 1) + ["--notensorboard", "--low_memory"],
                         env={**os.environ, "KERAS_BACKEND": "tensorflow"}, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert epochs_logged(output) == [0] and (output / "last.keras").exists()


def test_train_cli_rejects_bad_arguments(tiny_dataset, tmp_path):
    bad_model = run_tool("train", *train_command(tiny_dataset, tmp_path, 1)[3:], "--model=ResNet9000")
    assert bad_model.returncode == 2 and "--model must be one of" in bad_model.stderr
    missing = run_tool("train", *train_command(tmp_path / "nope.txt", tmp_path, 1)[3:])
    assert missing.returncode == 2 and "nope.txt" in missing.stderr


def test_train_reaches_its_first_step_without_decoding_the_dataset(tiny_dataset, tmp_path, monkeypatch):
    """A list of 3,000 entries (four real files, repeated): the first step comes after a few decodes."""
    entries = [line for line in tiny_dataset.read_text().splitlines() if line.strip()]
    listing = tiny_dataset.parent / "big_list.txt"
    listing.write_text("\n".join(entries * 750) + "\n")
    opened = []
    real_open = av.open
    monkeypatch.setattr(av, "open", lambda *args, **kwargs: opened.append(args[0]) or real_open(*args, **kwargs))

    class FirstStep(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.opened_at_start = len(opened)

        def on_train_batch_end(self, batch, logs=None):
            self.opened_by_first_step = len(opened)
            self.model.stop_training = True  # one step is all this test needs

    probe = FirstStep()
    sampling = VideoSampling(train_units=2, frames_per_unit=2, stride=2, crop_size=32, short_side=32)
    keras_v4d.training.train("TSNResNet18", keras_v4d.training.TrainingData(str(listing), num_classes=2),
                             keras_v4d.training.RunOutput(str(tmp_path / "run"), tensorboard=False, verbose=0),
                             sampling=sampling, recipe=keras_v4d.training.Recipe(epochs=1, batch_size=2),
                             callbacks=[probe])
    # The old start-up decoded all 3,000 videos (two opens each) to count the steps before training
    # began; now nothing is read to start, and by the end of the first step only the first batch and
    # what the pipeline prefetched.
    assert probe.opened_at_start < 20, probe.opened_at_start
    assert 0 < probe.opened_by_first_step < 200, probe.opened_by_first_step
    assert len(opened) < 400


def test_callbacks_show_progress_against_the_source_size_and_tensorboard_is_optional(tmp_path):
    progress = EpochProgress(steps_per_epoch=5)
    progress.set_params({"verbose": 2, "epochs": 1, "steps": None})  # a filtered tf.data pipeline: unknown
    assert progress.target == 5
    with_tensorboard = training_callbacks(str(tmp_path), steps_per_epoch=5)
    assert isinstance(with_tensorboard[0], EpochProgress) and with_tensorboard[0].expected_steps == 5
    (board,) = [c for c in with_tensorboard if isinstance(c, keras.callbacks.TensorBoard)]
    assert board.log_dir == str(tmp_path / "tensorboard")
    without = training_callbacks(str(tmp_path), steps_per_epoch=5, tensorboard=False)
    assert not any(isinstance(c, keras.callbacks.TensorBoard) for c in without)


def _tensorboard_scalars(folder):
    """``{tag: [(step, value), ...]}`` read back from the event files with TensorBoard's own reader."""
    from tensorboard.backend.event_processing import event_accumulator

    accumulator = event_accumulator.EventAccumulator(str(folder), size_guidance={event_accumulator.TENSORS: 0})
    accumulator.Reload()
    return {tag: [(event.step, float(tf.make_ndarray(event.tensor_proto))) for event in accumulator.Tensors(tag)]
            for tag in accumulator.Tags()["tensors"]}


def _run_on_a_terminal(command, env, timeout=300):
    """Runs ``command`` with stdout on a pseudo-terminal (``isatty()`` is true there); returns
    ``(return code, what the terminal showed, stderr)``."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(command, env=env, stdout=follower, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    os.close(follower)
    shown = []

    def read():
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the process closed the terminal
                break
            if not chunk:
                break
            shown.append(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    stderr = process.stderr.read().decode(errors="replace")
    process.wait(timeout=timeout)
    reader.join(timeout=10)
    os.close(leader)
    return process.returncode, b"".join(shown).decode(errors="replace"), stderr


def test_train_on_a_terminal_shows_progress_writes_tensorboard_and_counts_damaged_videos(tiny_dataset, tmp_path):
    root = tiny_dataset.parent
    good = [line for line in tiny_dataset.read_text().splitlines() if line.strip()]
    # Cut to 35 %: fewer frames decode than the first of U=2 sections of the 40 claimed, so every random
    # training sample needs frames past the cut and the video is repaired in every epoch.
    write_cut_faststart_mp4(root / "cut.mp4", np.random.default_rng(2).integers(0, 255, (40, 32, 32, 3), np.uint8),
                            keep=0.35)
    (root / "garbage.mp4").write_bytes(np.random.default_rng(3).integers(0, 255, 4000, np.uint8).tobytes())
    listing = root / "damaged.txt"  # 7 entries → 3 expected steps of 2; 5 usable videos give only 2
    listing.write_text("\n".join(good[:2] + ["garbage.mp4 0", "cut.mp4 1"] + good[2:] + ["missing.mp4 1"]) + "\n")
    output = tmp_path / "run"
    command = train_command(listing, output, 2) + [f"--val={tiny_dataset}"]
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "1"}  # TF errors stay visible
    code, shown, stderr = _run_on_a_terminal(command, env)
    assert code == 0, stderr[-3000:]
    assert "━" in shown and "\r" in shown, shown[-2000:]  # Keras' progress bar, redrawn in place
    assert "7 training videos, 3 steps per epoch" in shown
    assert "epoch 1: ended after 2 of 3 expected steps" in shown and "2 video(s) skipped, 1 repaired" in shown
    with open(output / "history.csv") as handle:
        history = list(csv.DictReader(handle))
    assert [(int(r["skipped"]), int(r["repaired"]), int(r["val_skipped"])) for r in history] == [(2, 1, 0)] * 2
    assert [float(r["learning_rate"]) for r in history] == pytest.approx([0.01, 0.01])
    with open(output / "skipped.csv") as handle:
        listed = list(csv.DictReader(handle))
    assert sorted((r["epoch"], r["status"], r["video"]) for r in listed) == sorted(
        (str(e), status, video) for e in (1, 2)
        for status, video in (("skipped", "garbage.mp4"), ("skipped", "missing.mp4"), ("repaired", "cut.mp4")))
    train_scalars = _tensorboard_scalars(output / "tensorboard" / "train")
    val_scalars = _tensorboard_scalars(output / "tensorboard" / "validation")
    for tag in ("epoch_loss", "epoch_top1", "epoch_top2", "epoch_mean_class_accuracy", "epoch_learning_rate",
                "epoch_skipped", "epoch_repaired"):
        assert [step for step, _ in train_scalars[tag]] == [0, 1], tag
    for tag in ("epoch_loss", "epoch_top1", "epoch_top2", "epoch_mean_class_accuracy"):
        assert len(val_scalars[tag]) == 2, tag
    assert [v for _, v in train_scalars["epoch_loss"]] == pytest.approx([float(r["loss"]) for r in history])
    assert [v for _, v in train_scalars["epoch_learning_rate"]] == pytest.approx([0.01, 0.01])
    assert [v for _, v in train_scalars["epoch_skipped"]] == [2, 2]
    assert glob.glob(str(output / "tensorboard" / "train" / "events.out.tfevents.*"))
    assert "remapper failed" not in stderr  # no spurious TensorFlow error lines on a normal run


def test_source_size_counts_without_decoding_and_an_unreadable_shard_counts_zero(tiny_dataset, tmp_path):
    from keras_v4d.data import encode_example
    from keras_v4d.training.data import source_size

    class NoCount:  # a dataset whose size the pipeline could not tell
        num_videos = None

    assert source_size(NoCount(), tiny_dataset) == 4
    frames = np.zeros((2, 8, 8, 3), np.uint8)
    for shard, count in (("a", 3), ("b", 2)):
        with tf.io.TFRecordWriter(str(tmp_path / f"{shard}.tfrecord")) as writer:
            for i in range(count):
                writer.write(encode_example(frames, 0, f"{shard}{i}"))
    (tmp_path / "c.tfrecord").mkdir()  # a "shard" that cannot be read as a file
    assert source_size(NoCount(), str(tmp_path / "*.tfrecord")) == 5


def test_mixed_precision_is_refused_on_cpu(tiny_dataset, tmp_path):
    """On CPU mixed_bfloat16 measured slower than float32: the option says so instead of slowing training."""
    from keras_v4d.training import Recipe, TrainingData, train

    with pytest.raises(ValueError, match="mixed_precision: no GPU.*slower"):
        train("TSNResNet18", TrainingData(str(tiny_dataset), num_classes=2), str(tmp_path),
              recipe=Recipe(mixed_precision=True))


def test_classifier_scores_stay_float32_under_mixed_precision():
    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        from keras_v4d.models import build_resnet3d

        model = build_resnet3d(18, None, classes=3, width=0.25)
        assert model.outputs[0].dtype == "float32"
    finally:
        keras.mixed_precision.set_global_policy(policy)
