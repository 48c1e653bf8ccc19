"""Cost helpers shared by the cost models of the arithmetic kinds, the epilogues and the
stages: carry-save sums, counters, constant selects, memories (RAM and weight-ROM placement),
value widths. Built from the calibrated primitives of :mod:`hwquant.estimate.resources`.

Pure Python: nothing here (nor in any cost model) imports Amaranth or the hardware
generators; the widths the hardware has are re-derived from the IR.
"""

from __future__ import annotations

import math

import numpy as np

from .. import ir
from ..intmath import csd_digits
from .resources import (
    FAMILIES,
    Resources,
    adder,
    bram_cost,
    bram_layout,
    comparator,
    full_adder_luts,
    mux,
    register,
    rom,
    rom_in_bram,
)

__all__ = [
    "check_family",
    "range_bits",
    "luts",
    "counter",
    "const_select",
    "csd_digits",
    "carry_save",
    "macc",
    "ram",
    "rom_columns",
    "weight_rom",
    "accumulator",
    "accumulator_range",
    "const_add",
    "saturation",
    "select_step",
    "const_compare",
]


def check_family(family: str) -> str:
    """``family`` if it is one of :data:`~hwquant.estimate.resources.FAMILIES`; else
    ``ValueError``."""
    if family not in FAMILIES:
        raise ValueError(f"Family must be one of {', '.join(FAMILIES)}, not {family!r}")
    return family


def range_bits(n: int) -> int:
    """Width of a counter over ``0 .. n-1`` (Amaranth ``Signal(range(n))``; 0 for ``n <= 1``)."""
    return max(int(n) - 1, 0).bit_length()


def luts(n) -> Resources:
    """``n`` LUTs, rounded (never negative)."""
    return Resources(lut=max(0, round(n)))


def counter(modulus: int, family: str) -> Resources:
    """A wrapping counter ``0 .. modulus-1`` with enable: incrementer, wrap compare, FFs."""
    bits = range_bits(modulus)
    if bits == 0:
        return Resources()
    return register(bits) + adder(bits, family) + luts(math.ceil(bits / 3))


def const_select(values, family) -> Resources:
    """``Array(constants)[index]``: a function of the index bits per output bit (free when all
    values agree, and between two values: every bit is a constant, the index bit or its
    inverse, which merges into the LUT or DSP port it feeds; measured on requantizers of two
    folds, iCE40: 17 LUT a lane for 35 modelled with 2-value selects as ROMs)."""
    values = [int(v) for v in values]
    if len(set(values)) <= 1 or len(values) <= 2:
        return Resources()
    width = max(ir.signed_bits_for(min(values), max(values)), 1)
    return rom(len(values), width, family)


# -- Multi-operand sums -----------------------------------------------------------------------

def carry_save(counts, family) -> Resources:
    """A ``$macc`` as ``maccmap`` maps it, from the number of bits in each result column
    (least significant first): full adders (3 bits in, sum here, carry to the next column)
    until every column holds at most two bits, then one carry-chain adder over the columns
    that still hold two."""
    counts = list(counts)
    full_adders = 0
    for col, bits in enumerate(counts):
        n = (bits - 1) // 2 if bits > 2 else 0
        full_adders += n
        counts[col] = bits - 2 * n
        if n and col + 1 < len(counts):
            counts[col + 1] += n
    pairs = [col for col, bits in enumerate(counts) if bits >= 2]
    res = Resources(lut=round(full_adder_luts(family) * full_adders))
    if pairs:
        res += adder(pairs[-1] - pairs[0] + 1, family)
    return res


def macc(widths, family, rows=()) -> Resources:
    """A ``$macc`` sum: value terms of the given widths plus partial-product rows of constant
    multiplications Yosys merged into it (``(bits, top bit + 1)`` each).

    Two value terms are a carry-chain adder. Otherwise a carry-save tree reduces the
    ``sum(bits)`` input bits to two rows of the ``W``-bit result, one full adder per removed
    bit (plus about one per extra value term, for the sign handling), and a carry-chain adder
    of ``W`` bits adds the two rows.
    """
    widths, rows = list(widths), list(rows)
    n = len(widths) + len(rows)
    if n < 2:
        return Resources()
    if n == 2 and not rows:
        return adder(max(widths), family)
    out_bits = max(widths + [top for _, top in rows]) + math.ceil(math.log2(n))
    bits = sum(widths) + sum(b for b, _ in rows)
    full_adders = max(bits - 2 * out_bits, 0) + max(len(widths) - 2, 0)
    return Resources(lut=round(full_adder_luts(family) * full_adders)) + adder(out_bits,
                                                                                family)


# -- Memories ---------------------------------------------------------------------------------

def rom_columns(depth, width) -> float:
    """Expected number of distinct non-constant bit columns of a ``depth``-word ROM of
    ``width`` random bits: ``(2**depth - 2) * (1 - (1 - 2**-depth)**width)``, at most
    ``width``. Yosys merges equal columns and drops constant ones, so a LUT-mapped ROM keeps
    this many read flip-flops (every column when the ROM is deep: ``width`` from 32 words)."""
    if depth >= 32:
        return float(width)
    patterns = (1 << depth) - 2
    return min(float(width), patterns * -math.expm1(width * math.log1p(-2.0 ** -depth)))


#: Share of a shallow LUT ROM's distinct columns that costs a LUT, by address bits (up to 4):
#: the rest are an address bit itself or fold into the read flip-flops' synchronous set/reset.
_SHALLOW_ROM_LUTS = {1: 0.5, 2: 0.45, 3: 0.8}


def weight_rom(depth, width, family) -> Resources:
    """A weight ROM with its synchronous, enabled read port, as Yosys maps it.

    In block RAM: :func:`~hwquant.estimate.resources.rom`. In LUTs the read register stays
    on the data side (``memory_dff`` merges it, ``memory_map`` keeps it), but Yosys merges
    equal bit columns and drops constant ones: :func:`rom_columns` flip-flops, all ``width``
    only for a deep ROM. Measured (Yosys 0.70, ``benchmarks/measure_fold_parts.py``: one ROM
    of random words, registered address and enable, per design) on ice40/ecp5/xilinx/gowin:
    3 x 16, 3 x 48, 3 x 384 words x bits: 5, 6, 6 FF and 2/3/3/5 LUT; 4 x 48 and 4 x 384:
    14 FF, 4/6/6/6 LUT; 6 x 96: 47 FF, 32/34/34/43 LUT; 8 x 96: 80 FF, 66/68/68/68 LUT;
    12 x 96 and 16 x 96: 96 FF, 96 to 98 LUT. Up to 16 words (every column a function of at
    most 4 address bits, one LUT4) the LUTs are a share of the distinct columns
    (:data:`_SHALLOW_ROM_LUTS`; every column from 9 words).

    Deeper, on LUT4 families the primitive's fit (words of up to 18 bits) does not hold for
    a weight ROM's wide words: the address decode is shared across the word and the cost per
    bit grows with the depth itself, not whole 16-word leaves. Measured on 20- to 64-word
    ROMs of 32 to 768 random bits (Yosys 0.70, iCE40/ECP5/Gowin within 10 %): ``depth / 8``
    LUT4 per bit, times ``1 - 0.1 * log2(width / 64)`` for words wider than 64 bits. Xilinx
    LUT6 ROMs follow the primitive.
    """
    if rom_in_bram(depth, width, family):
        return rom(depth, width, family)
    columns = rom_columns(depth, width)
    read = register(round(columns))
    if depth <= 16:
        return luts(columns * _SHALLOW_ROM_LUTS.get(range_bits(depth), 1.0)) + read
    if family == "xilinx":
        return rom(depth, width, family) + read
    share = 1.0 if width <= 64 else max(0.5, 1 - 0.1 * math.log2(width / 64))
    return luts(depth / 8 * width * share) + read


def _distributed(depth, width, family):
    """``(cost, cells, slices)`` of the cheapest distributed-RAM tiling, or ``None``."""
    if family == "ice40":
        return None
    if family == "xilinx":
        # $__XILINX_LUTRAM_SDP_: cost 8, widthscale 7; 32 x 6 (RAM32M) or 64 x 3 (RAM64M).
        best = None
        for abits, unit in ((5, 6), (6, 3)):
            slices = -(-depth // (1 << abits))
            cells = -(-slices * width // unit)
            cost = cells + 7 * slices * width / unit + 0.5 * (slices - 1) * width
            if best is None or cost < best[0]:
                best = (cost, cells, slices)
        return best
    slices = -(-depth // 16)
    cells = -(-slices * width // 4)
    if family == "ecp5":  # $__TRELLIS_DPR16X4_: cost 4 per cell
        return 4 * cells + 0.5 * (slices - 1) * width, cells, slices
    # gowin $__GOWIN_LUTRAM_: cost 4, widthscale 4
    return slices * width + 0.5 * (slices - 1) * width, cells, slices


def ram(depth, width, family, *, transparent):
    """A simple dual-port RAM (one synchronous write port, one synchronous read port) placed
    as Yosys 0.70 ``memory_libmap`` places it.

    Parameters
    ----------
    depth, width : int
    family : str
    transparent : bool
        The read port is transparent for the write port (read address one cycle ahead);
        otherwise it has a read enable and no defined read-during-write (FIFO storage).

    Returns
    -------
    (Resources, int, str)
        The cost, the number of distributed-RAM cells, and where it went: ``"ff"``,
        ``"lutram"`` or ``"bram"``.
    """
    check_family(family)
    abits = range_bits(depth)
    logic_cost = depth * width
    blocks, slices = bram_layout(depth, width, family)
    # Emulation scores x2: a non-shared read port (1), soft transparency or collision logic
    # (3). Distributed RAM comes first in the libraries: it wins a tie.
    block_cost = blocks * bram_cost(family) + 2 * (1 + 3)
    dist = _distributed(depth, width, family)
    choice = "ff"
    best = logic_cost
    if dist is not None and dist[0] < best:
        choice, best = "lutram", dist[0]
    if block_cost < best:
        choice = "bram"
    if choice == "bram":
        res = Resources(bram=blocks) + luts(width * (slices - 1))
        if transparent:
            # Soft transparency: write data and an address-match flag registered, a mux.
            res += register(width + 1) + luts(width) + comparator(max(abits, 1), family)
        else:
            # A read that must not see a write to the same address in the same cycle: Yosys
            # registers the write data, the address and a match flag, and the read data, and
            # muxes (measured on every family: 2 * width + abits + 1 flip-flops; the LUTs on
            # the window buffers and FIFOs of the folded dataflow, iCE40).
            res += register(2 * width + abits + 1) + luts(width + abits)
        return res, 0, "bram"
    # The read register: the address for a transparent port, the data for an enabled one.
    read_reg = register(abits if transparent else width)
    if choice == "lutram":
        _, cells, dslices = dist
        res = read_reg + mux(width, dslices, family)
        return res, cells, "lutram"
    # Flip-flops: one register per word, a depth-way read mux, a write-enable decoder.
    res = register(depth * width) + read_reg + mux(width, depth, family) + luts(depth)
    return res, 0, "ff"


# -- Accumulators ---------------------------------------------------------------------------

def accumulator(bits, family) -> Resources:
    """An MVU accumulator of ``bits`` bits, ``acc <= Mux(first, t, acc + t)`` under an enable
    (stage 3 of :class:`hwquant.hw.mvu.MatrixVectorUnit`, ``t`` the engine sum, narrower or as
    wide): ``bits`` flip-flops and, on iCE40, one LUT4 per bit (the load mux folds into the
    sum LUT beside ``SB_CARRY``), two per bit on ECP5, Xilinx and Gowin (an adder and a mux).
    Measured (Yosys 0.70, ``benchmarks/measure_fold_parts.py``) on 8/6, 12/12, 16/12 and
    24/18 bits (accumulator/term): exactly ``bits`` and ``2 * bits`` LUT (an adder plus a
    2:1 mux modelled ``2 * bits + 2`` on ECP5)."""
    return register(bits) + luts(bits if family == "ice40" else 2 * bits)


# -- Widths the hardware has ------------------------------------------------------------------

def accumulator_range(layer) -> tuple:
    """Worst-case ``(lo, hi)`` of ``ACC`` (without bias) per channel of a weight layer,
    over every input in its format: two int64 arrays ``(OC,)``."""
    lo, hi = ir.accumulator_range(layer)
    bias = np.asarray(layer.bias, dtype=np.int64)
    return lo - bias, hi - bias


# -- Requantization pieces --------------------------------------------------------------------

def const_add(bits, used, family) -> Resources:
    """``v + constant`` over ``bits``, of which only the top ``used`` sum bits are used (a
    rounding shift drops the rest): iCE40 builds LUTs only for used sum bits beside its
    carry chain, a Xilinx carry chain takes the constant without LUTs for half of them, ECP5
    and Gowin carry chains are LUTs throughout, but ABC maps a short one (up to 4 bits on
    ECP5, 2 on Gowin) to a LUT per sum bit (measured: ``2P - F`` on 2 to 5 live bits, Yosys
    0.70)."""
    if family == "ice40":
        return luts(used)
    if family == "xilinx":
        return luts(math.ceil(used / 2))
    if bits <= {"ecp5": 4, "gowin": 2}[family]:
        return luts(max(used, 1))
    return adder(bits, family)


def const_compare(live, family) -> Resources:
    """``v >= k`` for a constant ``k``, on the ``live`` bits of ``v`` at and above ``k``'s
    lowest set bit, as Yosys 0.70 maps it (measured on 6- and 9-bit signed values against
    twelve constants, with and without a constant-zero low bit): one LUT on iCE40 and Xilinx
    (the carry chain beside it); on ECP5 one LUT4 up to 4 live bits, else a ``CCU2C`` per two
    bits but one and a LUT4; on Gowin one LUT4 up to 2 live bits, else an ``ALU`` per bit but
    one and a LUT4."""
    live = max(int(live), 1)
    if family in ("ice40", "xilinx"):
        return luts(1)
    if family == "ecp5":
        return luts(1 if live <= 4 else 2 * ((live - 1) // 2) + 1)
    return luts(1 if live <= 2 else live)


def saturation(bits, lo, hi, out_bits, family) -> Resources:
    """Clamping a signed ``bits``-wide value into ``[lo, hi]`` (``out_bits`` wide): a
    comparison with a constant and a mux per bound the value's width does not already
    guarantee (``v < 0`` is the sign bit); the muxes of both bounds share a LUT per output
    bit."""
    vmin, vmax = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    res = Resources()
    if hi < vmax:
        if hi > 0 and (hi + 1) & hi == 0:
            # v > 2**k - 1: any of the upper bits set (and not negative).
            per_lut = 5 if family == "xilinx" else 3
            res += luts(math.ceil(max(bits - hi.bit_length(), 1) / per_lut))
        else:
            res += comparator(bits, family)
        res += luts(out_bits)
    if lo > vmin:
        res += luts(1) if lo == 0 else comparator(bits, family)
        if hi >= vmax:
            res += luts(out_bits)
    return res


# A comparison feeding a 2:1 mux of the same operands, chained (max pooling, arg-max), costs
# less or more than the two primitives apart: ABC merges the comparator's operand inversion
# into the mux LUTs on iCE40, and a signed comparison chain costs more on ECP5 and Gowin.
# Factors on comparator + mux, measured on 8-bit and 4-bit unsigned max pooling and 16- to
# 24-bit signed arg-max chains of 3 and 9 steps (Yosys 0.70).
_SELECT_CHAIN = {
    "ice40": {False: 0.65, True: 0.93},
    "ecp5": {False: 1.0, True: 1.4},
    "xilinx": {False: 1.2, True: 0.9},
    "gowin": {False: 0.94, True: 1.42},
}


def select_step(bits, signed, family, extra_mux_bits=0) -> Resources:
    """One compare-and-select step of a max chain over ``bits``-wide values (with
    ``extra_mux_bits`` selected along, e.g. the arg-max index)."""
    base = comparator(bits, family) + mux(bits, 2, family)
    if extra_mux_bits:
        base += mux(extra_mux_bits, 2, family)
    return luts(base.lut * _SELECT_CHAIN[family][signed])
