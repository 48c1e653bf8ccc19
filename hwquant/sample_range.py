"""What the network hardware of a ``bdcnn`` layer with the per-sample range (``--range
sample``) is made of, in pure Python (no Amaranth): the planner (:mod:`hwquant.plan`), the
cost model and the network top (:mod:`hwquant.hw.network`) read the same definitions.

Such a layer is three stages in the dataflow (``docs/arithmetic.md``, Binarized-DCNN,
per-sample range; ``docs/architecture.md``, section 2):

* the quantizer (:class:`hwquant.hw.sample_quant.SampleQuantizer`): the whole input map in,
  its ``Q``-bit codes out (:func:`code_format`), one ``[m, R]`` token per sample on a second
  stream (:func:`token_format`);
* the layer's MVU computing ``P = W @ q`` on the codes: the same layer with the static range on
  ``Q``-bit unsigned codes, no bias, ``P`` out (:func:`mvu_twin`);
* the combine (:class:`hwquant.hw.sample_quant.SampleCombine`): ``ACC = m * Rin + RHU(R * P /
  L)`` (:func:`inside_sums` gives ``Rin``), then the layer's own epilogue on ``ACC + B``.
"""

from __future__ import annotations

import numpy as np

from . import ir

__all__ = ["is_sample", "code_format", "token_format", "mvu_twin", "inside_sums", "acc_range",
           "quantizer_cycles", "division_constants"]


def is_sample(layer) -> bool:
    """Whether ``layer`` is a ``bdcnn`` layer with the per-sample range."""
    return getattr(getattr(layer, "kind_data", None), "range", "static") == "sample"


def code_format(qbits: int) -> ir.ActFormat:
    """Format of the quantized codes: unsigned ``Q`` bits."""
    return ir.ActFormat(qbits, False, 0)


def token_format(in_format) -> ir.ActFormat:
    """Lane format of the ``[m, R]`` token: signed, one bit wider than the input."""
    return ir.ActFormat(in_format.bits + 1, True, 0)


def quantizer_cycles(in_format, beats: int, qbits: int) -> int:
    """Cycles one map takes through the quantizer when never stalled: ``2 * beats + Q + S +
    4`` (load, range, divide, token, emit; no overlap of two maps)."""
    from .golden.bdcnn import reciprocal_shift

    return 2 * beats + qbits + reciprocal_shift(in_format.bits) + 4


def mvu_twin(layer):
    """The layer the MVU of a per-sample ``layer`` computes: the same weights, fold and basis
    with the static range on the ``Q``-bit codes, no bias, ``P = W @ q`` out (``Logits``, a
    signed format just wide enough for every ``P``)."""
    d = layer.kind_data
    codes = code_format(d.qbits)
    w = layer.weight_matrix()
    zero = np.zeros(len(w), dtype=np.int64)
    lo, hi = ir.matrix_range(w, zero, codes)
    p_fmt = ir.ActFormat(ir.signed_bits_for(int(min(lo.min(), 0)), int(max(hi.max(), 0))),
                         True, 0)
    data = ir.BdcnnData(basis=d.basis, qbits=d.qbits, coef_bits=d.coef_bits,
                        coefficients=d.coefficients)
    common = {"encoding": "bdcnn", "kind_data": data, "fold": layer.fold}
    if isinstance(layer, ir.Conv2d):
        return ir.Conv2d(layer.name, layer.inputs, codes, layer.weight, layer.weight_bits, 0,
                         zero, ir.Logits(), p_fmt, in_shape=layer.in_shape,
                         stride=layer.stride, padding=layer.padding, **common)
    return ir.Linear(layer.name, layer.inputs, codes, layer.weight, layer.weight_bits, 0, zero,
                     ir.Logits(), p_fmt, **common)


def inside_sums(layer) -> np.ndarray:
    """``Rin`` int64 ``(positions, OC)``: per output position (raster order) and channel the
    sum of the channel's weights over the window's taps inside the map (a linear layer: one
    position, ``sum_i W[n, i]``)."""
    w = layer.weight_matrix()
    if not isinstance(layer, ir.Conv2d):
        return w.sum(axis=1)[None, :]
    from .golden.network import im2col

    ones = im2col(np.ones((1, *layer.in_shape), dtype=np.int64), layer.kernel, layer.stride,
                  layer.padding, 0)
    return ones.reshape(-1, layer.fan_in) @ w.T


def acc_range(layer) -> tuple:
    """Worst-case ``(lo, hi)`` int64 ``(OC,)`` of a per-sample layer's ``ACC`` (without bias):
    that of ``W @ X`` over the input format, as for the static layer (``ACC = RHU(W . z)``,
    ``z`` in ``[min X, max X]`` or 0 at a padded tap)."""
    w = layer.weight_matrix()
    return ir.matrix_range(w, np.zeros(len(w), dtype=np.int64), layer.in_format)


def division_constants(in_format, p_format, qbits: int) -> tuple:
    """``(c, M, k)`` such that the combine's ``floor(n / (2 L))``, ``n = 2 * R * P + L``, is
    ``((n + c * 2 L) * M >> k) - c`` for every ``R`` in ``0 .. 2^in_bits - 1`` and ``P`` in
    ``p_format``: ``c`` lifts the least ``n`` to zero or more, ``N`` bits hold the largest
    lifted ``n``, ``l = ceil(log2 2L)``, ``k = N + l`` and ``M = ceil(2^k / 2L)``, so ``M * 2L -
    2^k < 2^l`` and the product's floor is the exact quotient on ``0 .. 2^N - 1`` (Granlund and
    Montgomery, "Division by invariant integers using multiplication", 1994, theorem 4.2):
    a constant multiply and a shift instead of a divider."""
    top = (1 << qbits) - 1
    d = 2 * top
    r_max = (1 << in_format.bits) - 1
    n_lo = 2 * r_max * min(p_format.lo, 0) + top
    n_hi = 2 * r_max * max(p_format.hi, 0) + top
    c = -(n_lo // d) if n_lo < 0 else 0
    n_bits = max((n_hi + c * d).bit_length(), 1)
    k = n_bits + (d - 1).bit_length()
    return c, -(-(1 << k) // d), k
