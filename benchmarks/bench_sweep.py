"""Wall time of one ``hwquant sweep`` with 1 and with 2 local Ray workers, side by side, and of
an immediate re-run (every point from the cache).

The sweep: a small two-conv digits model (trained briefly here, or ``--model``), fixed point
at 8 and 6 bits x four foldings (every point emits different Verilog, so no synthesis is
shared), each point compiled, modelled and synthesised by Yosys (``--synth``, iCEBreaker).
Each run is the command line as a user runs it (``python -m hwquant sweep``, Ray started and
stopped by it), with a cache of its own; the re-run repeats the 2-worker sweep into the same
directory. Goals: 2 workers >= 1.7x faster than 1 on a 2-core machine; the re-run < 5 % of the
first run.

    PYTHONPATH=. python benchmarks/bench_sweep.py [--points 8|4] [--no-synth] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FOLDS = ["min", "conv2d_0=2:1,conv2d_3=1:2,linear_6=1:1", "conv2d_0=4:1,conv2d_3=2:1",
         "conv2d_0=4:3,conv2d_3=3:4,linear_6=2:1"]


def make_model(path: Path) -> None:
    import torch
    from torch import nn

    from hwquant.data import load_dataset
    from hwquant.train import export_model, train

    ds = load_dataset("digits")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(4, 6, 3), nn.ReLU(), nn.Flatten(), nn.Linear(24, 10))
    train(model, ds, epochs=15, seed=0, progress=False)
    export_model(model.eval(), torch.tensor(ds.x_test[:2]), path)


def run(model, out, workers, *, points, synth) -> tuple:
    folds = FOLDS[: max(1, points // 2)]
    argv = [sys.executable, "-m", "hwquant", "sweep", str(model), "--methods", "fixed",
            "--bits", "8,6", "--workers", str(workers), "--quiet", "-o", str(out)]
    for f in folds:
        argv += ["--fold", f]
    if synth:
        argv.append("--synth")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT), *[p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]]))
    start = time.perf_counter()
    proc = subprocess.run(argv, check=False, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"sweep failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    report = json.loads((Path(out) / "sweep.json").read_text())
    return seconds, report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=8, choices=[2, 4, 6, 8])
    ap.add_argument("--no-synth", action="store_true", help="compile and model only")
    ap.add_argument("--model", default=None, help="a .pt2 whose weight layers are conv2d_0, "
                                                  "conv2d_3, linear_6 (default: trained here)")
    ap.add_argument("--out", default=None, help="keep the sweep directories here")
    args = ap.parse_args()
    base = Path(args.out or tempfile.mkdtemp(prefix="bench_sweep-"))
    base.mkdir(parents=True, exist_ok=True)
    model = Path(args.model) if args.model else base / "model.pt2"
    if not args.model:
        make_model(model)
    synth = not args.no_synth
    results = {}
    for workers in (1, 2):
        out = base / f"w{workers}"
        shutil.rmtree(out, ignore_errors=True)
        results[workers] = run(model, out, workers, points=args.points, synth=synth)
        print(f"  {workers} worker(s): {results[workers][0]:7.1f} s", flush=True)
    rerun, rep = run(model, base / "w2", 2, points=args.points, synth=synth)
    t1, t2 = results[1][0], results[2][0]
    r1 = results[1][1]
    ok = r1["counts"]["ok"]
    print()
    print(f"hwquant sweep, {r1['counts']['points']} points (fixed 8/6 bits x "
          f"{len(r1['folds'])} foldings{', Yosys synth_ice40' if synth else ''}; {ok} ok), "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}:")
    print(f"{'run':<34}{'wall s':>9}{'ratio':>9}")
    print(f"{'1 worker':<34}{t1:>9.1f}{1.0:>8.2f}x")
    print(f"{'2 workers':<34}{t2:>9.1f}{t1 / t2:>8.2f}x   (goal >= 1.7x)")
    print(f"{'re-run, 2 workers (cache)':<34}{rerun:>9.1f}{rerun / t2:>8.1%}    "
          f"of the first 2-worker run (goal < 5 %); {rep['counts']['cached']} of "
          f"{rep['counts']['points']} points cached")
    synth_s = [r.get("seconds") or 0 for r in r1["points"] if r["status"] == "ok"]
    print(f"point tasks (1 worker): {sum(synth_s):.1f} s in total, Ray start "
          f"{r1['ray']['start_seconds']:.1f} s; 2 workers: Ray start "
          f"{results[2][1]['ray']['start_seconds']:.1f} s")
    if not args.out:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
