"""Cost face of the ``bdcnn`` arithmetic kind: what :class:`hwquant.hw.bdcnn.BdcnnEngine`
builds in the MVU, calibrated against Yosys (``tests/test_bdcnn_estimate.py``).

Per MVU: ``Q`` shared popcounts of ``SIMD`` bits; per PE ``K * Q`` popcounts (of ``SIMD`` bits
folded, with the AND of the ROM bits in their first LUTs; of the selected lanes when unrolled)
and the combine: per basis the plane sum ``T_a = sum_b P_ab << (b + 1) - sum_b S_b << b``
(``Q`` adds), its product by the channel's coefficient (a constant multiply when ``NF = 1``, a
``coef_bits``-wide multiplier otherwise) and the adder tree. The MVU
(:mod:`hwquant.estimate.mvu`) counts one engine sum, one accumulator and a combine register
of the accumulator's width per PE; this face adds the other ``K * Q - 1`` part registers and
accumulators per PE, the ``Q`` shared ones, and the combine register's rest up to the
accumulator width.
"""

from __future__ import annotations

import math

import numpy as np

from .. import ir
from ..plan import mvu_cycles
from .binary import popcount_luts
from .common import check_family
from .resources import (
    Resources,
    adder,
    comparator,
    const_multiplier,
    multiplier,
    mux,
    register,
)

__all__ = ["resources", "cycles", "dot_range", "word_bits", "sample_stage"]


def _check(layer):
    if not isinstance(layer, (ir.Conv2d, ir.Linear)) or layer.encoding != "bdcnn":
        raise ValueError(f"Layer '{getattr(layer, 'name', layer)}': the bdcnn cost model takes "
                         f"a bdcnn conv2d or linear layer")


def resources(layer, family, *, use_dsp=True, **_) -> Resources:
    """LUT/DSP of the engine and its combine step (accumulators and ROM: estimate.model)."""
    _check(layer)
    check_family(family)
    d = layer.kind_data
    pe, simd = layer.fold.pe, layer.fold.simd
    nf = layer.out_channels // pe
    pop = popcount_luts(simd, family)
    total = pop * d.qbits + pop * (pe * d.basis * d.qbits)
    t_bits = math.ceil(math.log2(layer.fan_in * ((1 << d.qbits) - 1) + 1)) + 2
    total = total + _sums(layer, family)
    coef = np.array(d.coefficients, dtype=np.int64).reshape(layer.out_channels, d.basis)
    for p in range(pe):
        # T_a per basis: Q shifted part sums less the shared plane sum.
        total = total + adder(t_bits, family) * (d.basis * d.qbits)
        for a in range(d.basis):
            if nf == 1:  # the channel's own constant (0: no product, as the engine skips it)
                if not coef[p, a]:
                    continue
                prod = const_multiplier(int(coef[p, a]), t_bits, True, family,
                                        use_dsp=use_dsp)
            else:
                prod = multiplier(t_bits, d.coef_bits, family, use_dsp, signed=True)
            total = total + prod + adder(t_bits + d.coef_bits, family)
    return total


def _sums(layer, family) -> Resources:
    """The registers and accumulators of the parts beyond the MVU's one per PE, and the rest
    of the combine register."""
    d = layer.kind_data
    pe, simd, f = layer.fold.pe, layer.fold.simd, layer.fan_in
    # Popcounts are never negative: their constant sign bits are no flip-flops.
    part_bits, acc_bits = simd.bit_length(), f.bit_length()
    extra = pe * (d.basis * d.qbits - 1) + d.qbits
    if f // simd > 1:
        one = register(part_bits) + register(acc_bits) + adder(acc_bits, family) + \
            mux(acc_bits, 2, family)
    else:
        one = register(part_bits)
    # The combine register of a PE: as wide as its channels' range of W @ X.
    w = layer.weight_matrix()
    lo, hi = ir.matrix_range(w, np.zeros(len(w), dtype=np.int64), layer.in_format)
    combine = sum(max(ir.signed_bits_for(int(min(lo[p::pe].min(), 0)),
                                         int(max(hi[p::pe].max(), 0))) - acc_bits, 0)
                  for p in range(pe))
    return one * extra + register(combine)


def cycles(layer) -> int:
    _check(layer)
    return mvu_cycles(layer)


def dot_range(layer, weights=None, *, simd) -> tuple:
    """One partial sum: a popcount of ``simd`` bits."""
    return 0, simd


def word_bits(layer, simd) -> int:
    """ROM bits of one PE and ``simd`` lanes: ``K`` basis bits per lane."""
    return layer.kind_data.basis * simd


def sample_stage(in_format, lanes: int, beats: int, qbits: int, family, *,
                 use_dsp=True) -> Resources:
    """LUT/FF/DSP/BRAM of :class:`hwquant.hw.sample_quant.SampleQuantizer`: the map memory
    (``beats`` words of ``lanes * in_bits``), the lane min/max trees and running registers
    (with the token's ``m`` and ``R``), the restoring divider, a multiplier per lane and the
    codes' output register."""
    check_family(family)
    from ..golden.bdcnn import reciprocal_shift
    from .common import counter, ram, range_bits

    bits = in_format.bits
    nbits = qbits + reciprocal_shift(bits)
    mem, _, _ = ram(beats, lanes * bits, family, transparent=False)
    minmax = (comparator(bits, family) + mux(bits, 2, family)) * (2 * max(lanes - 1, 0) + 2) \
        + register(4 * bits)  # lane trees, running lo/hi, latched m and R
    divider = register(2 * nbits + bits + 1 + range_bits(nbits + 1)) + \
        adder(bits + 1, family) + comparator(bits + 1, family) + mux(bits + 1, 2, family) + \
        adder(nbits, family) + adder(bits, family)
    lane = multiplier(bits, nbits, family, use_dsp) + adder(bits, family) + \
        register(qbits)
    control = counter(beats + 1, family) + register(4) + Resources(lut=8)
    return mem + minmax + divider + lane * lanes + control
