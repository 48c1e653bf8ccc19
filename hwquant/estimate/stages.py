"""Cost of every stage type of a :class:`hwquant.plan.Plan`, one function per type, each
mirroring the structure of its component (read from the component's source, re-derived
here from the plan and the IR without importing it):

* :class:`~hwquant.plan.Window` -> :class:`hwquant.hw.window.SlidingWindow`: in memory mode
  the circular row buffer (``depth`` words of ``SIMD`` lanes, placed as Yosys places a RAM),
  its read register, writer and reader counters, the address and padding arithmetic and the
  row hand-over; in register mode the ``KH x KW`` window register, the ``KH - 1``-row line
  buffer and the ``SIMD``-lane beat mux.
* :class:`~hwquant.plan.Mvu`: :func:`hwquant.estimate.mvu.mvu`.
* :class:`~hwquant.plan.MaxReduce`, :class:`~hwquant.plan.AvgReduce` -> the folded reducers
  of :mod:`hwquant.hw.pool`: per lane a running register and one combine step.
* :class:`~hwquant.plan.Width` -> :class:`hwquant.hw.width.StreamWidth`: a gather register
  and a word register of ``lcm(in, out)`` lanes.
* :class:`~hwquant.plan.Fork`, :class:`~hwquant.plan.Join`, :class:`~hwquant.plan.Fifo`,
  :class:`~hwquant.plan.ArgMax`: :mod:`hwquant.hw.fork`, :mod:`hwquant.hw.add`,
  :mod:`hwquant.hw.fifo`, :mod:`hwquant.hw.output`.
* :class:`~hwquant.plan.SampleQuant` -> :class:`hwquant.hw.sample_quant.SampleQuantizer`:
  the map buffer (``beats`` words of ``lanes * in_bits``, placed as Yosys places a RAM: block
  RAM, LUT RAM or flip-flops) and the rest of :func:`hwquant.estimate.bdcnn.sample_stage`
  (min/max trees, the reciprocal's divider, a multiplier per lane, control).
* :class:`~hwquant.plan.SampleCombine` -> :class:`hwquant.hw.sample_quant.SampleCombine`: per
  lane ``R * P``, the division by the constant ``2 L`` (a constant multiply), ``m * Rin`` (``Rin`` a constant table
  by position and fold), the ``ACC`` register, the layer's epilogue and the output register.
* :class:`~hwquant.plan.Source` is the top's input port: no hardware.

:data:`STAGE_COSTS` maps each stage type to its function ``f(rows, stage, plan, family)``.
"""

from __future__ import annotations

import math

from .. import plan as P
from ..schedule.window import window_geometry
from .common import (
    const_add,
    const_select,
    counter,
    luts,
    ram,
    range_bits,
    saturation,
    select_step,
)
from .mvu import USE_DSP, mvu
from .resources import Resources, adder, comparator, const_multiplier, mux, register

__all__ = ["STAGE_COSTS", "FIFO_REGISTER_DEPTH"]

#: Deepest :class:`hwquant.hw.fifo.StreamFifo` built as a shift register (its
#: ``REGISTER_DEPTH``); deeper ones keep their beats in a memory.
FIFO_REGISTER_DEPTH = 4


def _source(rows, st, plan, family):
    """The network input: the top's ``i_stream`` port, no logic."""


def _window(rows, st, plan, family):
    geo = window_geometry(st.in_shape, st.kernel, st.stride, st.padding, simd=st.simd,
                          order=st.order)
    if geo.memory:
        _window_memory(rows, st, geo, family)
    else:
        _window_register(rows, st, geo, family)


def _levels(geo):
    (kh, kw), (oh, ow) = geo.kernel, geo.out_size
    return [n for n in (geo.chunks, kw, kh, ow, oh) if n > 1]


def _window_memory(rows, st, geo, family):
    _, h, w = geo.in_shape
    ph, pw = geo.padding
    width = geo.simd * st.fmt.bits
    res, cells, _ = ram(geo.depth, width, family, transparent=False)
    rows.add("buffer", res, cells)

    abits = max(range_bits(geo.depth), 1)
    levels = _levels(geo)
    # Writer: the wrapping write address and the column counter that marks a complete row.
    control = counter(geo.depth, family) + counter(geo.row_words, family)
    # Reader: one counter per loop level, the address (plus the step of the innermost level
    # that moves, a constant chosen by the levels' last flags, and the wrap modulo depth).
    for size in levels:
        # A two-state level is a toggle flip-flop.
        control += counter(size, family) if size > 2 else register(1) + luts(1)
    control += register(abits) + adder(abits + 1, family)
    control += luts(abits * max(len(levels), 1) / 4)
    if geo.depth & (geo.depth - 1):
        control += comparator(abits + 1, family) + adder(abits + 1, family) + mux(abits, 2,
                                                                                  family)
    # Rows held (+1 per completed row, minus the rows an output row releases), compared with
    # the rows the next output row needs and with the buffer size.
    least = getattr(geo, "least", -getattr(geo, "tail", 0))  # lowest count (may be < 0)
    hbits = max(range_bits(geo.rows - least + 1), 1) + (1 if least < 0 else 0)
    control += register(hbits) + adder(hbits, family) + comparator(hbits, family) + luts(1)
    oh = geo.out_size[0]
    if oh > 1:
        control += const_select(geo.need, family) + const_select(geo.release, family)
    control += register(2) + luts(4)  # output valid, padding flag, handshake
    rows.add("control", control)
    if ph or pw:
        # Padded coordinates: a signed counter per padded axis (moved by the same steps as
        # the address) and two comparisons each; the pad word muxed onto the read data.
        pad = Resources()
        for pad_on, size in ((ph, h + 2 * ph), (pw, w + 2 * pw)):
            if pad_on:
                bits = range_bits(size) + 1
                pad += register(bits) + adder(bits, family) + luts(bits * len(levels) / 4)
                pad += const_add(bits, 1, family)  # y < H; y >= 0 is the sign bit
        pad += luts(width)
        rows.add("padding", pad)


def _window_register(rows, st, geo, family):
    c, h, w = geo.in_shape
    (kh, kw), (ph, pw) = geo.kernel, geo.padding
    hp, wp = h + 2 * ph, w + 2 * pw
    pix_bits = c * st.fmt.bits
    rows.add("registers", register(kh * kw * pix_bits))
    # Position counters, the emit-mask lookups and the handshake; the padding comparisons are
    # with constants: a LUT or two, carry chains on Gowin.
    control = register(range_bits(wp) + range_bits(hp) + 1) + luts(4)
    control += adder(max(range_bits(wp), 1), family) + adder(max(range_bits(hp), 1), family)
    control += luts(2)
    for pad, size in ((ph, hp), (pw, wp)):
        if pad:
            bits = max(range_bits(size), 1)
            cmp = (comparator(bits, family) if family == "gowin"
                   else luts(1 if family == "xilinx" else math.ceil(bits / 2)))
            control += cmp * 2
    beats = geo.beats_per_window
    if beats > 1:
        control += counter(beats, family)
    rows.add("control", control)
    if (ph or pw) and kh > 1:
        # Padding value or input pixel: folded into flip-flop set/reset for the window
        # register, real gates for the line-buffer write data.
        rows.add("padding_mux", luts(pix_bits))
    if kh > 1:
        res, cells, _ = ram(wp, (kh - 1) * pix_bits, family, transparent=True)
        res += luts(range_bits(wp))  # read address one cycle ahead
        rows.add("line_buffer", res, cells)
    if beats > 1:
        rows.add("beat_mux", mux(geo.simd * st.fmt.bits, beats, family))


def _mvu(rows, st, plan, family):
    net = plan.network
    mvu(rows, P.mvu_layer(net, st), P.mvu_weights(net, net.layer(st.layer)), family)


def _sample_quant(rows, st, plan, family):
    """:class:`hwquant.hw.sample_quant.SampleQuantizer`: the map buffer as its own row (its
    distributed-RAM cells counted), the min/max, divider and per-lane multiply-shift as
    :func:`hwquant.estimate.bdcnn.sample_stage` counts them."""
    from .bdcnn import sample_stage

    total = sample_stage(st.in_format, st.lanes, max(st.beats, 2), st.qbits, family,
                         use_dsp=USE_DSP)
    mem, cells, _ = ram(max(st.beats, 2), st.lanes * st.in_format.bits, family,
                        transparent=False)
    rows.add("map_buffer", mem, cells)
    rows.add("range", Resources(*(max(0, a - b) for a, b in (
        (total.lut, mem.lut), (total.ff, mem.ff), (total.dsp, mem.dsp),
        (total.bram, mem.bram)))))


def _division_multiply(mult, nbits, shift, family):
    """``(n * M) >> k`` of an ``nbits``-bit ``n``: in DSP blocks only the product bits above
    the shift need the fabric adders of a split product (Yosys drops the rest; measured on
    iCE40, 25 x 26 bits >> 30: 4 SB_MAC16 and 21 LUT4); without DSP blocks the constant
    multiply."""
    from .resources import dsp_product

    mbits = mult.bit_length()
    on_dsp = dsp_product(nbits, mbits, family, False) if USE_DSP else None
    if on_dsp is None:
        return const_multiplier(mult, nbits, False, family, use_dsp=USE_DSP)
    return Resources(dsp=on_dsp.dsp) + adder(max(nbits + mbits - shift, 1), family)


def _sample_combine(rows, st, plan, family):
    """:class:`hwquant.hw.sample_quant.SampleCombine`, lane by lane: the product ``R * P``
    (``in_bits + 1`` by the MVU's ``P`` width), the rounding adder, the floor division by the
    constant ``2 L`` as its constant multiply (:func:`hwquant.sample_range.
    division_constants`) and the quotient's correction, ``m * Rin`` (a constant multiply when the lane's ``Rin`` is one value, else a multiplier by a
    constant table over positions and folds), the sum into the ``ACC`` register, then the
    layer's epilogue (:mod:`hwquant.estimate.epilogue`) and the output register."""
    from .. import ir
    from ..sample_range import acc_range, division_constants, inside_sums, mvu_twin
    from . import epilogue as epilogue_face
    from .resources import multiplier

    layer = plan.network.layer(st.layer)
    pe, nf = layer.fold.pe, layer.out_channels // layer.fold.pe
    qbits, tbits = layer.kind_data.qbits, layer.in_format.bits + 1
    top = (1 << qbits) - 1
    pbits = mvu_twin(layer).out_format.bits
    lo, hi = acc_range(layer)
    acc_bits = ir.signed_bits_for(int(min(lo.min(), 0)), int(max(hi.max(), 0)))
    rin = inside_sums(layer)
    lift, mult, shift = division_constants(layer.in_format, mvu_twin(layer).out_format, qbits)
    nbits = max(shift - (2 * top - 1).bit_length(), 1)  # the lifted n
    lanes = Resources()
    for p in range(pe):
        lanes += multiplier(tbits, pbits, family, USE_DSP, signed=True) + adder(nbits, family)
        lanes += _division_multiply(mult, nbits, shift, family)
        if lift:
            lanes += adder(shift - nbits + 1, family)  # - c on the quotient
        values = [int(rin[q, n * pe + p]) for q in range(len(rin)) for n in range(nf)]
        if len(set(values)) == 1:
            lanes += const_multiplier(values[0], tbits, True, family, use_dsp=USE_DSP)
        else:
            vbits = ir.signed_bits_for(min(values + [0]), max(values + [0]))
            # An asynchronous table over positions and folds (never a block RAM): Yosys
            # reduces it to the distinct values (the border classes) and their decode.
            distinct = sorted(set(values))
            lanes += const_select(distinct, family) + luts(range_bits(len(values)))
            lanes += multiplier(tbits, vbits, family, USE_DSP, signed=True)
        lanes += adder(acc_bits, family) + register(acc_bits)
    rows.add("combine", lanes)
    bias = layer.bias
    epi_bits = ir.signed_bits_for(int(min(lo.min(), (lo + bias).min(), 0)),
                                  int(max(hi.max(), (hi + bias).max(), 0)))
    rows.add("epilogue", epilogue_face.resources(layer, family, acc_bits=epi_bits,
                                                 use_dsp=USE_DSP))
    rows.add("output_register", register(pe * layer.out_format.bits + 3))
    control = counter(nf, family) + counter(st.positions, family)
    control += counter(st.positions * nf, family) + register(max(nf - 1, 1).bit_length())
    rows.add("control", control + luts(3))


def _reducer_frame(rows, st, family, acc_bits):
    """Counter, valid flag, running registers and output register of a pooling reducer."""
    lanes, window = st.lanes, st.window
    if window > 1:
        rows.add("control", counter(window, family) + register(1) + luts(2))
        rows.add("accumulators", register(acc_bits * lanes))
    else:
        rows.add("control", register(1) + luts(1))
    rows.add("output_register", register(st.fmt.bits * lanes))


def _max_reduce(rows, st, plan, family):
    """:class:`hwquant.hw.pool.MaxReduce`: per lane a compare-and-select step against the
    running maximum, one more mux loading a window's first beat."""
    fmt = st.fmt
    _reducer_frame(rows, st, family, fmt.bits)
    if st.window > 1:
        step = select_step(fmt.bits, fmt.signed, family) + mux(fmt.bits, 2, family)
        rows.add("reduce", step * st.lanes)


def _avg_reduce(rows, st, plan, family):
    """:class:`hwquant.hw.pool.AvgReduce`: per lane the window-sum adder (its first-beat load
    folds into the adder's LUTs), then the constant multiply, rounding and saturation."""
    layer = plan.network.layer(st.layer)
    rq = layer.requant
    fmt = layer.in_format
    bits = fmt.bits + (st.window - 1).bit_length()
    _reducer_frame(rows, st, family, bits)
    per = adder(bits, family) if st.window > 1 else Resources()
    mult = int(rq.multiplier[0])
    t_bits = bits + (0 if fmt.signed else 1)
    if mult != 1:
        per += const_multiplier(mult, bits, fmt.signed, family, use_dsp=USE_DSP)
        t_bits += max(2, mult.bit_length() + 1)
    if rq.shift > 0:
        used = max(t_bits - rq.shift + 1, 1)
        per += const_add(t_bits, used, family)
        t_bits = used
    per += saturation(t_bits, rq.lo, rq.hi, layer.out_format.bits, family)
    rows.add("reduce", per * st.lanes)


def _width(rows, st, plan, family):
    """:class:`hwquant.hw.width.StreamWidth`: a gather register of ``k_in - 1`` input beats
    (shifted in: enables only), a word register of ``lcm`` lanes (loaded, or shifted by one
    output beat: a LUT per bit of the word when ``k_out > 1``, load or shift), two beat
    counters. A pure gather (``k_out = 1``) is the word register alone, shifted into."""
    bits = st.fmt.bits
    total = math.lcm(st.in_lanes, st.lanes)
    k_in, k_out = total // st.in_lanes, total // st.lanes
    if k_out == 1 and k_in > 1:
        rows.add("registers", register(total * bits))
        rows.add("control", counter(k_in + 1, family) + luts(3))
        return
    regs = register(total * bits + 1)
    if k_in > 1:
        regs += register((k_in - 1) * st.in_lanes * bits)
    rows.add("registers", regs)
    if k_out > 1:
        rows.add("shift_mux", luts(total * bits))
    rows.add("control", counter(k_in, family) + counter(k_out, family) + luts(3))


def _fork(rows, st, plan, family):
    """:class:`hwquant.hw.fork.Fork`: one beat register, a pending flag per output, an AND of
    the outputs' readiness."""
    n = st.branches
    rows.add("register", register(st.lanes * st.fmt.bits))
    rows.add("control", register(n) + luts(n + math.ceil(n / 3)))


def _join(rows, st, plan, family):
    """:class:`hwquant.hw.add.AddJoin`: per lane the aligned sum (shifts are wiring), the
    rounding adder when the output is coarser, the saturation; the output register."""
    layer = plan.network.layer(st.layer)
    f = layer.fine_frac
    widths = [fmt.bits + f - fmt.frac for fmt in layer.in_formats]
    signed = any(fmt.signed for fmt in layer.in_formats)
    bits = max(widths) + 1 + (0 if signed else 1)
    per = adder(max(widths), family)
    shift = f - layer.out_format.frac
    if shift > 0:
        used = max(bits - shift + 1, 1)
        per += const_add(bits, used, family)
        bits = used
    per += saturation(bits, layer.lo, layer.out_format.hi, layer.out_format.bits, family)
    rows.add("add", per * st.lanes)
    rows.add("output_register", register(st.lanes * st.fmt.bits + 1) + luts(2))


def _fifo(rows, st, plan, family):
    """:class:`hwquant.hw.fifo.StreamFifo` of ``depth`` beats."""
    width = st.fmt.bits * st.lanes
    depth = st.depth
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
        raise ValueError(f"FIFO '{st.name}': depth must be a positive integer, not {depth!r}")
    if depth <= FIFO_REGISTER_DEPTH:
        # A shift register: every slot but the last loads the input or its successor (a 2:1
        # mux per bit), a full flag per slot.
        res = register(depth * (width + 1)) + luts((depth - 1) * width + 4 * depth)
        rows.add("registers", res)
        return
    res, cells, _ = ram(depth, width, family, transparent=False)
    rows.add("storage", res, cells)
    pbits = range_bits(depth)
    control = (counter(depth, family) * 2 + register(pbits) + adder(pbits, family) * 2
               + comparator(pbits, family) + register(2) + luts(4))
    rows.add("control", control)
    # The bypass register for a beat arriving at an empty FIFO, muxed with the read data.
    rows.add("bypass", register(width) + mux(width, 2, family))


#: LUTs per step of the in-beat arg-max chain over 1-bit logits (a bipolar or 0/1 output
#: layer): the value path is an OR and the index path selects constants, so the chain is a
#: priority encoder (the first lane holding 1), not comparators and muxes. Least squares over
#: 4, 8, 10 and 16 lanes (Yosys 0.70: xilinx 5/10/14/27 LUT6, ice40 6/13/14/30, ecp5
#: 5/14/16/31, gowin 5/12/15/32).
_PRIORITY_STEP = {"xilinx": 1.69, "ice40": 1.88, "ecp5": 1.98, "gowin": 1.96}


def _argmax(rows, st, plan, family):
    """:class:`hwquant.hw.output.ArgMax`: a compare-and-select chain over the lanes of a
    beat, one more step against the running maximum (value and index registers), a gather
    register of the earlier beats, the ``{cls, logits}`` output register."""
    fmt, lanes, classes = st.fmt, st.in_lanes, st.classes
    beats = classes // lanes
    idx_bits = max(1, (classes - 1).bit_length())
    lane_bits = max(1, (lanes - 1).bit_length()) if lanes > 1 else 0
    step_count = (lanes - 1) + (1 if beats > 1 else 0)
    chain = Resources()
    if lanes > 1 and fmt.bits == 1:
        chain += luts(_PRIORITY_STEP[family] * (lanes - 1))
    elif lanes > 1:
        chain += select_step(fmt.bits, fmt.signed, family, lane_bits) * (lanes - 1)
    out = register(classes * fmt.bits + idx_bits + 1)
    if beats > 1:
        chain += select_step(fmt.bits, fmt.signed, family, idx_bits)
        out += register(fmt.bits + idx_bits + (beats - 1) * lanes * fmt.bits)
        rows.add("control", counter(beats, family) + luts(3))
    if step_count:
        rows.add("compare", chain)
    rows.add("registers", out)


STAGE_COSTS = {
    P.Source: _source,
    P.Window: _window,
    P.Mvu: _mvu,
    P.MaxReduce: _max_reduce,
    P.AvgReduce: _avg_reduce,
    P.Width: _width,
    P.Fork: _fork,
    P.Join: _join,
    P.Fifo: _fifo,
    P.ArgMax: _argmax,
    P.SampleQuant: _sample_quant,
    P.SampleCombine: _sample_combine,
}
