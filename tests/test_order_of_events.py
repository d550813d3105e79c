"""The order-of-events demo (examples/order_of_events.py): its seeded training data are reproducible
(data order, units, crops and flips) and its picture writers produce PNG files — without training."""

import importlib.util
import os

import numpy as np
import pytest
import tensorflow as tf

from keras_v4d.data import train_transform

EXAMPLE = os.path.join(os.path.dirname(__file__), os.pardir, "examples", "order_of_events.py")


@pytest.fixture(scope="module")
def demo():
    spec = importlib.util.spec_from_file_location("order_of_events", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def train_list(demo, tmp_path_factory):
    return demo.write_dataset(str(tmp_path_factory.mktemp("order_of_events")), 2, seed=[0, 1])


def epochs(dataset, count=2):
    return [[(x.numpy(), y.numpy()) for x, y in dataset] for _ in range(count)]


def test_the_videos_follow_their_seed(demo):
    order = demo.ORDERS[3]
    a, b = (demo.make_video(order, np.random.default_rng([5, 1])) for _ in range(2))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a[:40], demo.make_video(order, np.random.default_rng([6, 1]))[:40])


def test_seeded_training_data_are_the_same_in_every_run(demo, train_list):
    first, steps = demo.training_set(train_list, 4, 4, seed=3)
    second, _ = demo.training_set(train_list, 4, 4, seed=3)
    assert steps == 3 and int(first.cardinality()) == 3
    a, b = epochs(first), epochs(second)
    for epoch_a, epoch_b in zip(a, b):
        for (xa, ya), (xb, yb) in zip(epoch_a, epoch_b):
            np.testing.assert_array_equal(ya, yb)
            np.testing.assert_array_equal(xa, xb)  # same units, crops and flips
    assert not all(np.array_equal(x0, x1) for (x0, _), (x1, _) in zip(*a))  # new draws each epoch
    other = epochs(demo.training_set(train_list, 4, 4, seed=4)[0], 1)[0]
    assert not all(np.array_equal(x0, x1) for (x0, _), (x1, _) in zip(a[0], other))


def test_the_crop_and_the_flip_follow_the_seed():
    frames = tf.constant(np.random.default_rng(0).integers(0, 256, (4, 40, 50, 3)), tf.uint8)
    seeds = [tf.constant([s, 1], tf.int64) for s in range(8)]
    out = [train_transform(frames, 24, 36, area_range=(0.3, 1.0), seed=s).numpy() for s in seeds]
    np.testing.assert_array_equal(out[0], train_transform(frames, 24, 36, area_range=(0.3, 1.0), seed=seeds[0]).numpy())
    assert len({o.tobytes() for o in out}) == len(out)  # each seed its own crop
    square = frames[:, :, :40]  # whole-frame box: the outputs differ only by the flip
    whole = [train_transform(square, 24, 36, area_range=(1.0, 1.0), aspect_ratio=(1.0, 1.0), seed=s).numpy()
             for s in seeds]
    distinct = {o.tobytes(): o for o in whole}
    assert len(distinct) == 2  # some seeds flip, some do not
    a, b = distinct.values()
    np.testing.assert_allclose(a, b[:, :, ::-1], atol=1e-5)


def test_the_pictures_are_written(demo, tmp_path):
    test_list = demo.write_dataset(str(tmp_path / "test"), 1, seed=[0, 2])
    rows = [dict(model=label, units=units, top1=100.0 * k / 2, reversed=10.0 * k, predicted=np.arange(6))
            for k, (label, _, units) in enumerate(demo.MODELS)]
    units_path, chart_path = str(tmp_path / "units.png"), str(tmp_path / "chart.png")
    demo.units_picture(test_list, rows, units_path)
    demo.accuracy_chart({0: rows, 1: rows}, chart_path)
    import matplotlib.image
    for path in (units_path, chart_path):
        with open(path, "rb") as handle:
            assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
        height, width = matplotlib.image.imread(path).shape[:2]
        assert 200 < height < 2000 and 300 < width < 2000
