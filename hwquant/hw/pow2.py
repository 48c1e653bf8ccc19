"""Dot engine of the ``pow2`` arithmetic kind: weights that are zero or a signed power of two
(times the layer's sign scales), products by shifting, no multiplier anywhere.

The arithmetic is that of ``docs/arithmetic.md`` ("Weight kinds"): a weight of ``b`` code bits
is the word ``[z | s | e]`` (zero flag, sign, exponent) and::

    y = P * sum_{z=0, s=0} (x << e)  -  N * sum_{z=0, s=1} (x << e)

with ``(P, N)`` the layer's ``sign_scales``. ``P`` and ``N`` multiply the two sums once, as
constant shift-and-add over their canonical signed digits (:func:`~.arith.csd_digits`), so
Yosys sees no ``$mul`` cell and never infers a DSP block.
"""

import numpy as np
from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .. import ir
from ..golden.pow2 import encode, exponent_bits
from ..ir import signed_bits_for
from ..layout import pack_lanes
from .arith import adder_tree, csd_digits
from .streams import lane_shape

__all__ = ["DotEngine"]


def _shift_left(value, amount):
    """``value << amount`` for a variable ``amount``: a logarithmic shifter, one stage of 2:1
    muxes per bit of ``amount`` (stage ``k`` shifts by ``2**k``)."""
    for k in range(len(amount)):
        value = Mux(amount[k], value << (1 << k), value)
    return value


def _signed_sum(plus, minus):
    """``sum(plus) - sum(minus)``: one adder tree per side and one subtraction."""
    if not minus:
        return adder_tree(plus)
    if not plus:
        return -adder_tree(minus)
    return adder_tree(plus) - adder_tree(minus)


def _scaled_difference(pos, neg, sign_scales, offset=0):
    """``P * pos - N * neg + offset`` as shifted copies of ``pos`` and ``neg`` (``None``: an
    empty sum), one per signed digit of ``P`` and ``N``, added and subtracted: no
    multiplier. The constant ``offset`` joins the sums as one more term."""
    plus, minus = [], []
    for value, scale, sign in ((pos, sign_scales[0], 1), (neg, sign_scales[1], -1)):
        if value is None:
            continue
        for shift, digit in csd_digits(scale):
            (plus if digit * sign > 0 else minus).append(value << shift)
    if offset:
        (plus if offset > 0 else minus).append(Const(abs(offset)))
    return _signed_sum(plus, minus)


class DotEngine(wiring.Component):
    """``y = sum_i W[i] * x[i]`` over ``simd`` lanes for ``pow2`` weights, combinational.

    A weight is ``0``, ``+P * 2**e`` or ``-N * 2**e`` with ``0 <= e <= 2**(weight_bits-2) - 1``
    (``weight_bits = 2``: ternary, ``e = 0``); ``(P, N)`` are ``sign_scales``. The positive
    and the negative products are summed apart and scaled by ``P`` and ``N`` at the end (for
    ``(1, 1)``: one subtraction).

    Parameters
    ----------
    simd : int
        Number of products.
    x_format : :class:`hwquant.ir.ActFormat`
        Format of the activation lanes.
    weight_bits : int
        Code width ``b``, 2 to 8.
    weights : sequence of int, optional
        Constant integer weights (fully unrolled MVU). Each product is the activation lane
        shifted by a constant: wiring; a zero weight builds no logic. Without it, code words
        arrive on the ``w`` port (folded MVU reading a weight ROM, :meth:`encode_weights`).
    sign_scales : (int, int)
        ``(P, N)``; ``(1, 1)`` for INQ and symmetric ternary weights.

    Members
    -------
    x : ``In(data.ArrayLayout(lane_shape(x_format), simd))``
    w : ``In(data.ArrayLayout(unsigned(weight_bits), simd))``, only when ``weights`` is None:
        code words ``[z | s | e]``, lane 0 in the LSBs
    y : ``Out(signed(out_bits))``, ``out_bits`` from :meth:`value_range`

    Raises
    ------
    ValueError
        ``weight_bits`` out of 2..8, ``sign_scales`` not two positive integers, the wrong
        number of weights, or a weight that is not a ``weight_bits`` pow2 value.

    Latency 0 (combinational; the MVU registers the result). No multiplier, hence no DSP
    block on any family. Resources:

    * Constant weights: one adder tree over the nonzero positive products, one over the
      negative ones, one subtraction (``nonzero - 1`` adders of about ``x_bits + e`` bits;
      Yosys merges them into one carry-save sum). Signed activations enter in offset binary
      (sign bit inverted, a constant correction), so no term is sign-extended.
    * Code words, ``(P, N) = (1, 1)``: per lane a zero gate on ``x``, a logarithmic shifter of
      ``b - 2`` mux stages (``x_bits + 2**(b-2) - 1`` bits out) and a conditional inversion
      (``-v = ~v + 1``); one adder tree over the ``simd`` inverted lanes plus one term that
      counts the negative lanes (the ``+1``s).
    * Code words, other ``(P, N)``: per lane the zero gate and shifter, then the lane goes to
      the positive or the negative adder tree (``2 * (simd - 1)`` adders).
    * ``(P, N) != (1, 1)``: ``P * pos - N * neg`` adds ``digits(P) + digits(N) - 1`` adders
      (canonical signed digits), once per engine, none per weight.
    """

    def __init__(self, *, simd, x_format, weight_bits, weights=None, sign_scales=(1, 1)):
        lo_b, hi_b = ir.POW2_BITS
        if not lo_b <= weight_bits <= hi_b:
            raise ValueError(f"Pow2 weights need {lo_b}..{hi_b} code bits, not {weight_bits}")
        scales = tuple(sign_scales)
        if len(scales) != 2 or not all(isinstance(v, (int, np.integer)) and v >= 1
                                       for v in scales):
            raise ValueError(f"Sign scales must be two positive integers, not {sign_scales!r}")
        self._simd, self._x_format, self._weight_bits = simd, x_format, weight_bits
        self._sign_scales = tuple(int(v) for v in scales)
        self._codes = None
        if weights is not None:
            weights = tuple(int(w) for w in weights)
            if len(weights) != simd:
                raise ValueError(f"Dot engine needs {simd} weights, not {len(weights)}")
            self._check_weights(weights)
            self._codes = tuple(int(c) for c in encode(weights, weight_bits,
                                                       self._sign_scales))
        lo, hi = self.value_range(weights, simd=simd, x_format=x_format,
                                  weight_bits=weight_bits, sign_scales=self._sign_scales)
        members = {"x": In(data.ArrayLayout(lane_shape(x_format), simd)),
                   "y": Out(signed(signed_bits_for(lo, hi)))}
        if weights is None:
            members["w"] = In(data.ArrayLayout(unsigned(weight_bits), simd))
        super().__init__(members)

    def _check_weights(self, weights):
        p, n = self._sign_scales
        emax = (1 << exponent_bits(self._weight_bits)) - 1
        for w in weights:
            scale = p if w > 0 else n
            mag, rest = divmod(abs(w), scale)
            if w and (rest or mag & (mag - 1) or mag.bit_length() - 1 > emax):
                raise ValueError(f"Weight {w} is not 0, +{p}*2^e or -{n}*2^e with e in "
                                 f"0..{emax} ({self._weight_bits}-bit pow2 code)")

    @staticmethod
    def options(layer) -> dict:
        """Extra keyword arguments the engine of ``layer`` needs: the ``sign_scales`` of its
        kind data (:class:`hwquant.ir.Pow2Data`)."""
        return {"sign_scales": tuple(layer.kind_data.sign_scales)}

    @staticmethod
    def value_range(weights, *, simd, x_format, weight_bits, sign_scales=(1, 1)):
        """Worst-case ``(lo, hi)`` of ``y``: exact for constant weights; for ``None``, over any
        code words (magnitudes up to ``max(P, N) * 2**emax``)."""
        xs = (x_format.lo, x_format.hi)
        if weights is None:
            emax = (1 << exponent_bits(weight_bits)) - 1
            p, n = sign_scales
            prods = [w * x for w in (p << emax, -(n << emax), 0) for x in xs]
            return simd * min(prods), simd * max(prods)
        lo = sum(min(int(w) * x for x in xs) for w in weights)
        hi = sum(max(int(w) * x for x in xs) for w in weights)
        return lo, hi

    @staticmethod
    def encode_weights(weights, weight_bits, *, sign_scales=(1, 1)) -> int:
        """Weight-ROM word for ``simd`` weights: ``[z | s | e]`` codes
        (:func:`hwquant.golden.pow2.encode`), ``weight_bits`` each, lane 0 in the LSBs."""
        return pack_lanes(encode(weights, weight_bits, sign_scales), weight_bits)

    @staticmethod
    def word_bits(simd, weight_bits, *, sign_scales=(1, 1)) -> int:
        return simd * weight_bits

    def elaborate(self, platform):
        m = Module()
        offset = 0
        if self._codes is not None:
            pos, neg, offset = self._constant_sums()
        elif self._sign_scales == (1, 1):
            m.d.comb += self.y.eq(self._negated_lanes_sum(m))
            return m
        else:
            pos, neg = self._gated_sums()
        m.d.comb += self.y.eq(_scaled_difference(pos, neg, self._sign_scales, offset))
        return m

    def _constant_sums(self):
        """Unrolled: ``(pos, neg, offset)``. Every nonzero weight is its lane shifted by a
        constant (wiring). Signed lanes enter in offset binary, ``u = x + 2**(x_bits-1)``
        (the sign bit inverted), so that every term is unsigned and no sum sign-extends its
        terms; ``offset = -2**(x_bits-1) * sum(W)`` restores the signed result."""
        bits, xbits = self._weight_bits, self._x_format.bits
        p, n = self._sign_scales
        terms, offset = {0: [], 1: []}, 0
        for i, code in enumerate(self._codes):
            if code >> (bits - 1) & 1:
                continue  # zero weight: no logic
            sign, e = code >> (bits - 2) & 1, code & ((1 << exponent_bits(bits)) - 1)
            lane = self.x[i]
            if self._x_format.signed:
                lane = lane.as_unsigned() ^ (1 << (xbits - 1))
                offset -= (-n if sign else p) << (e + xbits - 1)
            terms[sign].append(lane << e)
        pos, neg = (adder_tree(t) if t else None for t in (terms[0], terms[1]))
        return pos, neg, offset

    def _lane(self, i):
        """``(x[i] << e, s)`` of lane ``i``; the shifted value is 0 when ``z`` (the zero gate
        sits on ``x``, before the shifter, where it is narrowest), whatever ``s`` says."""
        bits = self._weight_bits
        code = self.w[i]
        gated = Mux(code[bits - 1], 0, self.x[i])
        return _shift_left(gated, code[:exponent_bits(bits)]), code[bits - 2]

    def _negated_lanes_sum(self, m):
        """Code words, ``(P, N) = (1, 1)``: ``sum(s ? ~v + 1 : v)`` as ``sum(s ? ~v : v)``
        plus the count of negative lanes (a zero lane has ``v = 0``, and ``~0 + 1 = 0``)."""
        terms, negatives = [], []
        for i in range(self._simd):
            shifted, negative = self._lane(i)
            # One more bit than the shifted lane: ~v of an unsigned v is negative.
            width = len(shifted) + (0 if self._x_format.signed else 1)
            v = Signal(signed(width), name=f"lane{i}")
            m.d.comb += v.eq(shifted)
            terms.append(Mux(negative, ~v, v))
            negatives.append(negative)
        return adder_tree(terms + [adder_tree(negatives)])

    def _gated_sums(self):
        """Code words, other ``(P, N)``: each shifted lane goes to the positive or the
        negative adder tree."""
        pos, neg = [], []
        for i in range(self._simd):
            shifted, negative = self._lane(i)
            pos.append(Mux(negative, 0, shifted))
            neg.append(Mux(negative, shifted, 0))
        return adder_tree(pos), adder_tree(neg)
