"""Analytical resource model of a compiled network: the hardware of
:func:`hwquant.hw.network.plan_stages`, costed part by part.

:func:`estimate_network` walks the same stages the network top builds (sliding windows, MVUs,
pooling reducers), adds the FIFO after every layer stage but the last and the output
:class:`~hwquant.hw.output.ArgMax`, and costs every part of every component with the
primitives of :mod:`hwquant.estimate.resources` (the dot engines through the arithmetic kind's
cost model, :func:`hwquant.kinds.cost_model`). Widths are the widths the hardware has:
:func:`hwquant.hw.mvu.accumulator_bits`, the dot engine's ``value_range``, the activation
formats. A stage the model does not know raises; nothing is silently zero.

Memories (line buffers, FIFO storage) are placed the way Yosys's ``memory_libmap`` places them:
the cheapest of flip-flops (cost 1 per bit), distributed RAM (Xilinx ``RAM32M``/``RAM64M``,
ECP5 ``TRELLIS_DPR16X4``, Gowin ``RAM16SDP4``) and block RAM, with the costs of the Yosys
memory libraries. Distributed-RAM cells are counted apart (``lutram``), as
:class:`hwquant.estimate.synth.SynthResult` counts them.

Accuracy
--------
Against Yosys 0.70 (``benchmarks/model_vs_yosys.py``: ten networks of 4- to 8-bit weights,
folded, partly and fully unrolled, and a lone MVU, on ice40/ecp5/xilinx/gowin), the mean
absolute LUT error is 5.3 % (ice40), 6.0 % (ecp5), 9.7 % (xilinx), 3.4 % (gowin), 6.1 %
overall, worst case 19 % (a 64-way operand mux on Xilinx); flip-flops within 2-3 % on average,
DSP blocks exact on 35 of 40 runs (off by 1-3 on the others), block RAMs exact on all 40 and
distributed-RAM cells on all 30 that have them. On three networks held out from the tuning of
the composition (a LeNet-like net and the default digits CNN, fixed w8/a8, auto and serial
folding): 3.8 % mean LUT error, worst 12 % (xilinx); the digits CNN with ``--fold auto`` on
ice40 is +1.5 % LUT, +0.6 % FF, DSP and BRAM exact. The tests hold the model to 20 % of Yosys.

Weakest: wide operand multiplexers on Xilinx (Yosys maps them 10-30 % cheaper or dearer
depending on their context), small LUT multipliers of 4-bit folded engines (10-17 % high) and
the control logic of sliding windows (tens of LUTs, often 30 % off).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .. import ir
from ..errors import UnsupportedLayerError
from ..kinds import cost_model, hw_dot_engine
from .resources import (
    _BRAM_COST,
    FAMILIES,
    Resources,
    _bram_layout,
    adder,
    comparator,
    const_multiplier,
    multiplier,
    mux,
    register,
    rom,
    rom_in_bram,
)

__all__ = ["NetworkEstimate", "ComponentCost", "estimate_network", "ram", "weight_rom",
           "USE_DSP"]

#: Yosys infers DSP blocks by default (``synthesize(..., allow_dsp=True)``); so does the model.
USE_DSP = True


@dataclass(frozen=True)
class ComponentCost:
    """The cost of one part of one hardware component.

    Attributes
    ----------
    layer : str
        IR layer the part belongs to (a sliding window and the FIFO after a layer belong to
        that layer; the output arg-max to the logits layer).
    component : str
        ``"<stage>.<part>"``, e.g. ``"window.line_buffer"``, ``"mvu.dot_engines"``, ``"fifo"``.
    resources : Resources
    lutram : int
        Distributed-RAM cells (not in ``resources.lut``).
    """

    layer: str
    component: str
    resources: Resources
    lutram: int = 0

    def to_json(self):
        """``{layer, component, lut, ff, dsp, bram, lutram}``."""
        return {"layer": self.layer, "component": self.component, **self.resources.to_json(),
                "lutram": self.lutram}


@dataclass(frozen=True)
class NetworkEstimate:
    """Modelled resources of a network on one family.

    Attributes
    ----------
    family : str
    total : Resources
        Sum of :attr:`layers`.
    layers : dict of str to Resources
        Per IR layer with hardware, in stream order.
    components : list of dict
        One row per costed part: ``{layer, component, lut, ff, dsp, bram, lutram}``.
    lutram : int
        Distributed-RAM cells of the whole network (not in ``total.lut``).
    """

    family: str
    total: Resources
    layers: dict
    components: list = field(default_factory=list)
    lutram: int = 0


# -- Small helpers ----------------------------------------------------------------------------

def _bits(n: int) -> int:
    """Width of ``Signal(range(n))``."""
    return max(int(n) - 1, 0).bit_length()


def _lut(n) -> Resources:
    return Resources(lut=max(0, round(n)))


def _counter(modulus: int, family: str) -> Resources:
    """A wrapping counter ``0 .. modulus-1`` with enable: incrementer, wrap compare, FFs."""
    bits = _bits(modulus)
    if bits == 0:
        return Resources()
    return register(bits) + adder(bits, family) + _lut(math.ceil(bits / 3))


def _const_select(values, family) -> Resources:
    """``Array(constants)[index]``: a function of the index bits per output bit."""
    values = [int(v) for v in values]
    if len(set(values)) == 1:
        return Resources()
    width = max(ir.signed_bits_for(min(values), max(values)), 1)
    return rom(len(values), width, family)


# -- Memories ---------------------------------------------------------------------------------

def weight_rom(depth, width, family) -> Resources:
    """A weight ROM with its synchronous read register, as Yosys maps it.

    In block RAM: :func:`~hwquant.estimate.resources.rom`. In LUT4 logic the primitive's fit
    (words of up to 18 bits) does not hold for a weight ROM's wide words: the address decode
    is shared across the word and the cost per bit grows with the depth itself, not whole
    16-word leaves. Measured on 20- to 64-word ROMs of 32 to 768 random bits (Yosys 0.70,
    iCE40/ECP5/Gowin within 10 %): ``depth / 8`` LUT4 per bit, times
    ``1 - 0.1 * log2(width / 64)`` for words wider than 64 bits. Xilinx LUT6 ROMs follow the
    primitive. A LUT ROM keeps its read register (``width`` flip-flops).
    """
    if rom_in_bram(depth, width, family):
        return rom(depth, width, family)
    if family == "xilinx" or depth <= 16:
        return rom(depth, width, family) + register(width)
    share = 1.0 if width <= 64 else max(0.5, 1 - 0.1 * math.log2(width / 64))
    return _lut(depth / 8 * width * share) + register(width)


def _distributed(depth, width, family):
    """``(cost, cells, slices)`` of the cheapest distributed-RAM tiling, or ``None``."""
    if family == "ice40":
        return None
    if family == "xilinx":
        # $__XILINX_LUTRAM_SDP_: cost 8, widthscale 7; 32 x 6 (RAM32M) or 64 x 3 (RAM64M).
        best = None
        for abits, unit in ((5, 6), (6, 3)):
            slices = -(-depth // (1 << abits))
            cells = -(-slices * width // unit)
            cost = cells + 7 * slices * width / unit + 0.5 * (slices - 1) * width
            if best is None or cost < best[0]:
                best = (cost, cells, slices)
        return best
    slices = -(-depth // 16)
    cells = -(-slices * width // 4)
    if family == "ecp5":  # $__TRELLIS_DPR16X4_: cost 4 per cell
        return 4 * cells + 0.5 * (slices - 1) * width, cells, slices
    # gowin $__GOWIN_LUTRAM_: cost 4, widthscale 4
    return slices * width + 0.5 * (slices - 1) * width, cells, slices


def ram(depth, width, family, *, transparent):
    """A simple dual-port RAM (one synchronous write port, one synchronous read port) placed
    as Yosys 0.70 ``memory_libmap`` places it.

    Parameters
    ----------
    depth, width : int
    family : str
    transparent : bool
        The read port is transparent for the write port (sliding-window line buffer, read
        address one cycle ahead); otherwise it has a read enable (FIFO storage).

    Returns
    -------
    (Resources, int, str)
        The cost, the number of distributed-RAM cells, and where it went: ``"ff"``,
        ``"lutram"`` or ``"bram"``.
    """
    if family not in FAMILIES:
        raise ValueError(f"Family must be one of {', '.join(FAMILIES)}, not {family!r}")
    abits = _bits(depth)
    logic_cost = depth * width
    blocks, slices = _bram_layout(depth, width, family)
    # Emulation scores x2: a non-shared read port (1), soft transparency or collision logic
    # (3). Distributed RAM comes first in the libraries: it wins a tie.
    block_cost = blocks * _BRAM_COST[family] + 2 * (1 + 3)
    dist = _distributed(depth, width, family)
    choice = "ff"
    best = logic_cost
    if dist is not None and dist[0] < best:
        choice, best = "lutram", dist[0]
    if block_cost < best:
        choice = "bram"
    if choice == "bram":
        res = Resources(bram=blocks) + _lut(width * (slices - 1))
        if transparent:
            # Soft transparency: write data and an address-match flag registered, a mux.
            res += register(width + 1) + _lut(width) + comparator(max(abits, 1), family)
        else:
            # A read that must not see a write to the same address in the same cycle: Yosys
            # registers the write data, the address and a match flag, and the read data, and
            # muxes (measured on every family: 2 * width + abits + 1 flip-flops).
            res += register(2 * width + abits + 1) + _lut(width + 4 * abits)
        return res, 0, "bram"
    # The read register: the address for a transparent port, the data for an enabled one.
    read_reg = register(abits if transparent else width)
    if choice == "lutram":
        _, cells, dslices = dist
        res = read_reg + mux(width, dslices, family)
        return res, cells, "lutram"
    # Flip-flops: one register per word, a depth-way read mux, a write-enable decoder.
    res = register(depth * width) + read_reg + mux(width, depth, family) + _lut(depth)
    return res, 0, "ff"


# -- Component models -------------------------------------------------------------------------

class _Rows:
    """Collects ``ComponentCost`` rows for one stage."""

    def __init__(self, layer, stage):
        self.layer, self.stage, self.rows = layer, stage, []

    def add(self, part, res, lutram=0):
        if res.lut or res.ff or res.dsp or res.bram or lutram:
            name = self.stage if part is None else f"{self.stage}.{part}"
            self.rows.append(ComponentCost(self.layer, name, res, lutram))


def _window(rows, in_shape, kernel, stride, padding, fmt, family):
    """:class:`hwquant.hw.window.SlidingWindow`."""
    c, h, w = in_shape
    (kh, kw), (ph, pw) = kernel, padding
    hp, wp = h + 2 * ph, w + 2 * pw
    pix_bits = c * fmt.bits
    rows.add("registers", register(kh * kw * pix_bits))
    # Position counters, the emit-mask lookups and the handshake; the padding comparisons are
    # with constants: a LUT or two, carry chains on Gowin.
    control = register(_bits(wp) + _bits(hp) + 1) + _lut(4)
    control += adder(max(_bits(wp), 1), family) + adder(max(_bits(hp), 1), family) + _lut(2)
    for pad, size in ((ph, hp), (pw, wp)):
        if pad:
            bits = max(_bits(size), 1)
            cmp = (comparator(bits, family) if family == "gowin"
                   else _lut(1 if family == "xilinx" else math.ceil(bits / 2)))
            control += cmp * 2
    rows.add("control", control)
    if ph or pw:
        # Padding value or input pixel: folded into flip-flop set/reset for the window
        # register, real gates for the line-buffer write data.
        rows.add("padding_mux", _lut(pix_bits) if kh > 1 else Resources())
    if kh > 1:
        res, cells, _ = ram(wp, (kh - 1) * pix_bits, family, transparent=True)
        # Read address one cycle ahead: a mux in front of the column counter.
        res += _lut(_bits(wp))
        rows.add("line_buffer", res, cells)


def _mvu(rows, layer, family):
    """:class:`hwquant.hw.mvu.MatrixVectorUnit` with the kind's dot engines."""
    from ..hw.mvu import accumulator_bits

    pe, simd = layer.fold.pe, layer.fold.simd
    oc, fan_in = layer.out_channels, layer.fan_in
    nf, sf = oc // pe, fan_in // simd
    xbits = layer.in_format.bits
    unrolled = nf * sf == 1
    acc_bits = accumulator_bits(layer)
    nf_bits = _bits(max(nf, 2))

    # Stage 0: input buffer and fold counters; stage-valid bits of the pipeline.
    rows.add("input_buffer", register(fan_in * xbits))
    # busy, valid of stages 1-3, out valid; first/last of stages 1-2 and the counters of a
    # folded dimension (registers that only ever hold 0 are removed).
    control = register(5) + _lut(6)
    if sf > 1:
        control += _counter(sf, family) + register(4)
    if nf > 1:
        control += _counter(nf, family) + register(3 * nf_bits)
    if nf * sf > 1:
        control += _counter(nf * sf, family)
    rows.add("control", control)

    # Stage 1: operand register (SIMD slice of the input buffer) and the weight ROM.
    kind = cost_model(layer)
    engine = hw_dot_engine(layer)
    options = engine.options(layer)
    # Optional face of a cost model: register bits its DSP blocks absorb.
    absorb = getattr(kind, "absorbed_registers", None)
    absorbed = (absorb(layer, family, use_dsp=USE_DSP) if absorb is not None
                else {"operand": 0, "dot": [False] * pe})
    rows.add("operand_register", register(simd * xbits - absorbed["operand"]))
    if sf > 1:
        rows.add("operand_mux", mux(simd * xbits, sf, family))
    if not unrolled:
        width = pe * engine.word_bits(simd, layer.weight_bits, **options)
        rows.add("weight_rom", weight_rom(nf * sf, width, family))
    rows.add("dot_engines", kind.resources(layer, family, use_dsp=USE_DSP))

    # Stage 2: dot registers, one per PE, as wide as the engine's worst-case sum.
    weights = np.asarray(layer.weight_matrix(), dtype=np.int64)
    dot_bits = []
    for p in range(pe):
        ws = weights[p].tolist() if unrolled else None
        lo, hi = engine.value_range(ws, simd=simd, x_format=layer.in_format,
                                    weight_bits=layer.weight_bits, **options)
        dot_bits.append(ir.signed_bits_for(lo, hi))
    rows.add("dot_registers",
             register(sum(b for b, gone in zip(dot_bits, absorbed["dot"], strict=True)
                          if not gone)))

    # Stage 3: accumulators (add or load on the first SIMD step). Unfolded over SIMD the
    # accumulator is a sign-extended copy of the dot register: equal flip-flops merge.
    if sf > 1:
        acc = register(acc_bits * pe)
        acc += (adder(acc_bits, family) + mux(acc_bits, 2, family)) * pe
    else:
        acc = register(sum(min(b, acc_bits) for b in dot_bits))
    rows.add("accumulators", acc)

    # Stage 4: epilogue per PE into the output register.
    rq = layer.requant
    epi = Resources()
    for p in range(pe):
        chans = [n * pe + p for n in range(nf)]
        biases = [int(layer.bias[c]) for c in chans]
        mults = [1] if rq is None else [int(rq.multiplier[c]) for c in chans]
        shift = 0 if rq is None else rq.shift
        epi += _epilogue(acc_bits, biases, mults, shift, rq, layer.out_format.bits, family)
    rows.add("epilogue", epi)
    out_bits = layer.out_format.bits
    out = register(oc * out_bits + 1)
    if nf > 1:
        out += _lut(nf)  # write-enable decode per fold step
    rows.add("output_register", out)


def _const_add(bits, used, family) -> Resources:
    """``v + constant`` over ``bits``, of which only the top ``used`` sum bits are used (a
    rounding shift drops the rest): iCE40 builds LUTs only for used sum bits beside its
    carry chain, a Xilinx carry chain takes the constant without LUTs for half of them, ECP5
    and Gowin carry chains are LUTs throughout."""
    if family == "ice40":
        return _lut(used)
    if family == "xilinx":
        return _lut(math.ceil(used / 2))
    return adder(bits, family)


def _epilogue(acc_bits, biases, mults, shift, rq, out_bits, family) -> Resources:
    """One PE of :func:`hwquant.hw.arith.requantize` (or ``acc + bias`` for logits):
    measured on its own, bias and rounding constants fold into one carry chain."""
    res = _const_select(biases, family)
    t_bits = acc_bits
    varying = len(set(biases)) > 1
    if rq is None:
        if varying:
            return res + adder(acc_bits, family)
        return res + (_const_add(acc_bits, acc_bits, family) if any(biases) else Resources())
    scaled = any(m != 1 for m in mults)
    if varying or (scaled and any(biases)):
        res += adder(acc_bits, family)  # a variable bias, or one the multiplier needs first
        t_bits += 1
        biases = [0]
    if scaled:
        if len(set(mults)) == 1:
            from .fixed import const_product

            res += const_product(mults[0], t_bits, True, family, use_dsp=USE_DSP)[0]
            t_bits += max(2, mults[0].bit_length() + 1)
        else:
            res += _const_select(mults, family)
            mbits = ir.signed_bits_for(min(mults), max(mults))
            res += multiplier(t_bits, mbits, family, USE_DSP, signed=True)
            t_bits += mbits
    used = max(t_bits - max(shift, 0) + 1, 1)
    if shift > 0 or any(biases):
        res += _const_add(t_bits, used, family)
        if any(biases) and family in ("ecp5", "gowin"):
            res += _lut(used / 2)  # bias and rounding constants in separate chains
    return res + _saturation(used, rq.lo, rq.hi, out_bits, family)


def _saturation(bits, lo, hi, out_bits, family) -> Resources:
    """:func:`hwquant.hw.arith.saturate` of a signed ``bits``-wide value into ``out_bits``: a
    comparison with a constant and a mux per bound the value's width does not already
    guarantee (``v < 0`` is the sign bit); the muxes of both bounds share a LUT per output
    bit."""
    vmin, vmax = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    res = Resources()
    if hi < vmax:
        if hi > 0 and (hi + 1) & hi == 0:
            # v > 2**k - 1: any of the upper bits set (and not negative).
            per_lut = 5 if family == "xilinx" else 3
            res += _lut(math.ceil(max(bits - hi.bit_length(), 1) / per_lut))
        else:
            res += comparator(bits, family)
        res += _lut(out_bits)
    if lo > vmin:
        res += _lut(1) if lo == 0 else comparator(bits, family)
        if hi >= vmax:
            res += _lut(out_bits)
    return res


# A comparison feeding a 2:1 mux of the same operands, chained (max pooling, arg-max), costs
# less or more than the two primitives apart: ABC merges the comparator's operand inversion
# into the mux LUTs on iCE40, and a signed comparison chain costs more on ECP5 and Gowin.
# Factors on comparator + mux, measured on 8-bit and 4-bit unsigned max pooling and 16- to
# 24-bit signed arg-max chains of 3 and 9 steps (Yosys 0.70).
_SELECT_CHAIN = {
    "ice40": {False: 0.65, True: 0.93},
    "ecp5": {False: 1.0, True: 1.4},
    "xilinx": {False: 1.2, True: 0.9},
    "gowin": {False: 0.94, True: 1.42},
}


def _select_step(bits, signed, family, extra_mux_bits=0) -> Resources:
    """One compare-and-select step of a max chain over ``bits``-wide values."""
    base = comparator(bits, family) + mux(bits, 2, family)
    if extra_mux_bits:
        base += mux(extra_mux_bits, 2, family)
    return _lut(base.lut * _SELECT_CHAIN[family][signed])


def _maxpool(rows, channels, window, fmt, family):
    """:class:`hwquant.hw.pool.MaxReduce`."""
    step = _select_step(fmt.bits, fmt.signed, family)
    rows.add("reduce", step * (channels * (window - 1)))
    rows.add("output_register", register(channels * fmt.bits + 1))


def _avgpool(rows, layer, family):
    """:class:`hwquant.hw.pool.AvgReduce`."""
    from .fixed import adder_tree

    c = layer.in_shape[0]
    window = layer.kernel[0] * layer.kernel[1]
    rq = layer.requant
    mult = int(rq.multiplier[0])
    bits = layer.in_format.bits
    per = adder_tree([bits] * window, family)
    t_bits = bits + math.ceil(math.log2(window)) if window > 1 else bits
    t_bits += 1  # signed after the rounding shift
    if mult != 1:
        per += const_multiplier(mult, t_bits, True, family, use_dsp=USE_DSP)
        t_bits += max(2, mult.bit_length() + 1)
    if rq.shift > 0:
        per += adder(max(t_bits - rq.shift + 1, 1), family)
        t_bits = max(t_bits - rq.shift + 1, 1)
    per += _saturation(t_bits, rq.lo, rq.hi, layer.out_format.bits, family)
    rows.add("reduce", per * c)
    rows.add("output_register", register(c * layer.out_format.bits + 1))


def _fifo(rows, fmt, lanes, depth, family):
    """:class:`hwquant.hw.fifo.StreamFifo` (Amaranth ``SyncFIFOBuffered``)."""
    width = fmt.bits * lanes
    if depth == 1:
        rows.add(None, register(width + 1) + _lut(2))
        return
    inner = depth - 1
    res, cells, _ = ram(inner, width, family, transparent=False)
    control = (_counter(inner, family) * 2 + register(_bits(depth + 1) + 1)
               + adder(max(_bits(depth + 1), 1), family) + _lut(4))
    rows.add("storage", res, cells)
    rows.add("control", control)


def _argmax(rows, fmt, classes, family):
    """:class:`hwquant.hw.output.ArgMax`."""
    idx_bits = max(1, (classes - 1).bit_length())
    step = _select_step(fmt.bits, fmt.signed, family, idx_bits)
    rows.add("compare", step * (classes - 1))
    rows.add("output_register", register(classes * fmt.bits + idx_bits + 1))


# -- The network ------------------------------------------------------------------------------

def estimate_network(net: ir.Network, family: str, *, fifo_depths="auto") -> NetworkEstimate:
    """Model the resources of the hardware :func:`hwquant.compile.compile_network` emits.

    Parameters
    ----------
    net : :class:`hwquant.ir.Network`
        A folded network (as in a build directory's ``network.hwq``).
    family : str
        One of ``"ice40"``, ``"ecp5"``, ``"xilinx"``, ``"gowin"``.
    fifo_depths : "auto", int or dict of str to int
        Depth of the FIFO after each layer: a ``{layer: depth}`` map as in ``compile.json``
        (``fifo_depths``), or a spec for :func:`hwquant.hw.network.fifo_depths` (``"auto"``:
        one output map per layer, an integer: that depth everywhere, 0: none).

    Returns
    -------
    NetworkEstimate

    Raises
    ------
    ValueError
        Unknown family, or FIFO depths that are not valid for the network.
    hwquant.errors.UnsupportedLayerError
        A stage of the plan the model has no cost for (it never returns zero instead).
    """
    from ..hw.network import fifo_depths as plan_fifo_depths
    from ..hw.network import plan_stages

    if family not in FAMILIES:
        raise ValueError(f"Family must be one of {', '.join(FAMILIES)}, not {family!r}")
    stages = plan_stages(net)
    depths = _fifo_depths(net, fifo_depths, stages, plan_fifo_depths)
    rows = []
    for st in stages:
        layer = net.layer(st.layer)
        r = _Rows(st.layer, st.role)
        if st.role == "window":
            _window(r, *_window_geometry(net, layer), family)
        elif st.role == "mvu":
            _mvu(r, layer, family)
        elif st.role == "maxpool":
            _maxpool(r, layer.in_shape[0], layer.kernel[0] * layer.kernel[1],
                     layer.in_format, family)
        elif st.role == "avgpool":
            _avgpool(r, layer, family)
        else:
            raise UnsupportedLayerError(f"Layer '{st.layer}': the cost model does not know "
                                        f"hardware stage {st.role!r}")
        _check_costed(r, st)
        rows += r.rows
        if st.role != "window" and depths.get(st.layer, 0):
            f = _Rows(st.layer, "fifo")
            _fifo(f, st.out_format, st.out_lanes, depths[st.layer], family)
            rows += f.rows
    out = net.output
    a = _Rows(out.name, "argmax")
    _argmax(a, out.out_format, out.out_channels, family)
    rows += a.rows

    layers = {}
    lutram = 0
    for row in rows:
        layers[row.layer] = layers.get(row.layer, Resources()) + row.resources
        lutram += row.lutram
    total = sum(layers.values(), Resources())
    return NetworkEstimate(family=family, total=total, layers=layers,
                           components=[row.to_json() for row in rows], lutram=lutram)


def _fifo_depths(net, spec, stages, plan):
    if not isinstance(spec, dict):
        return plan(net, spec, stages)
    allowed = {st.layer for st in stages if st.role != "window"}
    out = {}
    for name, depth in spec.items():
        if name not in allowed:
            raise ValueError(f"FIFO depths name {name!r}, which is not a layer with an output "
                             f"stream in hardware")
        if not isinstance(depth, int) or isinstance(depth, bool) or depth < 0:
            raise ValueError(f"Layer '{name}': FIFO depth must be a non-negative integer, not "
                             f"{depth!r}")
        out[name] = depth
    return out


def _window_geometry(net, layer):
    """``(in_shape, kernel, stride, padding, fmt)`` of the sliding window in front of
    ``layer``, as :func:`hwquant.hw.network.plan_stages` builds it."""
    if isinstance(layer, ir.Linear):
        src = net.layer(layer.inputs[0])
        shape = src.in_shape if isinstance(src, ir.Flatten) else layer.in_shape
        return shape, tuple(shape[1:]), (1, 1), (0, 0), layer.in_format
    return layer.in_shape, layer.kernel, layer.stride, layer.padding, layer.in_format


def _check_costed(rows, stage):
    if not rows.rows:
        raise UnsupportedLayerError(f"Layer '{stage.layer}': the cost model found nothing to "
                                    f"cost in its {stage.role} stage")
