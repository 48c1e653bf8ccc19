"""Wall time of one ``hwquant sweep`` with 1 and with 2 local Ray workers, side by side, with
the CPU time of every task, and of an immediate re-run (every point from the cache).

The sweep: a small two-conv digits model (trained briefly here, or ``--model``), fixed point
at 8 and 6 bits x four foldings (every point emits different Verilog, so no synthesis is
shared), each point compiled, modelled and synthesised by Yosys (``--synth``, iCEBreaker).
Each run is the command line as a user runs it (``python -m hwquant sweep``, Ray started and
stopped by it), with a cache of its own; the re-run repeats the 2-worker sweep into the same
directory. Goals: 2 workers >= 1.7x faster than 1 on a 2-core machine; the re-run < 5 % of the
first run.

Every task reports its wall and CPU seconds (its worker process and the tools it ran:
``sweep.json`` ``seconds``, ``cpu_seconds``, ``quant_seconds``, ``quant_cpu_seconds``). On a
machine that others load, wall ratios say little; the CPU seconds do not depend on the load.
So the table also gives, per run, the sum of the tasks' CPU seconds (the same in both runs
when running two at once adds no work), their CPU / wall (1.0: each task had a core of its
own; 0.5: it shared one), and the wall time the tasks' CPU seconds give on idle cores
(``idle``: the command's own CPU seconds, ``driver_cpu_seconds``, and Ray's start, its wall
time as measured, in series with the tasks scheduled as the sweep schedules them, each taking
its CPU seconds), whose ratio estimates the speed-up an idle machine shows; and the same for
the 1-worker run's tasks put on two idle cores (the speed-up when running two at once costs
no extra CPU and the load inflated neither run's CPU seconds).

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


def tasks(report) -> tuple:
    """``(quantizations, points)`` of a report: ``{label: (wall s, cpu s)}`` and
    ``[(quantization label, wall s, cpu s)]`` of the points that ran (not cached)."""
    quants, points = {}, []
    for r in report["points"]:
        if r["status"] != "ok" or r.get("cached"):
            continue
        q = r["label"].rpartition("/")[0]
        if r.get("quant_seconds") is not None:
            quants.setdefault(q, (r["quant_seconds"], r.get("quant_cpu_seconds") or 0.0))
        points.append((q, r["seconds"], r.get("cpu_seconds") or 0.0))
    return quants, points


def idle_makespan(quants, points, workers) -> float:
    """Seconds the sweep's tasks take on ``workers`` idle cores, each task taking its CPU
    seconds: the sweep's own order (every quantization submitted first, a finished
    quantization's points ahead of the queue, one task per worker)."""
    import heapq

    queue = [("quant", q, cpu) for q, (_wall, cpu) in quants.items()]
    free = [0.0] * workers
    running = []  # (end, kind, label)
    now = 0.0
    while queue or running:
        queue.sort(key=lambda e: e[0] != "point")
        while queue and free:
            free.pop()
            kind, label, cpu = queue.pop(0)
            heapq.heappush(running, (now + cpu, kind, label))
        now, kind, label = heapq.heappop(running)
        free.append(now)
        if kind == "quant":
            queue += [("point", label, cpu) for q, _w, cpu in points if q == label]
    return now


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
    results, loads = {}, {}
    for workers in (1, 2):
        out = base / f"w{workers}"
        shutil.rmtree(out, ignore_errors=True)
        before = os.getloadavg()[0]
        results[workers] = run(model, out, workers, points=args.points, synth=synth)
        loads[workers] = (before, os.getloadavg()[0])
        print(f"  {workers} worker(s): {results[workers][0]:7.1f} s (load average "
              f"{before:.1f} -> {loads[workers][1]:.1f})", flush=True)
    rerun, rep = run(model, base / "w2", 2, points=args.points, synth=synth)
    t1, t2 = results[1][0], results[2][0]
    r1 = results[1][1]
    ok = r1["counts"]["ok"]
    print()
    print(f"hwquant sweep, {r1['counts']['points']} points (fixed 8/6 bits x "
          f"{len(r1['folds'])} foldings{', Yosys synth_ice40' if synth else ''}; {ok} ok), "
          f"{os.cpu_count()} cores, load average now {os.getloadavg()[0]:.1f}:")
    print(f"{'run':<12}{'wall s':>8}{'ratio':>8}{'Ray s':>7}{'driver cpu s':>13}"
          f"{'task cpu s':>11}{'cpu/wall':>9}{'idle s':>8}{'idle ratio':>11}{'load':>12}")
    idle = {}
    for workers in (1, 2):
        wall, report = results[workers]
        quants, points = tasks(report)
        cpu = sum(c for _w, c in quants.values()) + sum(c for _q, _w, c in points)
        task_wall = sum(w for w, _c in quants.values()) + sum(w for _q, w, _c in points)
        ray_s = report["ray"]["start_seconds"]
        driver = report.get("driver_cpu_seconds") or 0.0
        # On idle cores: the command's own CPU seconds and Ray's start (its wall time, as
        # measured) in series with the tasks, scheduled as the sweep schedules them.
        idle[workers] = driver + ray_s + idle_makespan(quants, points, workers)
        print(f"{f'{workers} worker' + ('s' if workers > 1 else ''):<12}{wall:>8.1f}"
              f"{t1 / wall:>7.2f}x{ray_s:>7.1f}{driver:>13.1f}{cpu:>11.1f}"
              f"{cpu / task_wall:>9.2f}{idle[workers]:>8.1f}{idle[1] / idle[workers]:>10.2f}x"
              f"{loads[workers][0]:>6.1f}->{loads[workers][1]:<4.1f}")
    print(f"2 workers / 1 worker: {t1 / t2:.2f}x wall (goal >= 1.7x), {idle[1] / idle[2]:.2f}x "
          f"on idle cores by the CPU seconds")
    # The 1-worker run's tasks on two idle cores: what two workers give when running two at
    # once costs no CPU (the second worker's imports aside) and the load inflated neither.
    r1 = results[1][1]
    quants, points = tasks(r1)
    same = (r1.get("driver_cpu_seconds") or 0.0) + r1["ray"]["start_seconds"] + \
        idle_makespan(quants, points, 2)
    print(f"the 1-worker run's tasks on 2 idle cores: {same:.1f} s, {idle[1] / same:.2f}x")
    print(f"re-run, 2 workers (cache): {rerun:.1f} s, {rerun / t2:.1%} of the first 2-worker run "
          f"(goal < 5 %); {rep['counts']['cached']} of {rep['counts']['points']} points cached")
    print()
    print(f"{'task':<48}{'1 worker: wall':>15}{'cpu':>7}{'2 workers: wall':>16}{'cpu':>7}"
          f"{'import s':>9}")
    rows = {w: {r["label"]: r for r in results[w][1]["points"]} for w in (1, 2)}
    for label in rows[1]:
        a, b = rows[1][label], rows[2].get(label, {})
        print(f"{label:<48}{a.get('seconds') or 0:>15.1f}{a.get('cpu_seconds') or 0:>7.1f}"
              f"{b.get('seconds') or 0:>16.1f}{b.get('cpu_seconds') or 0:>7.1f}"
              f"{b.get('import_seconds') or 0:>9.1f}")
    if not args.out:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
