"""Naive NumPy implementations of the paper equations, used as the independent truth in tests."""

import itertools

import numpy as np


def conv_nd_same(x, kernel, dilation=None):
    """'same'-padded, stride-1 N-D convolution (cross-correlation) as a sum over kernel taps.

    x: (B, *spatial, C_in); kernel: (*k, C_in, C_out), odd sizes. Float64 result.
    """
    x = np.asarray(x, np.float64)
    kernel = np.asarray(kernel, np.float64)
    sizes = kernel.shape[:-2]
    dilation = dilation or (1,) * len(sizes)
    pads = [d * (k // 2) for k, d in zip(sizes, dilation)]
    xp = np.pad(x, [(0, 0)] + [(p, p) for p in pads] + [(0, 0)])
    spatial = x.shape[1:-1]
    out = np.zeros(x.shape[:-1] + (kernel.shape[-1],))
    for taps in itertools.product(*[range(k) for k in sizes]):
        window = tuple(slice(t * d, t * d + n) for t, d, n in zip(taps, dilation, spatial))
        out += xp[(slice(None),) + window] @ kernel[taps]
    return out


def conv4d_eq1(x, kernel, bias=None):
    """V4D eq. (1): x (B, U, T, H, W, C_in), kernel (k_u, k_t, k_h, k_w, C_in, C_out), zero 'same' padding."""
    out = conv_nd_same(x, kernel)
    return out if bias is None else out + bias


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))
