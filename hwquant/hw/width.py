"""Stream width converter: the same element sequence, re-chunked into beats of another size."""

from math import lcm

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .streams import activation_signature

__all__ = ["StreamWidth"]


class StreamWidth(wiring.Component):
    """Re-chunks a stream of elements from ``in_lanes`` to ``out_lanes`` per beat.

    The element sequence is unchanged (lane 0 first within a beat, beats in order). With
    ``L = lcm(in_lanes, out_lanes)``, ``k_in = L / in_lanes`` input beats are gathered into a
    word of ``L`` elements, which leaves as ``k_out = L / out_lanes`` output beats. A stream
    must carry a whole number of words (the planner only converts streams whose beat count
    per tensor allows it); a partial word stays inside.

    Timing: the first ``k_in - 1`` beats of a word are accepted whenever they arrive (they go
    to the gather register); the last one is accepted when the output register is empty or
    hands out the word's last beat in the same cycle, and then the whole word is offered from
    the next cycle. So the converter runs at full rate on the slower side (one input beat per
    cycle when ``in_lanes < out_lanes``, one output beat per cycle otherwise), without
    bubbles between words. Latency 1 cycle from the word's last input beat to its first
    output beat. ``o_stream.valid`` is a register. Equal lane counts are legal and give a
    one-beat pipeline register. :class:`hwquant.schedule.streams.StreamWidthTiming` is this
    contract.

    A pure gather (``out_lanes`` a multiple of ``in_lanes``, ``k_out = 1``) keeps one register
    of ``out_lanes`` elements instead: input beats shift into it, the word is offered once
    ``k_in`` beats are in, and the first beat of the next word is accepted only when the
    register is not full or the word leaves in the same cycle (still one input beat per
    cycle when the consumer keeps up).

    Resources: a gather shift register of ``(k_in - 1) * in_lanes`` elements (none when
    ``out_lanes`` divides ``in_lanes``, none beyond the output register for a pure gather), an
    output shift register of ``L`` elements, counters of ``k_in`` and ``k_out`` states, no
    adders on the data path.

    Parameters
    ----------
    fmt : :class:`hwquant.ir.ActFormat`
        Format of every element.
    in_lanes, out_lanes : int
        Elements per input beat and per output beat.

    Members
    -------
    i_stream : ``In(activation_signature(fmt, in_lanes))``
    o_stream : ``Out(activation_signature(fmt, out_lanes))``

    Raises
    ------
    ValueError
        If a lane count is not a positive integer.
    """

    def __init__(self, fmt, in_lanes, out_lanes):
        for what, v in (("Input", in_lanes), ("Output", out_lanes)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{what} lanes of a width converter must be a positive "
                                 f"integer, not {v!r}")
        self._in_lanes, self._out_lanes = in_lanes, out_lanes
        n = lcm(in_lanes, out_lanes)
        self._k_in, self._k_out = n // in_lanes, n // out_lanes
        super().__init__({
            "i_stream": In(activation_signature(fmt, in_lanes)),
            "o_stream": Out(activation_signature(fmt, out_lanes)),
        })

    @property
    def in_lanes(self) -> int:
        return self._in_lanes

    @property
    def out_lanes(self) -> int:
        return self._out_lanes

    def elaborate(self, platform):
        m = Module()
        i_s, o_s = self.i_stream, self.o_stream
        k_in, k_out = self._k_in, self._k_out
        x = i_s.payload.as_value()
        w_in, w_out = len(x), len(o_s.payload.as_value())

        if k_in > 1 and k_out == 1:
            return self._elaborate_gather(m, x, w_in)
        word = Signal(w_out * k_out, name="word")
        valid = Signal(name="o_valid")
        m.d.comb += [o_s.valid.eq(valid), o_s.payload.eq(word[:w_out])]
        take = valid & o_s.ready

        if k_out > 1:
            sent = Signal(range(k_out), name="sent")  # beats of the word already taken
            last_out = sent == k_out - 1
        else:
            last_out = 1
        word_free = ~valid | (take & last_out)

        if k_in > 1:
            gathered = Signal(range(k_in), name="gathered")
            buffer = Signal(w_in * (k_in - 1), name="gather")
            last_in = gathered == k_in - 1
            m.d.comb += i_s.ready.eq(~last_in | word_free)
            new_word = Cat(buffer, x)
        else:
            last_in = 1
            m.d.comb += i_s.ready.eq(word_free)
            new_word = x
        accept = i_s.valid & i_s.ready
        load = accept & last_in

        if k_in > 1:
            with m.If(accept):
                with m.If(last_in):
                    m.d.sync += gathered.eq(0)
                with m.Else():
                    m.d.sync += gathered.eq(gathered + 1)
                    # Shift in at the top: after k_in - 1 beats the oldest is in the LSBs.
                    m.d.sync += buffer.eq(Cat(buffer[w_in:], x) if k_in > 2 else x)

        with m.If(load):
            m.d.sync += [word.eq(new_word), valid.eq(1)]
            if k_out > 1:
                m.d.sync += sent.eq(0)
        with m.Elif(take):
            if k_out > 1:
                with m.If(last_out):
                    m.d.sync += valid.eq(0)
                with m.Else():
                    m.d.sync += [sent.eq(sent + 1), word.eq(word[w_out:])]
            else:
                m.d.sync += valid.eq(0)
        return m

    def _elaborate_gather(self, m, x, w_in):
        """Pure gather: one register, beats shifted in at the top (after ``k_in`` beats the
        word's first beat is in the LSBs)."""
        i_s, o_s, k_in = self.i_stream, self.o_stream, self._k_in
        word = Signal(w_in * k_in, name="word")
        held = Signal(range(k_in + 1), name="held")  # beats of the word in the register
        full = Signal()
        m.d.comb += [full.eq(held == k_in), o_s.valid.eq(full), o_s.payload.eq(word)]
        take = full & o_s.ready
        m.d.comb += i_s.ready.eq(~full | o_s.ready)
        accept = i_s.valid & i_s.ready
        with m.If(accept):
            m.d.sync += word.eq(Cat(word[w_in:], x))
        with m.If(take):
            m.d.sync += held.eq(accept)
        with m.Elif(accept):
            m.d.sync += held.eq(held + 1)
        return m
