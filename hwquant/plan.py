"""The dataflow plan: which hardware stages implement a network and how their streams connect.

Pure Python (no Amaranth, no torch). :func:`plan_network` turns a folded
:class:`~hwquant.ir.Network` into a :class:`Plan` once per compile; the folding pass, FIFO
sizing, the cycle model (:mod:`hwquant.schedule.replay`), the cost model and the network top
(:class:`hwquant.hw.network.NetworkTop`) all read the same plan.

Every stage is a typed, frozen record (:class:`Window`, :class:`Mvu`, :class:`MaxReduce`,
:class:`AvgReduce`, :class:`Width`, :class:`Fork`, :class:`Join`, :class:`Fifo`,
:class:`ArgMax`, and the network :class:`Source`). A stage reads the output streams named
by its ``inputs`` (``(stage, port)`` pairs, in the order of its input ports) and writes
``outputs`` streams of ``lanes`` lanes in ``fmt`` (a :class:`Fork` has one output port per
branch, all alike). Streams follow the folded convention of :mod:`hwquant.layout`.

How layers map to stages:

* conv2d: :class:`Window` (kernel order, ``SIMD`` lanes out) -> :class:`Mvu` (``SIMD`` in,
  ``PE`` out). A 1x1, stride-1, unpadded conv needs no window.
* flatten + linear, linear: the map (or vector) streams straight into the :class:`Mvu`;
  the linear weights are permuted to the stream's ``(y, x, c)`` order.
* pooling: :class:`Window` in channel order -> :class:`MaxReduce` / :class:`AvgReduce`, at
  the producer's lane count.
* add: :class:`Join` of its two operand streams.
* a ``bdcnn`` layer with the per-sample range (:mod:`hwquant.sample_range`):
  :class:`SampleQuant` (the whole input map buffered; its ``Q``-bit codes on port 0, one
  ``[m, R]`` token per sample on port 1 into a 1-beat-per-sample :class:`Fifo`) -> the
  :class:`Window` on the codes (conv) -> :class:`Mvu` (``P = W @ q``, ``sample=True``) ->
  :class:`SampleCombine` (reads the MVU and the tokens; ``m * Rin + RHU(R * P / L)``, the
  layer's epilogue).
* A tensor read by several layers goes through a :class:`Fork`; every fork branch and every
  layer output but the last gets a :class:`Fifo` (depths from
  :func:`hwquant.schedule.replay.size_fifos` unless given).
* A :class:`Width` converter is inserted wherever a stream's lane count differs from what
  its consumer takes. The logits go through an :class:`ArgMax` to the top's output.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from . import ir
from .errors import HwquantError, UnsupportedLayerError

__all__ = [
    "PlanError",
    "Ref",
    "Stage",
    "Source",
    "Window",
    "Mvu",
    "MaxReduce",
    "AvgReduce",
    "Width",
    "Fork",
    "Join",
    "Fifo",
    "SampleQuant",
    "SampleCombine",
    "ArgMax",
    "Plan",
    "plan_network",
    "window_simd_choices",
    "layer_simd_choices",
    "needs_window",
    "mvu_weights",
    "mvu_layer",
    "mvu_cycles",
]


class PlanError(HwquantError, ValueError):
    """The network or its folding cannot be mapped onto the dataflow hardware."""


@dataclass(frozen=True)
class Ref:
    """Output port ``port`` of stage ``stage``."""

    stage: str
    port: int = 0


@dataclass(frozen=True)
class Stage:
    """One streaming component of the plan.

    ``name`` is unique in the plan (the Verilog instance name); ``layer`` the IR layer it
    belongs to (``"input"`` for the source); ``inputs`` the streams it reads; ``fmt`` and
    ``lanes`` its output streams' format and lane count; ``beats`` the beats per inference
    on each output port; ``outputs`` its number of output ports.
    """

    name: str
    layer: str
    inputs: tuple
    fmt: ir.ActFormat
    lanes: int
    beats: int

    @property
    def outputs(self) -> int:
        return 1

    @property
    def busy(self) -> int:
        """Cycles per inference this stage needs at least (its own rate limit)."""
        return self.beats


@dataclass(frozen=True)
class Source(Stage):
    """The network input stream (``i_stream`` of the top): one pixel or one vector per beat."""


@dataclass(frozen=True)
class Window(Stage):
    """Sliding-window generator (:class:`hwquant.hw.window.SlidingWindow`)."""

    in_shape: tuple = ()
    kernel: tuple = (1, 1)
    stride: tuple = (1, 1)
    padding: tuple = (0, 0)
    simd: int = 1
    order: str = "kernel"
    pad_value: int = 0
    in_lanes: int = 1

    @property
    def in_beats(self) -> int:
        c, h, w = self.in_shape
        return h * w * c // self.in_lanes

    @property
    def busy(self) -> int:
        return max(self.beats, self.in_beats)


@dataclass(frozen=True)
class Mvu(Stage):
    """Matrix-vector unit of a conv2d or linear layer (:class:`hwquant.hw.mvu.MatrixVectorUnit`);
    ``vectors`` input vectors per inference, each ``nf * sf`` cycles (:func:`mvu_cycles`).
    ``sample``: the MVU of a per-sample ``bdcnn`` layer, computing :func:`mvu_layer` (``P = W @
    q`` on the codes); ``engine_stages`` the pipeline cuts inside its dot engine (the layer's
    :attr:`hwquant.ir.Fold.stages`), each a cycle more of latency
    (:func:`hwquant.schedule.mvu.mvu_latency`)."""

    vectors: int = 1
    nf: int = 1
    sf: int = 1
    sample: bool = False
    engine_stages: int = 0

    @property
    def busy(self) -> int:
        return self.vectors * self.nf * self.sf


@dataclass(frozen=True)
class MaxReduce(Stage):
    """Max over each ``window`` beats of a channel-order window stream."""

    window: int = 1

    @property
    def busy(self) -> int:
        return self.beats * self.window


@dataclass(frozen=True)
class AvgReduce(Stage):
    """Sum over each ``window`` beats, then requantized (average pooling)."""

    window: int = 1

    @property
    def busy(self) -> int:
        return self.beats * self.window


@dataclass(frozen=True)
class Width(Stage):
    """Lane-count converter (:class:`hwquant.hw.width.StreamWidth`)."""

    in_lanes: int = 1

    @property
    def busy(self) -> int:
        return max(self.beats, self.beats * self.lanes // self.in_lanes)


@dataclass(frozen=True)
class Fork(Stage):
    """One stream in, ``branches`` identical streams out (:class:`hwquant.hw.fork.Fork`)."""

    branches: int = 2

    @property
    def outputs(self) -> int:
        return self.branches


@dataclass(frozen=True)
class Join(Stage):
    """Residual add of two streams (:class:`hwquant.hw.add.AddJoin`)."""


@dataclass(frozen=True)
class Fifo(Stage):
    """FIFO of ``depth`` beats (:class:`hwquant.hw.fifo.StreamFifo`)."""

    depth: int = 2


@dataclass(frozen=True)
class SampleQuant(Stage):
    """Per-sample quantizer of a ``bdcnn`` layer's whole input map
    (:class:`hwquant.hw.sample_quant.SampleQuantizer`): reads ``beats`` beats of ``lanes``
    values of ``in_format`` per sample; port 0 the same beats as ``Q``-bit codes (``fmt``),
    port 1 one ``[m, R]`` token per sample (two lanes of
    :func:`hwquant.sample_range.token_format`). Map memory of ``beats`` words; no overlap of
    two samples: :attr:`busy` is ``2 * beats + Q + S + 4``."""

    in_format: ir.ActFormat = None
    qbits: int = 8

    @property
    def outputs(self) -> int:
        return 2

    @property
    def busy(self) -> int:
        from .sample_range import quantizer_cycles

        return quantizer_cycles(self.in_format, self.beats, self.qbits)


@dataclass(frozen=True)
class SampleCombine(Stage):
    """The combine of a per-sample ``bdcnn`` layer (:class:`hwquant.hw.sample_quant.
    SampleCombine`): inputs the MVU's ``P`` beats and the token FIFO; ``positions * nf`` beats
    per sample, one per cycle, the layer's output format out."""

    positions: int = 1
    nf: int = 1


@dataclass(frozen=True)
class ArgMax(Stage):
    """The logits (``in_beats`` beats of ``in_lanes``) to one ``{cls, logits}`` beat."""

    classes: int = 1
    in_lanes: int = 1

    @property
    def busy(self) -> int:
        return self.classes // self.in_lanes


@dataclass(frozen=True)
class Plan:
    """The stages of a network in topological order (the source first, the arg-max last)."""

    network: ir.Network
    stages: tuple
    _index: dict = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        object.__setattr__(self, "_index", {st.name: st for st in self.stages})

    def stage(self, name: str) -> Stage:
        return self._index[name]

    def consumers(self, name: str) -> list:
        """``[(stage, input port), ...]`` reading any output of stage ``name``."""
        return [(st, k) for st in self.stages for k, ref in enumerate(st.inputs)
                if ref.stage == name]

    @property
    def fifos(self) -> dict:
        """``{fifo stage name: depth}``."""
        return {st.name: st.depth for st in self.stages if isinstance(st, Fifo)}

    def with_fifo_depths(self, depths: dict) -> Plan:
        """The plan with FIFO depths replaced (``{fifo stage name: depth}``)."""
        unknown = set(depths) - set(self.fifos)
        if unknown:
            raise PlanError(f"No FIFO named {', '.join(sorted(unknown))}; FIFOs: "
                            f"{', '.join(self.fifos) or 'none'}")
        stages = tuple(replace(st, depth=int(depths[st.name])) if st.name in depths else st
                       for st in self.stages)
        return Plan(self.network, stages)

    def layer_outputs(self) -> dict:
        """``{IR layer: stage}``: the stage whose output stream is the layer's output (the
        stream the per-layer probes observe), in network order."""
        out = {}
        for st in self.stages:
            if isinstance(st, (Mvu, MaxReduce, AvgReduce, Join, SampleCombine)):
                out[st.layer] = st
        return out

    def bottleneck_cycles(self) -> int:
        """Analytical cycles per inference: the slowest stage's :attr:`Stage.busy`."""
        return max(st.busy for st in self.stages)

    def layer_cycles(self) -> dict:
        """``{IR layer: cycles}``: the busiest stage of each layer (windows count with their
        consumer's layer)."""
        out = {}
        for st in self.stages:
            if st.layer != ir.INPUT and not isinstance(st, (Fifo, Fork, Width)):
                out[st.layer] = max(out.get(st.layer, 0), st.busy)
        return out


# -- folding rules ------------------------------------------------------------------------------

def needs_window(layer) -> bool:
    """Whether a conv layer needs a sliding window (anything but 1x1, stride 1, no padding)."""
    return (layer.kernel, layer.stride, layer.padding) != ((1, 1), (1, 1), (0, 0))


def window_simd_choices(channels: int, kernel) -> list:
    """SIMD values a sliding window can emit: divisors of the channels (line buffer in
    memory), or multiples of the channels dividing the window size (window registers)."""
    size = kernel[0] * kernel[1] * channels
    divs = [d for d in range(1, channels + 1) if channels % d == 0]
    mults = [channels * k for k in range(2, kernel[0] * kernel[1] + 1)
             if size % (channels * k) == 0]
    return divs + mults


def layer_simd_choices(layer) -> list:
    """SIMD values the hardware supports for a weight layer."""
    if isinstance(layer, ir.Conv2d):
        c = layer.in_shape[0]
        if needs_window(layer):
            return window_simd_choices(c, layer.kernel)
        return [d for d in range(1, c + 1) if c % d == 0]
    return [d for d in range(1, layer.fan_in + 1) if layer.fan_in % d == 0]


def mvu_cycles(layer, fold=None) -> int:
    """Cycles per inference of a weight layer's MVU when never stalled, whatever its kind:
    ``vectors * NF * SF`` (``vectors``: output pixels of a conv, 1 for a linear layer) for
    the layer's fold or ``fold``. The one definition the folding pass, the plan's
    :attr:`Mvu.busy` and the cost models use; the replay (:mod:`hwquant.schedule.replay`)
    shows the hardware meets it."""
    fold = layer.fold if fold is None else fold
    vectors = _pixels(layer.out_shape) if isinstance(layer, ir.Conv2d) else 1
    return vectors * (layer.out_channels // fold.pe) * (layer.fan_in // fold.simd)


def _window_in_lanes(channels: int, simd: int) -> int:
    return simd if channels % simd == 0 else channels


# -- planning -----------------------------------------------------------------------------------

class _Builder:
    def __init__(self, net):
        self.net = net
        self.stages = []
        self.names = set()
        # tensor name -> (Ref, fmt, lanes, beats); consumed once per reader
        self.tensors = {}
        self.pending_reads = {}

    def add(self, stage):
        if stage.name in self.names:
            raise PlanError(f"Stage name {stage.name!r} is used twice")
        self.names.add(stage.name)
        self.stages.append(stage)
        return Ref(stage.name)

    def unique(self, base):
        name, k = base, 1
        while name in self.names or name in self.net_names:
            k += 1
            name = f"{base}{k}"
        return name

    @property
    def net_names(self):
        return {layer.name for layer in self.net.layers}

    def read(self, tensor, lanes, reader):
        """The stream of ``tensor`` at ``lanes`` lanes for consumer ``reader`` (a Width
        converter is inserted if needed)."""
        queue = self.pending_reads[tensor]
        ref, fmt, have, beats = queue.pop(0)
        if have == lanes:
            return ref
        total = beats * have
        if total % lanes:
            raise PlanError(f"Layer '{reader}': {lanes} lanes do not divide the "
                            f"{total} elements of '{tensor}'")
        return self.add(Width(self.unique(f"{reader}_width"), reader, (ref,), fmt, lanes,
                              total // lanes, in_lanes=have))

    def publish(self, tensor, ref, fmt, lanes, beats, *, fifo=True):
        """Make a layer's output stream available to its readers: a fork when several layers
        read it, and a FIFO on every fork branch (the skip path of a residual block needs one,
        even from the network input) and after a single reader's stream unless ``fifo`` is
        false (the network input read once)."""
        readers = self.readers(tensor)
        n = len(readers)
        if n > 1:
            fork = self.add(Fork(self.unique(f"{tensor}_fork"), tensor, (ref,), fmt, lanes,
                                 beats, branches=n))
            refs = [Ref(fork.stage, k) for k in range(n)]
        else:
            refs = [ref] * n
        entries = []
        for k, (r, reader) in enumerate(zip(refs, readers)):
            if fifo or n > 1:
                base = f"{tensor}_fifo" if n == 1 else f"{tensor}_to_{reader}_fifo"
                r = self.add(Fifo(self.unique(base), tensor, (r,), fmt, lanes, beats, depth=2))
            entries.append((r, fmt, lanes, beats))
        self.pending_reads[tensor] = entries

    def readers(self, tensor):
        out = []
        for layer in self.net.layers:
            out += [layer.name] * sum(1 for src in layer.inputs if src == tensor)
        return out


def _pixels(shape) -> int:
    return shape[1] * shape[2] if len(shape) == 3 else 1


def plan_network(net: ir.Network, *, fifo_depths: dict | None = None) -> Plan:
    """The dataflow plan of a folded network (FIFO depths 2 unless ``fifo_depths`` names
    them; :func:`hwquant.schedule.replay.size_fifos` derives real ones).

    Raises :class:`PlanError` (a ``ValueError``) naming the layer for what the hardware does
    not support: a flatten not followed by a linear layer, a SIMD the stream cannot supply, a
    network whose last layer is not a linear (or 1x1-output conv) producing the logits.
    """
    b = _Builder(net)
    src_lanes = net.input_shape[0]
    src = b.add(Source("input", ir.INPUT, (), net.input_format, src_lanes,
                       _pixels(net.input_shape)))
    b.publish(ir.INPUT, src, net.input_format, src_lanes, _pixels(net.input_shape),
              fifo=False)
    last = net.output
    if not isinstance(last, (ir.Conv2d, ir.Linear)) or len(last.out_shape) != 1:
        raise UnsupportedLayerError(f"Layer '{last.name}': the last layer must be a linear "
                                    f"layer producing the logits")
    for layer in net.layers:
        if isinstance(layer, ir.Flatten):
            consumers = net.consumers(layer.name)
            if not all(isinstance(c, ir.Linear) for c in consumers):
                bad = next(c for c in consumers if not isinstance(c, ir.Linear))
                raise UnsupportedLayerError(
                    f"Layer '{layer.name}': a flatten must be followed by a linear layer in "
                    f"hardware, not {type(bad).__name__}")
            if len(consumers) != 1:
                raise UnsupportedLayerError(f"Layer '{layer.name}': a flatten must have exactly "
                                            f"one reader in hardware")
            # A flatten only renames the stream: its reader reads its producer's stream.
            b.pending_reads[layer.name] = [b.pending_reads[layer.inputs[0]].pop(0)]
            continue
        is_last = layer is last
        if isinstance(layer, (ir.Conv2d, ir.Linear)):
            ref, lanes, beats = _plan_weight_layer(b, net, layer)
        elif isinstance(layer, (ir.MaxPool2d, ir.AvgPool2d)):
            ref, lanes, beats = _plan_pool(b, layer)
        elif isinstance(layer, ir.Add):
            lanes = b.pending_reads[layer.inputs[0]][0][2]
            a = b.read(layer.inputs[0], lanes, layer.name)
            c = b.read(layer.inputs[1], lanes, layer.name)
            beats = _pixels(layer.out_shape) * layer.in_shape[0] // lanes
            ref = b.add(Join(layer.name, layer.name, (a, c), layer.out_format, lanes, beats))
        else:
            raise UnsupportedLayerError(
                f"Layer '{layer.name}': {type(layer).__name__} has no hardware yet")
        if is_last:
            classes = layer.out_channels
            b.add(ArgMax("argmax", layer.name, (ref,), layer.out_format, classes, 1,
                         classes=classes, in_lanes=lanes))
        else:
            b.publish(layer.name, ref, layer.out_format, lanes, beats)
    plan = Plan(net, tuple(b.stages))
    if fifo_depths:
        plan = plan.with_fifo_depths(fifo_depths)
    return plan


def _plan_weight_layer(b, net, layer):
    from .sample_range import code_format, is_sample, mvu_twin, token_format

    pe, simd = layer.fold.pe, layer.fold.simd
    choices = layer_simd_choices(layer)
    if simd not in choices:
        raise PlanError(f"Layer '{layer.name}': SIMD={simd} cannot be streamed; this layer "
                        f"supports SIMD {choices}")
    nf, sf = layer.out_channels // pe, layer.fan_in // simd
    sample = is_sample(layer)
    fmt, tokens = layer.in_format, None

    def read(lanes):
        nonlocal fmt, tokens
        x = b.read(layer.inputs[0], lanes, layer.name)
        if not sample:
            return x
        # The quantizer buffers the whole map (any beat order) and re-emits it as codes.
        d = layer.kind_data
        size = int(np.prod(layer.in_shape)) if isinstance(layer, ir.Conv2d) else layer.fan_in
        fmt = code_format(d.qbits)
        q = b.add(SampleQuant(b.unique(f"{layer.name}_quant"), layer.name, (x,), fmt, lanes,
                              size // lanes, in_format=layer.in_format, qbits=d.qbits))
        tokens = b.add(Fifo(b.unique(f"{layer.name}_tokens"), layer.name, (Ref(q.stage, 1),),
                            token_format(layer.in_format), 2, 1, depth=2))
        return Ref(q.stage, 0)

    if isinstance(layer, ir.Conv2d):
        c = layer.in_shape[0]
        vectors = _pixels(layer.out_shape)
        if needs_window(layer):
            in_lanes = _window_in_lanes(c, simd)
            x = read(in_lanes)
            wshape = layer.in_shape
            windows = vectors
            x = b.add(Window(f"{layer.name}_window", layer.name, (x,), fmt, simd,
                             windows * sf, in_shape=wshape, kernel=layer.kernel,
                             stride=layer.stride, padding=layer.padding, simd=simd,
                             order="kernel", pad_value=0, in_lanes=in_lanes))
        else:
            x = read(simd)
    else:
        vectors = 1
        x = read(simd)
    out_fmt = mvu_twin(layer).out_format if sample else layer.out_format
    # The stage producing the layer's output carries its name: the MVU, or the combine.
    mvu_name = b.unique(f"{layer.name}_mvu") if sample else layer.name
    ref = b.add(Mvu(mvu_name, layer.name, (x,), out_fmt, pe, vectors * nf,
                    vectors=vectors, nf=nf, sf=sf, sample=sample,
                    engine_stages=layer.fold.stages))
    if sample:
        ref = b.add(SampleCombine(layer.name, layer.name, (ref, tokens), layer.out_format, pe,
                                  vectors * nf, positions=vectors, nf=nf))
    return ref, pe, vectors * nf


def _plan_pool(b, layer):
    c = layer.in_shape[0]
    lanes = b.pending_reads[layer.inputs[0]][0][2]
    if c % lanes:
        lanes = c
    x = b.read(layer.inputs[0], lanes, layer.name)
    window = layer.kernel[0] * layer.kernel[1]
    positions = _pixels(layer.out_shape)
    chunks = c // lanes
    pad = layer.in_format.lo if isinstance(layer, ir.MaxPool2d) else 0
    x = b.add(Window(f"{layer.name}_window", layer.name, (x,), layer.in_format, lanes,
                     positions * chunks * window, in_shape=layer.in_shape, kernel=layer.kernel,
                     stride=layer.stride, padding=layer.padding, simd=lanes, order="channel",
                     pad_value=pad, in_lanes=lanes))
    cls = MaxReduce if isinstance(layer, ir.MaxPool2d) else AvgReduce
    ref = b.add(cls(layer.name, layer.name, (x,), layer.out_format, lanes, positions * chunks,
                    window=window))
    return ref, lanes, positions * chunks



def mvu_layer(net: ir.Network, stage: Mvu):
    """The layer an :class:`Mvu` stage computes: its IR layer, or for a per-sample ``bdcnn``
    layer the twin on the ``Q``-bit codes (:func:`hwquant.sample_range.mvu_twin`)."""
    layer = net.layer(stage.layer)
    if stage.sample:
        from .sample_range import mvu_twin

        return mvu_twin(layer)
    return layer


def mvu_weights(net: ir.Network, layer):
    """The ``(OC, fan_in)`` weight matrix of ``layer`` in its input stream's element order:
    window-lane order for a conv, ``(y, x, c)`` for a linear layer behind a flatten."""
    from .layout import conv_weight_matrix, flatten_weight_matrix

    if isinstance(layer, ir.Conv2d):
        return conv_weight_matrix(layer.weight)
    src = layer.inputs[0]
    if src != ir.INPUT and isinstance(net.layer(src), ir.Flatten):
        return flatten_weight_matrix(layer.weight, net.layer(src).in_shape)
    return layer.weight
