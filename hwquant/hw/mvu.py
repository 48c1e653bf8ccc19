"""Matrix-vector unit: one input vector per beat in, one requantized output vector out."""

import numpy as np
from amaranth.hdl import Array, Module, Mux, Signal, signed
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from .. import ir
from ..kinds import hw_dot_engine
from .arith import const_signed, requantize
from .streams import activation_signature

__all__ = ["MatrixVectorUnit", "accumulator_bits"]


def accumulator_bits(layer) -> int:
    """Signed width holding ``ACC`` and ``ACC + B`` for every legal input of ``layer``."""
    lo, hi = ir.accumulator_range(layer)
    lo_nb, hi_nb = lo - layer.bias, hi - layer.bias
    return ir.signed_bits_for(int(min(lo.min(), lo_nb.min())), int(max(hi.max(), hi_nb.max())))


class MatrixVectorUnit(wiring.Component):
    """``y[oc] = epilogue(sum_i W[oc, i] * x[i] + B[oc])`` with PE/SIMD folding.

    ``PE`` output channels and ``SIMD`` input elements are processed per cycle; one input
    vector takes ``NF * SF`` cycles, ``NF = OC / PE``, ``SF = F / SIMD``. The next vector is
    accepted in the cycle the last step issues, so back-to-back vectors leave no bubble.
    Fully unrolled (``NF = SF = 1``) every weight is a constant inside the dot engines;
    otherwise weights come from a ROM of ``NF*SF`` words of ``PE*SIMD`` weights.

    Pipeline (all stages stall together while the output is held): input buffer and fold
    counters -> operand register (SIMD slice, ROM word) -> dot register (PE dot engines) ->
    accumulators -> epilogue into the output register. Latency ``NF*SF + 4`` cycles.

    Parameters
    ----------
    layer : :class:`hwquant.ir.Conv2d` or :class:`hwquant.ir.Linear`
        Supplies fold, bias, requantization, formats and the arithmetic kind.
    weights : array (OC, F)
        Integer weights in input-lane order (see :mod:`hwquant.layout`).

    Members
    -------
    i_stream : ``In(activation_signature(layer.in_format, F))``
    o_stream : ``Out(activation_signature(layer.out_format, OC))``

    Epilogue: ``sat(rshift_rhu((ACC + B) * M, shift), lo, hi)``, or ``ACC + B`` for a logits
    layer (``requant`` is None). Resources: ``PE`` dot engines of ``SIMD`` products, ``PE``
    accumulators of :func:`accumulator_bits`, ``PE`` epilogues, ``F`` input-buffer lanes,
    ``OC`` output lanes, a ``NF*SF x PE*SIMD*weight_bits`` ROM when folded.
    """

    def __init__(self, layer, weights):
        weights = np.asarray(weights, dtype=np.int64)
        if weights.shape != (layer.out_channels, layer.fan_in):
            raise ValueError(f"Layer '{layer.name}': weight matrix must be "
                             f"({layer.out_channels}, {layer.fan_in}), not {weights.shape}")
        self._layer = layer
        self._weights = weights
        self._acc_bits = accumulator_bits(layer)
        if layer.requant is None and layer.out_format.bits < self._acc_bits:
            raise ValueError(f"Layer '{layer.name}': logits need {self._acc_bits} bits, but the "
                             f"output format has {layer.out_format.bits}")
        super().__init__({
            "i_stream": In(activation_signature(layer.in_format, layer.fan_in)),
            "o_stream": Out(activation_signature(layer.out_format, layer.out_channels)),
        })

    @property
    def layer(self):
        return self._layer

    @property
    def fold_steps(self) -> int:
        """Cycles per input vector: ``(OC / PE) * (F / SIMD)``."""
        f = self._layer.fold
        return (self._layer.out_channels // f.pe) * (self._layer.fan_in // f.simd)

    def elaborate(self, platform):
        m = Module()
        layer, w = self._layer, self._weights
        pe, simd = layer.fold.pe, layer.fold.simd
        oc, fan_in = layer.out_channels, layer.fan_in
        nf, sf = oc // pe, fan_in // simd
        xbits = layer.in_format.bits
        engine_cls = hw_dot_engine(layer)
        options = engine_cls.options(layer)
        unrolled = nf * sf == 1

        en = Signal()
        m.d.comb += en.eq(~self.o_stream.valid | self.o_stream.ready)

        # -- stage 0: input buffer and fold counters -------------------------------------
        busy = Signal()
        nf_i = Signal(range(max(nf, 2)))
        sf_i = Signal(range(max(sf, 2)))
        step = Signal(range(max(nf * sf, 2)))
        x_buf = Signal(fan_in * xbits)
        last_step = Signal()
        issue = Signal()
        m.d.comb += [
            last_step.eq(busy & (nf_i == nf - 1) & (sf_i == sf - 1)),
            issue.eq(en & busy),
            self.i_stream.ready.eq(en & (~busy | last_step)),
        ]
        with m.If(issue):
            with m.If(last_step):
                m.d.sync += [busy.eq(0), nf_i.eq(0), sf_i.eq(0), step.eq(0)]
            with m.Else():
                m.d.sync += step.eq(step + 1)
                with m.If(sf_i == sf - 1):
                    m.d.sync += [sf_i.eq(0), nf_i.eq(nf_i + 1)]
                with m.Else():
                    m.d.sync += sf_i.eq(sf_i + 1)
        with m.If(self.i_stream.valid & self.i_stream.ready):
            m.d.sync += [x_buf.eq(self.i_stream.payload.as_value()), busy.eq(1)]

        # -- stage 1: operands -------------------------------------------------------------
        v1, first1, last1 = Signal(), Signal(), Signal()
        nf1 = Signal.like(nf_i)
        x1 = Signal(simd * xbits)
        # The SIMD slice as a mux over the SF slices (``word_select`` with a variable index
        # multiplies the index by the slice width, a ``$mul`` Yosys may put in a DSP block).
        x_slice = x_buf if sf == 1 else Array(x_buf.word_select(k, simd * xbits)
                                                for k in range(sf))[sf_i]
        with m.If(en):
            m.d.sync += [v1.eq(issue), first1.eq(sf_i == 0), last1.eq(sf_i == sf - 1),
                         nf1.eq(nf_i), x1.eq(x_slice)]

        engines = []
        if unrolled:
            for p in range(pe):
                eng = engine_cls(simd=simd, x_format=layer.in_format,
                                 weight_bits=layer.weight_bits, weights=w[p], **options)
                m.submodules[f"dot{p}"] = eng
                m.d.comb += eng.x.eq(x1)
                engines.append(eng)
        else:
            word_bits = engine_cls.word_bits(simd, layer.weight_bits, **options)
            init = []
            for s in range(nf * sf):
                n_idx, s_idx = divmod(s, sf)
                word = 0
                for p in range(pe):
                    row = w[n_idx * pe + p, s_idx * simd:(s_idx + 1) * simd]
                    code = engine_cls.encode_weights(row, layer.weight_bits, **options)
                    word |= code << (p * word_bits)
                init.append(word)
            rom = memory.Memory(shape=pe * word_bits, depth=nf * sf, init=init)
            m.submodules.weight_rom = rom
            rd = rom.read_port()
            m.d.comb += [rd.addr.eq(step), rd.en.eq(en)]
            for p in range(pe):
                eng = engine_cls(simd=simd, x_format=layer.in_format,
                                 weight_bits=layer.weight_bits, **options)
                m.submodules[f"dot{p}"] = eng
                m.d.comb += [eng.x.eq(x1),
                             eng.w.eq(rd.data[p * word_bits:(p + 1) * word_bits])]
                engines.append(eng)

        # -- stage 2: dot products ---------------------------------------------------------
        v2, first2, last2 = Signal(), Signal(), Signal()
        nf2 = Signal.like(nf_i)
        dots = [Signal(signed(len(eng.y)), name=f"dot_r{p}") for p, eng in enumerate(engines)]
        with m.If(en):
            m.d.sync += [v2.eq(v1), first2.eq(first1), last2.eq(last1), nf2.eq(nf1)]
            m.d.sync += [d.eq(eng.y) for d, eng in zip(dots, engines)]

        # -- stage 3: accumulators ---------------------------------------------------------
        v3 = Signal()
        nf3 = Signal.like(nf_i)
        accs = [Signal(signed(self._acc_bits), name=f"acc{p}") for p in range(pe)]
        with m.If(en):
            m.d.sync += [v3.eq(v2 & last2), nf3.eq(nf2)]
            with m.If(v2):
                for acc, d in zip(accs, dots):
                    if sf == 1:
                        m.d.sync += acc.eq(d)
                    else:
                        m.d.sync += acc.eq(Mux(first2, d, acc + d))

        # -- stage 4: epilogue into the output register ------------------------------------
        out_lanes = [self.o_stream.payload[c] for c in range(oc)]
        rq = layer.requant
        for p in range(pe):
            chans = [n * pe + p for n in range(nf)]
            bias = self._select(nf3, [int(layer.bias[c]) for c in chans])
            if rq is None:
                y = accs[p] + bias
            else:
                mult = [int(rq.multiplier[c]) for c in chans]
                mult = 1 if all(v == 1 for v in mult) else self._select(nf3, mult)
                y = requantize(accs[p], bias, mult, rq.shift, rq.lo, rq.hi)
            for n, c in enumerate(chans):
                with m.If(en & v3 & (nf3 == n)):
                    m.d.sync += out_lanes[c].eq(y)
        with m.If(en):
            m.d.sync += self.o_stream.valid.eq(v3 & (nf3 == nf - 1))
        return m

    @staticmethod
    def _select(index, values):
        if len(set(values)) == 1:
            return const_signed(values[0])
        return Array(const_signed(v) for v in values)[index]

