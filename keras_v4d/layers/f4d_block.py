"""The F4D residual block (F4D §3.4–3.5)."""

import keras
from keras import ops

from keras_v4d.layers._checks import check_rank, check_unit_index, normalize_tuple
from keras_v4d.layers.attention import ChannelAttention, SpatioTemporalAttention, TemporalAttention
from keras_v4d.layers.block4d import Block4D
from keras_v4d.layers.factorized4d import Factorized4D
from keras_v4d.layers.normalization import batch_norm
from keras_v4d.layers.units import fold_units, unfold_units

ATTENTIONS = ("temporal", "channel", "spatiotemporal")


@keras.saving.register_keras_serializable(package="keras_v4d")
class F4DBlock(Block4D):
    """``Y = X + STA(CA(to3D(TA(Dropout(ReLU(BN(Factorized4D(X))))))))``.

    Input and output ``(B, U, T, H, W, C)``. TA works in the 4D view, CA and STA on the folded
    3D view ``(B·U, T, H, W, C)``. The branch BN's scale starts at zero, so the block is the
    identity at initialisation (as V4D's zero 4D kernel). ``attention`` selects the modules
    (F4D Table 4 ablations); ``dropout_rate`` is our default, the paper gives none.
    """

    def __init__(self, kernel_size=(3, 3, 1, 1), dropout_rate=0.2, reduction=16,
                 attention=ATTENTIONS, kernel_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        self.kernel_size = normalize_tuple(kernel_size, 4, "kernel_size", "F4DBlock", odd=True)
        unknown = [a for a in attention if a not in ATTENTIONS]
        if unknown:
            raise ValueError(f"F4DBlock: `attention` entries must be among {ATTENTIONS}, got {unknown}.")
        self.attention = tuple(attention)
        self.dropout_rate = dropout_rate
        self.reduction = reduction
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.norm = batch_norm(name="bn", zero_gamma=True)
        self.dropout = keras.layers.Dropout(dropout_rate)
        self.temporal_attention = TemporalAttention(name="ta") if "temporal" in attention else None
        self.channel_attention = ChannelAttention(reduction, name="ca") if "channel" in attention else None
        self.spatiotemporal_attention = (
            SpatioTemporalAttention(name="sta") if "spatiotemporal" in attention else None)

    def build(self, input_shape):
        input_shape = check_rank(input_shape, 6, "F4DBlock", "(batch, U, T, H, W, channels)")
        self.factorized = Factorized4D(input_shape[-1], self.kernel_size,
                                       kernel_regularizer=self.kernel_regularizer, name="factorized4d")
        self.factorized.build(input_shape)
        self.norm.build(input_shape)
        folded = (None,) + tuple(input_shape[2:])
        for module, shape in ((self.temporal_attention, input_shape), (self.channel_attention, folded),
                              (self.spatiotemporal_attention, folded)):
            if module is not None:
                module.build(shape)

    def call(self, inputs, training=None):
        return inputs + self._per_unit_attention(self._mixing_units(inputs, training))

    def unit_output(self, inputs, index, training=None):
        """``self(inputs)[:, index:index + 1]``, with CA and STA (which work per unit) run on that
        unit only: ``(B, U, T, H, W, C)`` → ``(B, 1, T, H, W, C)``."""
        inputs = ops.convert_to_tensor(inputs)
        check_unit_index(index, inputs.shape, self.name)
        x = self._mixing_units(inputs, training)[:, index:index + 1]
        return inputs[:, index:index + 1] + self._per_unit_attention(x)

    def _mixing_units(self, inputs, training):
        """The part that mixes units: TA(Dropout(ReLU(BN(Factorized4D(X)))))."""
        x = self.factorized(inputs, training=training)
        x = self.dropout(ops.relu(self.norm(x, training=training)), training=training)
        if self.temporal_attention is not None:
            x = self.temporal_attention(x)
        return x

    def _per_unit_attention(self, x):
        """CA then STA on the folded 3D view: ``(B, U, T, H, W, C)`` → the same shape."""
        num_units = ops.shape(x)[1]
        x = fold_units(x)
        if self.channel_attention is not None:
            x = self.channel_attention(x)
        if self.spatiotemporal_attention is not None:
            x = self.spatiotemporal_attention(x)
        return unfold_units(x, num_units)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def count_macs(self, input_shape):
        """Multiply-accumulates of one call on ``input_shape`` ``(B, U, T, H, W, C)``: the factorised 4D
        conv, then each attention module."""
        folded = (input_shape[0] * input_shape[1],) + tuple(input_shape[2:])
        total = self.factorized.count_macs(input_shape)
        if self.temporal_attention is not None:
            total += self.temporal_attention.count_macs(input_shape)
        for module in (self.channel_attention, self.spatiotemporal_attention):
            if module is not None:
                total += module.count_macs(folded)
        return total

    def unit_radius(self, frames_per_unit):
        """Units on each side one output unit depends on: the factorised conv's ``k_u // 2`` plus
        the temporal attention's reach along the ``U·T`` sequence (CA and STA work per unit)."""
        radius = self.kernel_size[0] // 2
        if self.temporal_attention is not None:
            radius += self.temporal_attention.unit_radius(frames_per_unit)
        return radius

    def get_config(self):
        config = super().get_config()
        config.update(
            kernel_size=self.kernel_size,
            dropout_rate=self.dropout_rate,
            reduction=self.reduction,
            attention=self.attention,
            kernel_regularizer=keras.regularizers.serialize(self.kernel_regularizer),
        )
        return config
