"""Stream FIFO: ``amaranth.lib.fifo.SyncFIFOBuffered`` behind stream interfaces."""

from amaranth.hdl import Module
from amaranth.lib import fifo, wiring
from amaranth.lib.wiring import In, Out

from .streams import activation_signature

__all__ = ["StreamFifo"]


class StreamFifo(wiring.Component):
    """A first-in first-out buffer of ``depth`` beats between two streams.

    Members
    -------
    i_stream : ``In(activation_signature(fmt, lanes))``
    o_stream : ``Out(activation_signature(fmt, lanes))``

    Latency 1 cycle (buffered output); one beat per cycle in and out. Resources: a
    ``depth x lanes*bits`` memory (block RAM when deep enough) plus an output register.
    """

    def __init__(self, fmt, lanes, depth):
        if depth < 1:
            raise ValueError(f"FIFO depth must be a positive integer, not {depth!r}")
        self._depth = depth
        super().__init__({
            "i_stream": In(activation_signature(fmt, lanes)),
            "o_stream": Out(activation_signature(fmt, lanes)),
        })

    def elaborate(self, platform):
        m = Module()
        width = len(self.i_stream.payload.as_value())
        m.submodules.queue = q = fifo.SyncFIFOBuffered(width=width, depth=self._depth)
        m.d.comb += [
            q.w_data.eq(self.i_stream.payload.as_value()),
            q.w_en.eq(self.i_stream.valid),
            self.i_stream.ready.eq(q.w_rdy),
            self.o_stream.payload.eq(q.r_data),
            self.o_stream.valid.eq(q.r_rdy),
            q.r_en.eq(self.o_stream.ready),
        ]
        return m
