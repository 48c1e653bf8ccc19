"""Matrix-vector unit: folded input vectors in, folded output vectors out, one kind-generic
dot engine (:mod:`hwquant.hw.engine`, possibly pipelined) and one epilogue
(:mod:`hwquant.hw.epilogue`)."""

import numpy as np
from amaranth.hdl import Const, Module, Mux, Signal, signed
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from .. import ir
from ..engine_shape import combine_register_bits
from ..engine_stages import check_stages
from ..schedule.mvu import BASE_LATENCY, mvu_latency
from .engine import engine_for
from .epilogue import epilogue_class, epilogue_of, epilogue_unit
from .streams import activation_signature

__all__ = ["MatrixVectorUnit", "BASE_LATENCY"]


def _range_bits(ranges) -> int:
    """Signed width holding every ``(lo, hi)`` in ``ranges`` and 0."""
    ranges = np.asarray(ranges, dtype=np.int64).reshape(-1, 2)
    return ir.signed_bits_for(int(min(ranges[:, 0].min(), 0)), int(max(ranges[:, 1].max(), 0)))


class MatrixVectorUnit(wiring.Component):
    """``y[c] = epilogue(ACC[c] + B[c])``, ``ACC = W @ x`` (or the kind's combine of its sums),
    folded: ``PE`` output channels and ``SIMD`` input lanes per cycle.

    An input vector of ``F`` lanes arrives as ``SF = F / SIMD`` beats; its output of ``OC``
    channels leaves as ``NF = OC / PE`` beats, beat ``n`` holding channels ``n*PE .. n*PE +
    PE - 1`` (:mod:`hwquant.layout`). The unit computes neuron fold ``n = 0 .. NF-1`` over
    the ``SF`` slices in turn, one slice per cycle: ``NF * SF`` cycles per vector, back to back
    when input arrives fast enough and output is taken.

    Input buffer: with ``NF > 1`` every input beat is written to a memory of ``2 * SF`` words
    of ``SIMD`` lanes (two banks: the next vector loads while the current one is replayed).
    Fold 0 consumes each beat in the cycle it arrives (or from the memory if it arrived
    early); folds ``1 .. NF-1`` replay the bank. ``i_stream.ready`` is high unless both banks
    hold unfinished vectors (it depends on state only). With ``NF = 1`` there is no buffer:
    a beat is taken whenever the pipeline advances (``i_stream.ready`` then follows
    ``o_stream.ready``).

    Pipeline, all stages advancing together (``en``) whenever the output register is empty or
    being taken: fold counters and buffer/ROM addresses -> operands (SIMD lanes, ROM word) ->
    the engine's own ``L`` pipeline cuts, if any -> engine sums register -> accumulators ->
    combine register -> epilogue (its pipeline register) -> output register. ``L`` is the
    layer's :attr:`hwquant.ir.Fold.stages` (only a fully unrolled constant-matrix engine has
    cuts, :mod:`hwquant.engine_stages`); the operand stage's control (valid, first/last slice,
    fold index) travels beside the engine through ``L`` registers on the same enable, so a
    stall freezes the whole pipeline and the rate stays one step a cycle.
    An output beat is valid :attr:`latency` (:data:`BASE_LATENCY` ``+ L``: 6 + L) cycles
    after its fold's last slice issued; ``o_stream.valid`` comes from a register.
    :class:`hwquant.schedule.mvu.MatrixVectorUnitTiming` (``engine_stages=L``) is the
    cycle-exact handshake model.

    Parameters
    ----------
    layer : :class:`hwquant.ir.Conv2d` or :class:`hwquant.ir.Linear`
        Supplies fold, bias, epilogue, formats and the arithmetic kind.
    weights : array (OC, F)
        Integer weights in window-lane order (see :mod:`hwquant.layout`).

    Members
    -------
    i_stream : ``In(activation_signature(layer.in_format, SIMD))``
    o_stream : ``Out(activation_signature(layer.out_format, PE))``

    Raises
    ------
    ValueError
        Weight matrix of the wrong shape; logits that do not fit the output format; engine
        stages on an engine that is no adder graph.

    Resources: one engine (:func:`hwquant.hw.engine.engine_for`: e.g. ``PE`` dot engines of
    ``SIMD`` products), ``PE * P + S`` accumulators sized from the engine's worst-case ranges,
    ``PE`` combine registers and epilogues, a ``PE``-lane output register, a ``SIMD``-lane
    operand register; memories: the ``2*SF x SIMD*x_bits`` input buffer (``NF > 1``) and the
    ``NF*SF x word_bits`` weight ROM (unless fully unrolled, where the weights are constants).
    With ``L`` engine cuts: the graph's pipeline registers
    (:attr:`hwquant.cmvm.PipelinePlan.register_bits`) and ``L`` copies of the control bits.
    No register is ``F`` or ``OC`` lanes wide.
    """

    def __init__(self, layer, weights):
        weights = np.asarray(weights, dtype=np.int64)
        if weights.shape != (layer.out_channels, layer.fan_in):
            raise ValueError(f"Layer '{layer.name}': weight matrix must be "
                             f"({layer.out_channels}, {layer.fan_in}), not {weights.shape}")
        check_stages(layer, weights)
        self._layer, self._weights = layer, weights
        self._engine_cls = engine_for(layer)
        self._combine_ranges = self._engine_cls.combine_ranges(layer, weights)
        self._acc_range = (self._combine_ranges[:, 0], self._combine_ranges[:, 1])
        epilogue_class(layer).validate(layer, epilogue_of(layer), acc_range=self._acc_range)
        pe, simd = layer.fold.pe, layer.fold.simd
        super().__init__({
            "i_stream": In(activation_signature(layer.in_format, simd)),
            "o_stream": Out(activation_signature(layer.out_format, pe)),
        })

    @property
    def layer(self):
        return self._layer

    @property
    def nf(self) -> int:
        """Neuron folds ``OC / PE``: output beats per vector."""
        return self._layer.out_channels // self._layer.fold.pe

    @property
    def sf(self) -> int:
        """Synapse folds ``F / SIMD``: input beats per vector."""
        return self._layer.fan_in // self._layer.fold.simd

    @property
    def engine_stages(self) -> int:
        """Pipeline cuts inside the dot engine (the layer's ``Fold.stages``)."""
        return self._layer.fold.stages

    @property
    def latency(self) -> int:
        """Cycles from issuing a fold's last slice to its output beat's ``valid``:
        :data:`BASE_LATENCY` plus :attr:`engine_stages`."""
        return mvu_latency(self.engine_stages)

    @property
    def fold_steps(self) -> int:
        """Cycles per input vector: ``NF * SF``."""
        return self.nf * self.sf

    def elaborate(self, platform):
        m = Module()
        layer, w = self._layer, self._weights
        pe, simd = layer.fold.pe, layer.fold.simd
        nf, sf = self.nf, self.sf
        cls = self._engine_cls
        n_parts, n_shared = cls.parts_per_pe(layer), cls.shared_count(layer)
        i_s, o_s = self.i_stream, self.o_stream

        en = Signal()
        m.d.comb += en.eq(~o_s.valid | o_s.ready)

        # -- stage 0: fold counters, input buffer, addresses ---------------------------------
        # Every flag that decides ``issue`` is a register (or one gate of registers): the
        # handshake and the counters' next states never wait on a comparison's carry chain.
        nf_i = Signal(range(max(nf, 2)))
        sf_i = Signal(range(max(sf, 2)))
        last_sf = Signal(init=int(sf == 1))  # sf_i == sf - 1
        last_nf = Signal(init=int(nf == 1))  # nf_i == nf - 1
        last_step = Signal()
        issue = Signal()
        m.d.comb += last_step.eq(last_sf & last_nf)
        with m.If(issue):
            with m.If(last_sf):
                m.d.sync += [sf_i.eq(0), last_sf.eq(sf == 1)]
                with m.If(last_nf):
                    m.d.sync += [nf_i.eq(0), last_nf.eq(nf == 1)]
                with m.Else():
                    m.d.sync += [nf_i.eq(nf_i + 1), last_nf.eq(nf_i == max(nf - 2, 0))]
            with m.Else():
                m.d.sync += [sf_i.eq(sf_i + 1), last_sf.eq(sf_i == max(sf - 2, 0))]

        from_mem = Signal()  # this step's operand comes from the input buffer
        if nf == 1:
            m.d.comb += [i_s.ready.eq(en), issue.eq(en & i_s.valid)]
        else:
            words = 2 * sf
            buf = memory.Memory(shape=simd * layer.in_format.bits, depth=words, init=[])
            m.submodules.input_buffer = buf
            wr, rd = buf.write_port(), buf.read_port()
            lead = Signal(range(words + 1))  # beats written since the current vector's start
            room = Signal(init=1)  # lead < words
            avail = Signal(range(words + 1))  # lead - sf_i: beats buffered ahead of this step
            first_fold = Signal(init=1)  # nf_i == 0
            # ~first_fold | (avail != 0), a register: issue is one gate of registers. Its next
            # value is formed per branch of avail's update from comparisons of registers
            # with constants, so no comparison waits on issue.
            mem_next = Signal()
            wa = Signal(range(words))  # write address
            ra = Signal(range(words))  # read address: bank start + sf_i
            bank = Signal()  # bank of the current vector
            accept = Signal()
            done = Signal()  # the vector's last step issues
            m.d.comb += [
                i_s.ready.eq(room),
                accept.eq(i_s.valid & room),
                issue.eq(en & (from_mem | i_s.valid)),
                done.eq(issue & last_step),
                wr.addr.eq(wa), wr.en.eq(accept), wr.data.eq(i_s.payload.as_value()),
                rd.addr.eq(ra), rd.en.eq(en),
            ]
            with m.If(accept):
                m.d.sync += wa.eq(Mux(wa == words - 1, 0, wa + 1))
            # Every sum below is formed from registers (and the upstream valid) alone; issue
            # (which waits on the downstream ready) only picks among them.
            # The sums add constants to registers; accept (from the upstream valid) only
            # selects between them, so it never waits on a carry chain (nor feeds one).
            lead_in, lead_out = Signal.like(lead), Signal.like(lead)
            avail_in, avail_step = Signal.like(avail), Signal.like(avail)
            m.d.comb += [lead_in.eq(Mux(accept, lead + 1, lead)),
                         lead_out.eq(Mux(accept, lead + (1 - sf), lead - sf)),
                         avail_in.eq(Mux(accept, avail + 1, avail)),
                         avail_step.eq(Mux(accept, avail, avail - 1))]
            # Each register's next value is formed for "a step issues" and for "none does"
            # from registers and accept alone; issue, the one signal that waits on the
            # downstream ready, is the last select.
            lead_at_row_end = Mux(last_nf, lead_out, lead_in)  # the vector's last step or not
            # from_mem's next value: ~first_fold' | (avail' != 0) in each branch.
            lead_out_nz = Mux(accept, lead != sf - 1, lead != sf)  # lead + accept != sf
            step_nz = Mux(accept, avail != 0, avail != 1)  # avail + accept != 1
            issued = Signal.like(lead, name="lead_issued")
            avail_issued = Signal.like(avail, name="avail_issued")
            mem_issued = Signal(name="from_mem_issued")
            m.d.comb += [
                issued.eq(Mux(last_sf, lead_at_row_end, lead_in)),
                avail_issued.eq(Mux(last_sf, lead_at_row_end, avail_step)),
                mem_issued.eq(Mux(last_sf, ~last_nf | lead_out_nz,
                                  ~first_fold | step_nz)),
                mem_next.eq(Mux(issue, mem_issued, from_mem | accept)),
            ]
            # After a vector's last step lead <= words - sf < words; otherwise lead grows by
            # the accepted beat.
            m.d.sync += [lead.eq(Mux(issue, issued, lead_in)),
                         avail.eq(Mux(issue, avail_issued, avail_in)),
                         room.eq(done | Mux(accept, lead < words - 1, room)),
                         from_mem.eq(mem_next)]
            with m.If(issue & last_sf):
                m.d.sync += first_fold.eq(last_nf)
            with m.If(issue):
                with m.If(last_step):
                    m.d.sync += [bank.eq(~bank), ra.eq(Mux(bank, 0, sf))]
                with m.Elif(last_sf):
                    m.d.sync += ra.eq(Mux(bank, sf, 0))
                with m.Else():
                    m.d.sync += ra.eq(ra + 1)

        # -- stage 1: operands ---------------------------------------------------------------
        v1, first1, last1, mem1 = Signal(), Signal(), Signal(), Signal()
        nf1 = Signal.like(nf_i)
        x1 = Signal(simd * layer.in_format.bits)
        with m.If(en):
            m.d.sync += [v1.eq(issue), first1.eq(sf_i == 0), last1.eq(last_sf), nf1.eq(nf_i),
                         mem1.eq(from_mem), x1.eq(i_s.payload.as_value())]

        engine = cls(layer, w, pe=pe, simd=simd)
        m.submodules.engine = engine
        m.d.comb += engine.x.eq(x1 if nf == 1 else Mux(mem1, rd.data, x1))
        if "w" in engine.signature.members:
            init = [cls.encode(layer, w, n, s, pe=pe, simd=simd)
                    for n in range(nf) for s in range(sf)]
            rom = memory.Memory(shape=len(engine.w), depth=nf * sf, init=init)
            m.submodules.weight_rom = rom
            rom_rd = rom.read_port()
            step = Signal(range(max(nf * sf, 2)))
            with m.If(issue):
                m.d.sync += step.eq(Mux(last_step, 0, step + 1))
            m.d.comb += [rom_rd.addr.eq(step), rom_rd.en.eq(en), engine.w.eq(rom_rd.data)]

        # -- the engine's own pipeline cuts: stage 1's control travels beside them -----------
        if engine.latency:
            m.d.comb += engine.en.eq(en)
            for k in range(engine.latency):
                v_, first_, last_ = (Signal(name=f"{n}1_p{k + 1}")
                                     for n in ("v", "first", "last"))
                nf_ = Signal.like(nf_i, name=f"nf1_p{k + 1}")
                with m.If(en):
                    m.d.sync += [v_.eq(v1), first_.eq(first1), last_.eq(last1), nf_.eq(nf1)]
                v1, first1, last1, nf1 = v_, first_, last_, nf_

        # -- stage 2: engine sums ------------------------------------------------------------
        v2, first2, last2 = Signal(), Signal(), Signal()
        nf2 = Signal.like(nf_i)
        parts2 = Signal.like(engine.parts.as_value(), name="parts_r")
        sums = {"parts": parts2}
        if n_shared:
            sums["shared"] = Signal.like(engine.shared.as_value(), name="shared_r")
        with m.If(en):
            m.d.sync += [v2.eq(v1), first2.eq(first1), last2.eq(last1), nf2.eq(nf1)]
            m.d.sync += [reg.eq(getattr(engine, k).as_value()) for k, reg in sums.items()]

        # -- stage 3: accumulators -----------------------------------------------------------
        d3 = Signal()
        nf3 = Signal.like(nf_i)
        pr = np.asarray(cls.part_ranges(layer, w), dtype=np.int64).reshape(
            layer.out_channels, n_parts, 2)
        part_w = len(engine.parts[0])
        accs = []
        for p in range(pe):
            row = []
            for j in range(n_parts):
                bits = _range_bits(pr[p::pe, j])
                term = parts2.word_select(p * n_parts + j, part_w).as_signed()
                row.append((Signal(signed(bits), name=f"acc{p}_{j}"), term))
            accs.append(row)
        shared_accs = []
        if n_shared:
            sh_w = len(engine.shared[0])
            for s, rng in enumerate(cls.shared_ranges(layer)):
                term = sums["shared"].word_select(s, sh_w).as_signed()
                shared_accs.append((Signal(signed(_range_bits(rng)), name=f"shared{s}"), term))
        with m.If(en):
            m.d.sync += [d3.eq(v2 & last2), nf3.eq(nf2)]
            with m.If(v2):
                for acc, term in [a for row in accs for a in row] + shared_accs:
                    m.d.sync += acc.eq(term if sf == 1 else Mux(first2, term, acc + term))

        # -- stage 4: combine ----------------------------------------------------------------
        epi = epilogue_unit(layer, acc_range=self._acc_range)
        d4 = Signal()
        fold = nf3 if nf > 1 else Const(0, 1)
        combined = engine.combine(m, [[a for a, _ in row] for row in accs],
                                  [a for a, _ in shared_accs], fold)
        # Each PE's register as wide as its channels' ACC range (the combine's expression may
        # be wider): the epilogue sees the sign-extended value, and Yosys sizes the
        # arithmetic behind it (the bias adder, the requantization product) from that width.
        comb_r = [Signal(signed(bits), name=f"combined{p}") for p, bits in
                  enumerate(combine_register_bits(self._combine_ranges, pe, epi.acc_bits))]
        with m.If(en):
            m.d.sync += d4.eq(d3)
            m.d.sync += [r.eq(v) for r, v in zip(comb_r, combined)]

        # -- stages 5 and 6: the epilogue (its own pipeline register) into the output register
        m.submodules.epilogue = epi
        m.d.comb += [epi.acc[p].eq(r) for p, r in enumerate(comb_r)]
        # The epilogue takes the fold index one stage ahead of its value (it registers the
        # per-channel constants the index selects).
        m.d.comb += [epi.nf.eq(nf3), epi.en.eq(en)]
        d5 = Signal()
        with m.If(en):
            m.d.sync += [d5.eq(d4), o_s.valid.eq(d5)]
            with m.If(d5):
                m.d.sync += o_s.payload.eq(epi.y)
        return m
