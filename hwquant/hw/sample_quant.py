"""The quantization sub-layer of ``bdcnn`` with the per-sample range (``--range sample``):
:class:`SampleQuantizer` buffers one sample's whole input map, finds its minimum and maximum,
forms the reciprocal once and re-emits the map as ``Q``-bit codes, bit for bit
:func:`hwquant.golden.bdcnn.quantize_map` (``docs/arithmetic.md``, Binarized-DCNN,
per-sample range).

Streams: ``i_stream`` beats of ``lanes`` values of ``in_format`` (``beats`` beats per map, in
any order: min and max do not care); ``o_stream`` the same beats in the same order as
``lanes`` unsigned ``Q``-bit codes (an MVU input of ``ActFormat(Q, False, 0)``); ``r_stream``
one token per map, before its first code beat: ``[m, R]`` (the map's minimum and range, two
lanes of ``token_format(in_format)``) for the combine (:class:`SampleCombine`,
``ACC = m * Rin + RHU(R * P / L)``, then the layer's epilogue). In the network the planner
(:mod:`hwquant.plan`) makes quantizer, token FIFO, window (conv), MVU and combine separate
stages (:mod:`hwquant.sample_range`); :class:`SampleLinear` and :class:`SampleConv` chain the
same components for one standalone layer (``ACC + B`` out).

Phases (one map at a time, no overlap): *load*, one input beat per cycle into the map memory
while the running minimum and maximum take the beat's lane minimum and maximum; *divide*, a
restoring divider forms ``rho = ceil(L * 2^S / R)``, one quotient bit per cycle (``Q + S``
cycles; ``R = 0`` gives ``rho = 0``); *token*, ``[m, R]`` offered until taken; *emit*, the
memory is read back, one beat per cycle when the consumer takes it,
``q = ((X - m) * rho + 2^(S-1)) >> S`` per lane into the output register. A map takes
``2 * beats + Q + S + 4`` cycles without stalls.

Resources: a memory of ``beats`` words of ``lanes * in_bits`` bits; ``2 * lanes`` comparators
and muxes of the lane min/max trees and the running registers; the divider (a ``Q + S``-bit
quotient and numerator shift register, an ``in_bits + 1``-bit remainder, subtractor and
compare); per lane a ``in_bits`` x ``(Q + S + 1)``-bit multiplier; the output register.
"""

import dataclasses

import numpy as np
from amaranth.hdl import Array, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out, connect

from .. import ir
from ..golden.bdcnn import reciprocal_shift
from ..sample_range import code_format, token_format
from .fifo import StreamFifo
from .mvu import MatrixVectorUnit
from .streams import activation_signature, lane_shape

__all__ = ["SampleQuantizer", "SampleCombine", "SampleLinear", "SampleConv", "token_format",
           "code_format"]


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
            "o_stream": Out(activation_signature(code_format(qbits), lanes)),
            "r_stream": Out(activation_signature(token_format(in_format), 2)),
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

        # Never a one-entry memory (Verilator rejects a [-1:0] address): a map of one beat
        # gets two words, the second unused.
        mem = memory.Memory(shape=lanes * bits, depth=max(beats, 2), init=[])
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
                    m.next = "token"
            with m.State("token"):
                t = self.r_stream
                m.d.comb += [t.valid.eq(1), t.payload[0].eq(m_out), t.payload[1].eq(r_out)]
                with m.If(t.ready):
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
                m.d.sync += y[k].eq(((d * rho + (1 << (s - 1))) >> s)[:qb])
        return m


class SampleCombine(wiring.Component):
    """``ACC = m * Rin[pos, n] + floor((2 * R * P + L) / (2 * L))`` per channel, then the
    layer's epilogue on ``ACC + B`` (:func:`hwquant.hw.epilogue.epilogue_unit`, the same unit
    the MVU ends in): the per-sample range's combine after an MVU that computed ``P = W @ q``
    on the codes.

    Streams: ``p_stream`` the MVU's beats (``PE`` lanes of ``p_format``; per output position
    ``NF`` beats, channel ``n = beat * PE + lane``; ``positions`` positions per sample, the
    rows of ``rin``); ``t_stream`` the ``[m, R]`` tokens, one per sample, read for its
    ``positions * NF`` beats and taken with the last; ``o_stream`` ``PE`` lanes of
    ``layer.out_format``. ``rin`` ``(positions, OC)``: the sum of each channel's weights over
    the window's in-bounds taps at each position (:func:`hwquant.sample_range.inside_sums`).

    Pipeline of :data:`LATENCY` (3) stages on one enable (the output register empty or being
    taken): the combine register (``ACC`` and the beat's fold index), the epilogue's own
    register, the output register; a beat is taken when both inputs are valid and the
    pipeline advances. One beat per cycle.

    The division by the constant ``2 L`` is a constant multiply and a shift, exact over every
    ``R`` and ``P`` (:func:`hwquant.sample_range.division_constants`).

    Resources: per lane a ``(in_bits + 1) x p_bits`` multiplier, the constant multiply of the
    division, the multiply of ``m`` by the channel's ``Rin`` (a constant table indexed by
    position and beat), the ``ACC`` register, the epilogue and the output register; beat and
    position counters.
    """

    #: Cycles from taking a beat to offering its result.
    LATENCY = 3

    def __init__(self, layer, *, p_format, rin):
        from ..sample_range import acc_range, division_constants

        self._layer = layer
        self._pe = pe = layer.fold.pe
        self._nf = nf = layer.out_channels // pe
        self._q = layer.kind_data.qbits
        self._rin = np.asarray(rin, dtype=np.int64).reshape(-1, nf * pe)
        lo, hi = acc_range(layer)
        self._acc_range = (lo, hi)
        self._division = division_constants(layer.in_format, p_format, self._q)
        self.acc_format = ir.ActFormat(ir.signed_bits_for(int(min(lo.min(), 0)),
                                                          int(max(hi.max(), 0))), True, 0)
        super().__init__({
            "p_stream": In(activation_signature(p_format, pe)),
            "t_stream": In(activation_signature(token_format(layer.in_format), 2)),
            "o_stream": Out(activation_signature(layer.out_format, pe)),
        })

    def elaborate(self, platform):
        from .epilogue import epilogue_unit

        m = Module()
        pe, nf = self._pe, self._nf
        top = (1 << self._q) - 1
        p_s, t_s, o_s = self.p_stream, self.t_stream, self.o_stream
        positions = len(self._rin)
        beat = Signal(range(max(nf, 2)))
        pos = Signal(range(max(positions, 2)))
        index = Signal(range(max(positions * nf, 2)))  # pos * nf + beat
        last_beat = beat == nf - 1
        last = last_beat & (pos == positions - 1)
        en, take = Signal(), Signal()
        m.d.comb += [en.eq(~o_s.valid | o_s.ready), take.eq(p_s.valid & t_s.valid & en),
                     p_s.ready.eq(take), t_s.ready.eq(take & last)]
        mm, rr = t_s.payload[0], t_s.payload[1]

        def pick(values, sel):
            values = [int(v) for v in values]
            if len(set(values)) == 1:
                return Const(values[0], signed(max(abs(values[0]), 1).bit_length() + 1))
            width = ir.signed_bits_for(min(values + [0]), max(values + [0]))
            return Array(Const(v, signed(width)) for v in values)[sel]

        lift, mult, shift = self._division
        epi = epilogue_unit(self._layer, acc_range=self._acc_range)
        m.submodules.epilogue = epi
        valid1, valid2 = Signal(), Signal()
        with m.If(take):
            m.d.sync += [beat.eq(Mux(last_beat, 0, beat + 1)),
                         index.eq(Mux(last, 0, index + 1))]
            with m.If(last_beat):
                m.d.sync += pos.eq(Mux(last, 0, pos + 1))
        with m.If(en):
            m.d.sync += [valid1.eq(take), valid2.eq(valid1),
                         o_s.valid.eq(valid2), o_s.payload.eq(epi.y)]
            for p in range(pe):
                rin = pick([self._rin[q, n * pe + p] for q in range(positions)
                            for n in range(nf)], index)
                # floor((2 R P + L) / 2L) as a constant multiply and a shift
                n = 2 * rr * p_s.payload[p] + (top + lift * 2 * top)
                acc = mm * rin + (((n * mult) >> shift) - lift)
                m.d.sync += epi.acc[p].eq(acc)
        # The epilogue takes the fold index one stage ahead of its ``acc``: the beat's own.
        m.d.comb += [epi.nf.eq(beat), epi.en.eq(en)]
        return m


def _acc_out(layer):
    """``layer`` with a ``Logits`` epilogue into a format holding every ``ACC + B`` (the
    standalone layers' output)."""
    alo, ahi = ir.matrix_range(layer.weight_matrix(), layer.bias, layer.in_format)
    fmt = ir.ActFormat(ir.signed_bits_for(int(min(alo.min(), 0)), int(max(ahi.max(), 0))),
                       True, 0)
    return dataclasses.replace(layer, epilogue=ir.Logits(), out_format=fmt)


class SampleLinear(wiring.Component):
    """A linear ``bdcnn`` layer with the per-sample range, ``ACC + B`` out (a ``Logits``
    epilogue into :attr:`acc_format`, whatever the layer's own epilogue):
    :class:`SampleQuantizer` (``SIMD`` lanes, ``F / SIMD`` beats per sample) into the
    existing AND-popcount MVU (:class:`hwquant.hw.mvu.MatrixVectorUnit` of
    :func:`hwquant.sample_range.mvu_twin`, ``P = W @ q``), its ``[m, R]`` tokens through a
    2-deep FIFO into :class:`SampleCombine`. Streams: ``i_stream`` ``SIMD`` lanes of the layer's
    input format; ``o_stream`` ``PE`` lanes of ``acc_format``, ``NF`` beats per sample. The
    network plans the same three stages itself (:mod:`hwquant.plan`)."""

    def __init__(self, layer):
        from ..sample_range import is_sample, mvu_twin

        if not isinstance(layer, ir.Linear) or not is_sample(layer):
            raise ValueError(f"Layer '{layer.name}': SampleLinear takes a linear bdcnn layer "
                             f"with the per-sample range")
        self._layer = _acc_out(layer)
        self._twin = mvu_twin(layer)
        self.acc_format = self._layer.out_format
        super().__init__({
            "i_stream": In(activation_signature(layer.in_format, layer.fold.simd)),
            "o_stream": Out(activation_signature(self.acc_format, layer.fold.pe)),
        })

    def elaborate(self, platform):
        from ..sample_range import inside_sums

        m = Module()
        layer, d = self._layer, self._layer.kind_data
        simd = layer.fold.simd
        m.submodules.quantizer = qz = SampleQuantizer(layer.in_format, simd,
                                                      layer.fan_in // simd, d.qbits)
        m.submodules.mvu = mvu = MatrixVectorUnit(self._twin, layer.weight_matrix())
        m.submodules.tokens = tok = StreamFifo(token_format(layer.in_format), 2, 2)
        m.submodules.combine = cb = SampleCombine(layer, p_format=self._twin.out_format,
                                                  rin=inside_sums(layer))
        connect(m, wiring.flipped(self.i_stream), qz.i_stream)
        connect(m, qz.o_stream, mvu.i_stream)
        connect(m, qz.r_stream, tok.i_stream)
        connect(m, mvu.o_stream, cb.p_stream)
        connect(m, tok.o_stream, cb.t_stream)
        connect(m, cb.o_stream, wiring.flipped(self.o_stream))
        return m


class SampleConv(wiring.Component):
    """A conv ``bdcnn`` layer with the per-sample range, ``ACC + B`` out (as
    :class:`SampleLinear`): :class:`SampleQuantizer` (the map's raster pixels, ``in_lanes``
    channels per beat) into the existing :class:`~hwquant.hw.window.SlidingWindow` on the
    codes (a padded tap is code 0) and AND-popcount MVU (``P = W @ q``), the ``[m, R]`` tokens
    through a 2-deep FIFO into :class:`SampleCombine` with ``Rin`` per output position (the
    in-bounds taps' weight sums). Streams: ``i_stream`` the window's input lanes of the layer's
    input format; ``o_stream`` ``PE`` lanes of ``acc_format``, per output position ``NF``
    beats."""

    def __init__(self, layer):
        from ..sample_range import is_sample, mvu_twin
        from .window import SlidingWindow

        if not isinstance(layer, ir.Conv2d) or not is_sample(layer):
            raise ValueError(f"Layer '{layer.name}': SampleConv takes a conv bdcnn layer with "
                             f"the per-sample range")
        d = layer.kind_data
        self._window = SlidingWindow(layer.in_shape, layer.kernel, layer.stride, layer.padding,
                                     code_format(d.qbits), simd=layer.fold.simd,
                                     order="kernel", pad_value=0)
        self._layer = _acc_out(layer)
        self._twin = mvu_twin(layer)
        self.acc_format = self._layer.out_format
        super().__init__({
            "i_stream": In(activation_signature(layer.in_format, self._window.in_lanes)),
            "o_stream": Out(activation_signature(self.acc_format, layer.fold.pe)),
        })

    @property
    def in_lanes(self) -> int:
        return self._window.in_lanes

    def elaborate(self, platform):
        from ..layout import conv_weight_matrix
        from ..sample_range import inside_sums

        m = Module()
        layer, d = self._layer, self._layer.kind_data
        c, h, w_ = layer.in_shape
        lanes = self._window.in_lanes
        m.submodules.quantizer = qz = SampleQuantizer(layer.in_format, lanes,
                                                      c // lanes * h * w_, d.qbits)
        m.submodules.window = win = self._window
        m.submodules.mvu = mvu = MatrixVectorUnit(self._twin, conv_weight_matrix(layer.weight))
        m.submodules.tokens = tok = StreamFifo(token_format(layer.in_format), 2, 2)
        m.submodules.combine = cb = SampleCombine(layer, p_format=self._twin.out_format,
                                                  rin=inside_sums(layer))
        connect(m, wiring.flipped(self.i_stream), qz.i_stream)
        connect(m, qz.o_stream, win.i_stream)
        connect(m, win.o_stream, mvu.i_stream)
        connect(m, qz.r_stream, tok.i_stream)
        connect(m, mvu.o_stream, cb.p_stream)
        connect(m, tok.o_stream, cb.t_stream)
        connect(m, cb.o_stream, wiring.flipped(self.o_stream))
        return m
