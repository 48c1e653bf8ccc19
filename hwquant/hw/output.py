"""Network output stage: all the logits of an inference in one beat, plus the index of the
largest one."""

from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .handshake import register_stage
from .streams import activation_signature, lane_shape

__all__ = ["ArgMax", "output_layout"]


def output_layout(fmt, classes: int) -> data.StructLayout:
    """``{cls, logits}``: the class index in the LSBs, then the logits lanes."""
    return data.StructLayout({
        "cls": unsigned(max(1, (classes - 1).bit_length())),
        "logits": data.ArrayLayout(lane_shape(fmt), classes),
    })


class ArgMax(wiring.Component):
    """Gathers the ``classes`` logits of an inference and adds the index of the largest
    (ties go to the lowest index, ``docs/arithmetic.md``, *Output*).

    The logits arrive as ``classes / lanes`` beats of ``lanes`` (logit ``j * lanes + l`` in
    lane ``l`` of beat ``j``); one output beat per inference carries them all with the class.
    A running maximum is kept over the beats, so no comparison spans more than ``lanes``
    logits and the running value.

    Timing: as a reducer over a window of ``beats = classes / lanes`` beats: the first
    ``beats - 1`` are accepted whenever they arrive, the last one when the output register is
    empty or emptied this cycle; the result is offered from the next cycle (latency 1).
    ``o_stream.valid`` is a register. :class:`hwquant.schedule.streams.ArgMaxTiming` is this
    contract.

    Resources: a chain of ``lanes - 1`` comparators and muxes within a beat, one more against
    the running maximum (value and index registers); a gather shift register of
    ``(beats - 1) * lanes`` logits; an output register of ``classes`` logits plus the index.

    Parameters
    ----------
    fmt : :class:`hwquant.ir.ActFormat`
        Format of the logits.
    classes : int
        Number of logits.
    lanes : int, optional
        Logits per input beat; must divide ``classes``. Default: all of them (one beat).

    Members
    -------
    i_stream : ``In(activation_signature(fmt, lanes))``
    o_stream : ``Out(stream.Signature(output_layout(fmt, classes)))``

    Raises
    ------
    ValueError
        If ``classes`` is not a positive integer or ``lanes`` does not divide it.
    """

    def __init__(self, fmt, classes, lanes=None):
        if not isinstance(classes, int) or isinstance(classes, bool) or classes < 1:
            raise ValueError(f"Class count must be a positive integer, not {classes!r}")
        lanes = classes if lanes is None else lanes
        if not isinstance(lanes, int) or isinstance(lanes, bool) or lanes < 1 \
                or classes % lanes:
            raise ValueError(f"Argmax lanes must divide the {classes} classes, not {lanes!r}")
        self._fmt, self._classes, self._lanes = fmt, classes, lanes
        super().__init__({
            "i_stream": In(activation_signature(fmt, lanes)),
            "o_stream": Out(stream.Signature(output_layout(fmt, classes))),
        })

    @property
    def classes(self) -> int:
        return self._classes

    @property
    def lanes(self) -> int:
        return self._lanes

    def elaborate(self, platform):
        m = Module()
        i_s, o_s = self.i_stream, self.o_stream
        lanes, beats = self._lanes, self._classes // self._lanes
        x = i_s.payload
        # Best lane of this beat; a later lane wins only if strictly larger.
        local_v, local_i = x[0], 0
        for k in range(1, lanes):
            better = x[k] > local_v
            local_v, local_i = Mux(better, x[k], local_v), Mux(better, k, local_i)
        cls, logits = o_s.payload.cls, o_s.payload.logits.as_value()

        if beats == 1:
            with m.If(register_stage(m, i_s, o_s)):
                m.d.sync += [cls.eq(local_i), logits.eq(x.as_value())]
            return m

        count = Signal(range(beats), name="count")
        # The running maximum and the gather register have no reset (the first beat loads
        # them): on iCE40 a synchronous reset sits in the flip-flop's enable, behind the
        # comparison.
        best_v = Signal(lane_shape(self._fmt), name="best_v", reset_less=True)
        best_i = Signal(len(cls), name="best_i", reset_less=True)
        width = len(x.as_value())
        gather = Signal(width * (beats - 1), name="gather", reset_less=True)
        # count == 0 and count == beats - 1 as registers: the running maximum's update waits
        # on one comparison's carry chain and a single gate.
        first = Signal(init=1, name="first")
        last = Signal(init=int(beats == 1), name="last")
        index = count * lanes + local_i if lanes > 1 else count
        # An earlier beat wins ties. local_v > best_v as the sign of best_v - local_v: a
        # subtraction maps to the carry chain (a comparison may become a tree of LUTs).
        better = first | (best_v - local_v)[-1]
        new_v, new_i = Mux(better, local_v, best_v), Mux(better, index, best_i)

        m.d.comb += i_s.ready.eq(~last | ~o_s.valid | o_s.ready)
        accept = i_s.valid & i_s.ready
        with m.If(accept & last):
            m.d.sync += [count.eq(0), first.eq(1), last.eq(0), o_s.valid.eq(1),
                         cls.eq(new_i), logits.eq(Cat(gather, x.as_value()))]
        with m.Elif(o_s.ready):
            m.d.sync += o_s.valid.eq(0)
        # accept & ~last is i_s.valid & ~last (ready is high before the last beat): written so,
        # the running maximum's enable is one gate after the comparison.
        with m.If(i_s.valid & ~last):
            m.d.sync += [count.eq(count + 1), first.eq(0), last.eq(count == beats - 2),
                         best_v.eq(new_v), best_i.eq(new_i),
                         gather.eq(Cat(gather[width:], x.as_value()) if beats > 2
                                   else x.as_value())]
        return m
