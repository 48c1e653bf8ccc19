"""Cost of one :class:`hwquant.plan.Mvu` stage: what :class:`hwquant.hw.mvu.MatrixVectorUnit`
builds, part by part, from the IR alone (no hardware module is imported).

Parts, as the component has them: the fold counters and, with ``NF > 1``, the input buffer
(a memory of ``2*SF`` words of ``SIMD`` lanes, its write/read addresses and fill level) and
the operand mux in front of the engine; the ``SIMD``-lane operand register; the weight ROM
(``NF*SF`` words of the ``PE`` engines' words; none when fully unrolled); the ``PE`` dot
engines (the arithmetic kind's cost face, :func:`hwquant.kinds.cost_model`; a fully unrolled
layer of a constant-matrix kind costs its shared adder graph, :mod:`hwquant.estimate.cmvm`);
the engine's pipeline when its adder graph is cut (:attr:`hwquant.ir.Fold.stages` ``= L``:
the graph's register bits, ``L`` copies of the sums made outside the graph and of the
operand stage's control, :func:`engine_pipeline`); the engine-sum register; ``PE`` accumulators sized from each PE's channels' whole-vector range;
the combine register; the epilogue (:mod:`hwquant.estimate.epilogue`, each lane at its own
width); the ``PE``-lane output register. For a kind with its own engine (``binary``,
``template``, ``bdcnn``) the sums, accumulators and combine register come from the engine
contract's shape (:mod:`hwquant.engine_shape`, the class the hardware engine inherits):
``PE * P`` partial and ``S`` shared sums, each register lane as wide as its range needs, unread
sums and unread low bits dropped (:func:`_contract_sums`).
Nothing scales with ``F`` or ``OC`` but the memories.
"""

from __future__ import annotations

import numpy as np

from .. import ir
from ..engine_shape import combine_register_bits, register_bits, shape_for
from ..kinds import cost_model, uses_constant_matrix
from . import cmvm as constant_matrix
from . import epilogue as epilogue_face
from . import memo as memo_face
from .common import accumulator, counter, luts, ram, range_bits, weight_rom
from .resources import Resources, adder, comparator, mux, register

__all__ = ["engine_pipeline", "mvu", "mvu_resources", "USE_DSP"]

#: Yosys infers DSP blocks by default (``synthesize(..., allow_dsp=True)``); so does the model.
USE_DSP = True


def _range_bits(lo, hi) -> int:
    return ir.signed_bits_for(int(min(lo, 0)), int(max(hi, 0)))


def _trailing_zeros(weights) -> int:
    """Trailing zero bits every weight of ``weights`` shares (0 when all are zero)."""
    common = int(np.bitwise_or.reduce(np.abs(np.asarray(weights, dtype=np.int64))))
    return (common & -common).bit_length() - 1 if common else 0


class _Sum:
    """A row collector that only sums."""

    def __init__(self):
        self.total = Resources()

    def add(self, part, res, lutram=0):
        self.total += res


def mvu_resources(layer, weights, family, *, use_dsp=USE_DSP) -> Resources:
    """The whole MVU of ``layer`` (weights ``(OC, F)`` in stream order) as one sum: what
    :func:`mvu` adds row by row."""
    rows = _Sum()
    mvu(rows, layer, weights, family, use_dsp=use_dsp)
    return rows.total


def engine_pipeline(layer, weights) -> Resources:
    """Flip-flops of the ``L = layer.fold.stages`` pipeline cuts of the engine's adder graph
    (:func:`hwquant.engine_stages.engine_graph`; :attr:`hwquant.cmvm.PipelinePlan.
    register_bits`), of the ``L`` registers every engine output made outside the graph
    passes through (the memo engine's group sums and lane sum) and of the operand stage's
    control beside them (valid, last slice: ``2 L``). Zero for a combinational engine."""
    from ..engine_stages import check_stages, engine_graph
    from ..memo import memo_layout, sum_range

    stages = layer.fold.stages
    if not stages:
        return Resources()
    check_stages(layer, weights)
    graph = engine_graph(layer, weights)
    bits = constant_matrix.pipeline_register_bits(graph, stages) + 2 * stages
    if layer.fold.engine == "memo":
        lay = memo_layout(layer)
        w = np.asarray(weights, dtype=np.int64)
        fmt = layer.in_format
        sums = [sum_range(int((w[c] == v).sum()), fmt) for c in range(layer.out_channels)
                if lay.grouped[c] for v in lay.groups[c].values]
        if lay.shared:
            sums.append(sum_range(layer.fan_in, fmt))
        bits += stages * sum(register_bits(lo, hi) for lo, hi in sums)
    return register(bits)


def mvu(rows, layer, weights, family, *, use_dsp=USE_DSP):
    """Add the parts of the MVU of ``layer`` (weights ``(OC, F)`` in stream order) to
    ``rows`` (a collector with ``add(part, resources, lutram=0)``); ``use_dsp=False`` models
    Yosys ``-nodsp`` (every multiply in LUTs)."""
    pe, simd = layer.fold.pe, layer.fold.simd
    oc, fan_in = layer.out_channels, layer.fan_in
    nf, sf = oc // pe, fan_in // simd
    xbits = layer.in_format.bits
    unrolled = nf * sf == 1
    memo = layer.fold.engine == "memo"
    kind = memo_face if memo else cost_model(layer)
    weights = np.asarray(weights, dtype=np.int64)
    nf_bits = range_bits(max(nf, 2))

    # Stage 0: fold counters; the input buffer when the vector is replayed.
    control = register(5) + luts(6)  # v1, v2, d3, d4, out valid; enables and handshake
    if sf > 1:
        control += counter(sf, family) + register(4)  # first/last of stages 1-2
    if nf > 1:
        control += counter(nf, family) + register(4 * nf_bits + 1)  # fold index pipeline
    rows.add("control", control)
    if nf > 1:
        words = 2 * sf
        width = simd * xbits
        res, cells, _ = ram(words, width, family, transparent=False)
        abits = max(range_bits(words), 1)
        lbits = max(range_bits(words + 1), 1)
        # Write address (wrapping counter), read address (bank start or +1: an incrementer
        # and a mux), fill level (+1 on a write, -SF at a vector's end), the bank flag, the
        # "from memory" and ready comparisons.
        res += counter(words, family)
        res += register(abits) + adder(abits, family) + mux(abits, 3, family)
        res += register(lbits) + adder(lbits, family) * 2 + comparator(lbits, family) * 2
        res += register(1) + luts(2)
        rows.add("input_buffer", res, cells)

    # Stage 1: operand register, the buffer/stream mux, the weight ROM.
    absorb = getattr(kind, "absorbed_registers", None)
    adder_graph = not memo and uses_constant_matrix(layer)
    absorbed = (absorb(layer, family, use_dsp=use_dsp) if absorb is not None and not adder_graph
                else {"operand": 0, "dot": [False] * pe})
    operand_absorbed = absorbed["operand"] if nf == 1 else 0
    rows.add("operand_register", register(simd * xbits - operand_absorbed))
    if nf > 1:
        rows.add("operand_mux", mux(simd * xbits, 2, family))
    if not unrolled:
        width = pe * kind.word_bits(layer, simd)
        rom = weight_rom(nf * sf, width, family)
        rom += counter(nf * sf, family)  # the ROM address
        rows.add("weight_rom", rom)
    rows.add("dot_engines", constant_matrix.resources(layer, weights, family) if adder_graph
             else kind.resources(layer, family, use_dsp=use_dsp))
    if layer.fold.stages:
        rows.add("engine_pipeline", engine_pipeline(layer, weights))

    if memo:  # several partial sums per PE: the memo face sizes them
        dots, acc, acc_widths = memo_face.parts_resources(layer, weights, family)
        rows.add("dot_registers", dots)
        rows.add("accumulators", acc)
        _tail(rows, layer, family, acc_widths, use_dsp)
        return
    shape = shape_for(layer)
    if shape is not None:  # a kind with its own engine: its contract names the sums
        _contract_sums(rows, layer, weights, family, shape, use_dsp)
        return

    # Stage 2: engine sums, one per PE, as wide as the engine's worst-case sum (the lanes of
    # the register share one width, but sign-extension copies of a flip-flop merge).
    # Fully unrolled, a plain sum of constant products whose weights share the factor 2**k
    # has k constant-zero low bits in every register up to the epilogue: Yosys drops their
    # flip-flops (8 x 16 bitmask layer, 3 low bits masked off, ice40: Yosys 680 FF, model
    # 799 -> 727).
    dot_bits, zero_bits = [], []
    for p in range(pe):
        ws = weights[p] if unrolled else None
        lo, hi = kind.dot_range(layer, ws, simd=simd)
        zero_bits.append(_trailing_zeros(ws) if adder_graph else 0)
        dot_bits.append(_range_bits(lo, hi) - zero_bits[-1])
    rows.add("dot_registers",
             register(sum(b for b, gone in zip(dot_bits, absorbed["dot"], strict=True)
                          if not gone)))

    # Stage 3: accumulators, each sized from its channels' whole-vector range, loaded on the
    # first slice and accumulating on the others. Unfolded over SIMD an accumulator is a copy
    # of the dot register (equal flip-flops merge).
    acc = Resources()
    acc_widths = []
    for p in range(pe):
        ranges = [kind.dot_range(layer, weights[c], simd=fan_in) for c in range(p, oc, pe)]
        bits = _range_bits(min(r[0] for r in ranges), max(r[1] for r in ranges))
        acc_widths.append(bits)
        if sf > 1:
            acc += accumulator(bits, family)
        else:
            acc += register(min(bits - zero_bits[p], dot_bits[p]))
    rows.add("accumulators", acc)
    _tail(rows, layer, family, acc_widths, use_dsp, zero_bits=zero_bits,
          const_zero_bits=zero_bits)


def _contract_sums(rows, layer, weights, family, shape, use_dsp):
    """Stages 2-4 of an MVU whose engine keeps ``P`` partial sums per PE and ``S`` shared
    sums (the engine contract, :mod:`hwquant.engine_shape`): the sums register (each lane
    as wide as its own per-beat range: constant-zero sign bits of popcounts and masked sums
    are no flip-flops, an engine lane that is always 0 none), ``PE * P + S`` accumulators
    sized from the whole-vector ranges, sign bit included (it is an adder's output; a copy
    of the sums lane when ``SF = 1``; a sum the combine step never reads is none), the
    combine register of each PE as wide as its channels' ``ACC`` range, less its constant
    low bits and those the epilogue never reads (:func:`~.epilogue.dead_low_bits`, traced
    back through the copies of ``SF = 1``); then the epilogue
    and the output register (:func:`_tail`). The engine's combine logic is in its cost face
    (``dot_engines``)."""
    pe, simd = layer.fold.pe, layer.fold.simd
    oc, sf = layer.out_channels, layer.fan_in // layer.fold.simd
    n_parts = shape.parts_per_pe(layer)
    # The combine register, and the low bits of it the epilogue never reads: with SF = 1
    # the sums and accumulators only copy the parts, so their bits that do not reach the
    # read ones are no flip-flops either.
    ranges = np.asarray(shape.combine_ranges(layer, weights))
    widths = [register_bits(ranges[p::pe, 0].min(), ranges[p::pe, 1].max())
              for p in range(pe)]
    zero = shape.combine_zero_bits(layer)
    dead = epilogue_face.dead_low_bits(layer, widths, [min(zero, w) for w in widths])
    part_dead = [shape.part_dead_bits(layer, d) if sf == 1 else 0 for d in dead]
    beat = np.asarray(shape.beat_part_ranges(layer, weights, pe=pe, simd=simd))
    whole = np.asarray(shape.part_ranges(layer, weights)).reshape(oc, n_parts, 2)
    live = shape.live_parts(layer, pe=pe)
    lanes = [(beat[p, j], (whole[p::pe, j, 0].min(), whole[p::pe, j, 1].max()), part_dead[p])
             for p in range(pe) for j in range(n_parts) if live[p, j]]
    lanes += [(b, w, 0) for b, w in zip(shape.beat_shared_ranges(layer, simd=simd),
                                        shape.shared_ranges(layer), strict=True)]
    dots, acc = Resources(), Resources()
    for (blo, bhi), (wlo, whi), gone in lanes:
        dots += register(max(register_bits(blo, bhi) - gone, 0))
        if sf == 1:
            acc += register(max(register_bits(blo, bhi) - gone, 0))
        elif (blo, bhi) != (0, 0):
            # An accumulating register's sign bit is an adder output: it stays, unless the
            # combine step never reads it.
            bits = (_range_bits(wlo, whi) if wlo < 0 or shape.reads_part_sign(layer)
                    else register_bits(wlo, whi))
            acc += accumulator(bits, family)
    rows.add("dot_registers", dots)
    rows.add("accumulators", acc)
    # The epilogue's arithmetic reads each PE's register as a signed value of its range.
    signed_widths = combine_register_bits(ranges, pe, ir.accumulator_bits(layer))
    _tail(rows, layer, family, widths, use_dsp,
          zero_bits=[min(max(zero, d), w) for d, w in zip(dead, widths, strict=True)],
          lane_widths=signed_widths, const_zero_bits=[min(zero, w) for w in widths])


def _tail(rows, layer, family, acc_widths, use_dsp, *, zero_bits=None, lane_widths=None,
          const_zero_bits=None):
    """Stages 4 and 5: the combine register (``acc_widths`` flip-flops per PE, sign-extended
    to the epilogue's width, less ``zero_bits`` low bits per PE that are constant zero or
    never read), the epilogue (on ``lane_widths`` per PE, default ``acc_widths``: the signed
    width of the register; ``const_zero_bits`` of them constant zero) and the output
    register."""
    pe = layer.fold.pe
    zero_bits = zero_bits or [0] * pe
    # Stage 4: the combine register (identity combine: the sign-extended accumulators).
    # On Xilinx the DSP block of a lane's requantization multiply absorbs its register.
    epi_bits = ir.accumulator_bits(layer)
    lane_bits = [min(b, epi_bits) for b in (acc_widths if lane_widths is None
                                            else lane_widths)]
    into_dsp = epilogue_face.absorbed_lanes(layer, family, acc_bits=epi_bits,
                                            lane_bits=lane_bits, use_dsp=USE_DSP)
    rows.add("combine_register", register(sum(min(b, epi_bits) - z for b, z, gone
                                              in zip(acc_widths, zero_bits, into_dsp,
                                                     strict=True)
                                              if not gone)))

    # Stage 5: the epilogue into the PE-lane output register.
    # The epilogue works on each lane's own width (the sign-extension above it is one
    # flip-flop, and Yosys narrows the arithmetic behind it).
    rows.add("epilogue", epilogue_face.resources(layer, family, acc_bits=epi_bits,
                                                 lane_bits=lane_bits,
                                                 zero_bits=const_zero_bits, use_dsp=use_dsp))
    rows.add("output_register", register(pe * layer.out_format.bits))
