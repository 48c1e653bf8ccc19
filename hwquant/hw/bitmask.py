"""Dot engine of the ``bitmask`` arithmetic kind: sign-magnitude weights under a per-layer
bit mask, one partial product per *active* magnitude bit, its shift fixed by the mask.

A weight of the layer's mask (:mod:`hwquant.bitmask`, active integer positions
``k_0 < ... < k_{m-2}``) is stored in the weight ROM as ``m`` bits, ``[s | b_{m-2} ... b_0]``
(sign on top, ``b_j`` the bit at position ``k_j``), and::

    y = sum_i (-1)**s_i * sum_j b_ij * (x_i << k_j)

The masked positions build nothing, so the cost scales with ``m``, not with the span ``n``.
A fully unrolled layer never uses this engine's product path: the kind has the
``constant_matrix`` flag, so its MVU builds the shared adder graph of :mod:`hwquant.cmvm`
from the integer weights; given constant weights (bipolar inputs) the engine builds the
fixed kind's constant products.
"""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..bitmask import full_mask, parse
from ..ir import signed_bits_for
from .arith import adder_tree, const_signed
from .streams import lane_shape

__all__ = ["DotEngine", "lane_mask", "encode_weight"]


def lane_mask(weight_bits, pattern):
    """The :class:`hwquant.bitmask.Mask` of a layer (``pattern`` None: every bit active)."""
    return full_mask(weight_bits) if pattern is None else parse(pattern)


def encode_weight(w: int, mask) -> int:
    """ROM code of one integer weight: its active bits packed from the LSB, the sign on top
    (``m`` bits)."""
    mag, code = abs(int(w)), 0
    if mag & ~mask.bitmask:
        raise ValueError(f"Weight {w} is not representable under the bit mask {mask.pattern}")
    for j, k in enumerate(mask.active):
        code |= (mag >> k & 1) << j
    return code | (int(w < 0) << len(mask.active))


class DotEngine(wiring.Component):
    """``y = sum_i W[i] * x[i]`` over ``simd`` lanes for bit-masked weights, combinational.

    Parameters
    ----------
    simd : int
        Number of products.
    x_format : :class:`hwquant.ir.ActFormat`
        Format of the activation lanes.
    weight_bits : int
        The span ``n`` (sign included).
    weights : sequence of int, optional
        Constant integer weights: constant products as in the ``fixed`` kind. Without it,
        ``m``-bit codes arrive on the ``w`` port (folded MVU reading the weight ROM,
        :meth:`encode_weights`).
    pattern : str, optional
        The layer's mask (:class:`hwquant.ir.BitmaskData`); None: all ``n - 1`` magnitude
        bits active.

    Members
    -------
    x : ``In(data.ArrayLayout(lane_shape(x_format), simd))``
    w : ``In(data.ArrayLayout(unsigned(m), simd))``, only when ``weights`` is None
    y : ``Out(signed(out_bits))``, ``out_bits`` from :meth:`value_range`

    Latency 0 (the MVU registers the result). Resources, folded: per lane ``m - 1`` AND-gated
    rows of ``x_bits`` bits at fixed shifts (wiring), their sum, a conditional inversion
    (``-v = ~v + 1``); one adder tree over the ``simd`` lanes plus the count of negative
    lanes (the ``+1``s). No multiplier, so no DSP block.
    """

    def __init__(self, *, simd, x_format, weight_bits, weights=None, pattern=None):
        self._simd, self._x_format, self._weight_bits = simd, x_format, weight_bits
        self._mask = lane_mask(weight_bits, pattern)
        if self._mask.span != weight_bits:
            raise ValueError(f"Bit mask {self._mask.pattern} spans {self._mask.span} bits, "
                             f"the weights {weight_bits}")
        self._weights = None if weights is None else tuple(int(w) for w in weights)
        if self._weights is not None:
            if len(self._weights) != simd:
                raise ValueError(f"Dot engine needs {simd} weights, not {len(self._weights)}")
            for w in self._weights:
                encode_weight(w, self._mask)
        lo, hi = self.value_range(self._weights, simd=simd, x_format=x_format,
                                  weight_bits=weight_bits, pattern=pattern)
        members = {"x": In(data.ArrayLayout(lane_shape(x_format), simd)),
                   "y": Out(signed(signed_bits_for(lo, hi)))}
        if self._weights is None:
            members["w"] = In(data.ArrayLayout(self._mask.bits, simd))
        super().__init__(members)

    @staticmethod
    def options(layer) -> dict:
        """The layer's mask pattern (:class:`hwquant.ir.BitmaskData`)."""
        return {"pattern": layer.kind_data.pattern}

    @staticmethod
    def value_range(weights, *, simd, x_format, weight_bits, pattern=None):
        """Worst-case ``(lo, hi)`` of ``y``: exact for constant weights; for ``None`` over any
        weight of the mask (magnitudes up to the sum of its active bits)."""
        xs = (x_format.lo, x_format.hi)
        if weights is None:
            top = lane_mask(weight_bits, pattern).max_magnitude
            prods = [w * x for w in (top, -top, 0) for x in xs]
            return simd * min(prods), simd * max(prods)
        lo = sum(min(int(w) * x for x in xs) for w in weights)
        hi = sum(max(int(w) * x for x in xs) for w in weights)
        return lo, hi

    @staticmethod
    def encode_weights(weights, weight_bits, *, pattern=None) -> int:
        """Weight-ROM word for ``simd`` weights: :func:`encode_weight` codes of ``m`` bits,
        lane 0 in the LSBs."""
        mask = lane_mask(weight_bits, pattern)
        word = 0
        for i, w in enumerate(weights):
            word |= encode_weight(int(w), mask) << (i * mask.bits)
        return word

    @staticmethod
    def word_bits(simd, weight_bits, *, pattern=None) -> int:
        """``m`` bits per weight: the active magnitude bits and the sign."""
        return simd * lane_mask(weight_bits, pattern).bits

    def elaborate(self, platform):
        m = Module()
        if self._weights is not None:
            terms = [self.x[i] * const_signed(w) for i, w in enumerate(self._weights) if w]
            m.d.comb += self.y.eq(adder_tree(terms))
            return m
        mask, terms, negatives = self._mask, [], []
        for i in range(self._simd):
            code = self.w[i]
            rows = [Mux(code[j], self.x[i] << k, 0) for j, k in enumerate(mask.active)]
            magnitude = adder_tree(rows)
            # One more bit than the magnitude: ~v of a non-negative v is negative.
            width = len(magnitude) + (0 if self._x_format.signed else 1)
            v = Signal(signed(width), name=f"lane{i}")
            m.d.comb += v.eq(magnitude)
            negative = code[len(mask.active)]
            terms.append(Mux(negative, ~v, v))
            negatives.append(negative)
        m.d.comb += self.y.eq(adder_tree(terms + [adder_tree(negatives)]))
        return m
