"""Evaluate a trained model the way the papers do: video-level inference over U_infer units
(Algorithm 1) and multi-crop testing, with top-1 / top-5 / mean-class accuracy.

    python -m keras_v4d.evaluate --checkpoint runs/v4d/last.keras --data val.txt \
        --num_units 10 --num_crops 3 --output runs/v4d/eval

Writes ``metrics.json``, ``per_class.csv`` (accuracy of every class) and ``predictions.csv``
under --output. Exit codes: 0 done, 1 a video could not be read, 2 bad flags or files.
"""

import csv
import json
import math
import os

from absl import flags

from keras_v4d.cli import EXIT_BAD_INPUT, CommandError, define_inference_flags, load_inference_model, run

FLAGS = flags.FLAGS
define_inference_flags()
flags.DEFINE_string("data", None, "Test source: annotation list, class folders or TFRecords.")
flags.DEFINE_string("output", None, "Folder for metrics.json, per_class.csv and predictions.csv.")
flags.DEFINE_integer("batch_size", 2, "Videos per batch.")
flags.DEFINE_bool("progress", True, "Show a progress bar.")


def per_class_rows(labels, predictions, num_classes, class_names):
    """``(class, name, videos, correct, top-1 %)`` for every class that has test videos."""
    import numpy as np

    rows = []
    for c in range(num_classes):
        mask = labels == c
        if mask.any():
            correct = int((predictions[mask] == c).sum())
            name = class_names[c] if class_names else str(c)
            rows.append((c, name, int(mask.sum()), correct, 100.0 * correct / int(mask.sum())))
    return rows


def evaluate(model, dataset, train_units, mode, progress=True, total=None):
    """Video-level scores of every video of an evaluation ``dataset``: ``(labels, scores, ids)``."""
    import numpy as np
    from keras import ops
    from tqdm import tqdm

    from keras_v4d.inference import VideoLevelPredictor, video_level_predict

    predictor = VideoLevelPredictor(model)
    labels, scores, ids = [], [], []
    for views, y, video_ids in tqdm(dataset, total=total, unit="batch", disable=not progress, desc="evaluate"):
        scores.append(ops.convert_to_numpy(video_level_predict(model, views, train_units, mode, predictor)))
        labels.append(y.numpy())
        ids.extend(v.decode() for v in video_ids.numpy())
    return np.concatenate(labels), np.concatenate(scores), ids


def main(argv):
    import numpy as np

    from keras_v4d.data import BadVideoError, resolve_source, video_dataset

    if len(argv) > 1:
        raise CommandError(f"unexpected arguments {argv[1:]}; the test data goes in --data")
    if not FLAGS.data or not FLAGS.output:
        raise CommandError("--data and --output are required")
    model, class_names, train_units, sampling = load_inference_model(FLAGS)
    num_classes = model.outputs[0].shape[-1]
    try:
        source = resolve_source(FLAGS.data, class_names=class_names)
    except (OSError, ValueError) as error:
        raise CommandError(f"--data: {error}") from None
    if source.class_names and len(source.class_names) != num_classes:
        raise CommandError(f"--data {FLAGS.data} has {len(source.class_names)} classes but the model "
                           f"{FLAGS.checkpoint} has {num_classes} outputs")
    if class_names and source.class_names and list(source.class_names) != list(class_names):
        raise CommandError(f"--data {FLAGS.data}: its class names differ from the model's (first: "
                           f"{source.class_names[0]!r} vs {class_names[0]!r}); labels would not line up")
    labels = getattr(source, "labels", None)
    if labels and max(labels) >= num_classes:
        raise CommandError(f"--data {FLAGS.data} has labels up to {max(labels)} but the model "
                           f"{FLAGS.checkpoint} has {num_classes} outputs (labels 0..{num_classes - 1})")
    class_names = class_names or source.class_names
    dataset = video_dataset(source, training=False, batch_size=FLAGS.batch_size, num_classes=num_classes,
                            **sampling)
    total = math.ceil(len(labels) / FLAGS.batch_size) if labels else None
    try:
        y_true, scores, ids = evaluate(model, dataset, train_units, FLAGS.mode, FLAGS.progress, total)
    except BadVideoError as error:
        raise CommandError(f"--data: {error}", code=EXIT_BAD_INPUT) from None
    except Exception as error:  # tf.data wraps the pipeline's BadVideoError
        if "BadVideoError" not in str(error):
            raise
        raise CommandError(f"--data: {str(error).split('BadVideoError: ')[-1].strip()}", code=EXIT_BAD_INPUT) from None

    predicted = scores.argmax(-1)
    k = min(5, num_classes)
    top_k = np.argsort(-scores, axis=-1)[:, :k]
    rows = per_class_rows(y_true, predicted, num_classes, class_names)
    metrics = {
        "videos": int(len(y_true)),
        "top1": 100.0 * float((predicted == y_true).mean()),
        f"top{k}": 100.0 * float((top_k == y_true[:, None]).any(-1).mean()),
        "mean_class_accuracy": float(np.mean([row[4] for row in rows])),
        "checkpoint": FLAGS.checkpoint, "data": FLAGS.data, "mode": FLAGS.mode, "train_units": train_units,
        **sampling,
    }
    os.makedirs(FLAGS.output, exist_ok=True)
    with open(os.path.join(FLAGS.output, "metrics.json"), "w") as handle:
        json.dump(metrics, handle, indent=2)
    with open(os.path.join(FLAGS.output, "per_class.csv"), "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["class", "name", "videos", "correct", "top1"])
        writer.writerows([(c, n, v, r, f"{a:.2f}") for c, n, v, r, a in rows])
    with open(os.path.join(FLAGS.output, "predictions.csv"), "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["video", "label", "predicted", "score"])
        writer.writerows([(i, int(t), int(p), f"{s[p]:.4f}") for i, t, p, s in zip(ids, y_true, predicted, scores)])
    print(f"{metrics['videos']} videos, {sampling['num_crops']} crop(s) × {sampling['num_units']} units, "
          f"{FLAGS.mode}: top-1 {metrics['top1']:.2f}%  top-{k} {metrics[f'top{k}']:.2f}%  "
          f"mean class {metrics['mean_class_accuracy']:.2f}%")
    print(f"per-class accuracy: {os.path.join(FLAGS.output, 'per_class.csv')}")
    return 0


if __name__ == "__main__":
    run(main)
