"""4D convolution over (U, T, H, W), built from 3D convolutions (V4D eq. 1/2)."""

import math

import keras
from keras import ops

from keras_v4d.layers._checks import check_channels, check_rank, check_unit_index, normalize_tuple
from keras_v4d.layers.units import fold_units, unfold_units


def conv4d_shifted_sum(x, kernel):
    """General 4D convolution, 'same' zero padding, stride 1 (V4D eq. 2).

    ``out[u] = Σ_s Conv3D_s(x[u + s - p])``. All ``k_u`` Conv3Ds run as *one* Conv3D on the
    folded batch (their kernels stacked along the output channels); the per-offset results are
    then shifted along U and summed, so no tensor above rank 5 is materialised.

    Args:
        x: ``(B, U, T, H, W, C_in)``.
        kernel: ``(k_u, k_t, k_h, k_w, C_in, C_out)``, all sizes odd.
    Returns:
        ``(B, U, T, H, W, C_out)``.
    """
    k_u, k_t, k_h, k_w, c_in, c_out = kernel.shape
    shape = ops.shape(x)
    num_units, t, h, w = shape[1], shape[2], shape[3], shape[4]
    stacked = ops.reshape(
        ops.transpose(kernel, (1, 2, 3, 4, 0, 5)), (k_t, k_h, k_w, c_in, k_u * c_out)
    )
    y = ops.conv(fold_units(x), stacked, strides=1, padding="same")  # (B*U, T, H, W, k_u*C_out)
    y = ops.reshape(y, (-1, num_units, t * h * w, k_u, c_out))
    pad = k_u // 2
    y = ops.pad(y, ((0, 0), (pad, pad), (0, 0), (0, 0), (0, 0)))
    out = None
    for s in range(k_u):
        # Offset s reads unit u + s - pad, i.e. padded index u + s: a window of U starting at s.
        stop = s - 2 * pad or None
        term = y[:, s:stop, :, s, :]
        out = term if out is None else out + term
    return ops.reshape(out, (-1, num_units, t, h, w, c_out))


def conv4d_spatial_pointwise(x, kernel):
    """4D convolution with ``k_h = k_w = 1`` as a single Conv3D (the released code's ``fast_implementation``).

    With no spatial extent, (U, T) play the role of a 3D conv's (T, H) and H·W that of its W:
    one Conv3D with kernel ``(k_u, k_t, 1)`` on ``(B, U, T, H·W, C)``.

    Args:
        x: ``(B, U, T, H, W, C_in)``.
        kernel: ``(k_u, k_t, 1, 1, C_in, C_out)``, ``k_u``/``k_t`` odd.
    Returns:
        ``(B, U, T, H, W, C_out)``.
    """
    k_u, k_t, _, _, c_in, c_out = kernel.shape
    shape = ops.shape(x)
    num_units, t, h, w = shape[1], shape[2], shape[3], shape[4]
    y = ops.conv(
        ops.reshape(x, (-1, num_units, t, h * w, c_in)),
        ops.reshape(kernel, (k_u, k_t, 1, c_in, c_out)),
        strides=1,
        padding="same",
    )
    return ops.reshape(y, (-1, num_units, t, h, w, c_out))


def conv4d_unit_pointwise(x, kernel):
    """4D convolution with ``k_u = 1``: a plain Conv3D on the folded batch."""
    y = ops.conv(fold_units(x), kernel[0], strides=1, padding="same")
    return unfold_units(y, ops.shape(x)[1])


def conv4d_at_unit(x, kernel, index):
    """Output unit ``index`` of ``conv4d(x, kernel)`` alone, at one unit's cost.

    ``out[index] = Σ_s Conv3D_s(x[index + s - p])`` over the offsets that stay inside U (the
    others read 'same' padding's zeros): the units concatenated along channels and the kernel's
    offsets along its input channels make that sum one Conv3D.

    Args:
        x: ``(B, U, T, H, W, C_in)`` with U known.
        kernel: ``(k_u, k_t, k_h, k_w, C_in, C_out)``, all sizes odd.
        index: the output unit, ``0 <= index < U``.
    Returns:
        ``(B, 1, T, H, W, C_out)``.
    """
    check_unit_index(index, x.shape, "conv4d_at_unit")
    num_units = x.shape[1]
    pad = kernel.shape[0] // 2
    offsets = [s for s in range(kernel.shape[0]) if 0 <= index + s - pad < num_units]
    units = ops.concatenate([x[:, index + s - pad] for s in offsets], axis=-1)  # (B, T, H, W, w·C_in)
    taps = ops.concatenate([kernel[s] for s in offsets], axis=-2)  # (k_t, k_h, k_w, w·C_in, C_out)
    return ops.expand_dims(ops.conv(units, taps, strides=1, padding="same"), 1)


def conv4d(x, kernel):
    """4D convolution (no bias), choosing the cheapest exact implementation for the kernel."""
    k_u, _, k_h, k_w = kernel.shape[:4]
    if k_h == 1 and k_w == 1:
        return conv4d_spatial_pointwise(x, kernel)
    if k_u == 1:
        return conv4d_unit_pointwise(x, kernel)
    return conv4d_shifted_sum(x, kernel)


@keras.saving.register_keras_serializable(package="keras_v4d")
class Conv4D(keras.layers.Layer):
    """4D convolution over (U, T, H, W) with zero 'same' padding and stride 1 (V4D eq. 1).

    Input ``(B, U, T, H, W, C_in)`` → output ``(B, U, T, H, W, filters)``. The kernel has shape
    ``(k_u, k_t, k_h, k_w, C_in, filters)``; the paper's forms are ``(k,1,1,1)``, ``(k,k,1,1)``
    and ``(k,k,k,k)``; any odd sizes work. The bias is added once per output channel.
    """

    def __init__(
        self,
        filters,
        kernel_size=(3, 3, 1, 1),
        use_bias=True,
        kernel_initializer="he_normal",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(filters, int) or filters < 1:
            raise ValueError(f"Conv4D: `filters` must be a positive int, got {filters!r}.")
        self.filters = filters
        self.kernel_size = normalize_tuple(kernel_size, 4, "kernel_size", "Conv4D", odd=True)
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)

    def build(self, input_shape):
        input_shape = check_rank(input_shape, 6, "Conv4D", "(batch, U, T, H, W, channels)")
        self.input_channels = input_shape[-1]
        self.kernel = self.add_weight(
            name="kernel",
            shape=self.kernel_size + (self.input_channels, self.filters),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
        )
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias",
                shape=(self.filters,),
                initializer=self.bias_initializer,
                regularizer=self.bias_regularizer,
            )

    def call(self, inputs):
        check_channels(inputs.shape, self.input_channels, self.name)
        return self._add_bias(conv4d(inputs, ops.cast(self.kernel, inputs.dtype)))

    def unit_output(self, inputs, index):
        """``self(inputs)[:, index:index + 1]`` computed for that unit only: ``(B, 1, T, H, W, filters)``."""
        inputs = ops.convert_to_tensor(inputs)
        check_channels(inputs.shape, self.input_channels, self.name)
        return self._add_bias(conv4d_at_unit(inputs, ops.cast(self.kernel, inputs.dtype), index))

    def _add_bias(self, outputs):
        return outputs if self.bias is None else outputs + ops.cast(self.bias, outputs.dtype)

    def compute_output_shape(self, input_shape):
        check_rank(input_shape, 6, "Conv4D", "(batch, U, T, H, W, channels)")
        return tuple(input_shape[:-1]) + (self.filters,)

    def count_macs(self, input_shape):
        """Multiply-accumulates for one call on ``input_shape`` (all kernel taps counted)."""
        return math.prod(input_shape[:-1]) * self.filters * math.prod(self.kernel_size) * input_shape[-1]

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            kernel_size=self.kernel_size,
            use_bias=self.use_bias,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            bias_initializer=keras.initializers.serialize(self.bias_initializer),
            kernel_regularizer=keras.regularizers.serialize(self.kernel_regularizer),
            bias_regularizer=keras.regularizers.serialize(self.bias_regularizer),
        )
        return config
