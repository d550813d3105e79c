"""Argument and shape checks shared by the layers: clear ``ValueError``s naming what is wrong."""

import numbers


def normalize_tuple(value, length, argument, layer_name, odd=False):
    """Returns ``value`` as a tuple of ``length`` positive ints (an int is repeated)."""
    if isinstance(value, int):
        value = (value,) * length
    try:
        value = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(
            f"{layer_name}: `{argument}` must be an int or a tuple of {length} ints, got {value!r}."
        ) from None
    if len(value) != length:
        raise ValueError(
            f"{layer_name}: `{argument}` must have {length} entries, got {len(value)}: {value!r}."
        )
    if any(v < 1 for v in value):
        raise ValueError(f"{layer_name}: `{argument}` entries must be >= 1, got {value!r}.")
    if odd and any(v % 2 == 0 for v in value):
        raise ValueError(
            f"{layer_name}: `{argument}` must be odd in every axis for symmetric 'same' zero "
            f"padding (even kernels are not supported), got {value!r}."
        )
    return value


def check_rank(input_shape, rank, layer_name, layout):
    """Raises unless ``input_shape`` has ``rank`` axes and a known channel count."""
    input_shape = tuple(input_shape)
    if len(input_shape) != rank:
        raise ValueError(
            f"{layer_name} expects a rank-{rank} input {layout}, got shape {input_shape} "
            f"(rank {len(input_shape)})."
        )
    if input_shape[-1] is None:
        raise ValueError(
            f"{layer_name}: the channel axis (last) of the input must be known, got shape {input_shape}."
        )
    return input_shape


def check_channels(input_shape, expected, layer_name):
    if expected is not None and input_shape[-1] != expected:
        raise ValueError(
            f"{layer_name} expects {expected} input channels, got shape {tuple(input_shape)} "
            f"with {input_shape[-1]} channels."
        )


def check_unit_index(index, input_shape, layer_name):
    """``index`` must name a unit of a ``(B, U, …)`` input with a known U."""
    num_units = input_shape[1]
    if num_units is None or not isinstance(index, numbers.Integral) or not 0 <= index < num_units:
        raise ValueError(f"{layer_name}: `index` must lie in [0, U) for a known U, got index={index!r} "
                         f"and input shape {tuple(input_shape)}.")
