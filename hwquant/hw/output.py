"""Network output stage: logits plus the index of the largest one."""

from amaranth.hdl import Module, Mux, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .pool import register_stage
from .streams import activation_signature

__all__ = ["ArgMax", "output_layout"]


def output_layout(fmt, classes: int) -> data.StructLayout:
    """``{cls, logits}``: the class index in the LSBs, then the logits lanes."""
    return data.StructLayout({
        "cls": unsigned(max(1, (classes - 1).bit_length())),
        "logits": data.ArrayLayout(signed(fmt.bits) if fmt.signed else unsigned(fmt.bits),
                                   classes),
    })


class ArgMax(wiring.Component):
    """Passes the logits through and adds their argmax (ties go to the lowest index).

    Members
    -------
    i_stream : ``In(activation_signature(fmt, classes))``
    o_stream : ``Out(stream.Signature(output_layout(fmt, classes)))``

    Resources: ``classes - 1`` comparators in a chain; latency 1 cycle.
    """

    def __init__(self, fmt, classes):
        self._classes = classes
        super().__init__({
            "i_stream": In(activation_signature(fmt, classes)),
            "o_stream": Out(stream.Signature(output_layout(fmt, classes))),
        })

    def elaborate(self, platform):
        m = Module()
        x = self.i_stream.payload
        best_v, best_i = x[0], 0
        for k in range(1, self._classes):
            better = x[k] > best_v
            best_v, best_i = Mux(better, x[k], best_v), Mux(better, k, best_i)
        with m.If(register_stage(m, self.i_stream, self.o_stream)):
            m.d.sync += [self.o_stream.payload.cls.eq(best_i),
                         self.o_stream.payload.logits.eq(x)]
        return m
