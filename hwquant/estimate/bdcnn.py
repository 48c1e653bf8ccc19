"""Cost face of the ``bdcnn`` arithmetic kind: what :class:`hwquant.hw.bdcnn.BdcnnEngine`
builds, not yet calibrated against Yosys.

Per MVU: ``Q`` shared popcounts of ``SIMD`` bits; per PE ``K * Q`` popcounts (of ``SIMD`` bits
folded, with the AND of the ROM bits in their first LUTs; of the selected lanes when unrolled)
and the combine: ``K`` products of the plane sum by the channel's coefficient (a constant
multiply when ``NF = 1``, a ``coef_bits``-wide multiplier otherwise) and their adder tree.
Known gap: :mod:`hwquant.estimate.mvu` counts one accumulator per PE, the engine has ``K * Q``
(each ``log2 F + 1`` bits) plus ``Q`` shared ones.
"""

from __future__ import annotations

import math

from .. import ir
from ..plan import mvu_cycles
from .binary import popcount_luts
from .common import check_family
from .resources import Resources, adder, const_multiplier, multiplier

__all__ = ["resources", "cycles", "dot_range", "word_bits"]


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
    for _p in range(pe):
        for _a in range(d.basis):
            if nf == 1:
                prod = const_multiplier((1 << (d.coef_bits - 1)) - 1, t_bits, True, family,
                                        use_dsp=use_dsp)
            else:
                prod = multiplier(t_bits, d.coef_bits, family, use_dsp, signed=True)
            total = total + prod + adder(t_bits + d.coef_bits, family)
    return total


def cycles(layer) -> int:
    _check(layer)
    return mvu_cycles(layer)


def dot_range(layer, weights=None, *, simd) -> tuple:
    """One partial sum: a popcount of ``simd`` bits."""
    return 0, simd


def word_bits(layer, simd) -> int:
    """ROM bits of one PE and ``simd`` lanes: ``K`` basis bits per lane."""
    return layer.kind_data.basis * simd
