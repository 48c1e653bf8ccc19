"""``hwquant compare``: accuracy per method x weight bits x schedule on one split.

Like seed S0's tables 7-10: every combination is quantized from the same float model, with
the same calibration images, retraining settings and seed, and scored by the integer golden
model on the same test split. Writes ``compare.json``, ``compare.md`` and ``compare.png``
into an output directory that appears whole or not at all.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

__all__ = ["plan_runs", "run_compare", "render_markdown", "plot_compare"]


#: Activation widths of the binary rows (W1A1, W1A2, W1A4) unless given.
BINARY_ABITS = (1, 2, 4)
#: Basis counts ``K`` and bit planes ``Q`` of the Binarized-DCNN grid unless given.
BDCNN_GRID = (2, 4, 6, 8)
#: Methods whose rows are not lines of the accuracy-per-bits table (their own reports).
_OWN_TABLES = ("bitmask", "bdcnn")


def plan_runs(methods, bits, schedules, binary_abits=BINARY_ABITS, basis=BDCNN_GRID,
              qbits=BDCNN_GRID) -> list:
    """``(method, wbits, schedule, abits)`` combinations (``abits`` None: the shared
    activation width). Ternary weights have 2 bits whatever ``bits`` says, so ternary runs
    once per schedule; binary weights have 1 bit and run once per activation width in
    ``binary_abits`` and per schedule it trains with (simple, none; simple if neither is
    asked for). Bit masks are post-training: per active width (``bits``) three rows, whose
    "schedule" is the variant (plain, same-pattern, per-layer;
    :mod:`hwquant.quant.bitmask_report`). Binarized-DCNN is post-training too: one row per
    basis count ``K`` (``basis``) and bit-plane count ``Q`` (``qbits``), ``abits = Q``
    (:mod:`hwquant.quant.bdcnn_report`)."""
    from .quant.bdcnn_report import grid_runs
    from .quant.bitmask_report import VARIANTS
    from .quant.options import BINARY_SCHEDULES

    runs = []
    for method in methods:
        if method == "binary":
            own = [s for s in schedules if s in BINARY_SCHEDULES] or ["simple"]
            runs += [("binary", 1, s, a) for a in binary_abits for s in own]
            continue
        if method == "bitmask":
            runs += [("bitmask", b, v, None) for b in bits for v in VARIANTS]
            continue
        if method == "bdcnn":
            runs += grid_runs(basis, qbits)
            continue
        widths = [2] if method == "ternary" else list(bits)
        for b in widths:
            for schedule in schedules:
                runs.append((method, b, schedule, None))
    return runs


def _options(base, binary, method, wbits, schedule, abits, conv_weights=None, bdcnn=None):
    """The options of one run: ``binary`` (binary rows, its own retraining defaults), a
    bit-mask variant (``conv_weights`` place the plain rows' binary points), ``bdcnn`` (its
    coefficient width, restarts, range) with the cell's ``K`` and ``Q``, or ``base`` with the
    run's method, width and schedule."""
    if method == "bitmask":
        from .quant.bitmask_report import variant_options

        return variant_options(base, schedule, wbits, conv_weights or {})
    if method == "bdcnn":
        return dataclasses.replace(bdcnn or base, method=method, wbits=wbits, abits=abits,
                                   schedule="none")
    if method == "binary":
        return dataclasses.replace(binary or dataclasses.replace(base, alpha="none"),
                                   method=method, wbits=wbits, schedule=schedule, abits=abits)
    return dataclasses.replace(base, method=method, wbits=wbits, schedule=schedule)


def _check(methods, bits, schedules, base, binary=None, binary_abits=BINARY_ABITS,
           bdcnn=None, basis=BDCNN_GRID, qbits=BDCNN_GRID):
    """Validate every combination before the first (slow) one runs."""
    from .errors import HwquantError
    from .quant.options import check_options

    if not methods or not schedules or not bits or not binary_abits or not basis or not qbits:
        raise HwquantError("compare needs at least one method, one bit width and one schedule")
    for run in plan_runs(methods, bits, schedules, binary_abits, basis, qbits):
        check_options(_options(base, binary, *run, bdcnn=bdcnn))


def run_compare(model_path, ds, dataset_info, out_dir, *, methods, bits, schedules, base,
                calib=256, seed=0, log=None, binary=None, binary_abits=BINARY_ABITS,
                bdcnn=None, basis=BDCNN_GRID, qbits=BDCNN_GRID):
    """Run every combination; write the report files; return the report dict.

    ``base`` (:class:`~hwquant.quant.methods.QuantOptions`) carries the settings shared by all
    runs (activation bits, portions, partition, ternary variant, retraining); ``binary`` those
    of the binary rows (XNOR-Net alpha, input bits, binary retraining), run once per width of
    ``binary_abits``; ``bdcnn`` those of the Binarized-DCNN grid (coefficient bits, restarts,
    range), run once per ``K`` of ``basis`` and ``Q`` of ``qbits``.
    """
    from .flow import quantize_model
    from .outdir import atomic_directory

    say = log or (lambda msg: None)
    from .quant.bdcnn_report import GRID_PNG, plot_grid, stored_bits

    _check(methods, bits, schedules, base, binary, binary_abits, bdcnn, basis, qbits)
    rows = []
    float_acc = None
    runs = plan_runs(methods, bits, schedules, binary_abits, basis, qbits)
    if any(run[0] == "bdcnn" for run in runs):
        from .quant.bdcnn_report import check_grid

        check_grid(model_path, basis)
    weights = None
    if any(run[0] == "bitmask" for run in runs):
        from .quant import bitmask_report

        weights = bitmask_report.conv_weights(model_path)
    with atomic_directory(out_dir, marker="compare.json", what="compare") as tmp:
        for i, (method, b, schedule, abits) in enumerate(runs):
            opts = _options(base, binary, method, b, schedule, abits, weights, bdcnn)
            t0 = time.monotonic()
            net, rep = quantize_model(model_path, ds, dataset_info, options=opts, calib=calib,
                                      seed=seed)
            float_acc = rep["accuracy"]["float"]
            acc = rep["accuracy"]["quantized"]
            rows.append({"method": method, "wbits": b, "schedule": schedule, "accuracy": acc,
                         "delta": acc - float_acc, "seconds": round(time.monotonic() - t0, 2),
                         "history": rep["history"], "options": opts.to_json(),
                         "abits": opts.abits, "label": _label(method, b, opts.abits, abits),
                         "layers": (net.metadata.get("binary") or {}).get("layers"),
                         "patterns": (net.metadata.get("bitmask") or {}).get("patterns"),
                         # Bit masks: the search's score on its training-image split.
                         "calibration_accuracy": (net.metadata.get("bitmask") or {}).get(
                             "accuracy"),
                         "size": stored_bits(net) if method == "bdcnn" else None})
            say(f"[{i + 1}/{len(runs)}] {_label(method, b, opts.abits, abits)} {schedule}: "
                f"{acc:.2%} ({(acc - float_acc) * 100:+.2f} pt)")
        report = {"model": str(Path(model_path).resolve()), "dataset": dataset_info,
                  "test_images": len(ds.y_test), "seed": seed, "calibration_images": calib,
                  "float_accuracy": float_acc, "abits": base.abits,
                  "retrain": {k: "per schedule" if v is None else v
                              for k, v in dataclasses.asdict(base.retrain).items()}
                  | {"optimizer": "adam"},
                  "portions": (list(base.portions) if base.portions is not None
                               else "INQ's list for each width"),
                  "partition": base.partition,
                  "ternary": base.ternary, "rows": rows}
        if any(row["method"] == "binary" for row in rows):
            b = binary or base
            report["binary"] = {"retrain": dataclasses.asdict(b.retrain) | {"optimizer": "adam"},
                                "alpha": b.alpha, "input_bits": b.resolved_input_bits()}
        if weights is not None:
            report["bitmask"] = {"span": base.resolved_span(), "rounding": base.rounding,
                                 "histograms": bitmask_report.plot_mask_histograms(
                                     rows, weights, tmp)}
        if any(row["method"] == "bdcnn" for row in rows):
            b = bdcnn or base
            report["bdcnn"] = {"coef_bits": b.resolved_coef_bits(), "restarts": b.restarts,
                               "range": b.range_mode}
            if _line_rows(rows):  # alone, the grid is compare.png (plot_compare)
                plot_grid(rows, float_acc, tmp / GRID_PNG)
        (tmp / "compare.json").write_text(json.dumps(report, indent=2))
        (tmp / "compare.md").write_text(render_markdown(report))
        plot_compare(report, tmp / "compare.png")
    return report


def _portions_text(portions) -> str:
    return portions if isinstance(portions, str) else ", ".join(map(str, portions))


def _label(method, wbits, abits, own_abits):
    """Row label: ``binary W1A1`` for binary rows (own activation width), ``bdcnn K6Q6``,
    else the method."""
    if method == "bdcnn":
        return f"bdcnn K{wbits}Q{abits}"
    return f"{method} W{wbits}A{abits}" if own_abits is not None else method


def _line_rows(rows) -> list:
    """The rows the accuracy-per-bits plot draws (all but the Binarized-DCNN grid)."""
    return [r for r in rows if r["method"] != "bdcnn"]


def _binary_note(report) -> list:
    """The binary rows' own settings (a paragraph), if there are any."""
    b = report.get("binary")
    if not b:
        return []
    r = b["retrain"]
    return [(f"Binary rows (`binary W1A<n>`): weights -1/+1 in every layer, hidden activations "
             f"of <n> bits (1 = bipolar), the first layer reads {b['input_bits']}-bit input, "
             f"the last produces logits; XNOR-Net alpha {b['alpha']}; retraining "
             f"{r['epochs']} epochs, Adam lr {r['lr']}, batch {r['batch_size']}, seed "
             f"{r['seed']}."), ""]


def render_markdown(report) -> str:
    """Accuracy table: one row per method and bit width, one column per schedule; the
    bit-mask rows in a table of their own."""
    from .quant.bdcnn_report import GRID_PNG, render_grid_markdown
    from .quant.bitmask_report import render_masks_markdown

    main = [r for r in report["rows"] if r["method"] not in _OWN_TABLES]
    schedules = list(dict.fromkeys(r["schedule"] for r in main))
    keys = list(dict.fromkeys((r.get("label", r["method"]), r["wbits"]) for r in main))
    cell = {(r.get("label", r["method"]), r["wbits"], r["schedule"]): r for r in main}
    fa = report["float_accuracy"]
    r = report["retrain"]
    lines = ["# Quantization comparison", "",
             (f"Model `{report['model']}`, float accuracy **{fa:.2%}** on "
              f"{report['test_images']} test images. Accuracy of the integer golden model "
              + (f"(activations {report['abits']} bits)" if main else "(bdcnn: Q bit "
                 "planes per layer input)") + ", points versus float in brackets."), "",
             *([(f"Retraining per phase: {r['epochs']} epochs, Adam lr {r['lr']}, batch "
                 f"{r['batch_size']}, weight decay {r['weight_decay']}, seed {r['seed']}; INQ "
                 f"portions {_portions_text(report['portions'])} ({report['partition']} "
                 f"partition); ternary {report['ternary']}."), ""] if main else []),
             *_binary_note(report),
             "| method | bits | " + " | ".join(schedules) + " |",
             "|---|---:|" + "---:|" * len(schedules)]
    if not main:
        lines = lines[:-2]
    for method, b in keys:
        cells = []
        for s in schedules:
            row = cell.get((method, b, s))
            cells.append("—" if row is None else
                         f"{row['accuracy']:.2%} ({row['delta'] * 100:+.2f})")
        lines.append(f"| {method} | {b} | " + " | ".join(cells) + " |")
    grid = render_grid_markdown(report["rows"], fa, report.get("bdcnn"))
    lines += ["", *render_masks_markdown(report["rows"], fa,
                                         (report.get("bitmask") or {}).get("span")), *grid]
    if _line_rows(report["rows"]):
        lines.append("![accuracy per bit width](compare.png)")
        if grid:
            lines.append(f"![Binarized-DCNN grid]({GRID_PNG})")
    else:
        lines.append("![Binarized-DCNN grid](compare.png)")
    lines.append("")
    return "\n".join(lines)


def plot_compare(report, path) -> None:
    """Accuracy versus weight bits, one line per method and schedule; float as a line. A
    report of only the Binarized-DCNN grid gets its heat maps instead."""
    rows = _line_rows(report["rows"])
    if not rows:
        from .quant.bdcnn_report import plot_grid

        plot_grid(report["rows"], report["float_accuracy"], path)
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    series = {}
    for r in rows:
        series.setdefault((r.get("label", r["method"]), r["schedule"]), []).append(
            (r["wbits"], r["accuracy"]))
    methods = list(dict.fromkeys(m for m, _ in series))
    schedules = list(dict.fromkeys(s for _, s in series))
    styles, markers = ["-", "--", ":", "-."], ["o", "s", "^", "D"]
    for (method, schedule), pts in series.items():
        pts.sort()
        i, j = methods.index(method), schedules.index(schedule)
        ax.plot([p[0] for p in pts], [100 * p[1] for p in pts], color=f"C{i}",
                linestyle=styles[j % 4], marker=markers[j % 4], label=f"{method} / {schedule}")
    ax.axhline(100 * report["float_accuracy"], color="k", linestyle="--", linewidth=1,
               label="float")
    ax.set_xticks(sorted({r["wbits"] for r in rows}))
    ax.set_xlabel("weight bits")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Accuracy per method, bit width and schedule (golden model)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
