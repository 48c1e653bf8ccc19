"""The quantization sub-layer of ``bdcnn`` with the per-sample range (``--range sample``):
:class:`SampleQuantizer` buffers one sample's whole input map, finds its minimum and maximum,
forms the reciprocal once and re-emits the map as ``Q``-bit codes, bit for bit
:func:`hwquant.golden.bdcnn.quantize_map` (``docs/arithmetic.md``, Binarized-DCNN,
per-sample range).

Streams: ``i_stream`` beats of ``lanes`` values of ``in_format`` (``beats`` beats per map, in
any order: min and max do not care); ``o_stream`` the same beats in the same order with
payload ``q`` (``lanes`` unsigned ``Q``-bit codes), ``m`` (the map's minimum, ``in_format``)
and ``r`` (``R = max - min``, unsigned ``in_bits``) on every beat, for the engine's combine
(``ACC = m * Rin + RHU(R * P / L)``). Not yet wired into the network: the MVU's combine for the
per-sample range does not exist.

Phases (one map at a time, no overlap): *load*, one input beat per cycle into the map memory
while the running minimum and maximum take the beat's lane minimum and maximum; *divide*, a
restoring divider forms ``rho = ceil(L * 2^S / R)``, one quotient bit per cycle (``Q + S``
cycles; ``R = 0`` gives ``rho = 0``); *emit*, the memory is read back, one beat per cycle when
the consumer takes it, ``q = ((X - m) * rho + 2^(S-1)) >> S`` per lane into the output
register. A map takes ``2 * beats + Q + S + 3`` cycles without stalls.

Resources: a memory of ``beats`` words of ``lanes * in_bits`` bits; ``2 * lanes`` comparators
and muxes of the lane min/max trees and the running registers; the divider (a ``Q + S``-bit
quotient and numerator shift register, an ``in_bits + 1``-bit remainder, subtractor and
compare); per lane a ``in_bits`` x ``(Q + S + 1)``-bit multiplier; the output register.
"""

from amaranth.hdl import Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..golden.bdcnn import reciprocal_shift
from .streams import activation_signature, lane_shape

__all__ = ["SampleQuantizer", "output_layout"]


def output_layout(in_format, lanes: int, qbits: int) -> data.StructLayout:
    """Payload of :class:`SampleQuantizer`'s output: ``q`` lanes, ``m`` and ``r``."""
    return data.StructLayout({"q": data.ArrayLayout(unsigned(qbits), lanes),
                              "m": lane_shape(in_format), "r": unsigned(in_format.bits)})


def _tree(values, pick):
    while len(values) > 1:
        values = [pick(values[i], values[i + 1]) if i + 1 < len(values) else values[i]
                  for i in range(0, len(values), 2)]
    return values[0]


class SampleQuantizer(wiring.Component):
    """Per-sample min/max quantizer of a whole input map; see the module docstring."""

    def __init__(self, in_format, lanes: int, beats: int, qbits: int):
        for what, v in (("lanes", lanes), ("beats", beats)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"SampleQuantizer {what} must be a positive integer, not {v!r}")
        if in_format.bipolar or not 2 <= qbits <= 8:
            raise ValueError(f"SampleQuantizer quantizes a non-bipolar input to 2..8 bits, not "
                             f"{qbits} bits of {in_format}")
        self._fmt, self._lanes, self._beats, self._q = in_format, lanes, beats, qbits
        super().__init__({
            "i_stream": In(activation_signature(in_format, lanes)),
            "o_stream": Out(stream.Signature(output_layout(in_format, lanes, qbits))),
        })

    def elaborate(self, platform):
        m = Module()
        fmt, lanes, beats, qb = self._fmt, self._lanes, self._beats, self._q
        bits = fmt.bits
        s = reciprocal_shift(bits)
        top = (1 << qb) - 1
        nbits = qb + s  # quotient (and numerator) width: rho <= L * 2^S
        i_s, o_s = self.i_stream, self.o_stream
        shape = lane_shape(fmt)

        mem = memory.Memory(shape=lanes * bits, depth=beats, init=[])
        m.submodules.map = mem
        wr, rd = mem.write_port(), mem.read_port()

        count = Signal(range(beats + 1))
        lo, hi = Signal(shape), Signal(shape)
        m_out, r_out = Signal(shape), Signal(unsigned(bits))
        rho = Signal(unsigned(nbits))
        rem = Signal(unsigned(bits + 1))
        num = Signal(unsigned(nbits))
        step = Signal(range(nbits + 1))
        pending = Signal()

        x = [i_s.payload[k] for k in range(lanes)]
        beat_lo = _tree(x, lambda a, b: Mux(a < b, a, b))
        beat_hi = _tree(x, lambda a, b: Mux(a > b, a, b))

        en = Signal()
        m.d.comb += en.eq(~o_s.valid | o_s.ready)
        issue = Signal()

        with m.FSM():
            with m.State("load"):
                m.d.comb += [i_s.ready.eq(1), wr.addr.eq(count),
                             wr.data.eq(i_s.payload.as_value()), wr.en.eq(i_s.valid)]
                with m.If(i_s.valid):
                    first = count == 0
                    m.d.sync += [lo.eq(Mux(first | (beat_lo < lo), beat_lo, lo)),
                                 hi.eq(Mux(first | (beat_hi > hi), beat_hi, hi))]
                    with m.If(count == beats - 1):
                        m.d.sync += count.eq(0)
                        m.next = "range"
                    with m.Else():
                        m.d.sync += count.eq(count + 1)
            with m.State("range"):
                r = (hi - lo).as_unsigned()[:bits]
                m.d.sync += [m_out.eq(lo), r_out.eq(r), rem.eq(0), rho.eq(0), step.eq(0),
                             # numerator L * 2^S + R - 1 (ceil); unused when R = 0
                             num.eq(Const(top << s, nbits) + r - 1)]
                m.next = "divide"
            with m.State("divide"):
                trial = Signal(unsigned(bits + 2))
                m.d.comb += trial.eq((rem << 1) | num[nbits - 1])
                take = (trial >= r_out) & (r_out != 0)
                m.d.sync += [rem.eq(Mux(take, trial - r_out, trial)), num.eq(num << 1),
                             rho.eq((rho << 1) | take), step.eq(step + 1)]
                with m.If(step == nbits - 1):
                    m.next = "emit"
            with m.State("emit"):
                m.d.comb += issue.eq(count < beats)
                with m.If(en):
                    m.d.sync += count.eq(count + issue)
                with m.If(en & ~issue & ~pending):
                    m.d.sync += count.eq(0)
                    m.next = "load"

        # Emit pipeline: read address (count) -> memory data -> quantized output register.
        m.d.comb += [rd.addr.eq(count), rd.en.eq(en)]
        y = o_s.payload
        word = rd.data
        with m.If(en):
            m.d.sync += [pending.eq(issue), o_s.valid.eq(pending)]
            for k in range(lanes):
                v = word[k * bits:(k + 1) * bits]
                v = v.as_signed() if fmt.signed else v
                d = (v - m_out).as_unsigned()[:bits]
                m.d.sync += y.q[k].eq(((d * rho + (1 << (s - 1))) >> s)[:qb])
            m.d.sync += [y.m.eq(m_out), y.r.eq(r_out)]
        return m
