"""Population count (the number of 1 bits of a vector) as a LUT-efficient compressor tree.

The XNOR-popcount of binary layers is a sum of ``N`` one-bit terms. Written as one Amaranth
sum, Yosys builds its own multi-operand adder whose first levels are full adders in LUTs
(about 1.6 LUT6 or 1.95 LUT4 per input bit). This module builds the sum from two primitives
that fill the LUTs and the carry chains instead (after the generalised-parallel-counter
compressor trees of Parandeh-Afshar, Brisk and Ienne, "Efficient synthesis of compressor trees
on FPGAs", ASP-DAC 2008, and the carry-chain adder trees every FPGA vendor recommends):

* a **(6:3) counter**: six bits in, their 3-bit count out, each output bit one 6-input truth
  table (one LUT6): three bits removed per three LUTs;
* a **carry-in adder node** ``a + b + c``: two counts and one more input bit, where ``c``
  enters at the adder's carry input: ``(Cat(1, a) + Cat(c, b)) >> 1`` is one two-operand adder
  one bit wider, so the third operand costs nothing. A node of ``k``-bit operands costs about
  ``k + 1`` LUTs (``k`` on Xilinx, whose carry-out reaches the fabric directly).

Structure, by the LUT size of the family:

* ``lut_inputs = 4`` (iCE40, ECP5, Gowin): a balanced tree of carry-in adder nodes over the
  bits; about half the bits are the leaves, the other half the carry-in terms (lowest levels
  first): ``N - 1`` LUT4 in all, about 1.0 per input bit on ``synth_ice40``.
* ``lut_inputs = 6`` (Xilinx 7-series; on LUT4 families it costs 1.6 LUT4 per bit): a first stage of (6:3) counters over six sevenths of the
  bits, then the same adder tree over the 3-bit counts, the remaining bits entering as carry-in
  terms: about 1.1 LUT6 per input bit on ``synth_xilinx``.

Every adder node's output is a signal with Yosys's ``keep`` attribute, so that Yosys does not
merge the tree back into one multi-operand adder of its own.

Pipelining: ``stages_per_register = k > 0`` puts a register after every ``k`` stages (the
counter stage and each adder level are one stage each) and on the output, so the longest path
is ``k`` stages instead of the whole tree; the carry-in terms still waiting travel through the
same registers. ``0`` is combinational. Registers: about ``N / 2`` bits after the first stage,
fewer after each later one.
"""

from amaranth.hdl import Cat, Const, Module, Signal, Value, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..popcount_tree import (
    DEFAULT_LUT_INPUTS,
    LUT_INPUTS,
    counters,
    leaves,
    lut_inputs_of,
    popcount_bits,
    stages,
)

__all__ = ["Popcount", "DEFAULT_LUT_INPUTS", "LUT_INPUTS", "lut_inputs_of", "popcount_bits",
           "counter", "carry_in_add", "xnor_pair_counter", "XnorPopcount"]


def counter(bits) -> list:
    """An (r:m) counter over one-bit values ``bits``: its ``m = popcount_bits(r)`` output bits
    (LSB first), each a truth table of the ``r`` inputs (one LUT when ``r <= lut_inputs``)."""
    r = len(bits)
    idx = Cat(*bits)
    outs = []
    for k in range(popcount_bits(r)):
        table = sum(1 << v for v in range(1 << r) if (v.bit_count() >> k) & 1)
        outs.append(Const(table, 1 << r).bit_select(idx, 1))
    return outs


def carry_in_add(a, b, c=None):
    """``a + b + c`` for unsigned ``a``, ``b`` and a one-bit ``c`` (or ``None``): one
    two-operand adder, ``c`` at its carry input (``(Cat(1, a) + Cat(c, b)) >> 1``)."""
    if c is None:
        return a + b
    return (Cat(Const(1, 1), a) + Cat(c, b))[1:]


class Popcount(wiring.Component):
    """``o = popcount(i)``: the number of 1 bits of an ``n``-bit vector.

    Parameters
    ----------
    n : int
        Input bits (at least 1).
    lut_inputs : int
        4 or 6: the LUT size the tree is built for (see the module docstring).
    stages_per_register : int
        0: combinational (latency 0). ``k > 0``: a register after every ``k`` stages and on the
        output; the count of an input appears :attr:`latency` enabled cycles later.

    Members
    -------
    i : ``In(n)``
    o : ``Out(unsigned(popcount_bits(n)))``
    en : ``In(1, init=1)``, only when pipelined: the registers load when it is high.

    Latency :attr:`latency` = ``ceil(stages / k)`` (0 when combinational). Resources: about
    ``N`` LUT4 (``lut_inputs = 4``) or ``1.1 N`` LUT6 (``lut_inputs = 6``) and the carry cells of
    ``N / 2`` adder nodes; see the module docstring.
    """

    def __init__(self, n, *, lut_inputs=DEFAULT_LUT_INPUTS, stages_per_register=0):
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"Popcount needs at least one input bit, not {n!r}")
        if lut_inputs not in LUT_INPUTS:
            raise ValueError(f"Popcount LUT size must be one of {LUT_INPUTS}, not {lut_inputs!r}")
        if not isinstance(stages_per_register, int) or stages_per_register < 0:
            raise ValueError(f"Stages per register must be a non-negative integer, not "
                             f"{stages_per_register!r}")
        self._n, self._lut, self._k = n, lut_inputs, stages_per_register
        members = {"i": In(n), "o": Out(unsigned(popcount_bits(n)))}
        if self._k:
            members["en"] = In(1, init=1)
        super().__init__(members)

    @property
    def n(self) -> int:
        return self._n

    @property
    def counters(self) -> int:
        """(6:3) counters of the first stage (0 for LUT4 and for ``n < 7``)."""
        return counters(self._n, self._lut)

    @property
    def stages(self) -> int:
        """Logic stages: the counter stage (if any) and the adder levels."""
        return stages(self._n, self._lut)

    @property
    def latency(self) -> int:
        """Registers from ``i`` to ``o`` (0 when combinational)."""
        return -(-self.stages // self._k) if self._k else 0

    def _stage_out(self, m, stage, values, name, *, last):
        """``values`` as kept signals, registered after ``stage`` stages when a register falls
        there (every ``k`` stages, and after the ``last``)."""
        out = []
        register = self._k and (stage % self._k == 0 or last)
        for i, v in enumerate(values):
            v = Value.cast(v)
            sig = Signal(v.shape(), name=f"{name}_{i}", attrs={"keep": 1})
            if register:
                with m.If(self.en):
                    m.d.sync += sig.eq(v)
            else:
                m.d.comb += sig.eq(v)
            out.append(sig)
        return out

    def elaborate(self, platform):
        m = Module()
        n = self._n
        bits = [self.i[b] for b in range(n)]
        if n == 1:
            m.d.comb += self.o.eq(bits[0])
            return m
        n_leaves = leaves(n, self._lut)
        stage = 0
        if self.counters:
            nums = [Cat(*counter(bits[6 * g:6 * g + 6])) for g in range(n_leaves)]
            spares = bits[6 * n_leaves:]
            stage = 1
            both = self._stage_out(m, stage, nums + spares, "count", last=self.stages == 1)
            nums, spares = both[:n_leaves], both[n_leaves:]
        else:
            nums, spares = bits[:n_leaves], bits[n_leaves:]
        while len(nums) > 1 or spares:
            nxt = [carry_in_add(nums[a], nums[a + 1], spares.pop() if spares else None)
                   for a in range(0, len(nums) - 1, 2)]
            if len(nums) % 2:
                nxt.append(carry_in_add(nums[-1], Const(0, 1), spares.pop())
                           if spares else nums[-1])
            stage += 1
            both = self._stage_out(m, stage, nxt + spares, f"sum{stage}",
                                   last=len(nxt) == 1 and not spares)
            nums, spares = both[:len(nxt)], both[len(nxt):]
        m.d.comb += self.o.eq(nums[0])
        return m


def xnor_pair_counter(xs, ws) -> list:
    """A (3:2) counter over the XNORs of three input bits with three weight bits: its two
    output bits (weights 1 and 2), each one 6-input truth table (one LUT6): the XNORs cost
    nothing of their own."""
    idx = Cat(*[b for pair in zip(xs, ws, strict=True) for b in pair])
    outs = []
    for k in range(2):
        table = 0
        for v in range(64):
            agree = sum(((v >> (2 * i)) & 1) == ((v >> (2 * i + 1)) & 1) for i in range(3))
            if (agree >> k) & 1:
                table |= 1 << v
        outs.append(Const(table, 64).bit_select(idx, 1))
    return outs


class XnorPopcount(wiring.Component):
    """``o = popcount(XNOR(x, w))`` of two ``n``-bit vectors for LUT6 families, combinational.

    Each group of three lanes is one (3:2) counter of the three XNORs (two LUT6, the XNORs
    inside them), giving ``n / 3`` bits of weight 1 and ``n / 3`` of weight 2; the lanes left
    over are plain XNORs of weight 1. Two LUT6 popcounts (:class:`Popcount`) count the two
    columns and one adder forms ``ones + 2 * twos``: about ``0.67 + 0.73 = 1.4`` LUT6 per lane,
    against ``1 + 1.1`` for XNORs in front of a popcount.

    Members
    -------
    x, w : ``In(n)``
    o : ``Out(unsigned(popcount_bits(n)))``
    """

    def __init__(self, n):
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"XNOR popcount needs at least one lane, not {n!r}")
        self._n = n
        super().__init__({"x": In(n), "w": In(n), "o": Out(unsigned(popcount_bits(n)))})

    def elaborate(self, platform):
        m = Module()
        n, groups = self._n, self._n // 3
        ones, twos = [], []
        for g in range(groups):
            lo, hi = xnor_pair_counter([self.x[3 * g + i] for i in range(3)],
                                       [self.w[3 * g + i] for i in range(3)])
            ones.append(lo)
            twos.append(hi)
        ones += [~(self.x[i] ^ self.w[i]) for i in range(3 * groups, n)]
        total = None
        for name, bits, shift in (("ones", ones, 0), ("twos", twos, 1)):
            if not bits:
                continue
            pc = Popcount(len(bits), lut_inputs=6)
            m.submodules[name] = pc
            m.d.comb += pc.i.eq(Cat(*bits))
            term = pc.o << shift
            total = term if total is None else total + term
        m.d.comb += self.o.eq(total)
        return m
