"""Compile an IR network into a build directory: folded ``.hwq``, Verilog, ``compile.json``.

A build directory holds

* ``network.hwq``: the network with its folding (what the Verilog implements),
* ``network.v``: top module ``hwquant_top`` for synthesis and boards (streams only),
* ``network_probes.v``: the same with observe-only per-layer probe ports, for simulation,
* ``compile.json``: layers, folding, analytical cycles, ports.

It is written into a temporary sibling and renamed into place, so a failure never leaves a
half-written directory.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path

from . import hwq, ir
from . import plan as P
from .errors import HwquantError
from .fold import apply_folding
from .golden.binary import flip_negative_directions
from .outdir import atomic_directory
from .paths import check_output_dir

__all__ = ["TOP_NAME", "CompileResult", "compile_network", "check_hardware", "emit_verilog",
           "load_build", "plan_build"]

TOP_NAME = "hwquant_top"


@dataclass(frozen=True)
class CompileResult:
    build_dir: Path
    network: ir.Network
    report: dict
    plan: P.Plan = None


def _check_fifo_spec(spec):
    if spec == "auto" or isinstance(spec, dict):
        return
    if isinstance(spec, bool) or not isinstance(spec, int) or spec < 1:
        raise P.PlanError(f"FIFO depth must be 'auto' or a positive integer, not {spec!r}")


def plan_build(net: ir.Network, fifo_depth="auto", *, progress=None):
    """``(plan, replay result)`` of a folded network: FIFO depths derived from the schedule
    (``"auto"``, :func:`hwquant.schedule.replay.size_fifos`), one depth for every FIFO (an
    integer), or ``{fifo stage: depth}``."""
    from .schedule.replay import replay, size_fifos

    _check_fifo_spec(fifo_depth)
    plan = P.plan_network(net)
    if fifo_depth == "auto":
        return size_fifos(plan, progress=progress)
    if isinstance(fifo_depth, dict):
        plan = plan.with_fifo_depths(fifo_depth)
    else:
        plan = plan.with_fifo_depths({name: fifo_depth for name in plan.fifos})
    return plan, replay(plan)


def check_hardware(plan) -> None:
    """Run the checks the hardware components make on their IR nodes (accumulator ranges,
    epilogue fit, pooling bounds) without constructing any component, so that an invalid
    network fails with one message and no half-built hardware.

    Raises
    ------
    ValueError
        Naming the layer, as the component's constructor would.
    """
    from .hw.engine import engine_for
    from .hw.epilogue import epilogue_class, epilogue_of

    net = plan.network
    for st in plan.stages:
        if isinstance(st, P.Mvu):
            layer = P.mvu_layer(net, st)
            ranges = engine_for(layer).combine_ranges(
                layer, P.mvu_weights(net, net.layer(st.layer)))
            epilogue_class(layer).validate(layer, epilogue_of(layer),
                                           acc_range=(ranges[:, 0], ranges[:, 1]))
        elif isinstance(st, P.SampleCombine):
            from .sample_range import acc_range

            layer = net.layer(st.layer)
            epilogue_class(layer).validate(layer, epilogue_of(layer), acc_range=acc_range(layer))
        elif isinstance(st, P.AvgReduce):
            layer = net.layer(st.layer)
            rq, fmt = layer.requant, layer.out_format
            if rq.lo < fmt.lo or rq.hi > fmt.hi:
                raise ValueError(f"Layer '{layer.name}': average pooling bounds "
                                 f"[{rq.lo}, {rq.hi}] must lie within the output format's "
                                 f"[{fmt.lo}, {fmt.hi}]")


def emit_verilog(plan, *, probes: bool = False) -> str:
    """Verilog text of the network top (module :data:`TOP_NAME`) of a plan or network."""
    from amaranth.back import verilog  # imported here: load_build needs no Amaranth

    from .hw.network import NetworkTop

    return verilog.convert(NetworkTop(plan, probes=probes), name=TOP_NAME, emit_src=False)


def _layer_rows(net, cycles, engines, stages):
    rows = []
    for layer in net.layers:
        if isinstance(layer, ir.Flatten):
            continue
        row = {"name": layer.name, "kind": type(layer).__name__.lower(),
               "cycles": cycles.get(layer.name, 0), "pe": None, "simd": None}
        if isinstance(layer, (ir.Conv2d, ir.Linear)):
            row.update(kind=f"{type(layer).__name__.lower()}", encoding=layer.encoding,
                       pe=layer.fold.pe, simd=layer.fold.simd, fan_in=layer.fan_in,
                       out_channels=layer.out_channels, weight_bits=layer.weight_bits,
                       engine=layer.fold.engine, engine_reason=engines[layer.name]["reason"],
                       engine_stages=layer.fold.stages,
                       engine_stages_reason=stages[layer.name]["reason"])
        rows.append(row)
    return rows


def _check_board(plan, board_name):
    """Model the plan for the board's family; raise naming the largest consumer when it does
    not fit. Returns the utilization for the report."""
    from .boards import load_board
    from .estimate.fit import check_fit
    from .estimate.model import estimate_network

    board = load_board(board_name)
    fit = check_fit(estimate_network(plan, board.family), board)
    return {"id": board.id, "family": board.family, "utilization": fit.utilization()}


def _fifo_rows(plan):
    rows = {}
    for st in plan.stages:
        if isinstance(st, P.Fifo):
            rows[st.name] = {"depth": st.depth, "lanes": st.lanes, "bits": st.fmt.bits,
                             "memory_bits": st.depth * st.lanes * st.fmt.bits}
    return rows


def compile_network(net: ir.Network, out_dir, *, fold: str = "auto",
                    target_cycles: int | None = None, fifo_depth="auto", board=None,
                    engines=None, engine_stages="auto", progress=None,
                    probes: bool = True) -> CompileResult:
    """Fold ``net``, choose each weight layer's dot engine (:func:`hwquant.engines.
    choose_engines`; ``engines``: ``{layer: "plain" | "memo"}`` or ``LAYER=ENGINE`` strings
    overriding the cost model), the pipeline cuts of each adder-graph engine
    (:func:`hwquant.engine_stages.choose_stages`; ``engine_stages``: ``auto``, ``N`` or
    ``LAYER=N`` items), plan its dataflow, size its FIFOs, emit Verilog (plain and
    with probes) and write the build directory. With ``board`` (a board name), check the
    design fits the board by the cost model first. Nothing is written when any step fails.
    ``probes=False`` leaves out the Verilog with probes (``verilog_probes`` None: the build
    cannot be simulated, ``hwquant sweep`` only models and synthesises ``network.v``)."""
    from .engine_stages import choose_stages, parse_stage_spec
    from .engines import choose_engines, parse_engine_specs

    step = progress or (lambda msg: None)
    engines = parse_engine_specs(engines)
    parse_stage_spec(engine_stages)  # a malformed option fails before any work
    out_dir = check_output_dir(out_dir, what="build", marker="compile.json")
    net = apply_folding(net, fold, target_cycles=target_cycles)
    # Negative threshold directions of binary layers go into their weights (every layer's
    # output is unchanged; the thresholds epilogue then needs no per-channel negation).
    net = flip_negative_directions(net)
    board_family = None
    if board is not None:
        from .boards import load_board

        board_family = load_board(board).family
    net, engine_choices = choose_engines(net, engines, family=board_family)
    net, stage_choices = choose_stages(net, engine_stages)
    if board is not None:  # fail fast, before the FIFO sizing; checked again once sized
        _check_board(P.plan_network(net), board)
    step("planning the dataflow and sizing FIFOs")
    plan, sched = plan_build(net, fifo_depth, progress=step)
    fit = None
    if board is not None:
        step(f"checking the design against board {board}")
        fit = _check_board(plan, board)
    check_hardware(plan)
    cycles = plan.layer_cycles()
    # Binary popcounts are built for the board's family (LUT4 trees without a board), as the
    # board's cost model counts them.
    family = fit["family"] if fit is not None else None
    from .hw.binary import popcount_for

    with atomic_directory(out_dir, marker="compile.json", what="build") as tmp, \
            (popcount_for(family) if family is not None else contextlib.nullcontext()):
        step("emitting Verilog")
        (tmp / "network.v").write_text(emit_verilog(plan))
        probe_lanes = {}
        if probes:
            step("emitting Verilog with probes")
            from amaranth.back import verilog

            from .hw.network import NetworkTop

            top = NetworkTop(plan, probes=True)
            probe_lanes = {name: lanes for name, (_, lanes) in top.probe_points().items()}
            (tmp / "network_probes.v").write_text(
                verilog.convert(top, name=TOP_NAME, emit_src=False))
        hwq.save(net, tmp / "network.hwq")
        out = net.output
        fifos = _fifo_rows(plan)
        report = {
            "top": TOP_NAME,
            # File names are relative to the build directory (it may be moved).
            "verilog": "network.v",
            "verilog_probes": "network_probes.v" if probes else None,
            "network": "network.hwq",
            "fifo_depths": {name: row["depth"] for name, row in fifos.items()},
            "fifos": fifos,
            "fifo_memory_bits": sum(row["memory_bits"] for row in fifos.values()),
            # The replayed handshake schedule (what the hardware does when never stalled)
            # and the analytical bound (the busiest stage).
            "cycles_per_inference": sched.period,
            "bottleneck_cycles": plan.bottleneck_cycles(),
            "latency_cycles": sched.latency,
            "layers": _layer_rows(net, cycles, engine_choices, stage_choices),
            "engines": engine_choices,
            "engine_stages": stage_choices,
            "stages": [{"name": st.name, "kind": type(st).__name__, "layer": st.layer,
                        "lanes": st.lanes, "busy_cycles": st.busy} for st in plan.stages],
            "probes": probe_lanes,
            "built_for_family": family or "any",
            "ports": {
                "i_stream": {"lanes": net.input_shape[0], "bits": net.input_format.bits,
                             "signed": net.input_format.signed,
                             "beats_per_inference": (net.input_shape[1] * net.input_shape[2]
                                                     if len(net.input_shape) == 3 else 1)},
                "o_stream": {"classes": out.out_channels, "logit_bits": out.out_format.bits,
                             "cls_bits": max(1, (out.out_channels - 1).bit_length())},
            },
        }
        if fit is not None:
            report["board"] = fit
        (tmp / "compile.json").write_text(json.dumps(report, indent=2))
    return CompileResult(out_dir, net, report, plan)


def load_build(build_dir) -> tuple:
    """``(network, compile report)`` of a build directory, with clear errors."""
    build_dir = Path(build_dir)
    report_path = build_dir / "compile.json"
    if not report_path.is_file():
        raise HwquantError(f"{build_dir} is not a hwquant build directory (no compile.json); "
                           f"run 'hwquant compile NET.hwq -o {build_dir}' first")
    try:
        report = json.loads(report_path.read_text())
    except json.JSONDecodeError as e:
        raise HwquantError(f"{report_path} is corrupt: {e}") from None
    return hwq.load(build_dir / "network.hwq"), report
