"""The shape of the popcount trees (:mod:`hwquant.hw.popcount`) in plain Python, shared by the
hardware and the cost model (which never imports Amaranth).

Two structures, named by the LUT size they are built for: ``4``, a balanced tree of carry-in
adder nodes ``a + b + c`` over the bits (about half the bits are leaves, the rest enter at the
nodes' carry inputs, lowest levels first); ``6``, a first stage of (6:3) counters over six
sevenths of the bits, then the same tree over the 3-bit counts with the other bits as carry-in
terms.
"""

__all__ = ["LUT_INPUTS", "DEFAULT_LUT_INPUTS", "lut_inputs_of", "popcount_bits", "leaves",
           "counters", "tree_levels", "stages", "node_widths", "tree_nodes"]

#: LUT sizes a popcount can be built for.
LUT_INPUTS = (4, 6)

#: The structure hardware is built with unless told otherwise: the LUT4 adder tree, the best
#: on three of the four families (and within 1.5 LUT6 per bit on Xilinx).
DEFAULT_LUT_INPUTS = 4

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


def counters(n: int, lut: int) -> int:
    """(6:3) counters of the first stage: one per seven bits for LUT6 and ``n >= 7``, else 0."""
    return (n + 1) // 7 if lut == 6 and n >= 7 else 0


def leaves(n: int, lut: int) -> int:
    """Operands entering the adder tree (counts or raw bits); the other bits are carry-in
    terms."""
    return counters(n, lut) or max(1, (n + 1) // 2)


def _spares(n: int, lut: int) -> int:
    c = counters(n, lut)
    return n - 6 * c if c else n - leaves(n, lut)


def tree_levels(nums: int, spares: int) -> int:
    """Adder levels of the tree over ``nums`` operands with ``spares`` carry-in terms (each
    level pairs the operands; every new node takes one carry-in term while any are left)."""
    levels = 0
    while nums > 1 or spares:
        nums = nums // 2 + nums % 2
        spares -= min(spares, nums)
        levels += 1
    return levels


def stages(n: int, lut: int) -> int:
    """Logic stages of the popcount of ``n`` bits: the counter stage (if any) and the adder
    levels."""
    if n <= 1:
        return 0
    return (1 if counters(n, lut) else 0) + tree_levels(leaves(n, lut), _spares(n, lut))


def node_widths(n: int, lut: int) -> list:
    """Operand width of every adder node of the tree (a node of ``w``-bit operands is one
    ``w + 1``-bit adder), in build order."""
    if n <= 1:
        return []
    nums = [3 if counters(n, lut) else 1] * leaves(n, lut)
    spares, widths = _spares(n, lut), []
    while len(nums) > 1 or spares:
        nxt = []
        for a in range(0, len(nums) - 1, 2):
            w = max(nums[a], nums[a + 1])
            widths.append(w)
            nxt.append(w + 1)
            spares -= 1 if spares else 0
        if len(nums) % 2:
            if spares:
                widths.append(nums[-1])
                nxt.append(nums[-1] + 1)
                spares -= 1
            else:
                nxt.append(nums[-1])
        nums = [min(w, popcount_bits(n)) for w in nxt]
    return widths


def tree_nodes(n: int, lut: int) -> list:
    """Every logic node of the popcount of ``n`` bits as ``(kind, width, support)``: ``kind``
    ``"counter"`` (a (6:3) counter, ``width`` 6) or ``"adder"`` (a carry-in adder node of
    ``width``-bit operands), ``support`` the input bit indices it depends on. The build order
    and the bits are those of :class:`hwquant.hw.popcount.Popcount`."""
    if n <= 1:
        return []
    nodes = []
    c = counters(n, lut)
    if c:
        nums = [(3, tuple(range(6 * g, 6 * g + 6))) for g in range(c)]
        nodes += [("counter", 6, sup) for _, sup in nums]
        spares = list(range(6 * c, n))
    else:
        k = leaves(n, lut)
        nums, spares = [(1, (b,)) for b in range(k)], list(range(k, n))
    top = popcount_bits(n)
    while len(nums) > 1 or spares:
        nxt = []
        for a in range(0, len(nums) - 1, 2):
            (wa, sa), (wb, sb) = nums[a], nums[a + 1]
            sup = sa + sb + ((spares.pop(),) if spares else ())
            w = max(wa, wb)
            nodes.append(("adder", w, sup))
            nxt.append((min(w + 1, top), sup))
        if len(nums) % 2:
            w, sup = nums[-1]
            if spares:
                sup = sup + (spares.pop(),)
                nodes.append(("adder", w, sup))
                w = min(w + 1, top)
            nxt.append((w, sup))
        nums = nxt
    return nodes
