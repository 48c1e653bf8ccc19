"""Golden inner product of the ``binary`` arithmetic kind: weights ``-1`` or ``+1`` (BNN,
Courbariaux/Hubara et al., "Binarized Neural Networks", 2016; XNOR-Net, Rastegari et al., 2016).

The accumulator is the plain ``ACC[c] = sum_k W[c, k] * value(x_k)``; what this module defines
is how the binary kind computes it, which the hardware follows:

* **bipolar inputs** (values ``-1``/``+1``, code bits ``b = (v + 1) / 2``): with weight bits
  ``wb = (w + 1) / 2``, ``ACC = 2 * popcount(XNOR(wb, b)) - N`` over the ``N`` lanes
  (``XNOR`` is 1 where weight and input agree). Padding inserts code 0 (value ``-1``).
* **multi-bit inputs** (the first layer, or binary weights with wider activations):
  ``ACC = sum_{w = +1} x - sum_{w = -1} x``, an add/subtract tree, no product.

Both equal ``W @ x`` for the integer weights the IR stores (tests prove it).
"""

import numpy as np

from ..layout import conv_weight_matrix
from .exact import fast_enabled, matmul

__all__ = ["dot", "weight_bits_of", "xnor_popcount", "flip_negative_directions"]


def weight_bits_of(weight) -> np.ndarray:
    """Code bits of binary weights (any shape): 1 for ``+1``, 0 for ``-1`` (int64)."""
    return (np.asarray(weight, dtype=np.int64) > 0).astype(np.int64)


def xnor_popcount(wbits, xbits) -> np.ndarray:
    """``popcount(XNOR(w, x))`` of every row of ``xbits`` ``(n, N)`` against every row of
    ``wbits`` ``(OC, N)``: ``(n, OC)`` int64, the agreeing lanes."""
    w = np.asarray(wbits, dtype=np.int64)
    x = np.asarray(xbits, dtype=np.int64)
    return x @ w.T + (1 - x) @ (1 - w).T


def dot(layer, cols):
    """``ACC[n, oc]`` of the binary weights of ``layer`` against ``cols`` (``(n, fan_in)``
    values in torch order): the XNOR-popcount form for a bipolar input, the add/subtract form
    otherwise (int64)."""
    return dot_windows(layer, cols)


def dot_windows(layer, cols, x_abs_max=None, window_order=False):
    """:func:`dot` for the golden model's fast path (``cols`` may be integer-valued floats with
    a proven bound ``x_abs_max``, and in window-lane order with ``window_order``). The fast path
    is the exact product with the ``+-1`` matrix (:func:`hwquant.golden.exact.matmul`); the
    reference path computes the kind's own forms."""
    w = conv_weight_matrix(layer.weight) if window_order else layer.weight_matrix()
    if fast_enabled():
        return matmul(cols, w, x_abs_max=x_abs_max)
    x = np.asarray(cols).astype(np.int64)
    if layer.in_format.bipolar:
        n = w.shape[1]
        return 2 * xnor_popcount(weight_bits_of(w), (x + 1) // 2) - n
    return x @ (w > 0).T.astype(np.int64) - x @ (w < 0).T.astype(np.int64)


#: The fast path's entry (golden.network looks for it on the kind's dot).
dot.windows = dot_windows


def flip_negative_directions(net):
    """``net`` with every binary layer's negative-direction threshold channels folded into
    its weights (as FINN does for a negative BatchNorm gamma): for a channel with direction
    ``-1`` the weights, the bias and the thresholds are negated and the direction becomes
    ``+1`` (``ACC + B <= T`` is ``-(ACC + B) >= -T``; the thresholds of the row are re-sorted,
    the count of passed ones does not depend on their order). Every layer's output is
    unchanged, so the golden model and the hardware agree on the flipped network exactly;
    the hardware saves the per-channel negation in the thresholds epilogue. Other layers are
    returned as they are."""
    import dataclasses

    from .. import ir

    layers = []
    for layer in net.layers:
        ep = getattr(layer, "epilogue", None)
        if getattr(layer, "encoding", None) != "binary" or not isinstance(ep, ir.Thresholds) \
                or not np.any(ep.direction < 0):
            layers.append(layer)
            continue
        neg = ep.direction < 0
        sign = np.where(neg, -1, 1)
        weight = layer.weight * sign.reshape((-1,) + (1,) * (layer.weight.ndim - 1))
        thresholds = np.where(neg[:, None], -ep.thresholds[:, ::-1], ep.thresholds)
        layers.append(dataclasses.replace(
            layer, weight=weight, bias=layer.bias * sign,
            epilogue=ir.Thresholds(thresholds, np.ones_like(ep.direction))))
    out = dataclasses.replace(net, layers=tuple(layers))
    out.validate()
    return out
