"""Residual add: two streams joined beat by beat, aligned, summed and requantized."""

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .. import ir
from .arith import rshift_rhu, saturate
from .streams import activation_signature

__all__ = ["AddJoin"]


class AddJoin(wiring.Component):
    """Residual add of an :class:`hwquant.ir.Add` layer, ``lanes`` channels per beat.

    Per lane, with ``f = max(f_a, f_b)``: ``Y = sat(rshift_rhu((A << (f - f_a)) +
    (B << (f - f_b)), f - f_out), lo, hi)``, where ``lo`` is 0 with a fused ReLU
    (``docs/arithmetic.md``, *Add*). Both inputs must stream the same tensor in the same
    folded order; a beat of each is consumed together.

    Timing: a pair is taken when both inputs are valid and the output register is empty or
    emptied this cycle (``a_stream.ready`` is ``b_stream.valid`` and that condition, and vice
    versa), so neither input moves alone. Latency 1 cycle, one beat pair per cycle.
    ``o_stream.valid`` is a register. :class:`hwquant.schedule.streams.AddJoinTiming` is this
    contract.

    Resources: per lane, two shifts (wiring), one adder of ``max(bits_a + f - f_a,
    bits_b + f - f_b) + 1`` bits, the rounding adder when ``f > f_out``, saturation
    comparators; an output register of ``lanes * out_bits`` bits.

    Parameters
    ----------
    layer : :class:`hwquant.ir.Add`
    lanes : int
        Channels per beat on all three streams; must divide the channel count.

    Members
    -------
    a_stream : ``In(activation_signature(layer.in_formats[0], lanes))``
        The operand from ``layer.inputs[0]``.
    b_stream : ``In(activation_signature(layer.in_formats[1], lanes))``
        The operand from ``layer.inputs[1]``.
    o_stream : ``Out(activation_signature(layer.out_format, lanes))``

    Raises
    ------
    TypeError
        If ``layer`` is not an :class:`hwquant.ir.Add`.
    ValueError
        If ``lanes`` does not divide the layer's channel count.
    """

    def __init__(self, layer, lanes):
        if not isinstance(layer, ir.Add):
            raise TypeError(f"Residual add needs an ir.Add layer, not {layer!r}")
        channels = layer.in_shape[0]
        if not isinstance(lanes, int) or isinstance(lanes, bool) or lanes < 1 \
                or channels % lanes:
            raise ValueError(f"Layer '{layer.name}': lanes must divide the {channels} "
                             f"channels, not {lanes!r}")
        self._layer, self._lanes = layer, lanes
        fa, fb = layer.in_formats
        super().__init__({
            "a_stream": In(activation_signature(fa, lanes)),
            "b_stream": In(activation_signature(fb, lanes)),
            "o_stream": Out(activation_signature(layer.out_format, lanes)),
        })

    @property
    def layer(self):
        return self._layer

    @property
    def lanes(self) -> int:
        return self._lanes

    def elaborate(self, platform):
        m = Module()
        layer, a_s, b_s, o_s = self._layer, self.a_stream, self.b_stream, self.o_stream
        fa, fb = (f.frac for f in layer.in_formats)
        f = layer.fine_frac
        m.d.comb += [a_s.ready.eq(b_s.valid & (~o_s.valid | o_s.ready)),
                     b_s.ready.eq(a_s.valid & (~o_s.valid | o_s.ready))]
        accept = a_s.valid & a_s.ready

        with m.If(accept):
            m.d.sync += o_s.valid.eq(1)
        with m.Elif(o_s.ready):
            m.d.sync += o_s.valid.eq(0)
        with m.If(accept):
            for k in range(self._lanes):
                s = (a_s.payload[k] << (f - fa)) + (b_s.payload[k] << (f - fb))
                y = saturate(rshift_rhu(s, f - layer.out_format.frac), layer.lo,
                             layer.out_format.hi)
                m.d.sync += o_s.payload[k].eq(y)
        return m
