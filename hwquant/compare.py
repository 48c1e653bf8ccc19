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


def plan_runs(methods, bits, schedules) -> list:
    """``(method, wbits, schedule)`` combinations. Ternary weights have 2 bits whatever
    ``bits`` says, so ternary runs once per schedule."""
    runs = []
    for method in methods:
        widths = [2] if method == "ternary" else list(bits)
        for b in widths:
            for schedule in schedules:
                runs.append((method, b, schedule))
    return runs


def _check(methods, bits, schedules, base):
    """Validate every combination before the first (slow) one runs."""
    from .quant.options import check_options

    if not methods or not schedules or not bits:
        from .errors import HwquantError
        raise HwquantError("compare needs at least one method, one bit width and one schedule")
    for method, b, schedule in plan_runs(methods, bits, schedules):
        check_options(dataclasses.replace(base, method=method, wbits=b, schedule=schedule))


def run_compare(model_path, ds, dataset_info, out_dir, *, methods, bits, schedules, base,
                calib=256, seed=0, log=None):
    """Run every combination; write the report files; return the report dict.

    ``base`` (:class:`~hwquant.quant.methods.QuantOptions`) carries the settings shared by all
    runs (activation bits, portions, partition, ternary variant, retraining).
    """
    from .flow import quantize_model
    from .outdir import atomic_directory

    say = log or (lambda msg: None)
    _check(methods, bits, schedules, base)
    rows = []
    float_acc = None
    runs = plan_runs(methods, bits, schedules)
    with atomic_directory(out_dir, marker="compare.json", what="compare") as tmp:
        for i, (method, b, schedule) in enumerate(runs):
            opts = dataclasses.replace(base, method=method, wbits=b, schedule=schedule)
            t0 = time.monotonic()
            _, rep = quantize_model(model_path, ds, dataset_info, options=opts, calib=calib,
                                    seed=seed)
            float_acc = rep["accuracy"]["float"]
            acc = rep["accuracy"]["quantized"]
            rows.append({"method": method, "wbits": b, "schedule": schedule, "accuracy": acc,
                         "delta": acc - float_acc, "seconds": round(time.monotonic() - t0, 2),
                         "history": rep["history"], "options": opts.to_json()})
            say(f"[{i + 1}/{len(runs)}] {method} {b}-bit {schedule}: {acc:.2%} "
                f"({(acc - float_acc) * 100:+.2f} pt)")
        report = {"model": str(Path(model_path).resolve()), "dataset": dataset_info,
                  "test_images": len(ds.y_test), "seed": seed, "calibration_images": calib,
                  "float_accuracy": float_acc, "abits": base.abits,
                  "retrain": dataclasses.asdict(base.retrain) | {"optimizer": "adam"},
                  "portions": list(base.portions), "partition": base.partition,
                  "ternary": base.ternary, "rows": rows}
        (tmp / "compare.json").write_text(json.dumps(report, indent=2))
        (tmp / "compare.md").write_text(render_markdown(report))
        plot_compare(report, tmp / "compare.png")
    return report


def render_markdown(report) -> str:
    """Accuracy table: one row per method and bit width, one column per schedule."""
    schedules = list(dict.fromkeys(r["schedule"] for r in report["rows"]))
    keys = list(dict.fromkeys((r["method"], r["wbits"]) for r in report["rows"]))
    cell = {(r["method"], r["wbits"], r["schedule"]): r for r in report["rows"]}
    fa = report["float_accuracy"]
    r = report["retrain"]
    lines = ["# Quantization comparison", "",
             (f"Model `{report['model']}`, float accuracy **{fa:.2%}** on "
              f"{report['test_images']} test images. Accuracy of the integer golden model "
              f"(activations {report['abits']} bits), points versus float in brackets."), "",
             (f"Retraining per phase: {r['epochs']} epochs, Adam lr {r['lr']}, batch "
              f"{r['batch_size']}, weight decay {r['weight_decay']}, seed {r['seed']}; INQ "
              f"portions {', '.join(map(str, report['portions']))} ({report['partition']} "
              f"partition); ternary {report['ternary']}."), "",
             "| method | bits | " + " | ".join(schedules) + " |",
             "|---|---:|" + "---:|" * len(schedules)]
    for method, b in keys:
        cells = []
        for s in schedules:
            row = cell.get((method, b, s))
            cells.append("—" if row is None else
                         f"{row['accuracy']:.2%} ({row['delta'] * 100:+.2f})")
        lines.append(f"| {method} | {b} | " + " | ".join(cells) + " |")
    lines += ["", "![accuracy per bit width](compare.png)", ""]
    return "\n".join(lines)


def plot_compare(report, path) -> None:
    """Accuracy versus weight bits, one line per method and schedule; float as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    series = {}
    for r in report["rows"]:
        series.setdefault((r["method"], r["schedule"]), []).append((r["wbits"], r["accuracy"]))
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
    ax.set_xticks(sorted({r["wbits"] for r in report["rows"]}))
    ax.set_xlabel("weight bits")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Accuracy per method, bit width and schedule (golden model)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
