"""The evaluation report and the metrics it is built from."""

import json

import numpy as np
import pytest

from keras_v4d.inference.evaluation import write_report
from keras_v4d.inference.metrics import accuracy_metrics, top_classes, top_k_indices


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
