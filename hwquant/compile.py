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

import json
from dataclasses import dataclass
from pathlib import Path

from amaranth.back import verilog

from . import hwq, ir
from .errors import HwquantError
from .fold import apply_folding
from .hw.network import NetworkTop, bottleneck_cycles, fifo_depths, layer_cycles
from .outdir import atomic_directory

__all__ = ["TOP_NAME", "CompileResult", "compile_network", "emit_verilog", "load_build"]

TOP_NAME = "hwquant_top"


@dataclass(frozen=True)
class CompileResult:
    build_dir: Path
    network: ir.Network
    report: dict


def emit_verilog(net: ir.Network, *, probes: bool = False, fifo_depth="auto") -> str:
    """Verilog text of the network top (module :data:`TOP_NAME`)."""
    top = NetworkTop(net, probes=probes, fifo_depth=fifo_depth)
    return verilog.convert(top, name=TOP_NAME, emit_src=False)


def _layer_rows(net, cycles):
    rows = []
    for layer in net.layers:
        if isinstance(layer, ir.Flatten):
            continue
        row = {"name": layer.name, "kind": type(layer).__name__.lower(),
               "cycles": cycles.get(layer.name, 0), "pe": None, "simd": None}
        if isinstance(layer, (ir.Conv2d, ir.Linear)):
            row.update(kind=f"{type(layer).__name__.lower()}", encoding=layer.encoding,
                       pe=layer.fold.pe, simd=layer.fold.simd, fan_in=layer.fan_in,
                       out_channels=layer.out_channels, weight_bits=layer.weight_bits)
        rows.append(row)
    return rows


def compile_network(net: ir.Network, out_dir, *, fold: str = "auto",
                    target_cycles: int | None = None, fifo_depth="auto",
                    progress=None) -> CompileResult:
    """Fold ``net``, emit Verilog (plain and with probes) and write the build directory."""
    step = progress or (lambda msg: None)
    out_dir = Path(out_dir)
    net = apply_folding(net, fold, target_cycles=target_cycles)
    fifo_depths(net, fifo_depth)  # validate before writing anything
    cycles = layer_cycles(net)
    with atomic_directory(out_dir, marker="compile.json", what="build") as tmp:
        step("emitting Verilog")
        (tmp / "network.v").write_text(emit_verilog(net, fifo_depth=fifo_depth))
        step("emitting Verilog with probes")
        top = NetworkTop(net, probes=True, fifo_depth=fifo_depth)
        probes = list(top.probe_points())
        (tmp / "network_probes.v").write_text(
            verilog.convert(top, name=TOP_NAME, emit_src=False))
        hwq.save(net, tmp / "network.hwq")
        out = net.output
        report = {
            "top": TOP_NAME,
            # File names are relative to the build directory (it may be moved).
            "verilog": "network.v",
            "verilog_probes": "network_probes.v",
            "network": "network.hwq",
            "fifo_depths": fifo_depths(net, fifo_depth),
            "cycles_per_inference": bottleneck_cycles(net),
            "layers": _layer_rows(net, cycles),
            "probes": probes,
            "ports": {
                "i_stream": {"lanes": net.input_shape[0], "bits": net.input_format.bits,
                             "signed": net.input_format.signed,
                             "beats_per_inference": (net.input_shape[1] * net.input_shape[2]
                                                     if len(net.input_shape) == 3 else 1)},
                "o_stream": {"classes": out.out_channels, "logit_bits": out.out_format.bits,
                             "cls_bits": max(1, (out.out_channels - 1).bit_length())},
            },
        }
        (tmp / "compile.json").write_text(json.dumps(report, indent=2))
    return CompileResult(out_dir, net, report)


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
