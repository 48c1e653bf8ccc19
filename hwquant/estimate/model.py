"""Analytical resource model of a compiled network: the stages of its dataflow plan
(:func:`hwquant.plan.plan_network`), costed part by part.

:func:`estimate_network` walks the stages the network top (:class:`hwquant.hw.network.
NetworkTop`) builds from the same plan (sliding windows, MVUs, pooling reducers, width
converters, forks, residual joins, FIFOs with their depths, the output arg-max) and costs
every part of every component with :mod:`hwquant.estimate.stages` (one function per stage
type, the MVU in :mod:`hwquant.estimate.mvu`, its dot engines through the arithmetic kind's
cost face, :func:`hwquant.kinds.cost_model`, and its epilogue through
:mod:`hwquant.estimate.epilogue`), from the primitives of :mod:`hwquant.estimate.resources`
and the helpers of :mod:`hwquant.estimate.common`. Widths are those the hardware has,
re-derived from the IR (the model never imports Amaranth or the generators). A stage type the
model does not know raises; nothing is silently zero. Costs follow the parallelism (``PE``,
``SIMD``, lanes per beat); only memories grow with the layer size.

Memories (window buffers, MVU input buffers, FIFO storage) are placed the way Yosys's
``memory_libmap`` places them: the cheapest of flip-flops (cost 1 per bit), distributed RAM
(Xilinx ``RAM32M``/``RAM64M``, ECP5 ``TRELLIS_DPR16X4``, Gowin ``RAM16SDP4``) and block RAM,
with the costs of the Yosys memory libraries. Distributed-RAM cells are counted apart
(``lutram``), as :class:`hwquant.estimate.synth.SynthResult` counts them.

Accuracy
--------
On the folded dataflow, against Yosys 0.70 (``benchmarks/model_vs_yosys.py``: ten networks of
4- to 8-bit weights, folded, partly and fully unrolled, and a lone MVU, on four families,
40 runs): mean absolute LUT error 6.6 % (ice40), 5.7 % (ecp5), 12.6 % (xilinx), 4.2 %
(gowin), 7.3 % overall, worst 21.4 % (xilinx); flip-flops 4.2-6.2 % on average; block RAMs
exact on all 40, DSP blocks on 35. The digits default CNN (fixed w8/a8, ``--fold auto``) on
ice40: +3.4 % LUT, +2.5 % FF, DSP and BRAM exact. The tests hold whole networks to 20 % LUT
and 10 % FF of Yosys.

Over every arithmetic kind (``benchmarks/calibrate_estimator.py``: one-layer networks of each
kind, fully unrolled, partly folded and folded, narrow (3-4 bit, requantized) and wide (6-8
bit, logits), four families, 144 runs, Yosys 0.70), median / worst |error|: LUT 6.4 % /
89 %, FF 2.6 % / 26.8 %; DSP exact on 142, BRAM on all 144. Per kind (LUT median / worst, FF
median / worst): fixed 5.8 / 14.5 %, 2.1 / 10.7 %; pow2 5.2 / 8.6 %, 2.0 / 18.2 %; bitmask
4.7 / 10.0 %, 2.1 / 17.5 %; the constant-matrix engine 4.7 / 13.0 %, 10.0 / 26.8 % (the
flip-flops of small unrolled requantized layers, Xilinx worst); binary 10.8 / 55.7 %, 3.6 /
10.2 %; template 6.5 / 35.5 %, 4.4 / 11.8 %; bdcnn 12.7 / 89 %, 2.0 / 24.3 %. The kinds with
their own engine are sized from the engine contract (:mod:`hwquant.engine_shape`); what is
left is LUTs of fully unrolled layers: binary 8 x 16 with one threshold (ecp5 +56 %, xilinx
+49 %: Yosys maps much of the constant-weight popcounts outside carry chains), template and
bdcnn on xilinx (+36 %, +89 %: LUT6 packs the carry-save sums tighter than the per-full-adder
cost), and bdcnn folded layers on ecp5/gowin (-13 % to -19 %). Folded layers meet the goals
on every kind (LUT median 5.1 %, worst 16 %).

Stage by stage, after the corrections (each component synthesized alone; ice40 / xilinx):
MVUs -10 % to +19 % / +1 % to +23 % (four MVUs; the worst a small linear layer with a
128-word input buffer), register-mode window -3 % / +4 %, memory-mode window of the max pool
+8 % / +50 % (a padded conv window +19 % on ice40), max-pool reducer -34 % / +10 %, FIFOs
-20 % to -2 % / -16 %, arg-max -7 % (one lane) and -22 % (two lanes) on ice40, width
converters a few LUTs low (6 vs 9 on ice40). The primitives keep the accuracy stated in
:mod:`hwquant.estimate.resources`, the pow2 engines that of :mod:`hwquant.estimate.pow2`.

Weakest: the control logic of memory-mode sliding windows on xilinx (nested counters, address
steps, row hand-over: tens of LUTs, up to 50-60 % high), the max-pool reducer on ice40, small
FIFOs and width converters, and the epilogue faces for thresholds and scaled logits, which
have not been checked against Yosys at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import ir
from .. import plan as P
from ..errors import UnsupportedLayerError
from .common import check_family, ram, weight_rom
from .mvu import USE_DSP
from .resources import Resources
from .stages import STAGE_COSTS

__all__ = ["NetworkEstimate", "ComponentCost", "estimate_network", "ram", "weight_rom",
           "USE_DSP"]


@dataclass(frozen=True)
class ComponentCost:
    """The cost of one part of one hardware component.

    Attributes
    ----------
    layer : str
        IR layer the part belongs to (a sliding window and a width converter belong to the
        layer that reads them, a FIFO or fork to the layer whose output it carries, the
        output arg-max to the logits layer).
    stage : str
        The plan stage (the Verilog instance name), e.g. ``"conv1_window"``, ``"conv1_fifo"``.
    component : str
        ``"<stage type>.<part>"``, e.g. ``"window.buffer"``, ``"mvu.dot_engines"``,
        ``"fifo.storage"``.
    resources : Resources
    lutram : int
        Distributed-RAM cells (not in ``resources.lut``).
    """

    layer: str
    stage: str
    component: str
    resources: Resources
    lutram: int = 0

    def to_json(self):
        """``{layer, stage, component, lut, ff, dsp, bram, lutram}``."""
        return {"layer": self.layer, "stage": self.stage, "component": self.component,
                **self.resources.to_json(), "lutram": self.lutram}


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
        One row per costed part: ``{layer, stage, component, lut, ff, dsp, bram, lutram}``.
    lutram : int
        Distributed-RAM cells of the whole network (not in ``total.lut``).
    """

    family: str
    total: Resources
    layers: dict
    components: list = field(default_factory=list)
    lutram: int = 0


def _kind(stage) -> str:
    """``"window"``, ``"mvu"``, ``"max_reduce"``, ``"argmax"``, ...: the stage type."""
    name = type(stage).__name__
    if name == "ArgMax":
        return "argmax"
    return "".join(f"_{ch.lower()}" if ch.isupper() and i else ch.lower()
                   for i, ch in enumerate(name))


class _Rows:
    """Collects ``ComponentCost`` rows for one stage."""

    def __init__(self, stage):
        self.layer, self.stage, self.kind, self.rows = stage.layer, stage.name, _kind(stage), []

    def add(self, part, res, lutram=0):
        if res.lut or res.ff or res.dsp or res.bram or lutram:
            name = self.kind if part is None else f"{self.kind}.{part}"
            self.rows.append(ComponentCost(self.layer, self.stage, name, res, lutram))


def estimate_network(net_or_plan, family: str, *, fifo_depths=None) -> NetworkEstimate:
    """Model the resources of the hardware :func:`hwquant.compile.compile_network` emits.

    Parameters
    ----------
    net_or_plan : :class:`hwquant.ir.Network` or :class:`hwquant.plan.Plan`
        A folded network (planned with :func:`hwquant.plan.plan_network`) or its plan, whose
        :class:`~hwquant.plan.Fifo` stages carry their depths.
    family : str
        One of ``"ice40"``, ``"ecp5"``, ``"xilinx"``, ``"gowin"``.
    fifo_depths : dict of str to int, optional
        ``{fifo stage name: depth}`` (as ``compile.json`` stores ``fifo_depths``), replacing
        the plan's depths for the FIFOs it names.

    Returns
    -------
    NetworkEstimate

    Raises
    ------
    ValueError
        Unknown family, a FIFO name that is not in the plan (:class:`hwquant.plan.PlanError`)
        or a depth that is not a positive integer.
    TypeError
        ``net_or_plan`` is neither a network nor a plan, or ``fifo_depths`` is not a dict.
    hwquant.errors.UnsupportedLayerError
        A stage the model has no cost for, or one it found nothing to cost in (it never
        returns zero instead).
    """
    check_family(family)
    if isinstance(net_or_plan, P.Plan):
        plan = net_or_plan
    elif isinstance(net_or_plan, ir.Network):
        plan = P.plan_network(net_or_plan)
    else:
        raise TypeError(f"Estimate needs a Network or a Plan, not "
                        f"{type(net_or_plan).__name__}")
    if fifo_depths is not None:
        if not isinstance(fifo_depths, dict):
            raise TypeError(f"FIFO depths must be a dict of FIFO stage name to depth, not "
                            f"{fifo_depths!r}")
        for name, depth in fifo_depths.items():
            if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
                raise ValueError(f"FIFO '{name}': depth must be a positive integer, not "
                                 f"{depth!r}")
        plan = plan.with_fifo_depths(fifo_depths)

    rows = []
    for st in plan.stages:
        cost = STAGE_COSTS.get(type(st))
        if cost is None:
            raise UnsupportedLayerError(f"Layer '{st.layer}': the cost model does not know "
                                        f"stage {st.name!r} ({type(st).__name__})")
        r = _Rows(st)
        cost(r, st, plan, family)
        if not r.rows and not isinstance(st, P.Source):
            raise UnsupportedLayerError(f"Layer '{st.layer}': the cost model found nothing "
                                        f"to cost in stage {st.name!r}")
        rows += r.rows

    layers = {}
    lutram = 0
    for row in rows:
        layers[row.layer] = layers.get(row.layer, Resources()) + row.resources
        lutram += row.lutram
    total = sum(layers.values(), Resources())
    return NetworkEstimate(family=family, total=total, layers=layers,
                           components=[row.to_json() for row in rows], lutram=lutram)
