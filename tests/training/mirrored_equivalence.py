"""Helper run by test_distributed.py in a fresh process: it must split the CPU into 2 logical
devices before TensorFlow starts. Trains the same model on the same global batches with one
device and with MirroredStrategy over 2 replicas; prints both loss trajectories as JSON."""

import json
import os

os.environ["KERAS_BACKEND"] = "tensorflow"
import tensorflow as tf

tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2)

import keras
import numpy as np

from keras_v4d.models import build_resnet3d
from keras_v4d.training import compile_for_training


def train(strategy, epochs=3):
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = build_resnet3d(18, "v4d", classes=3, input_shape=(2, 2, 32, 32, 3), width=0.25, dropout_rate=0.0)
        # Per-replica BN batch statistics differ from the global batch's (as in any data-parallel BN without
        # synchronisation); frozen
        # BN makes every sample's loss independent of how the batch is split, which isolates the
        # distribution logic: loss scaling, gradient all-reduce, clipping, the optimizer step.
        for layer in model.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False
        compile_for_training(model, steps_per_epoch=4, base_lr=0.05)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(16, 2, 2, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 3, 16)
    batch_losses = []
    record = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: batch_losses.append(logs["loss"]))
    model.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(4), epochs=epochs, verbose=0, callbacks=[record])
    return {"replicas": strategy.num_replicas_in_sync, "losses": [float(v) for v in batch_losses]}


print(json.dumps({"one_device": train(tf.distribute.get_strategy()),
                  "mirrored": train(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))}))
