"""Network top: the stages of a :class:`hwquant.plan.Plan` as streaming components connected
by their streams, one input stream of pixels and one output stream of ``{cls, logits}``;
optional observe-only probes per layer."""

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .. import ir
from .. import plan as P
from ..sample_range import inside_sums, mvu_twin
from ..schedule.streams import NETWORK_FIFO_REGISTERED_READY
from .add import AddJoin
from .fifo import StreamFifo
from .fork import Fork
from .mvu import MatrixVectorUnit
from .output import ArgMax, output_layout
from .pool import AvgReduce, MaxReduce
from .sample_quant import SampleCombine, SampleQuantizer
from .streams import activation_signature, probe_signature
from .width import StreamWidth
from .window import SlidingWindow

__all__ = ["NetworkTop", "build_stage"]


def build_stage(plan: P.Plan, stage: P.Stage):
    """A fresh component for one plan stage (components cannot be elaborated twice)."""
    net = plan.network
    if isinstance(stage, P.Window):
        return SlidingWindow(stage.in_shape, stage.kernel, stage.stride, stage.padding,
                             stage.fmt, simd=stage.simd, order=stage.order,
                             pad_value=stage.pad_value)
    if isinstance(stage, P.Mvu):
        layer = P.mvu_layer(net, stage)
        return MatrixVectorUnit(layer, P.mvu_weights(net, net.layer(stage.layer)))
    if isinstance(stage, P.SampleQuant):
        return SampleQuantizer(stage.in_format, stage.lanes, stage.beats, stage.qbits)
    if isinstance(stage, P.SampleCombine):
        layer = net.layer(stage.layer)
        return SampleCombine(layer, p_format=mvu_twin(layer).out_format,
                             rin=inside_sums(layer))
    if isinstance(stage, P.MaxReduce):
        return MaxReduce(stage.lanes, stage.window, stage.fmt)
    if isinstance(stage, P.AvgReduce):
        layer = net.layer(stage.layer)
        return AvgReduce(stage.lanes, stage.window, layer.in_format, layer.out_format,
                         layer.requant)
    if isinstance(stage, P.Width):
        return StreamWidth(stage.fmt, stage.in_lanes, stage.lanes)
    if isinstance(stage, P.Fork):
        return Fork(stage.fmt, stage.lanes, stage.branches)
    if isinstance(stage, P.Join):
        return AddJoin(net.layer(stage.layer), stage.lanes)
    if isinstance(stage, P.Fifo):
        return StreamFifo(stage.fmt, stage.lanes, stage.depth,
                          registered_ready=NETWORK_FIFO_REGISTERED_READY)
    if isinstance(stage, P.ArgMax):
        return ArgMax(stage.fmt, stage.classes, stage.in_lanes)
    raise TypeError(f"No hardware for stage {stage.name!r} ({type(stage).__name__})")


def _in_ports(stage, comp):
    if isinstance(stage, P.Join):
        return [comp.a_stream, comp.b_stream]
    if isinstance(stage, P.SampleCombine):
        return [comp.p_stream, comp.t_stream]
    return [comp.i_stream]


def _out_port(stage, comp, port):
    if isinstance(stage, P.Fork):
        return getattr(comp, f"o_stream{port}")
    if isinstance(stage, P.SampleQuant):
        return (comp.o_stream, comp.r_stream)[port]
    return comp.o_stream


class NetworkTop(wiring.Component):
    """The whole network as one streaming component.

    Parameters
    ----------
    plan : :class:`hwquant.plan.Plan` or :class:`hwquant.ir.Network`
        The dataflow plan (a network is planned with FIFO depths 2; compile passes the plan
        with derived depths).
    probes : bool
        Add an observe-only port ``probe_<layer>`` (payload, valid, ready as outputs) on the
        output stream of every layer with hardware (:meth:`probe_points`), so a simulation
        can name the first layer that disagrees with the golden model.

    Members
    -------
    i_stream : ``In(activation_signature(net.input_format, C_in))``: one pixel per beat,
        raster order (or the whole vector for a vector input).
    o_stream : ``Out(stream.Signature(output_layout(logits_format, classes)))``: one beat per
        inference, ``cls`` in the LSBs then the logits.
    """

    def __init__(self, plan, *, probes: bool = False):
        if isinstance(plan, ir.Network):
            plan = P.plan_network(plan)
        self._plan = plan
        self._probes = probes
        net = plan.network
        out = net.output
        members = {
            "i_stream": In(activation_signature(net.input_format, net.input_shape[0])),
            "o_stream": Out(stream.Signature(output_layout(out.out_format, out.out_channels))),
        }
        if probes:
            for name, (fmt, lanes) in self.probe_points().items():
                members[f"probe_{name}"] = Out(probe_signature(fmt, lanes))
        super().__init__(members)

    @property
    def network(self):
        return self._plan.network

    @property
    def plan(self):
        return self._plan

    def probe_points(self) -> dict:
        """``{layer name: (format, lanes)}`` of every layer output stream, in network order."""
        return {name: (st.fmt, st.lanes) for name, st in self._plan.layer_outputs().items()}

    def elaborate(self, platform):
        m = Module()
        comps = {}
        for st in self._plan.stages:
            if isinstance(st, P.Source):
                continue
            comp = build_stage(self._plan, st)
            comps[st.name] = comp
            m.submodules[st.name] = comp
            for port, ref in zip(_in_ports(st, comp), st.inputs):
                if ref.stage == "input":
                    upstream = wiring.flipped(self.i_stream)
                else:
                    src = self._plan.stage(ref.stage)
                    upstream = _out_port(src, comps[ref.stage], ref.port)
                wiring.connect(m, upstream, port)
        if self._probes:
            for name, st in self._plan.layer_outputs().items():
                probe = getattr(self, f"probe_{name}")
                s = _out_port(st, comps[st.name], 0)
                m.d.comb += [probe.payload.eq(s.payload), probe.valid.eq(s.valid),
                             probe.ready.eq(s.ready)]
        last = self._plan.stages[-1]
        wiring.connect(m, comps[last.name].o_stream, wiring.flipped(self.o_stream))
        return m
