"""The constant-matrix engine: ``y = W @ x`` for constant integer ``W`` as one shared adder graph.

:class:`ConstantMatrix` is the hardware of :class:`hwquant.cmvm.AdderGraph` (signed-digit
recoding and common-subexpression elimination across the whole matrix): one adder or
subtractor per graph node, each exactly as wide as its node's range, the low bits below a
shifted operand's shift emitted as wires. It is what a fully unrolled layer of a kind with
constant integer weights (``fixed``, ``pow2`` incl. the TTQ sign scales) builds instead of one
``x * c`` product per weight, through :class:`hwquant.hw.engine.LaneEngine`.

Signature: ``x: In(ArrayLayout(x_shape, n_in))``, ``y: Out(ArrayLayout(signed(y_bits),
n_out))``. Combinational (latency 0: the MVU registers the engine's sums); depth
:attr:`hwquant.cmvm.AdderGraph.depth` adders. Resources: :attr:`AdderGraph.adder_bits` LUTs
(one per adder bit that needs logic, with its carry), no multipliers, no DSPs.
"""

from amaranth.hdl import Cat, Module, Shape, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["ConstantMatrix", "signal_shape"]


def signal_shape(lo: int, hi: int) -> Shape:
    """The smallest Amaranth shape holding ``lo..hi`` (unsigned when ``lo >= 0``)."""
    return Shape.cast(range(int(lo), int(hi) + 1)) if hi > lo else Shape.cast(
        range(int(lo), int(lo) + 2))


class ConstantMatrix(wiring.Component):
    """``y[j] = sum_i W[j, i] * x[i]`` as the adder graph ``graph`` (see the module docstring).

    Parameters
    ----------
    graph : :class:`hwquant.cmvm.AdderGraph`
    x_shape : Amaranth shape of one input lane (its range must lie in ``graph.input_ranges``)
    y_bits : width of every output lane (signed); at least each output's range
    """

    def __init__(self, graph, x_shape, y_bits):
        self._graph = graph
        need = max([signal_shape(lo, hi).width + (0 if lo < 0 else 1)
                    for lo, hi in graph.output_ranges] + [2])
        if y_bits < need:
            self._MustUse__silence = True  # never elaborated: no "unused" warning
            raise ValueError(f"Constant-matrix outputs need {need} bits, not {y_bits}")
        super().__init__({"x": In(data.ArrayLayout(x_shape, graph.n_inputs)),
                          "y": Out(data.ArrayLayout(signed(y_bits), graph.n_outputs))})

    @property
    def graph(self):
        return self._graph

    def elaborate(self, platform):
        m = Module()
        g = self._graph
        sig = [self.x[i] for i in range(g.n_inputs)]
        for k, node in enumerate(g.nodes):
            out = Signal(signal_shape(node.lo, node.hi), name=f"s{k}")
            a, b = sig[node.a], sig[node.b]
            if node.free_bits:
                # u + (+-o << d) == Cat(u[:f], (u >> f) +- (o << (d - f))), f <= width(u)
                f = node.free_bits
                high = (a >> f) + (-(b << (node.shift_b - f)) if node.neg_b
                                   else b << (node.shift_b - f))
                hi_part = Signal(signed(out.shape().width - f + 1), name=f"s{k}_hi")
                m.d.comb += [hi_part.eq(high), out.eq(Cat(a[:f], hi_part))]
            else:
                ta = a << node.shift_a
                tb = b << node.shift_b
                m.d.comb += out.eq((-ta if node.neg_a else ta) + (-tb if node.neg_b else tb))
            sig.append(out)
        for j, (s, shift, neg) in enumerate(g.outputs):
            if s < 0:
                m.d.comb += self.y[j].eq(0)
                continue
            v = sig[s] << shift
            m.d.comb += self.y[j].eq(-v if neg else v)
        return m
