"""Stream FIFO: exactly ``depth`` beats between two streams, one in and one out per cycle."""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from .streams import activation_signature

__all__ = ["StreamFifo", "REGISTER_DEPTH"]

#: Deepest FIFO built from registers; deeper ones keep all but the head beat in a memory.
REGISTER_DEPTH = 4


def _wrap_increment(ptr, size):
    """``(ptr + 1) % size`` for a pointer in ``range(size)`` (any size, not only powers of 2)."""
    return Mux(ptr == size - 1, 0, ptr + 1)


class StreamFifo(wiring.Component):
    """A first-in first-out buffer of exactly ``depth`` beats between two streams.

    Timing: let ``n`` be the number of beats held (accepted, not yet delivered).
    ``o_stream.valid`` is ``n > 0`` and comes from a register. ``i_stream.ready`` is
    ``n < depth``, or (unless ``registered_ready``) a beat leaves this cycle
    (``o_stream.valid & o_stream.ready``): a full FIFO whose consumer is ready accepts a beat
    in the same cycle, so ``depth = 1`` is a full-throughput pipeline register. With
    ``registered_ready`` the input's ready is ``n < depth`` alone, a function of registers:
    the FIFO cuts the combinational ready chain between its producer and its consumer (what
    the dataflow network's FIFOs do, for timing), and full throughput needs ``depth >= 2``
    (a ``depth = 1`` FIFO then passes a beat every other cycle). Latency 1 cycle: a beat
    accepted at cycle ``t`` is
    offered from ``t + 1``, also when the FIFO is deep. One beat in and one out per cycle in
    any combination; the capacity is exactly ``depth`` (no slot is lost to the
    implementation). :class:`hwquant.schedule.streams.StreamFifoTiming` is this contract.

    Resources: for ``depth <= REGISTER_DEPTH``, a shift register of ``depth`` beats
    (``lanes * bits`` bits each; the head is the output register) and ``depth`` valid flags.
    Deeper: a ``depth``-entry memory with a synchronous read port (its data register is the
    output register, so synthesis can map it to block RAM), one bypass register of a beat
    (for a beat arriving at an empty FIFO), a 2:1 output mux, two pointers and a level
    counter with two flags (the memory empty, full). One memory entry always stays unused: it keeps the read and the write address
    distinct, so the design never relies on read-during-write behaviour.

    Parameters
    ----------
    fmt : :class:`hwquant.ir.ActFormat`
        Format of every lane.
    lanes : int
        Lanes per beat.
    depth : int
        Capacity in beats, at least 1.
    registered_ready : bool
        ``i_stream.ready`` from the FIFO's state only (``n < depth``), not from
        ``o_stream.ready``.

    Members
    -------
    i_stream : ``In(activation_signature(fmt, lanes))``
    o_stream : ``Out(activation_signature(fmt, lanes))``

    Raises
    ------
    ValueError
        If ``lanes`` or ``depth`` is not a positive integer.
    """

    def __init__(self, fmt, lanes, depth, *, registered_ready=False):
        if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
            raise ValueError(f"FIFO depth must be a positive integer, not {depth!r}")
        if not isinstance(lanes, int) or isinstance(lanes, bool) or lanes < 1:
            raise ValueError(f"FIFO lanes must be a positive integer, not {lanes!r}")
        self._fmt, self._lanes, self._depth = fmt, lanes, depth
        self._registered_ready = bool(registered_ready)
        super().__init__({
            "i_stream": In(activation_signature(fmt, lanes)),
            "o_stream": Out(activation_signature(fmt, lanes)),
        })

    @property
    def depth(self) -> int:
        return self._depth

    @property
    def lanes(self) -> int:
        return self._lanes

    @property
    def registered_ready(self) -> bool:
        return self._registered_ready

    def elaborate(self, platform):
        m = Module()
        if self._depth <= REGISTER_DEPTH:
            self._shift_register(m)
        else:
            self._ring_buffer(m)
        return m

    def _shift_register(self, m):
        i_s, o_s, d = self.i_stream, self.o_stream, self._depth
        width = len(i_s.payload.as_value())
        data = [Signal(width, name=f"data{k}") for k in range(d)]
        full = [Signal(name=f"full{k}") for k in range(d)]
        take = o_s.valid & o_s.ready
        m.d.comb += [
            o_s.valid.eq(full[0]),
            o_s.payload.eq(data[0]),
            i_s.ready.eq(~full[d - 1] if self._registered_ready else ~full[d - 1] | take),
        ]
        accept = i_s.valid & i_s.ready
        # After this cycle's output shifts the queue down, the beat goes to the first free slot.
        shifted = [Mux(take, full[k + 1], full[k]) if k + 1 < d else full[k] & ~take
                   for k in range(d)]
        for k in range(d):
            write = accept & ~shifted[k]
            if k:
                write &= shifted[k - 1]
            m.d.sync += full[k].eq(shifted[k] | write)
            with m.If(write):
                m.d.sync += data[k].eq(i_s.payload.as_value())
            if k + 1 < d:
                with m.Elif(take):
                    m.d.sync += data[k].eq(data[k + 1])

    def _ring_buffer(self, m):
        i_s, o_s, d = self.i_stream, self.o_stream, self._depth
        width = len(i_s.payload.as_value())
        m.submodules.storage = mem = memory.Memory(shape=width, depth=d, init=[])
        wp = mem.write_port()
        rp = mem.read_port(domain="sync")
        held = Signal(range(d), name="held")  # beats in the memory (the head is not counted)
        rptr = Signal(range(d), name="rptr")
        wptr = Signal(range(d), name="wptr")
        bypass = Signal(width, name="bypass")
        from_mem = Signal(name="from_mem")
        o_valid = Signal(name="o_valid")

        # held == 0 and held == d - 1 as registers (held moves by one beat a cycle at most):
        # the handshake is a few gates of registers, no comparison of the level.
        mem_empty = Signal(init=1, name="mem_empty")
        mem_full = Signal(name="mem_full")

        take = o_valid & o_s.ready
        head_free = ~o_valid | o_s.ready
        m.d.comb += [
            o_s.valid.eq(o_valid),
            o_s.payload.eq(Mux(from_mem, rp.data, bypass)),
            i_s.ready.eq(~o_valid | ~mem_full if self._registered_ready
                         else ~o_valid | ~mem_full | take),
        ]
        accept = i_s.valid & i_s.ready
        load_mem = head_free & ~mem_empty
        load_bypass = head_free & mem_empty & accept
        write = accept & ~load_bypass
        inc, dec = write & ~load_mem, load_mem & ~write
        with m.If(inc):
            m.d.sync += [mem_empty.eq(0), mem_full.eq(held == d - 2)]
        with m.Elif(dec):
            m.d.sync += [mem_empty.eq(held == 1), mem_full.eq(0)]
        m.d.comb += [
            rp.addr.eq(rptr), rp.en.eq(load_mem),
            wp.addr.eq(wptr), wp.data.eq(i_s.payload.as_value()), wp.en.eq(write),
        ]
        with m.If(head_free):
            m.d.sync += o_valid.eq(load_mem | load_bypass)
        with m.If(load_mem):
            m.d.sync += [rptr.eq(_wrap_increment(rptr, d)), from_mem.eq(1)]
        with m.If(load_bypass):
            m.d.sync += [bypass.eq(i_s.payload.as_value()), from_mem.eq(0)]
        with m.If(write):
            m.d.sync += wptr.eq(_wrap_increment(wptr, d))
        with m.If(write & ~load_mem):
            m.d.sync += held.eq(held + 1)
        with m.Elif(load_mem & ~write):
            m.d.sync += held.eq(held - 1)
