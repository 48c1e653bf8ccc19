"""Population count (the number of 1 bits of a vector): LUT-mapped compressor trees.

The XNOR-popcount of binary layers is a sum of ``N`` one-bit terms. Written as one Amaranth
sum, Yosys builds a multi-operand adder whose first levels are full adders in LUTs (about
1.6 LUT6 or 1.95 LUT4 per input bit). This module builds the sum from primitives that fill the
family's LUT instead, after the generalised-parallel-counter compressor trees of Parandeh-Afshar,
Brisk and Ienne ("Efficient synthesis of compressor trees on FPGAs", ASP-DAC 2008):

* ``lut_inputs = 6`` (LUT6 families: Xilinx 7-series): a **column compressor**. The bits sit in
  columns of equal weight ``2**j``; each stage replaces every group of six bits of a column by a
  (6:3) counter, three LUT6 (one per output bit, each a 6-input truth table), which puts one bit
  in each of columns ``j, j+1, j+2``: three bits removed per three LUTs. Stages repeat until
  every column holds at most six bits, then (5:3), (4:3) and (3:2) counters bring each column to
  two bits and one carry-chain adder (``log2 N`` bits, about one LUT per bit) adds the two rows.
* ``lut_inputs = 4`` (LUT4 families: iCE40, ECP5, Gowin): an **adder tree with carry-in
  terms**. A LUT4 cannot hold a 6-input counter, but every carry-chain adder takes a third,
  one-bit operand at its carry input for free: ``a + b + c`` with ``c`` one bit costs the LUTs
  of ``a + b``. The tree adds pairs of partial counts plus one spare input bit at each node, so
  an adder of ``k``-bit operands consumes ``2**(k+1) - 1`` input bits; the first level is a full
  adder over three input bits.

Pipelining: ``stages_per_register = k > 0`` puts a register after every ``k`` stages (counter
stages or adder levels; the final adder is one stage), so the longest path is ``k`` LUT levels
(plus a short carry chain) instead of the whole tree; ``0`` is combinational.

Cost (measured with Yosys, ``benchmarks/bench_popcount.py``): about 1.1 LUT6 per input bit on
``synth_xilinx`` and 1.5 LUT4 per input bit on ``synth_ice40``; registers, when pipelined, hold
the partial columns (about ``N / 2`` bits after the first stage, fewer after each later one).
"""

from amaranth.hdl import Cat, Const, Module, Signal, Value, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Popcount", "popcount", "DEFAULT_LUT_INPUTS", "LUT_INPUTS", "lut_inputs_of",
           "popcount_bits", "compressor_plan"]

#: LUT sizes a popcount can be built for.
LUT_INPUTS = (4, 6)

#: The default: LUT6 counters (BNN targets are mostly Xilinx; the tree is correct everywhere).
DEFAULT_LUT_INPUTS = 6

#: LUT size of each family of :data:`hwquant.estimate.resources.FAMILIES`.
_FAMILY_LUT = {"xilinx": 6, "ice40": 4, "ecp5": 4, "gowin": 4}


def lut_inputs_of(family: str) -> int:
    """LUT size of an FPGA family name (``xilinx`` 6, the others 4)."""
    try:
        return _FAMILY_LUT[family]
    except KeyError:
        raise ValueError(f"Unknown family {family!r}; known: {', '.join(_FAMILY_LUT)}") from None


def popcount_bits(n: int) -> int:
    """Width of the count of ``n`` bits: ``0..n``."""
    return max(1, int(n).bit_length())


def _counter_outputs(r: int) -> int:
    return popcount_bits(r)


def _column_stage(heights, final):
    """One compressor stage on column ``heights``: ``(counters, new_heights)``, ``counters`` a
    list of ``(column, inputs)``. Groups of six take (6:3) counters; a remainder of three to
    five bits gets its own counter only in the ``final`` stages (earlier it waits for a later
    (6:3), which removes more bits per LUT)."""
    counters, new = [], [0] * (len(heights) + 3)
    for j, h in enumerate(heights):
        groups, rest = divmod(h, 6)
        mine = [6] * groups
        if final and rest >= 3:
            mine.append(rest)
            rest = 0
        for r in mine:
            counters.append((j, r))
            for k in range(_counter_outputs(r)):
                new[j + k] += 1
        new[j] += rest
    while new and new[-1] == 0:
        new.pop()
    return counters, new


def compressor_plan(n: int) -> list:
    """The column heights before each stage of the LUT6 compressor of ``n`` bits, ending with
    heights of at most two (the final adder's rows)."""
    heights, plan = [n], [[n]]
    while max(heights) > 2:
        _, heights = _column_stage(heights, final=max(heights) <= 6)
        plan.append(heights)
    return plan


def _counter(bits):
    """A (r:m) counter over one-bit values ``bits``: its ``m`` output bits, each a truth table
    of the ``r`` inputs (one LUT when ``r <= lut_inputs``)."""
    r = len(bits)
    idx = Cat(*bits)
    outs = []
    for k in range(_counter_outputs(r)):
        table = sum(1 << v for v in range(1 << r) if (v.bit_count() >> k) & 1)
        outs.append(Const(table, 1 << r).bit_select(idx, 1))
    return outs


class Popcount(wiring.Component):
    """``o = popcount(i)``: the number of 1 bits of an ``n``-bit vector.

    Parameters
    ----------
    n : int
        Input bits (at least 1).
    lut_inputs : int
        4 or 6: the LUT size the tree is built for (see the module docstring).
    stages_per_register : int
        0: combinational (latency 0). ``k > 0``: a register after every ``k`` stages; the
        result is valid :attr:`latency` advancing cycles (``en`` high) after its input.

    Members
    -------
    i : ``In(n)``
    o : ``Out(unsigned(popcount_bits(n)))``
    en : ``In(1, init=1)``, only when pipelined: the pipeline registers load when it is high.

    Latency :attr:`latency` (``ceil(stages / k)`` registers, the output's included when the last
    group ends on the final adder). Resources: see the module docstring.
    """

    def __init__(self, n, *, lut_inputs=DEFAULT_LUT_INPUTS, stages_per_register=0):
        if not isinstance(n, int) or n < 1:
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
    def stages(self) -> int:
        """Logic stages of the tree (counter stages plus the final adder, or adder levels)."""
        if self._n <= 1:
            return 0
        if self._lut == 6:
            return len(compressor_plan(self._n))  # counter stages, then the final adder
        return len(_tree_levels(self._n))

    @property
    def latency(self) -> int:
        """Registers from ``i`` to ``o`` (0 when combinational)."""
        return -(-self.stages // self._k) if self._k else 0

    def _maybe_register(self, m, stage, values, name):
        """Register ``values`` (a list of Values) after ``stage`` stages when a register falls
        there; returns the values to use downstream."""
        if not self._k or stage % self._k:
            return values
        regs = []
        for i, v in enumerate(values):
            r = Signal(Value.cast(v).shape(), name=f"{name}_{i}")
            with m.If(self.en):
                m.d.sync += r.eq(v)
            regs.append(r)
        return regs

    def elaborate(self, platform):
        m = Module()
        n = self._n
        if n == 1:
            result = self.i[0]
            if self._k:
                result = self._maybe_register(m, self._k, [result], "p")[0]
            m.d.comb += self.o.eq(result)
            return m
        if self._lut == 6:
            result = self._columns(m)
        else:
            result = self._adder_tree(m)
        m.d.comb += self.o.eq(result)
        return m

    def _columns(self, m):
        cols = [[self.i[b] for b in range(self._n)]]
        stage = 0
        while max(len(c) for c in cols) > 2:
            final = max(len(c) for c in cols) <= 6
            new = [[] for _ in range(len(cols) + 3)]
            for j, col in enumerate(cols):
                groups, rest = divmod(len(col), 6)
                sizes = [6] * groups + ([rest] if final and rest >= 3 else [])
                pos = 0
                for r in sizes:
                    for k, bit in enumerate(_counter(col[pos:pos + r])):
                        new[j + k].append(bit)
                    pos += r
                new[j].extend(col[pos:])
            while not new[-1]:
                new.pop()
            stage += 1
            cols = self._register_columns(m, stage, new)
        rows = [Cat(*[c[0] if c else Const(0, 1) for c in cols]),
                Cat(*[c[1] if len(c) > 1 else Const(0, 1) for c in cols])]
        total = rows[0] + rows[1]
        stage += 1
        return self._maybe_register(m, stage, [total[:len(self.o)]], "sum")[0]

    def _register_columns(self, m, stage, cols):
        if not self._k or stage % self._k:
            return cols
        flat = [b for c in cols for b in c]
        regs = self._maybe_register(m, stage, flat, f"s{stage}")
        out, pos = [], 0
        for c in cols:
            out.append(regs[pos:pos + len(c)])
            pos += len(c)
        return out

    def _adder_tree(self, m):
        bits = [self.i[b] for b in range(self._n)]
        leaves = _tree_leaves(self._n)
        nums, spares = bits[:leaves], bits[leaves:]  # spares enter at carry inputs
        stage = 0
        while len(nums) > 1 or spares:
            nxt = []
            for a in range(0, len(nums) - 1, 2):
                s = nums[a] + nums[a + 1]
                nxt.append(s + spares.pop() if spares else s)
            if len(nums) % 2:
                nxt.append(nums[-1] + spares.pop() if spares else nums[-1])
            stage += 1
            nums = self._maybe_register(m, stage, nxt, f"l{stage}")
        return nums[0]


def _tree_leaves(n: int) -> int:
    """Input bits that enter the LUT4 adder tree as operands; the other ``n - leaves`` are
    carry-in terms, one per adder, lowest levels first (``leaves - 1`` adders in all)."""
    return max(1, (n + 1) // 2)


def _tree_levels(n: int) -> list:
    """Operands left after each level of the LUT4 adder tree of ``n`` bits (one entry per
    level; the last is 1)."""
    nums, spares, levels = _tree_leaves(n), n - _tree_leaves(n), []
    while nums > 1 or spares:
        adders = nums // 2 + nums % 2
        spares -= min(spares, adders)
        nums = adders
        levels.append(nums)
    return levels


def popcount(n, *, lut_inputs=DEFAULT_LUT_INPUTS, stages_per_register=0) -> Popcount:
    """A :class:`Popcount` of ``n`` bits (shorthand)."""
    return Popcount(n, lut_inputs=lut_inputs, stages_per_register=stages_per_register)
