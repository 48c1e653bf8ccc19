"""Network top: the IR's layers as a chain of streaming components, one input stream of
pixels and one output stream of ``{cls, logits}``; optional observe-only probes per layer."""

from dataclasses import dataclass

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .. import ir
from ..errors import UnsupportedLayerError
from ..layout import conv_weight_matrix, flatten_weight_matrix
from .fifo import StreamFifo
from .mvu import MatrixVectorUnit
from .output import ArgMax, output_layout
from .pool import AvgReduce, MaxReduce
from .streams import activation_signature, probe_signature

__all__ = ["HardwareStage", "plan_stages", "NetworkTop", "fifo_depths", "layer_cycles",
           "window_schedule_cycles", "bottleneck_cycles"]


@dataclass(frozen=True)
class HardwareStage:
    """One streaming component of the plan: which IR layer it implements, what it is, how to
    build it (a fresh instance per call: components cannot be elaborated twice) and how many
    cycles per inference it needs when never stalled."""

    layer: str
    role: str  # "window", "mvu", "maxpool", "avgpool"
    build: object
    cycles: int
    out_format: object = None
    out_lanes: int = 0
    #: Cycles this stage spends on each input beat (MVU: NF * SF; reducers: 1).
    steps: int = 1
    #: Window geometry ``(in_shape, kernel, stride, padding)`` of a "window" stage.
    geometry: tuple = None


def _window_stage(layer_name, in_shape, kernel, stride, padding, fmt, pad_value=0):
    from .window import SlidingWindow
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    c, h, w = in_shape
    if (kh, kw, sh, sw, ph, pw) == (1, 1, 1, 1, 0, 0):
        return []
    return [HardwareStage(
        layer_name, "window",
        lambda: SlidingWindow(in_shape, kernel, stride, padding, fmt, pad_value=pad_value),
        (h + 2 * ph) * (w + 2 * pw), fmt, kh * kw * c,
        geometry=(in_shape, kernel, stride, padding))]


def _pixels(shape):
    return shape[1] * shape[2] if len(shape) == 3 else 1


def plan_stages(net: ir.Network) -> list:
    """The chain of hardware stages implementing ``net``, in stream order.

    Raises :class:`UnsupportedLayerError` for topologies without hardware yet (branches,
    residual adds, a flatten not followed by a linear layer).
    """
    stages = []
    prev = ir.INPUT
    pending_flatten = None
    for layer in net.layers:
        if layer.inputs != (prev,):
            raise UnsupportedLayerError(
                f"Layer '{layer.name}': only chains of layers have hardware so far "
                f"(it reads {', '.join(layer.inputs)}, not just '{prev}')")
        prev = layer.name
        if isinstance(layer, ir.Flatten):
            pending_flatten = layer
            continue
        if pending_flatten is not None and not isinstance(layer, ir.Linear):
            raise UnsupportedLayerError(
                f"Layer '{pending_flatten.name}': a flatten must be followed by a linear layer "
                f"in hardware, not {type(layer).__name__}")
        if isinstance(layer, ir.Conv2d):
            wm = conv_weight_matrix(layer.weight)
            stages += _window_stage(layer.name, layer.in_shape, layer.kernel, layer.stride,
                                    layer.padding, layer.in_format)
            stages.append(_mvu_stage(layer, wm, _pixels(layer.out_shape)))
        elif isinstance(layer, ir.Linear):
            src_shape = pending_flatten.in_shape if pending_flatten else layer.in_shape
            if len(src_shape) == 3:
                wm = flatten_weight_matrix(layer.weight, src_shape)
                stages += _window_stage(layer.name, src_shape, src_shape[1:], (1, 1), (0, 0),
                                        layer.in_format)
            else:
                wm = layer.weight
            stages.append(_mvu_stage(layer, wm, 1))
            pending_flatten = None
        elif isinstance(layer, ir.MaxPool2d):
            stages += _window_stage(layer.name, layer.in_shape, layer.kernel, layer.stride,
                                    layer.padding, layer.in_format, layer.in_format.lo)
            c = layer.in_shape[0]
            win = layer.kernel[0] * layer.kernel[1]
            stages.append(HardwareStage(
                layer.name, "maxpool", lambda c=c, win=win, f=layer.in_format:
                MaxReduce(c, win, f), _pixels(layer.out_shape), layer.out_format, c))
        elif isinstance(layer, ir.AvgPool2d):
            stages += _window_stage(layer.name, layer.in_shape, layer.kernel, layer.stride,
                                    layer.padding, layer.in_format, 0)
            c = layer.in_shape[0]
            win = layer.kernel[0] * layer.kernel[1]
            stages.append(HardwareStage(
                layer.name, "avgpool", lambda c=c, win=win, lay=layer:
                AvgReduce(c, win, lay.in_format, lay.out_format, lay.requant),
                _pixels(layer.out_shape), layer.out_format, c))
        else:
            raise UnsupportedLayerError(
                f"Layer '{layer.name}': {type(layer).__name__} has no hardware yet")
    if pending_flatten is not None:
        raise UnsupportedLayerError(f"Layer '{pending_flatten.name}': a network may not end in "
                                    f"a flatten")
    if not isinstance(net.output, (ir.Conv2d, ir.Linear)) or len(net.output.out_shape) != 1:
        raise UnsupportedLayerError(f"Layer '{net.output.name}': the last layer must be a linear "
                                    f"layer producing the logits")
    return stages


def _mvu_stage(layer, wm, vectors):
    f = layer.fold
    steps = (layer.out_channels // f.pe) * (layer.fan_in // f.simd)
    return HardwareStage(layer.name, "mvu", lambda: MatrixVectorUnit(layer, wm), vectors * steps,
                         layer.out_format, layer.out_channels, steps=steps)


def fifo_depths(net: ir.Network, spec="auto", stages=None) -> dict:
    """``{layer: depth}`` of the FIFO after each layer's output stream (none after the last).

    ``spec`` is ``"auto"`` (one whole output map of the layer, at least 2) or a depth for
    every FIFO (0: no FIFOs).
    """
    stages = plan_stages(net) if stages is None else stages
    outputs = [st for st in stages if st.role != "window"][:-1]
    if spec == "auto":
        return {st.layer: max(2, _pixels(net.layer(st.layer).out_shape)) for st in outputs}
    if isinstance(spec, bool) or not isinstance(spec, int) or spec < 0:
        raise ValueError(f"FIFO depth must be 'auto' or a non-negative integer, not {spec!r}")
    return {st.layer: spec for st in outputs} if spec else {}


def window_schedule_cycles(geometry, steps: int, images: int = 3) -> int:
    """Steady-state cycles per map of a :class:`SlidingWindow` feeding a consumer that needs
    ``steps`` cycles per window, by replaying their handshake.

    The generator processes one padded position per cycle, but holds each window until the
    consumer takes it; the consumer takes the next window in the cycle its last step issues
    (``MatrixVectorUnit``) or at once (``steps = 1``). So the period is neither the position
    count nor ``windows * steps`` alone whenever stride or padding leave gaps between windows.
    Inputs are assumed to be available (upstream FIFOs).
    """
    (_, h, w), (kh, kw), (sh, sw), (ph, pw) = geometry
    hp, wp = h + 2 * ph, w + 2 * pw
    rows = {o * sh + kh - 1 for o in range((hp - kh) // sh + 1)}
    cols = {o * sw + kw - 1 for o in range((wp - kw) // sw + 1)}
    t, next_accept, done = 0, 0, []
    for _ in range(images):
        for py in range(hp):
            emit_row = py in rows
            for px in range(wp):
                if emit_row and px in cols:
                    accept = max(t + 1, next_accept)
                    next_accept, t = accept + steps, accept
                else:
                    t += 1
        done.append(next_accept)
    return done[-1] - done[-2]


def layer_cycles(net: ir.Network) -> dict:
    """Cycles per inference of each IR layer with hardware: a window generator and its
    consumer are costed together (:func:`window_schedule_cycles`), other stages by their
    beats times steps."""
    out, window = {}, None
    for st in plan_stages(net):
        if st.role == "window":
            window = st
            continue
        cycles = st.cycles
        if window is not None and window.layer == st.layer:
            cycles = window_schedule_cycles(window.geometry, st.steps)
        window = None
        out[st.layer] = max(out.get(st.layer, 0), cycles)
    return out


def bottleneck_cycles(net: ir.Network) -> int:
    """Analytical cycles per inference in steady state: the slowest stage (or the input
    stream, one pixel per cycle)."""
    return max([_pixels(net.input_shape)] + list(layer_cycles(net).values()))


class NetworkTop(wiring.Component):
    """The whole network as one streaming component.

    Parameters
    ----------
    net : :class:`hwquant.ir.Network`
        A chain whose last layer produces the logits.
    probes : bool
        Add an observe-only port ``probe_<layer>`` (payload, valid, ready as outputs) for the
        output stream of every layer with hardware, so a simulation can name the first layer
        that disagrees with the golden model.
    fifo_depth : int or "auto"
        Depth of the FIFO inserted after each layer but the last (0: none). ``"auto"``: one
        whole output map of the layer (:func:`fifo_depths`). A sliding window takes its
        producer's pixels in bursts (it needs ``KH - 1`` rows before its first window), so two
        balanced layers joined by a shallow FIFO stall each other: measured on a 5x5/3x3 pair
        of 1620 and 1728 cycles, depth 4 gave 2074 cycles per inference, a full map 1728.

    Members
    -------
    i_stream : ``In(activation_signature(net.input_format, C_in))``: one pixel per beat, raster
        order (or the whole vector for a vector input).
    o_stream : ``Out(stream.Signature(output_layout(logits_format, classes)))``: one beat per
        inference, ``cls`` in the LSBs then the logits.
    """

    def __init__(self, net: ir.Network, *, probes: bool = False, fifo_depth="auto"):
        self._net = net
        self._stages = plan_stages(net)
        self._probes = probes
        self._fifo_depths = fifo_depths(net, fifo_depth, self._stages)
        in_lanes = net.input_shape[0]  # channels of a pixel, or the whole vector
        out = net.output
        members = {
            "i_stream": In(activation_signature(net.input_format, in_lanes)),
            "o_stream": Out(stream.Signature(output_layout(out.out_format, out.out_channels))),
        }
        if probes:
            for name, (fmt, lanes) in self.probe_points().items():
                members[f"probe_{name}"] = Out(probe_signature(fmt, lanes))
        super().__init__(members)

    @property
    def network(self):
        return self._net

    @property
    def stages(self):
        return tuple(self._stages)

    def probe_points(self) -> dict:
        """``{layer name: (format, lanes)}`` of every layer output stream, in order."""
        points = {}
        for st in self._stages:
            if st.role != "window":
                points[st.layer] = (st.out_format, st.out_lanes)
        return points

    def elaborate(self, platform):
        m = Module()
        upstream = wiring.flipped(self.i_stream)
        for i, st in enumerate(self._stages):
            comp = st.build()
            name = st.layer if st.role != "window" else f"{st.layer}_window"
            m.submodules[name] = comp
            wiring.connect(m, upstream, comp.i_stream)
            upstream = comp.o_stream
            if st.role == "window":
                continue
            if self._probes:
                probe = getattr(self, f"probe_{st.layer}")
                m.d.comb += [probe.payload.eq(upstream.payload), probe.valid.eq(upstream.valid),
                             probe.ready.eq(upstream.ready)]
            depth = self._fifo_depths.get(st.layer, 0)
            if depth:
                q = StreamFifo(st.out_format, st.out_lanes, depth)
                m.submodules[f"{st.layer}_fifo"] = q
                wiring.connect(m, upstream, q.i_stream)
                upstream = q.o_stream
        argmax = ArgMax(self._net.output.out_format, self._net.output.out_channels)
        m.submodules.argmax = argmax
        wiring.connect(m, upstream, argmax.i_stream)
        wiring.connect(m, argmax.o_stream, wiring.flipped(self.o_stream))
        return m

