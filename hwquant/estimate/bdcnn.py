"""Cost face of the ``bdcnn`` arithmetic kind: what :class:`hwquant.hw.bdcnn.BdcnnEngine`
builds in the MVU, calibrated against Yosys (``tests/test_bdcnn_estimate.py``,
``benchmarks/calibrate_estimator.py``).

Per MVU: ``Q`` shared popcounts of ``SIMD`` bits and ``sq = sum_b S_b << b``; per PE and
basis the combine step reads (:meth:`hwquant.engine_shape.BdcnnShape.live_parts`: a basis
whose coefficient is 0 in every channel of the PE is skipped, its popcounts unread) ``Q``
AND-popcounts (folded: of ``SIMD`` gated bits; unrolled: of the lanes whose basis bit is set,
each tree node over the same lanes of a plane built once for all PEs and bases, as Yosys
merges them; on xilinx at the binary kind's shared-popcount price,
:func:`hwquant.estimate.binary.sharing_factor`, ``R`` the live bases of all PEs per lane), the
plane sum ``T_a = sum_b P_ab << (b + 1) - sq`` (one carry-save sum; unrolled on xilinx a
quarter of it, :data:`UNROLLED_PLANE_SUM_FACTOR`), its
product by the coefficient (a positive or negated power of two is a shift; another constant a
constant product with the fixed kind's operand widths; selected by the fold index, a
multiplier as wide as the PE's coefficients; each product as wide as the combine register
keeps it, below the family's DSP minimum in LUTs) and the sum of the products (inside the
DSP block on xilinx and ice40). The registers and accumulators of the ``K * Q`` partial and
``Q`` shared sums are the MVU's (:mod:`hwquant.estimate.mvu`, from the engine contract).
"""

from __future__ import annotations

import math

import numpy as np

from .. import ir
from ..bdcnn import basis_bits
from ..engine_shape import BdcnnShape, bdcnn_coefficients, combine_register_bits
from ..plan import mvu_cycles
from .binary import popcount_luts
from .common import carry_save, check_family, const_select
from .fixed import DSP_Y_MIN, const_product
from .resources import (
    Resources,
    adder,
    comparator,
    multiplier,
    mux,
    register,
    truncated_multiplier,
)

__all__ = ["resources", "cycles", "dot_range", "word_bits", "sample_stage"]


def _check(layer):
    if not isinstance(layer, (ir.Conv2d, ir.Linear)) or layer.encoding != "bdcnn":
        raise ValueError(f"Layer '{getattr(layer, 'name', layer)}': the bdcnn cost model takes "
                         f"a bdcnn conv2d or linear layer")


#: Fully unrolled, the plane sums ``T_a`` of a PE feed constant products and their sum; on
#: xilinx Yosys maps them together much cheaper than a plane sum alone (presumably one
#: ``$macc`` per PE, where the ``sq`` terms and the shifts fold): the plane sums cost this
#: fraction of their carry-save price there. Measured (Yosys 0.70 ``synth_xilinx``) on the
#: engine and its combine step between registers less the engine alone
#: (``benchmarks/bench_unrolled_lut6.py --combine``) of bdcnn 4 x 24 (K = 2, Q = 3),
#: 6 x 12 (3, 5) and 12 x 8 (2, 4): 0.26, 0.25, 0.23, so engine and combine within 7 % with
#: it (a plane sum alone, without the products behind it, is within 6 % of its price).
UNROLLED_PLANE_SUM_FACTOR = {"xilinx": 0.25}


def _negated_power_of_two(c) -> bool:
    return c < 0 and (-c) & (-c - 1) == 0


def _popcount_nodes(layer, family, live) -> Resources:
    """The ``K * Q`` AND-popcounts of every PE for all planes. Folded: one popcount of
    ``SIMD`` gated bits per live sum. Unrolled: per live basis of a PE, a popcount of the
    lanes whose basis bit is set; the same nodes over the same lanes of a plane are the same
    logic in every PE and basis (Yosys merges them), so each distinct node costs once per
    plane."""
    from ..popcount_tree import DEFAULT_LUT_INPUTS, tree_nodes
    from .binary import node_luts

    d = layer.kind_data
    pe, simd = layer.fold.pe, layer.fold.simd
    if not (pe == layer.out_channels and simd == layer.fan_in):
        return popcount_luts(simd, family) * int(live.sum())
    bits = basis_bits(layer.weight_matrix(), bdcnn_coefficients(layer))
    distinct, trees = set(), 0
    for p in range(pe):
        for a in range(d.basis):
            if not live[p, a * d.qbits]:
                continue
            sel = np.flatnonzero(bits[p, a])
            trees += 1
            for kind, width, support in tree_nodes(len(sel), DEFAULT_LUT_INPUTS):
                distinct.add((kind, width, tuple(int(sel[i]) for i in support)))
    # Constant basis bits select lanes (no AND gates): the nodes are small adders of
    # constant-weight popcounts, as the binary kind's unrolled ones, ``trees / SIMD`` of them
    # over each lane of a plane (:func:`hwquant.estimate.binary.sharing_factor`).
    per_plane = sum(node_luts(kind, width, family, DEFAULT_LUT_INPUTS, unrolled=True,
                              density=trees / simd)
                    for kind, width, _ in distinct)
    return Resources(lut=round(per_plane * d.qbits))


def _plane_sum(widths_shifts, family) -> Resources:
    """A carry-save sum of shifted terms (``(width, shift)`` each), as ``maccmap`` maps it."""
    top = max(w + s for w, s in widths_shifts)
    counts = [0] * top
    for w, s in widths_shifts:
        for col in range(s, s + w):
            counts[col] += 1
    return carry_save(counts, family)


def resources(layer, family, *, use_dsp=True, **_) -> Resources:
    """LUT/DSP of the engine and its combine step (its sums' registers and accumulators:
    :mod:`hwquant.estimate.mvu`, from the engine contract)."""
    _check(layer)
    check_family(family)
    d = layer.kind_data
    k, q = d.basis, d.qbits
    pe, simd, f = layer.fold.pe, layer.fold.simd, layer.fan_in
    live = BdcnnShape.live_parts(layer, pe=pe)
    total = popcount_luts(simd, family) * q  # the shared plane popcounts
    total += _popcount_nodes(layer, family, live)
    # sq = sum_b S_b << b, once for every PE.
    acc_bits = max(f.bit_length(), 1)
    total += _plane_sum([(acc_bits, b) for b in range(q)], family)
    sq_bits = acc_bits + q
    t_bits = math.ceil(math.log2(f * ((1 << q) - 1) + 1)) + 2
    coef = bdcnn_coefficients(layer)
    # The products are summed into the combine register of their PE, as wide as its
    # channels' ACC range (hwquant.hw.mvu): Yosys keeps only that many bits of each product
    # (less a constant coefficient's trailing zeros, a shift), and a product narrower than
    # the family's DSP minimum stays in LUTs.
    reg_widths = combine_register_bits(BdcnnShape.combine_ranges(layer, layer.weight_matrix()),
                                       pe, ir.accumulator_bits(layer))
    unrolled = pe == layer.out_channels and simd == f
    t_share = UNROLLED_PLANE_SUM_FACTOR.get(family, 1.0) if unrolled else 1.0
    for p in range(pe):
        reg_bits = reg_widths[p]
        for a in range(k):
            if not live[p, a * q]:
                continue
            # T_a: the Q shifted plane sums less sq, one carry-save sum.
            t_sum = _plane_sum([(acc_bits, b + 1) for b in range(q)] + [(sq_bits, 0)], family)
            total += Resources(lut=round(t_sum.lut * t_share))
            vals = [int(v) for v in coef[p::pe, a]]
            cbits = ir.signed_bits_for(min(vals + [0]), max(vals + [0]))
            tz = min((abs(v) & -abs(v)).bit_length() - 1 for v in vals if v) if any(vals) else 0
            dsp = use_dsp and min(t_bits + cbits, reg_bits) - tz >= DSP_Y_MIN[family]
            if len(set(vals)) == 1:  # one constant for every fold (NF = 1: the channel's)
                c = vals[0]
                if c > 0 and c & (c - 1) == 0:
                    prod = Resources()  # a shift
                elif _negated_power_of_two(c):
                    prod = Resources()  # a shift, subtracted in the sum below
                else:
                    # T is signed: the constant is a signed operand (one bit wider than
                    # its magnitude), as the fixed kind's products are.
                    prod = const_product(c, t_bits, True, family, use_dsp=dsp)[0]
            else:  # selected by the fold index: as wide as this PE's coefficients need
                prod = const_select(vals, family)
                if dsp:
                    prod += multiplier(t_bits, cbits, family, dsp, signed=True)
                else:  # in LUTs, cut to the register's width
                    prod += truncated_multiplier(t_bits, cbits - tz,
                                                 min(t_bits + cbits, reg_bits) - tz, family)
            # The sum of the products: a DSP48E1 or SB_MAC16 takes the adder after its
            # multiply in (as for the requantization's rounding constant).
            in_dsp = prod.dsp > 0 and family in ("xilinx", "ice40")
            total += prod + (Resources() if in_dsp else adder(t_bits + d.coef_bits, family))
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
