"""Cost face of the ``pow2`` arithmetic kind: the ``PE`` dot engines of one MVU, in LUTs only.

What :class:`hwquant.hw.pow2.DotEngine` builds, per processing element, and what Yosys 0.70
makes of it. Nothing is a multiplication, so no family ever infers a DSP block, with or
without ``-nodsp``:

* **Unrolled** (constant weights): a zero weight builds nothing, a nonzero one is its lane
  shifted by ``e`` (wiring; signed lanes in offset binary, so every term is unsigned).
  ``alumacc`` merges the adder trees and the subtraction into one ``$macc`` and ``maccmap``
  reduces it column by column with full adders to two rows and one carry-chain adder
  (:func:`carry_save`): each term puts ``x_bits`` bits in columns ``e .. e + x_bits - 1``,
  the subtracted terms and the offset add one constant row. With sign scales
  ``(P, N) != (1, 1)`` a sum with more than one signed digit of its scale stays its own
  ``$macc`` and its shifted copies are terms of the final one.
* **Folded** (code words from the ROM): per lane a zero gate and a logarithmic shifter, one
  2:1 :func:`~hwquant.estimate.resources.mux` per output bit and stage (the gate and the
  conditional inversion fold into its LUTs where they have inputs to spare, see
  :func:`_lane`), then the lanes' carry-save sum
  (:func:`hwquant.estimate.fixed.macc`, as the fixed kind's trees); for ``(1, 1)`` plus the
  count of negative lanes, otherwise two sums (positive and negative lanes) and the final
  shift-and-add by ``P`` and ``N``.

A full adder costs what one costs in a popcount tree (the slope of the calibrated
:func:`~hwquant.estimate.resources.popcount`), the final adder is an
:func:`~hwquant.estimate.resources.adder`; nothing is fitted to the pow2 engines themselves.
The weight ROM (``weight_bits`` per weight), the registers, accumulators and the epilogue are
costed by :mod:`hwquant.estimate.model`.

Accuracy
--------
Measured against Yosys 0.70 (model - Yosys) / Yosys, LUTs:

* Single engines between registers. Unrolled, 33 engines of 4 to 32 lanes (2-, 4- and 5-bit
  codes, unsigned 8-bit and signed 4- and 8-bit activations, ``(1, 1)`` and ``(3, 5)``):
  mean 8.6 % / worst 27 % (ice40), 14 % / 54 % (xilinx), 11 % / 64 % (gowin), 11 % / 50 %
  (ecp5); the worst are engines of at most 8 lanes, with 16 lanes and more the mean is
  6.5-9.4 % and the worst 21 % (ice40), 40 % (xilinx, TTQ). Folded, 24 engines of 4 to 16
  lanes (2- to 5-bit codes, unsigned 8-bit activations, both scale sets): mean 5.0 % / worst
  16 % (ice40), 7.3 % / 16 % (xilinx).
* Whole MVUs (``tests/test_estimate_pow2.py``, with the rest of the MVU from
  :mod:`hwquant.estimate.model`): 8 x 16 unrolled 4-bit INQ +5.8 % (ice40) / +13 % (xilinx);
  16 x 32 folded 3-bit, signed 4-bit inputs +0.7 % / -8.6 %; 8 x 16 folded TTQ +0.9 % /
  -2.9 %; 6 x 32 unrolled 5-bit, signed 8-bit inputs -6.2 % / -2.9 %; 64 x 64 folded
  (PE = SIMD = 8) 4-bit +0.0 % / -22 %; flip-flops within 2.2 %, DSP blocks 0 = 0.

Weakest: unrolled ternary layers with few lanes, which the model overestimates (4 x 12 TTQ:
+24 % ice40, +37 % xilinx) because ABC shares full adders between PEs that add the same
activations; and the xilinx 64 x 64 folded MVU, where the engines are right (305 LUT6 each
in Yosys, 303 modelled) but the rest of the MVU (weight ROM, operand multiplexer,
accumulators) is underestimated by half, as for the fixed kind on the same shape.
"""

from __future__ import annotations

import math

from .. import ir
from ..golden.pow2 import exponent_bits
from ..plan import mvu_cycles
from .common import carry_save, check_family, csd_digits, macc
from .fixed import is_unrolled
from .resources import Resources, mux

__all__ = ["resources", "cycles", "carry_save", "sign_scales", "dot_range", "word_bits"]


def sign_scales(layer) -> tuple:
    """``(P, N)`` of a pow2 layer's weights: the one place the cost model reads them."""
    return tuple(int(v) for v in layer.kind_data.sign_scales)


def _check(layer):
    if not isinstance(layer, (ir.Conv2d, ir.Linear)):
        raise TypeError(f"Dot engines belong to a conv2d or linear layer, not "
                        f"{type(layer).__name__}")
    if layer.encoding != "pow2":
        raise ValueError(f"Layer '{layer.name}': the pow2 cost model cannot estimate weight "
                         f"encoding {layer.encoding!r}")


class _Sum:
    """The columns of one ``$macc``: variable bits per column and a constant (mod 2**width)."""

    def __init__(self, width):
        self.width, self.counts, self.constant = width, [0] * width, 0

    def add(self, bits, shift, subtract=False):
        """A ``bits``-wide unsigned port at column ``shift``, added or subtracted
        (``-t = ~t + 1``: the bits inverted, ones above and below it, plus one)."""
        for col in range(shift, min(shift + bits, self.width)):
            self.counts[col] += 1
        if subtract:
            self.constant += (1 << self.width) - (((1 << bits) - 1) << shift)

    def cost(self, family) -> Resources:
        constant = self.constant % (1 << self.width)
        counts = [n + (constant >> col & 1) for col, n in enumerate(self.counts)]
        return carry_save(counts, family)


def _bits_of(lo, hi):
    return ir.signed_bits_for(int(lo), int(hi))


def _unrolled_engine(row, layer, family) -> Resources:
    """One PE of constant weights ``row`` (true integer weights)."""
    fmt = layer.in_format
    xbits = fmt.bits
    p, n = sign_scales(layer)
    lanes = {1: [], -1: []}  # exponents of the positive and the negative weights
    for w in row:
        if w:
            lanes[1 if w > 0 else -1].append((abs(w) // (p if w > 0 else n)).bit_length() - 1)
    ulo, uhi = 0, (1 << xbits) - 1  # offset-binary lanes are unsigned
    out = _bits_of(sum(min(w * fmt.lo, w * fmt.hi) for w in row),
                   sum(max(w * fmt.lo, w * fmt.hi) for w in row))
    final = _Sum(out)
    if fmt.signed:
        final.constant -= sum(row) << (xbits - 1)
    res = Resources()
    for sign, scale in ((1, p), (-1, n)):
        if not lanes[sign]:
            continue
        digits = csd_digits(scale)
        if len(digits) == 1:
            # Used once: its terms join the final sum, shifted.
            (k, d), = digits
            for e in lanes[sign]:
                final.add(xbits, e + k, subtract=sign * d < 0)
            continue
        width = _bits_of(ulo, sum(uhi << e for e in lanes[sign]))
        part = _Sum(width)
        for e in lanes[sign]:
            part.add(xbits, e)
        res += part.cost(family)
        for k, d in digits:
            final.add(width, k, subtract=sign * d < 0)
    return res + final.cost(family)


def _lane(xbits, exp_bits, last_bits, split, family) -> Resources:
    """Zero gate, logarithmic left shifter (by ``0 .. 2**exp_bits - 1``) and the last step of
    one ``xbits`` lane, ``last_bits`` wide: the conditional inversion, or with ``split`` the
    gates that send the lane to the positive or the negative sum.

    A LUT6 takes two 2:1 stages and the gate or the inversion: the calibrated 2:1
    :func:`~hwquant.estimate.resources.mux` per output bit and stage. A LUT4 is one 2:1 mux
    per output bit and stage; the zero gate folds into the first stage and the inversion into
    a second one, so with at most one stage the inversion costs a LUT per bit of its own, as
    does the split (one of its two outputs; both without a shifter to fold into).
    """
    widths = [xbits + (2 << k) - 1 for k in range(exp_bits)]
    if family == "xilinx":
        res = sum((mux(w, 2, family) for w in widths), Resources())
        return res if widths else Resources(lut=last_bits)
    if split:
        return Resources(lut=sum(widths) + last_bits * (1 if widths else 2))
    return Resources(lut=sum(widths) + (last_bits if exp_bits <= 1 else 0))


def _folded_engine(layer, family) -> Resources:
    """One PE of ``SIMD`` lanes fed with code words."""
    fmt, simd = layer.in_format, layer.fold.simd
    exp_bits = exponent_bits(layer.weight_bits)
    shifted = fmt.bits + (1 << exp_bits) - 1  # width of one shifted lane
    scales = sign_scales(layer)
    if scales == (1, 1):
        term = shifted + (0 if fmt.signed else 1)  # ~v of an unsigned v needs a sign bit
        count_bits = max(simd.bit_length(), 1)
        lane = _lane(fmt.bits, exp_bits, term, False, family)
        return lane * simd + macc([term] * simd + [count_bits], family)
    lane = _lane(fmt.bits, exp_bits, shifted, True, family)
    res = lane * simd + macc([shifted] * simd, family) * 2
    width = shifted + math.ceil(math.log2(simd)) if simd > 1 else shifted
    final = _Sum(width + max(scales).bit_length() + 1)
    for sign, scale in ((1, scales[0]), (-1, scales[1])):
        for k, d in csd_digits(scale):
            final.add(width, k, subtract=sign * d < 0)
    return res + final.cost(family)


def resources(layer, family, *, use_dsp=True) -> Resources:
    """LUTs of the ``PE`` dot engines of the MVU implementing a ``pow2`` layer.

    Parameters
    ----------
    layer : :class:`hwquant.ir.Conv2d` or :class:`hwquant.ir.Linear`
        With its :class:`~hwquant.ir.Fold`; ``encoding`` must be ``"pow2"``.
    family : str
        One of :data:`hwquant.estimate.resources.FAMILIES`.
    use_dsp : bool
        Accepted for the common interface; ignored: there is no multiplication to put in a
        DSP block.

    Returns
    -------
    Resources
        LUTs only (no flip-flop, DSP block or block RAM). Zero only when every weight is zero
        or each PE has a single nonzero weight (pure wiring).

    Raises
    ------
    TypeError
        ``layer`` is not a weight layer.
    ValueError
        The layer's encoding is not ``pow2``, or the family is unknown.
    """
    _check(layer)
    check_family(family)
    if is_unrolled(layer):
        return sum((_unrolled_engine(row.tolist(), layer, family)
                    for row in layer.weight_matrix()), Resources())
    return _folded_engine(layer, family) * layer.fold.pe


def dot_range(layer, weights=None, *, simd) -> tuple:
    """Worst-case ``(lo, hi)`` of one PE's sum over ``simd`` lanes: exact for constant
    ``weights``; for ``None`` over any code words (magnitudes up to ``max(P, N) * 2**emax``),
    as the hardware sizes its engine output."""
    xs = (layer.in_format.lo, layer.in_format.hi)
    if weights is None:
        emax = (1 << exponent_bits(layer.weight_bits)) - 1
        p, n = sign_scales(layer)
        prods = [w * x for w in (p << emax, -(n << emax), 0) for x in xs]
        return simd * min(prods), simd * max(prods)
    return (sum(min(int(w) * x for x in xs) for w in weights),
            sum(max(int(w) * x for x in xs) for w in weights))


def word_bits(layer, simd) -> int:
    """Bits of the weight-ROM word of one PE and ``simd`` lanes: a code per weight."""
    return simd * layer.weight_bits


def cycles(layer) -> int:
    """Cycles per inference of the MVU when never stalled: ``vectors * NF * SF`` (as for
    every kind, :func:`hwquant.plan.mvu_cycles`)."""
    _check(layer)
    return mvu_cycles(layer)
