"""Handshake building blocks shared by the streaming components."""

__all__ = ["register_stage"]


def register_stage(m, i_stream, o_stream):
    """Handshake of one pipeline register from ``i_stream`` to ``o_stream``.

    ``o_stream.valid`` is a register; ``i_stream.ready = ~o_stream.valid | o_stream.ready``
    (the register is empty, or it is emptied this cycle), so a beat per cycle passes while
    the consumer is ready and none is lost when it is not. Latency 1 cycle, capacity 1 beat.

    Returns the accept condition (``i_stream.valid & i_stream.ready``); the caller loads
    ``o_stream.payload`` in ``m.d.sync`` under it.
    """
    accept = i_stream.valid & i_stream.ready
    m.d.comb += i_stream.ready.eq(~o_stream.valid | o_stream.ready)
    with m.If(accept):
        m.d.sync += o_stream.valid.eq(1)
    with m.Elif(o_stream.ready):
        m.d.sync += o_stream.valid.eq(0)
    return accept
