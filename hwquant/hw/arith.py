"""Combinational arithmetic blocks written from ``docs/arithmetic.md`` (not from the golden
model's code): adder trees, round-half-up shifts, saturation, requantization."""

from amaranth.hdl import Const, Mux, Signal, Value, signed

from ..intmath import csd_digits

__all__ = ["adder_tree", "rshift_rhu", "saturate", "requantize", "const_signed", "csd_digits"]


def const_signed(value: int) -> Const:
    """A signed constant just wide enough for ``value``."""
    return Const(int(value), signed(max(2, int(value).bit_length() + 1)))


def adder_tree(terms, *, carries=()):
    """Balanced binary tree of additions; Amaranth widens each sum by one bit, so no overflow.

    Depth ``ceil(log2(len(terms)))``; ``len(terms) - 1`` adders. An empty list sums to 0.
    ``carries``: 1-bit values, one added by each adder in turn (its carry-in: no logic), at
    most ``len(terms) - 1`` of them; one beyond that is a :class:`ValueError`.
    """
    terms, carries = list(terms), list(carries)
    if len(carries) > max(len(terms) - 1, 0):
        raise ValueError(f"An adder tree of {len(terms)} terms takes at most "
                         f"{max(len(terms) - 1, 0)} carries, not {len(carries)}")
    if not terms:
        return Const(0, signed(2))
    while len(terms) > 1:
        nxt = []
        for i in range(0, len(terms) - 1, 2):
            s = terms[i] + terms[i + 1]
            nxt.append(s + carries.pop(0) if carries else s)
        if len(terms) % 2:
            nxt.append(terms[-1])
        terms = nxt
    return terms[0]


def rshift_rhu(value: Value, shift: int) -> Value:
    """``floor(value / 2**shift + 1/2)`` for signed ``value``: add half an LSB, then an
    arithmetic right shift (``>>`` on a signed Amaranth value). Negative ``shift`` is a
    left shift."""
    if shift > 0:
        return (value + (1 << (shift - 1))) >> shift
    if shift < 0:
        return value << (-shift)
    return value


def saturate(value: Value, lo: int, hi: int) -> Value:
    """Clamp to ``[lo, hi]``: a comparator and a mux per bound that the value's own shape
    does not already guarantee (no constant comparisons in the netlist)."""
    value = Value.cast(value)
    shape = value.shape()
    vmin = -(1 << (shape.width - 1)) if shape.signed else 0
    vmax = (1 << (shape.width - 1)) - 1 if shape.signed else (1 << shape.width) - 1
    if hi < vmax:
        value = Mux(value > hi, hi, value)
    if lo > vmin:
        value = Mux(value < lo, lo, value)
    return value


def requantize(acc: Value, bias, multiplier, shift: int, lo: int, hi: int, *,
               m=None, name="rounded") -> Value:
    """``sat(rshift_rhu((acc + bias) * multiplier, shift), lo, hi)``; ``multiplier`` may be the
    Python int 1 (no multiplier is built) or any Amaranth value/constant.

    With ``m`` (a :class:`~amaranth.hdl.Module`), the rounded value is a combinational signal
    ``name`` of ``m`` that the saturation's comparisons and muxes share: Amaranth's Verilog back
    end repeats an expression at each of its uses, and Yosys does not merge repeated products
    of a selected per-channel multiplier (three or four multipliers per lane instead of one)."""
    t = acc + bias
    if not (isinstance(multiplier, int) and multiplier == 1):
        t = t * multiplier
    t = rshift_rhu(t, shift)
    if m is not None:
        rounded = Signal(Value.cast(t).shape(), name=name)
        m.d.comb += rounded.eq(t)
        t = rounded
    return saturate(t, lo, hi)
