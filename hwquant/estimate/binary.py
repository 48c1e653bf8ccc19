"""Cost face of the ``binary`` arithmetic kind: the ``PE`` XNOR-popcounts (or add/subtract
trees) of one MVU, in LUTs only.

What :class:`hwquant.hw.binary.BinaryEngine` builds, per processing element:

* **bipolar inputs**: one popcount of ``SIMD`` bits (:class:`hwquant.hw.popcount.Popcount`),
  costed as what it is, not as ``SIMD`` multipliers: :func:`popcount_luts`, node by node, with
  LUTs per node measured with Yosys 0.70 for each structure and family
  (``benchmarks/bench_popcount.py``). With constant weights (unrolled) the XNORs are inverters
  folded into the tree's first LUTs, and the PEs share every node whose input bits carry the
  same weight signs (Yosys merges the identical logic); on xilinx ABC shares more of the
  popcounts over the same bits than their identical nodes, so each node costs
  ``1 / (1 + R / 1.75)`` of its price, ``R = PE / F`` popcounts per input bit
  (:func:`sharing_factor`; measured on the engines alone of binary 4 x 32, 16 x 8, 6 x 24,
  12 x 12 and three bdcnn layers, Yosys 0.70 ``synth_xilinx``, ``benchmarks/
  bench_unrolled_lut6.py``: within 29 %, median 3 %);
  with ROM weights each XNOR of an input with a weight bit is one more LUT for the LUT4 tree
  (its first LUTs feed a carry chain), and for the LUT6 structure the XNORs sit inside (3:2)
  counters of three lanes (:class:`hwquant.hw.popcount.XnorPopcount`; modelled 95 LUT6 for 64
  lanes, measured 120). Then ``2P - F`` once per PE (the MVU's combine step, counted here
  with the engines): ``2P`` is wiring and ``F`` is added from its lowest set bit up, LUTs only
  for the bits the epilogue reads.
* **multi-bit inputs** (the first layer): the add/subtract tree. Unrolled, Yosys merges the
  ``+1`` and ``-1`` lanes into one multi-operand sum (a carry-save tree,
  :func:`hwquant.estimate.common.macc`) with the subtracted lanes inverted and a constant
  row. Folded, per lane a conditional inversion (one LUT per bit of the ``x_bits + 1``-bit
  lane) and the carry-save sum of the ``SIMD`` lanes and the count of ``-1`` weights.

The popcount structure is the hardware's choice (:data:`hwquant.popcount_tree.
DEFAULT_LUT_INPUTS`, the LUT4 tree, unless a build asks for the LUT6 one); ``lut_inputs``
selects which one is costed. The weight ROM (``SIMD`` bits per PE and beat), the registers, the
accumulators (popcounts: ``log2 F + 1`` bits) and the epilogue (thresholds: one comparator per
channel and threshold) are costed by :mod:`hwquant.estimate.mvu`.

Accuracy: see ``tests/test_estimate_binary.py`` (whole MVUs against Yosys, with the tolerance
stated there).
"""

from __future__ import annotations

import math

import numpy as np

from .. import ir
from ..plan import mvu_cycles
from ..popcount_tree import DEFAULT_LUT_INPUTS, LUT_INPUTS, tree_nodes
from .common import check_family, macc
from .fixed import is_unrolled
from .resources import Resources, adder

__all__ = ["resources", "cycles", "dot_range", "word_bits", "popcount_luts", "fold_cost",
           "node_luts", "sharing_factor", "ADDER_LUTS_PER_BIT", "COUNTER_LUTS",
           "UNROLLED_SHARING_DENSITY"]

#: LUTs per operand bit of one carry-in adder node (``a + b + c`` of ``w``-bit operands costs
#: ``w`` times this), by the structure's LUT size and the family; and LUTs per (6:3) counter of
#: the LUT6 structure. Measured with Yosys 0.70 on popcounts of 32 to 1024 bits between
#: registers (``benchmarks/bench_popcount.py``); ecp5 and gowin count their carry cells as
#: LUTs (2 per CCU2C, 1 per ALU). The adder nodes of a tree over ``n`` bits have ``n - 1``
#: operand bits in all for the LUT4 structure, so these are also its LUTs per input bit.
ADDER_LUTS_PER_BIT = {
    4: {"ice40": 1.0, "xilinx": 1.45, "ecp5": 2.2, "gowin": 2.0},
    6: {"ice40": 1.0, "xilinx": 1.0, "ecp5": 2.2, "gowin": 2.0},
}
COUNTER_LUTS = {"ice40": 6.9, "xilinx": 3.0, "ecp5": 3.6, "gowin": 4.0}

#: Families where Yosys hands the small adders of an unrolled popcount to ABC as logic, whose
#: AIG shares a node with the node of the complemented signs (``~a + ~b + ~c = 3 - (a+b+c)``:
#: complemented sum and carry bits); elsewhere the carry cells keep them apart.
COMPLEMENT_SHARING = ("xilinx",)
#: LUTs per adder operand bit on those families for constant-weight (unrolled) popcounts,
#: where the inverters and the small adders map into LUT6 together (measured: 0.98 per bit
#: for 4 PEs of 128 lanes, against 1.45 for a popcount alone).
UNROLLED_ADDER_LUTS_PER_BIT = {"xilinx": 1.0}
#: On those families ABC shares more of many constant-weight popcounts over the same few input
#: bits than their identical nodes (sub-sums of one tree's bits reappear, complemented or not,
#: in the others' nodes): every node costs ``1 / (1 + R / R0)`` of its price, ``R`` the
#: density of the trees (popcounts per input bit: ``PE / F`` for binary, live bases of all PEs
#: per lane for bdcnn). ``R0`` fitted on the engines alone between registers
#: (``benchmarks/bench_unrolled_lut6.py``, Yosys 0.70 ``synth_xilinx``): binary 4 x 32,
#: 16 x 8, 6 x 24, 12 x 12 and bdcnn 4 x 24 (K = 2, Q = 3), 6 x 12 (3, 5), 12 x 8 (2, 4),
#: within 28 % (median 3 %; R from 0.125 to 3, the factor from 0.93 to 0.37).
UNROLLED_SHARING_DENSITY = {"xilinx": 1.75}


def sharing_factor(density, family) -> float:
    """The fraction of its price a constant-weight popcount node costs when ``density``
    popcounts share each input bit (:data:`UNROLLED_SHARING_DENSITY`; 1 elsewhere)."""
    r0 = UNROLLED_SHARING_DENSITY.get(family)
    return 1.0 if r0 is None else 1.0 / (1.0 + density / r0)


def _check(layer):
    if not isinstance(layer, (ir.Conv2d, ir.Linear)):
        raise TypeError(f"Dot engines belong to a conv2d or linear layer, not "
                        f"{type(layer).__name__}")
    if layer.encoding != "binary":
        raise ValueError(f"Layer '{layer.name}': the binary cost model cannot estimate weight "
                         f"encoding {layer.encoding!r}")


def node_luts(kind, width, family, lut_inputs, unrolled=False, density=0.0) -> float:
    """LUTs of one popcount node (``kind`` ``"adder"`` of ``width``-bit operands or
    ``"counter"``) built for ``lut_inputs`` on ``family``; ``unrolled``: of constant-weight
    popcounts, ``density`` of them per input bit (:func:`sharing_factor`)."""
    share = sharing_factor(density, family) if unrolled else 1.0
    if kind == "counter":
        return COUNTER_LUTS[family] * share
    if unrolled and family in UNROLLED_ADDER_LUTS_PER_BIT:
        return UNROLLED_ADDER_LUTS_PER_BIT[family] * width * share
    return ADDER_LUTS_PER_BIT[lut_inputs][family] * width


def popcount_luts(n: int, family: str, lut_inputs: int = DEFAULT_LUT_INPUTS,
                  rows=None) -> Resources:
    """LUTs of the popcount of ``n`` bits built for ``lut_inputs`` on ``family``: the sum of
    its nodes (:func:`hwquant.popcount_tree.tree_nodes`).

    With ``rows`` (the ``+-1`` weights of the PEs sharing the same inputs, unrolled), the
    popcounts of all the rows: a node whose input bits carry the same weight signs in two rows
    is the same logic (same inputs, same inverters), and Yosys merges it, so every node costs
    once per distinct sign pattern over its input bits."""
    check_family(family)
    if lut_inputs not in LUT_INPUTS:
        raise ValueError(f"Popcount LUT size must be one of {LUT_INPUTS}, not {lut_inputs!r}")
    if n <= 1:
        return Resources()
    nodes = tree_nodes(n, lut_inputs)
    if rows is None:
        return Resources(lut=round(sum(node_luts(k, w, family, lut_inputs)
                                       for k, w, _ in nodes)))
    signs = np.asarray(rows) > 0
    density = len(signs) / n
    total = 0.0
    for kind, width, support in nodes:
        pats = signs[:, list(support)]
        if family in COMPLEMENT_SHARING:
            pats = pats ^ pats[:, :1]  # a pattern and its complement are one class
        distinct = len({r.tobytes() for r in pats})
        total += distinct * node_luts(kind, width, family, lut_inputs, unrolled=True,
                                      density=density)
    return Resources(lut=round(total))


def _combine(layer, family) -> Resources:
    """``2P - F`` per PE: ``2P`` is wiring, and subtracting ``F`` (a multiple of ``2**t``)
    leaves the bits below ``t`` alone: a constant adder over the bits from ``t`` up, of
    which only those the epilogue reads cost LUTs where the family's carry chain allows
    (:func:`~hwquant.estimate.epilogue.dead_low_bits`)."""
    from .common import const_add
    from .epilogue import dead_low_bits

    f, pe = layer.fan_in, layer.fold.pe
    width = ir.signed_bits_for(-f, f)
    t = (f & -f).bit_length() - 1
    res = Resources()
    for dead in dead_low_bits(layer, [width] * pe, [1] * pe):
        res += const_add(max(width - t, 1), max(width - max(t, dead), 0), family)
    return res


def _bipolar_engines(layer, family, lut_inputs, unrolled) -> Resources:
    pe, simd = layer.fold.pe, layer.fold.simd
    combine = _combine(layer, family)
    if unrolled:
        return popcount_luts(simd, family, lut_inputs, rows=layer.weight_matrix()) + combine
    if lut_inputs == 6:
        # XnorPopcount: (3:2) counters of three XNORs (two LUT6 each), the leftover lanes'
        # XNORs, two popcounts (ones and twos) and their adder.
        groups, rest = divmod(simd, 3)
        engine = Resources(lut=2 * groups + rest)
        engine += popcount_luts(groups + rest, family, 6) + popcount_luts(groups, family, 6)
        if groups:
            engine += adder(max(simd.bit_length(), 1), family)
        return engine * pe + combine
    # The XNORs with the ROM's weight bits: one LUT each.
    return (popcount_luts(simd, family, lut_inputs) + Resources(lut=simd)) * pe + combine


def _multibit_engine(layer, family, row=None) -> Resources:
    fmt, simd = layer.in_format, layer.fold.simd
    if row is not None:
        # One merged sum: the +1 lanes and the inverted -1 lanes (their +1s are constants).
        return macc([fmt.bits] * simd, family)
    lane = fmt.bits + (0 if fmt.signed else 1)
    count_bits = max(simd.bit_length(), 1)
    return Resources(lut=lane * simd) + macc([lane] * simd + [count_bits], family)


def resources(layer, family, *, use_dsp=True, lut_inputs=DEFAULT_LUT_INPUTS) -> Resources:
    """LUTs of the ``PE`` engines of the MVU implementing a ``binary`` layer.

    Parameters
    ----------
    layer : :class:`hwquant.ir.Conv2d` or :class:`hwquant.ir.Linear`
        With its :class:`~hwquant.ir.Fold`; ``encoding`` must be ``"binary"``.
    family : str
        One of :data:`hwquant.estimate.resources.FAMILIES`.
    use_dsp : bool
        Accepted for the common interface; ignored (nothing is multiplied).
    lut_inputs : int
        The popcount structure the hardware is built with (4 or 6).

    Returns
    -------
    Resources
        LUTs only: no flip-flop, DSP block or block RAM.
    """
    _check(layer)
    check_family(family)
    unrolled = is_unrolled(layer)
    if layer.in_format.bipolar:
        return _bipolar_engines(layer, family, lut_inputs, unrolled)
    if unrolled:
        return sum((_multibit_engine(layer, family, row.tolist())
                    for row in layer.weight_matrix()), Resources())
    return _multibit_engine(layer, family) * layer.fold.pe


def dot_range(layer, weights=None, *, simd) -> tuple:
    """Worst-case ``(lo, hi)`` of one PE's partial sum over ``simd`` lanes, as the hardware
    sizes it: the popcount ``(0, simd)`` for bipolar inputs; the signed sum otherwise (exact
    for constant ``weights``)."""
    if layer.in_format.bipolar:
        return 0, simd
    xlo, xhi = layer.in_format.value_lo, layer.in_format.value_hi
    if weights is None:
        mag = max(abs(xlo), abs(xhi))
        return -simd * mag, simd * mag
    return (sum(min(int(w) * xlo, int(w) * xhi) for w in weights),
            sum(max(int(w) * xlo, int(w) * xhi) for w in weights))


def word_bits(layer, simd) -> int:
    """Bits of the weight-ROM word of one PE and ``simd`` lanes: one per weight."""
    return simd


def fold_cost(layer, fold: ir.Fold, family: str = "ice40") -> float:
    """Modelled LUTs of the parts of the MVU of ``layer`` that scale with the folding, for
    ``--fold auto``: the engines (popcount lanes as popcounts) plus, per PE, an accumulator
    and the epilogue's compare (about ``2 * log2 F`` LUTs)."""
    import dataclasses

    folded = dataclasses.replace(layer, fold=fold)
    per_pe = 2 * math.ceil(math.log2(layer.fan_in + 1)) + 2
    return resources(folded, family).lut + fold.pe * per_pe


def cycles(layer) -> int:
    """Cycles per inference of the MVU when never stalled: ``vectors * NF * SF``
    (:func:`hwquant.plan.mvu_cycles`)."""
    _check(layer)
    return mvu_cycles(layer)
