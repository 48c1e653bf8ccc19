"""``hwquant demo``: the whole flow on the bundled default, ending in a Markdown report.

train the digits CNN -> quantize (fixed, 8/8 bits) -> compile (auto folding) -> cocotb +
Verilator bit-exact simulation -> analytical and Yosys resource estimate ->
``report.md``, ``report.json`` and ``layers.png`` in the output directory. The directory is
assembled in a temporary sibling and renamed into place at the end.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

__all__ = ["run_demo", "render_markdown", "plot_layers"]


#: The board ``hwquant demo`` builds for unless told otherwise (the default network fits it).
DEFAULT_BOARD = "icebreaker"


def run_demo(out_dir, *, epochs: int = 30, vectors: int = 16, family: str | None = None,
             board: str | None = DEFAULT_BOARD, synth: bool = True, wbits: int = 8,
             abits: int = 8, progress=None) -> dict:
    """Run the default flow; return the report (also written as ``report.json``).

    With ``board`` (a board id or TOML path, default :data:`DEFAULT_BOARD`) the network is
    folded for that board (``--fold auto``: the most images/s that fits), and the board build
    (:func:`hwquant.fpga_flow.build_for_board`: Yosys, nextpnr, the bitstream where the
    family has an open flow) is what is simulated and estimated; the report adds its
    utilization, Fmax and images/s at Fmax. With ``board=None`` the network is compiled with
    ``--fold auto`` alone and estimated for ``family`` (default ice40).

    Raises :class:`hwquant.errors.VerificationFailed` (after writing the report) when the
    simulation is not bit-exact.
    """
    import torch

    from . import hwq
    from .compile import compile_network
    from .data import load_dataset
    from .estimate.report import estimate_build
    from .flow import quantize_model
    from .outdir import atomic_directory
    from .simulate import simulate_build
    from .train import default_model, export_model, train

    step = progress or (lambda msg: None)
    out_dir = Path(out_dir).resolve()
    target = None
    if board is not None:
        from .boards import load_board

        target = load_board(board)
        if family is not None and family != target.family:
            from .errors import HwquantError

            raise HwquantError(f"--family {family} contradicts board '{target.id}' "
                               f"({target.family}); give one of them")
        family = target.family
    family = family or "ice40"
    timings = {}
    with atomic_directory(out_dir, marker="report.json", what="demo") as tmp:
        t = time.monotonic()
        ds = load_dataset("digits")
        step(f"training the default CNN on digits ({epochs} epochs)")
        model = default_model(ds.x_train.shape[1:], ds.num_classes, seed=0)
        train(model, ds, epochs=epochs, seed=0, progress=False)
        export_model(model, torch.tensor(ds.x_test[:2]), tmp / "model.pt2")
        timings["train_s"] = time.monotonic() - t

        t = time.monotonic()
        step(f"quantizing: fixed point, {wbits}-bit weights, {abits}-bit activations")
        net, qrep = quantize_model(tmp / "model.pt2", ds, {"name": "digits"}, method="fixed",
                                   wbits=wbits, abits=abits, calib=256, seed=0)
        hwq.save(net, tmp / "network.hwq")
        timings["quantize_s"] = time.monotonic() - t

        t = time.monotonic()
        built = None
        if target is None:
            step("compiling to Verilog (auto folding)")
            comp = compile_network(net, tmp / "build", fold="auto")
            compile_report = comp.report
            timings["compile_s"] = time.monotonic() - t
        else:
            from .fpga_flow import build_for_board

            step(f"building for {target.name} ({target.id}): folding, Yosys, place and route"
                 + (", bitstream" if target.nextpnr is not None else ""))
            built = build_for_board(net, target, tmp / "build", fold="auto",
                                    bitstream=target.nextpnr is not None,
                                    require_timing=False, progress=step)
            compile_report = json.loads((tmp / "build" / "compile.json").read_text())
            timings["board_build_s"] = time.monotonic() - t

        t = time.monotonic()
        step(f"simulating {vectors} test images in Verilator (random stalls)")
        sim = simulate_build(tmp / "build", vectors=vectors, seed=0, progress=step)
        timings["sim_s"] = time.monotonic() - t

        t = time.monotonic()
        step(f"estimating resources for {family}" + (" (model + Yosys)" if synth else ""))
        est = estimate_build(tmp / "build", family=family, synth=synth, progress=step)
        timings["estimate_s"] = time.monotonic() - t

        report = {
            "accuracy": qrep["accuracy"],
            "quantization": {k: qrep[k] for k in ("method", "wbits", "abits")},
            "compile": {"cycles_per_inference": compile_report["cycles_per_inference"],
                        "layers": compile_report["layers"]},
            "board": None if built is None else _board_summary(built),
            "sim": {k: v for k, v in sim.items() if k not in ("streams", "run_dir")},
            "estimate": est,
            "timings": {k: round(v, 2) for k, v in timings.items()},
            "files": {"model": "model.pt2", "network": "network.hwq",
                      "verilog": "build/network.v", "plot": "layers.png"},
        }
        plot_layers(report, tmp / "layers.png")
        (tmp / "report.json").write_text(json.dumps(report, indent=2, default=str))
        (tmp / "report.md").write_text(render_markdown(report))
    step(f"report: {out_dir / 'report.md'}")
    if not sim["passed"]:
        from .errors import VerificationFailed
        raise VerificationFailed(f"demo simulation is not bit-exact (see {out_dir}/report.md)")
    return report


def _board_summary(built: dict) -> dict:
    """What the demo report shows of a board build (``build.json``)."""
    pnr = built["pnr"] or {}
    return {"id": built["board"]["id"], "name": built["board"]["name"],
            "family": built["board"]["family"], "device": built["board"]["device"],
            "clock_mhz": built["clock"]["design_mhz"], "fold": built["fold"],
            "model": built["model"], "synth": {k: built["synth"][k] for k in
                                                ("lut", "ff", "dsp", "bram")},
            "fmax_mhz": pnr.get("fmax_mhz"), "timing_met": pnr.get("timing_met"),
            "fmax_fraction_of_adder16": pnr.get("fmax_fraction_of_adder16"),
            "utilization": pnr.get("utilization"),
            "images_per_s": built["images_per_s"],
            "bitstream": built["files"].get("bitstream")}


def plot_layers(report: dict, path) -> None:
    """Bar charts per layer: cycles per inference and modelled LUTs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = report["compile"]["layers"]
    names = [row["name"] for row in layers]
    luts = {row["name"]: row["lut"] for row in report["estimate"].get("layers", [])}
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax1.bar(names, [row["cycles"] for row in layers], color="#4477aa")
    ax1.axhline(report["compile"]["cycles_per_inference"], color="k", ls="--", lw=1,
                label="bottleneck")
    ax1.set_ylabel("cycles per inference")
    ax1.legend()
    ax2.bar(names, [luts.get(n, 0) for n in names], color="#cc6677")
    ax2.set_ylabel(f"LUTs (model, {report['estimate']['family']})")
    for ax in (ax1, ax2):
        ax.tick_params(axis="x", rotation=45)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _pct(v):
    return "—" if v is None else f"{v:.2%}"


def render_markdown(report: dict) -> str:
    """The human report of a demo run."""
    acc, sim, est = report["accuracy"], report["sim"], report["estimate"]
    q = report["quantization"]
    lines = [
        "# hwquant demo report",
        "",
        "Default digits CNN (scikit-learn 8x8 digits, 450 held-out test images).",
        "",
        "## Accuracy",
        "",
        "| model | test accuracy |",
        "|---|---|",
        f"| float | {_pct(acc['float'])} |",
        (f"| {q['method']} w{q['wbits']}/a{q['abits']} (integer golden model) | "
         f"{_pct(acc['quantized'])} |"),
        "",
        "## Hardware",
        "",
        "| layer | kind | PE | SIMD | cycles |",
        "|---|---|---|---|---|",
    ]
    for row in report["compile"]["layers"]:
        lines.append(f"| {row['name']} | {row['kind']} | {row['pe'] or '—'} | "
                     f"{row['simd'] or '—'} | {row['cycles']} |")
    verdict = "**bit-exact**" if sim["passed"] else "**MISMATCH**"
    lines += [
        "",
        (f"Simulation (cocotb + Verilator, random valid gaps and ready stalls): {verdict} on "
         f"{sim['vectors']} test images, {sim['mismatches']} mismatching output words; every "
         f"layer's output stream was compared too."),
        "",
        (f"Cycles per inference: predicted {sim['predicted_cycles']}, measured "
         f"{sim['cycles_per_inference']} (stall-free, back to back); latency "
         f"{sim['latency_cycles']} cycles."),
        "",
        f"## Resources ({est['family']})",
        "",
        "| source | LUT | FF | DSP | BRAM |",
        "|---|---|---|---|---|",
        (f"| analytical model | {est['model']['lut']} | {est['model']['ff']} | "
         f"{est['model']['dsp']} | {est['model']['bram']} |"),
    ]
    if est.get("synth"):
        s = est["synth"]
        lines.append(f"| Yosys `synth_{est['family']}` | {s['lut']} | {s['ff']} | {s['dsp']} | "
                     f"{s['bram']} |")
    lines += _board_lines(report.get("board"))
    lines += ["", "![per-layer cycles and LUTs](layers.png)", "", "## Timings", ""]
    lines += [f"- {k.removesuffix('_s')}: {v} s" for k, v in report["timings"].items()]
    return "\n".join(lines) + "\n"


def _board_lines(b) -> list:
    """The report's board section: utilization, Fmax and images/s of the board build."""
    if not b:
        return []
    rate = b["images_per_s"]
    used, avail = b["model"]["used"], b["model"]["available"]
    lines = ["", f"## Board: {b['name']} ({b['device']})", "",
             "| | LUT | FF | DSP | BRAM |", "|---|---|---|---|---|",
             ("| model (network), of the device | "
              + " | ".join(f"{used.get(k, 0)} / {avail.get(k, '—')}"
                           for k in ("lut", "ff", "dsp", "bram")) + " |"),
             (f"| Yosys, board top | {b['synth']['lut']} | {b['synth']['ff']} | "
              f"{b['synth']['dsp']} | {b['synth']['bram']} |"), ""]
    if b["fmax_mhz"] is not None:
        frac = b["fmax_fraction_of_adder16"]
        lines.append(f"nextpnr: Fmax **{b['fmax_mhz']:.1f} MHz** against the "
                     f"{b['clock_mhz']:g} MHz clock (timing "
                     f"{'met' if b['timing_met'] else 'NOT met'})"
                     + (f", {frac:.2f} of the device's 16-bit adder figure" if frac else "")
                     + ".")
        lines.append("")
        used = ", ".join(f"{bel} {u['used']}/{u['available']}"
                         for bel, u in (b["utilization"] or {}).items() if u.get("used"))
        if used:
            lines += [f"Utilization: {used}.", ""]
    lines.append(f"Images/s: {rate['at_design_clock']:,.0f} at the "
                 f"{rate['design_clock_mhz']:g} MHz clock"
                 + (f", {rate['at_fmax']:,.0f} at Fmax" if rate.get("at_fmax") else "")
                 + f" (the {rate['uart_bound']:,.0f}/s of the UART link bound a host's rate).")
    if b["bitstream"]:
        lines += ["", f"Bitstream: `build/{b['bitstream']}`."]
    return lines

