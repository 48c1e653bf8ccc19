"""The accuracy regression suite: small digits models of different shapes × training seeds ×
every method and weight width, scored by the integer golden model against float.

Used by ``benchmarks/bench_accuracy.py`` (the whole suite, JSON + Markdown + PNG) and by
``tests/test_accuracy.py`` (one fast case per method by default, the whole suite when slow
tests run). Every case quantizes with the method's *default* options for its width, so the
table measures what a user gets without tuning.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import numpy as np

__all__ = ["MODELS", "SEEDS", "CASES", "Case", "build_model", "train_float", "run_case",
           "summarize", "render_markdown", "plot_summary", "dump", "CALIB"]

#: Training seeds of the suite.
SEEDS = (0, 1, 2)

#: Calibration images (the CLI's default).
CALIB = 256


@dataclass(frozen=True)
class Case:
    """One method at one weight width, with the drop (points vs float) it must stay within."""

    name: str
    method: str
    wbits: int
    target: float
    ternary: str = "twn"


CASES = (
    Case("fixed-8", "fixed", 8, 0.5),
    Case("fixed-4", "fixed", 4, 1.0),
    Case("inq-5", "inq", 5, 0.5),
    Case("inq-4", "inq", 4, 1.0),
    Case("inq-3", "inq", 3, 2.0),
    Case("twn", "ternary", 2, 2.0, "twn"),
    Case("ttq", "ternary", 2, 2.0, "ttq"),
)


def _models():
    from torch import nn

    class Plain(nn.Module):
        """The bundled default CNN (conv 3×3 + BN + ReLU, max pool, twice; linear)."""

        def __init__(self):
            super().__init__()
            from ..train import DigitsCNN

            self.net = DigitsCNN()

        def forward(self, x):
            return self.net(x)

    class Strided(nn.Module):
        """conv 5×5 pad 2 (8) + BN → conv 3×3 stride 2 pad 1 (16) + BN → conv 3×3 stride 2
        pad 1 (16), no BN → flatten → linear."""

        def __init__(self):
            super().__init__()
            self.c1, self.b1 = nn.Conv2d(1, 8, 5, padding=2), nn.BatchNorm2d(8)
            self.c2, self.b2 = nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16)
            self.c3 = nn.Conv2d(16, 16, 3, stride=2, padding=1)
            self.fc = nn.Linear(16 * 2 * 2, 10)

        def forward(self, x):
            x = self.b1(self.c1(x)).relu()
            x = self.b2(self.c2(x)).relu()
            x = self.c3(x).relu()
            return self.fc(x.flatten(1))

    class Pooled(nn.Module):
        """conv 5×5 (8) + BN → strided conv 3×3 (16) + BN → average pool 2 → linear (32) +
        ReLU → linear (the model of the report that started the suite)."""

        def __init__(self):
            super().__init__()
            self.c1, self.b1 = nn.Conv2d(1, 8, 5, padding=2), nn.BatchNorm2d(8)
            self.c2, self.b2 = nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16)
            self.pool = nn.AvgPool2d(2)
            self.fc1, self.fc2 = nn.Linear(16 * 2 * 2, 32), nn.Linear(32, 10)

        def forward(self, x):
            x = self.b1(self.c1(x)).relu()
            x = self.pool(self.b2(self.c2(x)).relu())
            return self.fc2(self.fc1(x.flatten(1)).relu())

    class Residual(nn.Module):
        """stem conv 3×3 (12) + BN → [conv + BN + ReLU → conv + BN] + identity, ReLU → max
        pool 2 → adaptive average pool to 2×2 → linear."""

        def __init__(self):
            super().__init__()
            self.stem, self.b0 = nn.Conv2d(1, 12, 3, padding=1), nn.BatchNorm2d(12)
            self.c1, self.b1 = nn.Conv2d(12, 12, 3, padding=1), nn.BatchNorm2d(12)
            self.c2, self.b2 = nn.Conv2d(12, 12, 3, padding=1), nn.BatchNorm2d(12)
            self.pool, self.gap = nn.MaxPool2d(2), nn.AdaptiveAvgPool2d(2)
            self.fc = nn.Linear(12 * 2 * 2, 10)

        def forward(self, x):
            s = self.b0(self.stem(x)).relu()
            y = self.b2(self.c2(self.b1(self.c1(s)).relu()))
            x = self.gap(self.pool((s + y).relu()))
            return self.fc(x.flatten(1))

    class MLP(nn.Module):
        """flatten → linear (64) + BN + ReLU → linear (32) + ReLU → linear."""

        def __init__(self):
            super().__init__()
            self.fc1, self.bn1 = nn.Linear(64, 64), nn.BatchNorm1d(64)
            self.fc2, self.fc3 = nn.Linear(64, 32), nn.Linear(32, 10)

        def forward(self, x):
            x = self.bn1(self.fc1(x.flatten(1))).relu()
            return self.fc3(self.fc2(x).relu())

    return {"plain": Plain, "strided": Strided, "pooled": Pooled, "residual": Residual,
            "mlp": MLP}


#: Model names of the suite, in table order.
MODELS = ("plain", "strided", "pooled", "residual", "mlp")


def build_model(name: str, seed: int):
    """A freshly initialised model ``name`` (weights drawn from ``seed``)."""
    import torch

    cls = _models()[name]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return cls()


def train_float(name: str, seed: int, dataset, *, epochs: int = 30):
    """Train model ``name`` from ``seed`` on ``dataset``; returns its :class:`FloatGraph`."""
    from ..frontend import from_module
    from ..train import train

    model = build_model(name, seed)
    train(model, dataset, epochs=epochs, seed=seed, progress=False)
    return from_module(model, dataset.x_test[:2])


def run_case(graph, dataset, case: Case, *, seed: int = 0, options=None) -> dict:
    """Quantize ``graph`` with ``case``'s method and width (default options, or ``options``);
    returns float and golden accuracy, the drop in points and the seconds taken."""
    from ..data import calibration_split
    from ..flow import float_accuracy, golden_accuracy
    from .methods import quantize_graph
    from .options import QuantOptions, RetrainConfig

    opts = options or QuantOptions(method=case.method, wbits=case.wbits, ternary=case.ternary,
                                   retrain=RetrainConfig(progress=False, seed=seed))
    t0 = time.perf_counter()
    x_cal = calibration_split(dataset, n=CALIB, seed=seed)
    net, history = quantize_graph(graph, dataset, x_cal, opts)
    fa, qa = float_accuracy(graph, dataset), golden_accuracy(net, dataset)
    return {"case": case.name, "method": case.method, "wbits": case.wbits,
            "float": fa, "quantized": qa, "drop": round((fa - qa) * 100, 4),
            "target": case.target, "seconds": round(time.perf_counter() - t0, 2),
            "retrain_epochs": [h["retrain_epochs"] for h in history if "retrain_epochs" in h],
            "options": opts.to_json()}


def summarize(rows) -> list:
    """Per case: mean and worst drop over every model × seed, and the misses."""
    out = []
    for case in dict.fromkeys(r["case"] for r in rows):
        sel = [r for r in rows if r["case"] == case]
        drops = np.array([r["drop"] for r in sel])
        target = sel[0]["target"]
        out.append({"case": case, "runs": len(sel), "mean_drop": float(drops.mean()),
                    "worst_drop": float(drops.max()), "target": target,
                    "misses": [f"{r['model']}/seed {r['seed']}: {r['drop']:+.2f}"
                               for r in sel if r["drop"] > target + 1e-9],
                    "seconds": float(sum(r["seconds"] for r in sel))})
    return out


def render_markdown(report) -> str:
    """The regression table: per case mean and worst drop; per model worst drop."""
    rows, summary = report["rows"], report["summary"]
    models = list(dict.fromkeys(r["model"] for r in rows))
    lines = ["# Accuracy regression suite", "",
             (f"{len(models)} models × seeds {', '.join(map(str, report['seeds']))} on "
              f"{report['dataset']} ({report['test_images']} test images, 1 image = "
              f"{100 / report['test_images']:.2f} points). Drop = float − golden-model test "
              f"accuracy in points (negative: the quantized model is better); default "
              f"options per method and width; {report['wall_seconds']:.0f} s wall time."), "",
             "| case | target | mean drop | worst drop | " + " | ".join(
                 f"worst {m}" for m in models) + " | misses |",
             "|---|---:|---:|---:|" + "---:|" * len(models) + "---|"]
    for s in summary:
        per = []
        for m in models:
            d = [r["drop"] for r in rows if r["case"] == s["case"] and r["model"] == m]
            per.append(f"{max(d):+.2f}" if d else "—")
        lines.append(f"| {s['case']} | {s['target']:.1f} | {s['mean_drop']:+.2f} | "
                     f"{s['worst_drop']:+.2f} | " + " | ".join(per) +
                     f" | {'; '.join(s['misses']) or 'none'} |")
    floats = {m: [r["float"] for r in rows if r["model"] == m] for m in models}
    lines += ["", "Float accuracy per model (mean over seeds): " + ", ".join(
        f"{m} {100 * np.mean(v):.2f} %" for m, v in floats.items()), "",
        "![drop per case](accuracy.png)", ""]
    return "\n".join(lines)


def plot_summary(report, path) -> None:
    """Drop per case: every model × seed as a dot, the mean as a bar, the target as a tick."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, summary = report["rows"], report["summary"]
    models = list(dict.fromkeys(r["model"] for r in rows))
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for i, s in enumerate(summary):
        ax.bar(i, s["mean_drop"], color="0.85", width=0.7)
        ax.plot([i - 0.35, i + 0.35], [s["target"]] * 2, color="C3", linewidth=2)
        for j, m in enumerate(models):
            d = [r["drop"] for r in rows if r["case"] == s["case"] and r["model"] == m]
            ax.scatter([i - 0.25 + 0.5 * j / max(len(models) - 1, 1)] * len(d), d,
                       color=f"C{j}", s=14, label=m if i == 0 else None, zorder=3)
    ax.axhline(0, color="k", linewidth=0.8)
    ax.set_xticks(range(len(summary)), [s["case"] for s in summary])
    ax.set_ylabel("accuracy drop vs float (points)")
    ax.set_title("Golden-model accuracy drop per method and width (red: target)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def dump(report, path) -> None:
    """Write ``report`` as JSON."""
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
