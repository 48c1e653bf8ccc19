"""Golden inner product of the ``template`` arithmetic kind (``docs/arithmetic.md``,
"Template kernels").

A template channel ``c`` (``kind_data.template_ids[c] >= 0``) has the integer weights
``s * (2 * mask - 1)`` on every input channel, and its accumulator is computed the way the
hardware does, from the window sum shared by every template channel and the sum over the
mask's cells::

    S = sum_i X_i                  (all fan-in lanes of the window)
    P_c = sum_{i on the mask} X_i
    ACC[c] = s_c * (2 * P_c - S)

A ``fixed`` channel (``template_ids[c] = -1``) is the plain dot ``sum_i W[c, i] * X_i``. Both
equal ``sum_i W[c, i] * X_i`` exactly (``tests/test_template.py``), int64 throughout.
"""

import numpy as np

from .fixed import dot as fixed_dot

__all__ = ["dot", "channel_masks"]


def channel_masks(layer) -> np.ndarray:
    """``(OC, fan_in)`` 0/1: the mask cells of each template channel in the layer's natural
    (torch) weight order, all zero for ``fixed`` channels."""
    w = layer.weight_matrix()
    signs = np.asarray(layer.kind_data.signs, dtype=np.int64)[:, None]
    ids = np.asarray(layer.kind_data.template_ids)
    return ((w * signs > 0) & (ids[:, None] >= 0)).astype(np.int64)


def dot(layer, cols):
    """``ACC[n, oc]`` of ``cols`` ``(N, fan_in)`` in natural order, exactly, in int64."""
    cols = np.asarray(cols, dtype=np.int64)
    ids = np.asarray(layer.kind_data.template_ids)
    signs = np.asarray(layer.kind_data.signs, dtype=np.int64)
    acc = fixed_dot(layer, cols)
    tpl = np.flatnonzero(ids >= 0)
    if tpl.size:
        shared = cols.sum(axis=1)  # the window sum, one for every template channel
        on = cols @ channel_masks(layer)[tpl].T
        acc[:, tpl] = signs[tpl] * (2 * on - shared[:, None])
    return acc
