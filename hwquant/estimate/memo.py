"""Cost face of the ``memo`` MVU engine (:class:`hwquant.hw.memo.MemoEngine`, value-grouped
sums; the layout is :func:`hwquant.memo.memo_layout`), from the IR alone.

* the lane pairs (:func:`~hwquant.estimate.lane_pairs.shared_resources`) once when some PE
  is **paired**; per paired PE its signed lane sum
  (:func:`~hwquant.estimate.lane_pairs.pe_resources`) and its combine ``A * (T + K)``: the
  ``K`` adder (when some ``K`` is not 0; a table of ``K`` when they differ by fold) and the
  multiply by ``A`` (none for ``A = 2^k``; a constant multiply, or a variable multiply by
  the table of ``A`` when it differs by fold);
* the shared sum ``S`` (when built): a ``SIMD``-lane :func:`~hwquant.estimate.common.macc`,
  its register and, folded, its accumulator;
* per **grouped** PE, per group: unrolled, the ``macc`` of the group's lanes; folded, the
  ``SIMD`` gated lanes (on LUT4 families one LUT per activation bit: the index compare and the
  AND fit one LUT4 for up to 3 index bits; on xilinx absorbed into the adder's LUT6 for one
  index bit, one LUT per lane for the compare otherwise) and their ``macc``;
* per grouped PE the combine: one multiply per non-zero coefficient ``g_j - b`` and one for
  ``b * S`` (a constant multiply, :func:`~hwquant.estimate.resources.const_multiplier`, when
  every fold has the same coefficient; else a variable multiply of the part by the
  coefficient table, :func:`~hwquant.estimate.resources.multiplier` and
  :func:`~hwquant.estimate.common.const_select`) and the adder tree of the terms;
* per **plain** PE: a ``fixed`` dot engine of ``SIMD`` products of ``plain_bits`` weights
  (folded), or its rows' share of the constant-matrix adder graph (unrolled).

:func:`parts_resources` costs the per-part registers and accumulators the generic MVU model
would count once per PE (:mod:`hwquant.estimate.mvu` uses it instead). The weight ROM, the
input buffer and the epilogue are costed there too.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from .. import ir
from ..engine_shape import EngineShape, combine_register_bits
from ..lane_pairs import beat_range
from ..memo import (
    combine_bits,
    combine_multiplies,
    combine_terms,
    common_factor,
    is_shift,
    memo_layout,
    negations,
    part_ranges,
    sum_range,
)
from ..plan import mvu_cycles
from . import cmvm as constant_matrix
from . import fixed as fixed_cost
from . import lane_pairs
from .common import accumulator, check_family, const_select, macc
from .fixed import DSP_Y_MIN
from .resources import (
    Resources,
    adder,
    const_multiplier,
    dsp_product,
    multiplier,
    pre_adder_absorbs,
    register,
)

__all__ = ["resources", "parts_resources", "multipliers", "word_bits", "dot_range", "cycles"]


def _check(layer):
    if not isinstance(layer, (ir.Conv2d, ir.Linear)):
        raise TypeError(f"Dot engines belong to a conv2d or linear layer, not "
                        f"{type(layer).__name__}")


def _bits(lo, hi) -> int:
    return ir.signed_bits_for(int(min(lo, 0)), int(max(hi, 0)))


def _unrolled(layer) -> bool:
    return fixed_cost.is_unrolled(layer)


def _product(c, xbits, family, use_dsp, keep=None) -> Resources:
    """``x * c`` as the memo combine writes it (``c`` a signed constant,
    :func:`hwquant.hw.arith.const_signed`) and Yosys maps it: its trailing zero bits are a
    shift, the product keeps at most ``keep`` bits (what the combine register reads), and a
    product narrower than the family's DSP minimum stays in LUTs."""
    c = int(c)
    cbits = max(2, c.bit_length() + 1)
    tz = (abs(c) & -abs(c)).bit_length() - 1
    y = xbits + cbits if keep is None else min(xbits + cbits, keep)
    if use_dsp and y - tz >= DSP_Y_MIN[family]:
        on_dsp = dsp_product(xbits, cbits - tz, family, True)
        if on_dsp is not None:
            return on_dsp
    return const_multiplier(c, xbits, True, family, use_dsp=False)


def _combine(layer, lay, p, ranges, reg_bits, family, use_dsp) -> Resources:
    """The combine of grouped PE ``p`` as :meth:`hwquant.hw.memo.MemoEngine.combine` builds
    it: constant coefficients summed after taking out their common factor (shifts free, a
    negation folded into the adder as a subtraction, other constants a constant multiply),
    then one multiply by the factor; coefficients that differ by fold, a table and a variable
    multiply per term. Operand widths are the expression's (:func:`hwquant.memo.
    combine_bits`' rules), the products cut to the combine register's ``reg_bits``."""
    fmt, pe = layer.in_format, layer.fold.pe
    acc_bits = ir.accumulator_bits(layer)
    terms = combine_terms(lay, p)
    if lay.paired[p]:
        return _paired_combine(layer, lay, p, ranges, reg_bits, family, use_dsp)
    widths = []
    for j, _ in terms:
        if j < 0:
            widths.append(_bits(*sum_range(layer.fan_in, fmt)))
        else:
            r = ranges[p::pe, j]
            widths.append(_bits(r[:, 0].min(), r[:, 1].max()))
    adds = adder(acc_bits, family) * max(len(terms) - 1, 0)
    if all(len(set(c)) == 1 for _, c in terms):
        d, inner = common_factor([c[0] for _, c in terms])
        # The sum is cut to the register too when the factor is a shift.
        keep = reg_bits - (d.bit_length() - 1) if is_shift(d) else None
        res = Resources()
        for c, bits in zip(inner, widths, strict=True):
            if not is_shift(c):
                res += _product(c, bits, family, use_dsp, keep)
        if len(terms) == 1 and inner[0] < 0:
            adds += adder(acc_bits, family)  # a lone negation
        if not is_shift(d):
            n_parts = lay.pe_groups(p)
            part_bits = [_bits(ranges[p::pe, j, 0].min(), ranges[p::pe, j, 1].max())
                         for j in range(n_parts)]
            inner_bits = combine_bits(lay, p, part_bits, _bits(*sum_range(layer.fan_in, fmt)),
                                      factor=False)
            factor = _product(d, inner_bits, family, use_dsp, reg_bits)
            res += factor
            # One add of shifted terms in front of the factor's DSP: its pre-adder.
            if (len(terms) == 2 and all(is_shift(c) for c in inner)
                    and pre_adder_absorbs(factor, inner_bits, family)):
                adds = Resources()
        return res + adds
    res = adds
    for (_, coefs), bits in zip(terms, widths, strict=True):
        if len(set(coefs)) == 1:
            if not is_shift(coefs[0]):
                res += _product(coefs[0], bits, family, use_dsp, reg_bits)
            continue
        cbits = max(_bits(min(coefs), max(coefs)), 2)
        res += const_select(coefs, family)
        res += multiplier(bits, cbits, family, use_dsp, signed=True)
    return res


def _paired_combine(layer, lay, p, ranges, reg_bits, family, use_dsp) -> Resources:
    """``A * (T + K)`` of paired PE ``p`` as :meth:`hwquant.hw.memo.MemoEngine.combine`
    builds it."""
    pe = layer.fold.pe
    amps = combine_terms(lay, p)[0][1]
    k = negations(layer, _lane_weights(layer))[p::pe]
    bits = _bits(ranges[p::pe, 0, 0].min(), ranges[p::pe, 0, 1].max())
    res = Resources()
    if k.any():
        res += const_select(k, family)
        bits += 1
    if len(set(amps)) == 1:
        factor = Resources() if is_shift(amps[0]) else _product(amps[0], bits, family, use_dsp,
                                                                 reg_bits)
        if k.any() and not pre_adder_absorbs(factor, bits, family):  # T + K
            res += adder(bits - 1, family)
        return res + factor
    if k.any():
        res += adder(bits - 1, family)
    cbits = max(_bits(0, max(amps)), 2)
    return res + const_select(amps, family) + multiplier(bits, cbits, family, use_dsp,
                                                         signed=True)


def multipliers(layer) -> int:
    """Multiplies the engine instantiates: per paired PE one by ``A`` (none for ``A = 2^k``);
    per grouped PE with constant coefficients one by their common factor and one per remaining coefficient that is not ``+-2^k`` (wiring), with
    coefficient tables one per term; per plain PE ``SIMD`` when folded, none unrolled."""
    _check(layer)
    lay = memo_layout(layer)
    n = 0
    for p, grouped in enumerate(lay.grouped):
        if not grouped:
            n += 0 if _unrolled(layer) else layer.fold.simd
            continue
        n += combine_multiplies(lay, p)
    return n


def resources(layer, family, *, use_dsp=True) -> Resources:
    """LUT/FF/DSP of the memo engine's logic (``S`` with its register and accumulator, the
    group sums, plain dot engines, the combine's multiplies and adds)."""
    _check(layer)
    check_family(family)
    lay = memo_layout(layer)
    fmt, simd, pe = layer.in_format, layer.fold.simd, layer.fold.pe
    xbits, sf = fmt.bits, layer.fan_in // simd
    w = _lane_weights(layer)
    res = Resources()
    if any(lay.paired):
        res += lane_pairs.shared_resources(xbits, simd, family)
    if lay.shared:
        total = _bits(*sum_range(layer.fan_in, fmt))
        res += macc([xbits] * simd, family) + register(_bits(*sum_range(simd, fmt)))
        if sf > 1:
            res += accumulator(total, family)
    ranges = part_ranges(layer, w)
    reg_widths = combine_register_bits(EngineShape.combine_ranges(layer, w), pe,
                                       ir.accumulator_bits(layer))
    plain = [p for p in range(pe) if not lay.grouped[p]]
    if _unrolled(layer):
        if plain:
            res += constant_matrix.resources(layer, w[plain], family)
    elif plain:
        one = fixed_cost.resources(
            dataclasses.replace(layer, encoding="fixed", kind_data=None,
                                weight=np.zeros_like(layer.weight), weight_bits=lay.plain_bits,
                                fold=ir.Fold(1, simd)), family, use_dsp=use_dsp)
        res += one * len(plain)
    for p in range(pe):
        if not lay.grouped[p]:
            continue
        k = lay.pe_groups(p)
        if lay.paired[p]:
            res += lane_pairs.pe_resources(xbits, simd, family)
        elif _unrolled(layer):
            for v in lay.groups[p].values:
                res += macc([xbits] * int((w[p] == v).sum()), family)
        else:
            ib = lay.index_bits[p]
            if family == "xilinx":
                gates = Resources() if ib == 1 else Resources(lut=simd)
            else:
                gates = Resources(lut=xbits * simd) + (Resources(lut=simd) if ib > 3
                                                       else Resources())
            res += (gates + macc([xbits] * simd, family)) * k
        res += _combine(layer, lay, p, ranges, reg_widths[p], family, use_dsp)
    return res


def _lane_weights(layer) -> np.ndarray:
    """The ``(OC, F)`` weights in window-lane order for a conv (as the MVU sees them); a
    linear layer's natural order (group sizes do not depend on the order)."""
    from ..layout import conv_weight_matrix

    return conv_weight_matrix(layer.weight) if isinstance(layer, ir.Conv2d) else layer.weight


def parts_resources(layer, weights, family):
    """``(dot registers, accumulators, combine widths per PE)`` of the MVU's per-part
    registers: each part's engine-sum register (its natural width), its accumulator (loaded on
    the first slice, accumulating on the others; a copy of the sum register when ``SF = 1``),
    and per PE the width of its combined ``ACC``."""
    lay = memo_layout(layer)
    fmt, simd, pe = layer.in_format, layer.fold.simd, layer.fold.pe
    sf = layer.fan_in // simd
    w = np.asarray(weights, dtype=np.int64)
    ranges = part_ranges(layer, w)
    unrolled = _unrolled(layer)
    dots, accs, widths = Resources(), Resources(), []
    shared_bits = _bits(*sum_range(layer.fan_in, fmt))
    for p in range(pe):
        parts = lay.pe_groups(p) if lay.grouped[p] else 1
        part_bits = []
        for j in range(parts):
            r = ranges[p::pe, j]
            acc = _bits(r[:, 0].min(), r[:, 1].max())
            part_bits.append(acc)
            if unrolled:
                beat = acc
            elif lay.paired[p]:
                beat = _bits(*beat_range(fmt, simd))
            elif lay.grouped[p]:
                beat = _bits(*sum_range(simd, fmt))
            else:
                beat = _bits(*fixed_cost.dot_range(
                    dataclasses.replace(layer, encoding="fixed", kind_data=None,
                                        weight=np.zeros_like(layer.weight),
                                        weight_bits=lay.plain_bits), None, simd=simd))
            dots += register(beat)
            if sf > 1:
                accs += accumulator(acc, family)
            else:
                accs += register(min(acc, beat))
        lo, hi = ir.matrix_range(w[p::pe], np.zeros(len(w[p::pe]), dtype=np.int64), fmt)
        widths.append(min(_bits(lo.min(), hi.max()),
                          combine_bits(lay, p, part_bits, shared_bits)))
    return dots, accs, widths


def dot_range(layer, weights=None, *, simd) -> tuple:
    """Worst-case ``(lo, hi)`` of a plain dot of ``simd`` lanes of the layer's integer weights
    (what the generic model asks; the memo parts are costed by :func:`parts_resources`)."""
    return fixed_cost.dot_range(
        dataclasses.replace(layer, encoding="fixed", kind_data=None,
                            weight=np.zeros_like(layer.weight),
                            weight_bits=memo_layout(layer).plain_bits), weights, simd=simd)


def word_bits(layer, simd) -> int:
    """Bits of the weight-ROM word per PE (rounded up): ``SIMD`` group indices of a grouped
    PE, ``SIMD * plain_bits`` of a plain one."""
    lay = memo_layout(layer)
    total = sum(simd * (b if g else lay.plain_bits) for g, b in zip(lay.grouped, lay.index_bits,
                                                                    strict=True))
    return math.ceil(total / len(lay.grouped))


def cycles(layer) -> int:
    """Cycles per inference of the MVU when never stalled (:func:`hwquant.plan.mvu_cycles`)."""
    _check(layer)
    return mvu_cycles(layer)
