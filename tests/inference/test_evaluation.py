"""The evaluation report and the metrics it is built from."""

import json

import numpy as np
import pytest

from keras_v4d import VideoSampling
from keras_v4d.data import write_video
from keras_v4d.inference import evaluate, predict_videos
from keras_v4d.inference.evaluation import write_report
from keras_v4d.inference.metrics import accuracy_metrics
from keras_v4d.models import build_resnet3d
from keras_v4d.records.class_names import top_classes, top_k_indices


def test_metrics_against_a_count_by_hand():
    scores = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.5, 0.4, 0.1], [0.2, 0.5, 0.3]])
    labels = np.array([0, 1, 1, 1])
    metrics, rows = accuracy_metrics(labels, scores, 3, ["a", "b", "c"])
    # top-1: videos 0 and 3 right; class a: 1/1, class b: 1/3 → mean class (100 + 33.3) / 2
    assert metrics["top1"] == 50.0 and metrics["top3"] == 100.0
    assert metrics["mean_class_accuracy"] == pytest.approx((100 + 100 / 3) / 2)
    assert rows == [(0, "a", 1, 1, 100.0), (1, "b", 3, 1, pytest.approx(100 / 3))]
    np.testing.assert_array_equal(top_k_indices(np.array([0.1, 0.5, 0.5, 0.2]), 3), [1, 2, 3])  # ties: lower first
    assert top_classes([0.1, 0.9], ["a", "b"], 1) == [("b", 0.9)]
    assert top_classes([0.1, 0.9], None, 1)[0][0] == "class 1"


def test_a_report_with_no_readable_video_is_strict_json(tmp_path):
    metrics, rows = accuracy_metrics(np.zeros((0,), np.int32), np.zeros((0, 3)), 3)
    assert np.isnan(metrics["top1"])
    write_report(str(tmp_path), metrics, rows, [], np.zeros((0,), np.int32), np.zeros((0, 3)),
                 unreadable=[("a.mp4", "cannot open")])

    def no_constants(name):
        raise AssertionError(f"metrics.json holds {name}, which is not JSON")

    loaded = json.loads((tmp_path / "metrics.json").read_text(), parse_constant=no_constants)
    assert loaded["top1"] is None and loaded["videos"] == 0


def test_evaluate_and_predict_take_the_frame_limit_and_refuse_too_many_combinations(tmp_path):
    model = build_resnet3d(18, "v4d", classes=2, input_shape=(None, 2, None, None, 3), width=0.25)
    rng = np.random.default_rng(0)
    for name, size in (("small.mp4", 32), ("large.mp4", 64)):
        write_video(str(tmp_path / name), rng.integers(0, 255, (12, size, size, 3), dtype=np.uint8))
    (tmp_path / "list.txt").write_text("small.mp4 0\nlarge.mp4 1\n")
    sampling = VideoSampling(train_units=2, frames_per_unit=2, stride=2, crop_size=32, short_side=32,
                             test_num_units=4, test_num_crops=1)
    limit = 32 * 32
    results = list(predict_videos(model, [str(tmp_path / "large.mp4"), str(tmp_path / "small.mp4")], sampling,
                                  max_frame_pixels=limit))
    assert results[0][1] is None and f"large.mp4: a frame of 64×64 (4096 pixels) is over the limit of {limit}" \
        in results[0][2]
    assert results[1][2] is None and len(results[1][1]) == 2
    metrics = evaluate(model, str(tmp_path / "list.txt"), sampling, progress=False, max_frame_pixels=limit)
    assert metrics["videos_evaluated"] == 1 and [video for video, _ in metrics["unreadable"]] == ["large.mp4"]
    assert evaluate(model, str(tmp_path / "list.txt"), sampling, progress=False)["videos_evaluated"] == 2

    many = VideoSampling(train_units=4, frames_per_unit=2, stride=2, crop_size=32, short_side=32, test_num_units=400)
    with pytest.raises(ValueError, match="num_units=400 .* makes 100000000 unit combinations"):
        evaluate(model, str(tmp_path / "no_such_list.txt"), many, progress=False)  # refused before any reading
    with pytest.raises(ValueError, match="num_units=400 .* makes 100000000 unit combinations"):
        next(predict_videos(model, [str(tmp_path / "no_such.mp4")], many))
    assert next(predict_videos(model, [str(tmp_path / "no_such.mp4")], many, mode="all_units"))[1] is None
