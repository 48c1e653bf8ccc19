"""Pooling reducers: a window stream in (from :class:`~hwquant.hw.window.SlidingWindow`),
one pixel per window out. One register stage, one window per cycle."""

from amaranth.hdl import Module, Mux
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .arith import adder_tree, rshift_rhu, saturate
from .streams import activation_signature

__all__ = ["MaxReduce", "AvgReduce", "register_stage"]


def register_stage(m, i_stream, o_stream):
    """Handshake of one pipeline register from ``i_stream`` to ``o_stream``: full throughput,
    backpressure respected. Returns the accept condition; the caller loads
    ``o_stream.payload`` in ``m.d.sync`` under it."""
    accept = i_stream.valid & i_stream.ready
    m.d.comb += i_stream.ready.eq(~o_stream.valid | o_stream.ready)
    with m.If(accept):
        m.d.sync += o_stream.valid.eq(1)
    with m.Elif(o_stream.ready):
        m.d.sync += o_stream.valid.eq(0)
    return accept


class MaxReduce(wiring.Component):
    """Per-channel maximum over the ``window`` positions of each beat.

    Members
    -------
    i_stream : ``In(activation_signature(fmt, window*channels))`` (window-lane order)
    o_stream : ``Out(activation_signature(fmt, channels))``

    Resources: ``channels * (window - 1)`` comparator+mux pairs; latency 1 cycle.
    """

    def __init__(self, channels, window, fmt):
        self._channels, self._window = channels, window
        super().__init__({
            "i_stream": In(activation_signature(fmt, window * channels)),
            "o_stream": Out(activation_signature(fmt, channels)),
        })

    def elaborate(self, platform):
        m = Module()
        x, c = self.i_stream.payload, self._channels
        out = []
        for ch in range(c):
            best = x[ch]
            for k in range(1, self._window):
                v = x[k * c + ch]
                best = Mux(v > best, v, best)
            out.append(best)
        payload = self.o_stream.payload
        with m.If(register_stage(m, self.i_stream, self.o_stream)):
            m.d.sync += [payload[ch].eq(out[ch]) for ch in range(c)]
        return m


class AvgReduce(wiring.Component):
    """Per-channel window sum, then ``sat(rshift_rhu(sum * multiplier, shift), lo, hi)``.

    Members
    -------
    i_stream : ``In(activation_signature(in_format, window*channels))``
    o_stream : ``Out(activation_signature(out_format, channels))``

    Resources: ``channels`` adder trees of ``window`` terms and epilogues; latency 1 cycle.
    """

    def __init__(self, channels, window, in_format, out_format, requant):
        self._channels, self._window, self._requant = channels, window, requant
        super().__init__({
            "i_stream": In(activation_signature(in_format, window * channels)),
            "o_stream": Out(activation_signature(out_format, channels)),
        })

    def elaborate(self, platform):
        m = Module()
        x, c, rq = self.i_stream.payload, self._channels, self._requant
        mult = int(rq.multiplier[0])
        payload = self.o_stream.payload
        with m.If(register_stage(m, self.i_stream, self.o_stream)):
            for ch in range(c):
                s = adder_tree([x[k * c + ch] for k in range(self._window)])
                if mult != 1:
                    s = s * mult
                m.d.sync += payload[ch].eq(saturate(rshift_rhu(s, rq.shift), rq.lo, rq.hi))
        return m
