"""Keras layers for 4D convolutional video networks (V4D, F4D)."""

from keras_v4d.layers.attention import ChannelAttention, SpatioTemporalAttention, TemporalAttention
from keras_v4d.layers.block4d import Block4D
from keras_v4d.layers.conv4d import Conv4D, conv4d
from keras_v4d.layers.f4d_block import F4DBlock
from keras_v4d.layers.factorized4d import Factorized4D, factorized_width
from keras_v4d.layers.padding import SymmetricZeroPadding3D
from keras_v4d.layers.pooling import SpatialMaxPooling
from keras_v4d.layers.residual4d import Residual4D
from keras_v4d.layers.units import FoldUnits, UnfoldUnits, fold_units, unfold_units

__all__ = [
    "Block4D", "ChannelAttention", "Conv4D", "F4DBlock", "Factorized4D", "FoldUnits", "Residual4D",
    "SpatialMaxPooling", "SpatioTemporalAttention", "SymmetricZeroPadding3D", "TemporalAttention", "UnfoldUnits",
    "conv4d", "factorized_width", "fold_units", "unfold_units",
]
