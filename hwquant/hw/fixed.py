"""Dot engine of the ``fixed`` arithmetic kind: signed integer weights, one multiplier per
product, then an adder tree. The baseline every other kind is compared against."""

from amaranth.hdl import Module, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..ir import signed_bits_for
from ..layout import pack_lanes
from .arith import adder_tree, const_signed
from .streams import lane_shape

__all__ = ["DotEngine"]


class DotEngine(wiring.Component):
    """``y = sum_i w[i] * x[i]`` over ``simd`` lanes, combinational.

    Parameters
    ----------
    simd : int
        Number of products.
    x_format : :class:`hwquant.ir.ActFormat`
        Format of the activation lanes.
    weight_bits : int
        Signed weight width.
    weights : sequence of int, optional
        Constant weights (fully unrolled MVU): each product becomes a constant multiplication
        and zero weights build no logic. Without it, weights arrive on the ``w`` port
        (folded MVU reading a weight ROM).

    Members
    -------
    x : ``In(data.ArrayLayout(lane_shape(x_format), simd))``
    w : ``In(data.ArrayLayout(signed(weight_bits), simd))``, only when ``weights`` is None
    y : ``Out(signed(out_bits))``, ``out_bits`` from the worst-case range of the sum

    Resources: ``simd`` multipliers (constant or ``weight_bits x x_bits``) and ``simd - 1``
    adders. Latency 0 (the MVU registers the result).

    Every dot engine has the same static interface, which the MVU and the cost model use:
    :meth:`options` (the layer's extra constructor keywords, here none), :meth:`value_range`,
    :meth:`encode_weights` and :meth:`word_bits`; each of them takes the options as keywords.
    """

    def __init__(self, *, simd, x_format, weight_bits, weights=None):
        self._simd, self._x_format, self._weight_bits = simd, x_format, weight_bits
        self._weights = None if weights is None else tuple(int(w) for w in weights)
        if self._weights is not None and len(self._weights) != simd:
            raise ValueError(f"Dot engine needs {simd} weights, not {len(self._weights)}")
        lo, hi = self.value_range(self._weights, simd=simd, x_format=x_format,
                                  weight_bits=weight_bits)
        members = {"x": In(data.ArrayLayout(lane_shape(x_format), simd)),
                   "y": Out(signed(signed_bits_for(lo, hi)))}
        if self._weights is None:
            members["w"] = In(data.ArrayLayout(signed(weight_bits), simd))
        super().__init__(members)

    @staticmethod
    def options(layer) -> dict:
        """Extra keyword arguments the engine of ``layer`` needs: none for ``fixed``."""
        return {}

    @staticmethod
    def value_range(weights, *, simd, x_format, weight_bits):
        """Worst-case ``(lo, hi)`` of ``y`` for the given constant weights (or any weights)."""
        xs = (x_format.lo, x_format.hi)
        if weights is None:
            ws = (-(1 << (weight_bits - 1)), (1 << (weight_bits - 1)) - 1)
            prods = [w * x for w in ws for x in xs]
            return simd * min(prods + [0]), simd * max(prods + [0])
        lo = sum(min(w * x for x in xs) for w in weights)
        hi = sum(max(w * x for x in xs) for w in weights)
        return lo, hi

    @staticmethod
    def encode_weights(weights, weight_bits) -> int:
        """Weight-ROM word for ``simd`` weights: two's complement lanes, lane 0 in the LSBs."""
        return pack_lanes(weights, weight_bits)

    @staticmethod
    def word_bits(simd, weight_bits) -> int:
        return simd * weight_bits

    def elaborate(self, platform):
        m = Module()
        if self._weights is not None:
            terms = [self.x[i] * const_signed(w) for i, w in enumerate(self._weights) if w != 0]
        else:
            terms = [self.x[i] * self.w[i] for i in range(self._simd)]
        m.d.comb += self.y.eq(adder_tree(terms))
        return m
