"""Stream fork: every beat of one stream delivered to several consumers."""

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .streams import activation_signature

__all__ = ["Fork"]


class Fork(wiring.Component):
    """Copies every beat of ``i_stream`` to each of ``n`` outputs.

    Each beat is delivered exactly once to every output; output ``k`` keeps its ``valid`` high
    until it takes the beat, so the outputs may take it in different cycles. The next beat is
    accepted once every output has taken the current one (or takes it in the same cycle):
    the branches advance in lockstep, one beat apart at most, and a FIFO on a branch is what
    lets it run further ahead or behind.

    Timing: ``o_stream<k>.valid`` is a register (the beat's pending flag for output ``k``).
    ``i_stream.ready`` is true when, for every output, the flag is clear or that output is
    ready this cycle. Latency 1 cycle; one beat per cycle when all outputs are ready.
    ``n = 1`` is a one-beat pipeline register. :class:`hwquant.schedule.streams.ForkTiming`
    is this contract.

    Resources: one beat register (``lanes * bits`` flip-flops) shared by all outputs, ``n``
    flags, an ``n``-input AND for ``ready``.

    Parameters
    ----------
    fmt : :class:`hwquant.ir.ActFormat`
        Format of every lane.
    lanes : int
        Lanes per beat.
    n : int
        Number of outputs.

    Members
    -------
    i_stream : ``In(activation_signature(fmt, lanes))``
    o_stream0 .. o_stream{n-1} : ``Out(activation_signature(fmt, lanes))``

    Raises
    ------
    ValueError
        If ``lanes`` or ``n`` is not a positive integer.
    """

    def __init__(self, fmt, lanes, n):
        for what, v in (("Fork lanes", lanes), ("Fork outputs", n)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{what} must be a positive integer, not {v!r}")
        self._n = n
        sig = activation_signature(fmt, lanes)
        super().__init__({"i_stream": In(sig),
                          **{f"o_stream{k}": Out(sig) for k in range(n)}})

    @property
    def n(self) -> int:
        return self._n

    def o_streams(self) -> list:
        """The output stream interfaces, ``o_stream0`` first."""
        return [getattr(self, f"o_stream{k}") for k in range(self._n)]

    def elaborate(self, platform):
        m = Module()
        i_s, outs = self.i_stream, self.o_streams()
        data = Signal(len(i_s.payload.as_value()), name="data")
        pending = [Signal(name=f"pending{k}") for k in range(self._n)]
        ready = 1
        for o, p in zip(outs, pending):
            m.d.comb += [o.valid.eq(p), o.payload.eq(data)]
            ready = ready & (~p | o.ready)
        m.d.comb += i_s.ready.eq(ready)
        with m.If(i_s.valid & i_s.ready):
            m.d.sync += data.eq(i_s.payload.as_value())
            m.d.sync += [p.eq(1) for p in pending]
        with m.Else():
            for o, p in zip(outs, pending):
                with m.If(o.ready):
                    m.d.sync += p.eq(0)
        return m
