"""Verification speed on the default digits CNN, every number measured in one run, side by side.

Prints golden-model images/s on the whole test split (the int64 reference path, batches of
256, and the default path: float BLAS where a bound proves it exact), RTL images/s through
cocotb + Verilator with the Python-driven bench and with the bulk bench (one simulator
process, and the images sharded over ``--jobs`` processes; all with random valid gaps and
ready stalls, every word and every probe compared, Verilator builds reused),
and the ratio golden / RTL. RTL rates are end to end (vectors, simulator start, compare); the
bulk run's seconds per step (golden model, vectors, simulation split into preparing, writing,
simulator start-up, the simulated phases, exit and the compare) close the table.

    .venv/bin/python benchmarks/bench_verify.py [--build DIR] [--python-vectors 16] [--jobs auto]
        [--stall 0.3] [--out DIR]

``--build`` reuses a compiled build of the default CNN; otherwise it trains, quantizes
(fixed w8/a8) and compiles one (fold auto) first.

Where the bulk run's time goes (digits default, fold auto, 450 images, 348,637 simulated
cycles with stalls; idle machine): 0.14-0.2 s simulator start-up (0.13 s of it the embedded
Python importing cocotb, which imports pytest: 0.08 s), 0.29-0.34 s simulated phase, 0.04 s
exit,
and a few milliseconds for the files and the compare (binary records since the harness stopped
writing hex text: write 0.009 -> 0.001 s, compare 0.035 -> 0.002 s). The simulated phase is
the design's own evaluation: the same harness built as a plain ``verilator --binary`` (no
cocotb, no VPI) runs the phase in 0.33-0.41 s, and the captures written as hex or as binary
make no measurable difference there; ``perf`` puts 64 % of the samples in Verilator's one
straight-line ``nba`` evaluation function of the design (about 34 KB of machine code), flat
(no hot spot). Toggling the clock from a C++ loop instead of the harness's delay loop (no
``--timing``) makes the phase only 1.3x faster (0.57 against 0.73 s on a slower day), and
that function then takes 76 % of the samples. Verilator flags (``-O3 -march=native``, ``--x-assign fast``, ``--output-split 0``) change it by less than the
run-to-run noise, ``--threads 2`` makes it 2x slower. So one simulator process tops out near
1,500 images/s on this design (about 1.2 M cycles/s), 40x below the exact-BLAS golden model
(61 k images/s) and 9x below the int64 path: the golden/RTL <= 10x goal is out of reach
for a cycle-accurate simulation of this design on this machine. Last measured: golden 13,961
/ 61,452 images/s (int64 / default), RTL 8.4 (Python-driven), 861 (bulk), 1,116 (bulk, two
processes): golden / RTL bulk 71x, 55x with two processes; on a slower day of the same
machine 6,497 / 21,716, 1.6, 315 and 411 images/s: 69x and 53x.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.digits_default import quantized_default
from hwquant import golden
from hwquant.compile import load_build
from hwquant.data import load_dataset
from hwquant.golden import exact
from hwquant.simulate import quantize_input, simulate_build


def _best(fn, repeat):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _default_build(work):
    from hwquant.compile import compile_network

    compile_network(quantized_default(work), work / "build", fold="auto")
    return work / "build"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=None, help="an existing build of the default CNN")
    ap.add_argument("--python-vectors", type=int, default=16)
    ap.add_argument("--stall", type=float, default=0.3)
    ap.add_argument("--jobs", type=lambda s: s if s == "auto" else int(s), default="auto",
                    help="simulator processes of the sharded bulk run (default auto)")
    ap.add_argument("--repeat", type=int, default=15, help="golden timing: best of N")
    ap.add_argument("--out", default=None, help="work directory (default: temporary)")
    args = ap.parse_args()
    work = Path(args.out or tempfile.mkdtemp(prefix="hwquant-bench-verify-"))
    work.mkdir(parents=True, exist_ok=True)
    build = Path(args.build) if args.build else _default_build(work)
    net, _ = load_build(build)
    ds = load_dataset("digits")
    x = quantize_input(net, ds.x_test)

    golden.predict(net, x[:8])
    with exact.int64_only():
        t_old = _best(lambda: golden.predict(net, x, batch_size=256), args.repeat)
    t_new = _best(lambda: golden.predict(net, x), args.repeat)
    g_old, g_new = len(x) / t_old, len(x) / t_new

    common = {"stall": args.stall, "dataset": ds, "seed": 1}
    # Warm-ups build each bench's Verilator model once; the timed runs reuse them.
    t = time.perf_counter()
    simulate_build(build, vectors=2, mode="python", **common)
    t_build_py = time.perf_counter() - t
    t = time.perf_counter()
    simulate_build(build, vectors=2, mode="bulk", optimize=True, **common)
    t_build_bulk = time.perf_counter() - t
    t = time.perf_counter()
    py = simulate_build(build, vectors=args.python_vectors, mode="python", **common)
    t_py = time.perf_counter() - t
    t = time.perf_counter()
    bulk = simulate_build(build, vectors="all", mode="bulk", optimize=True, **common)
    t_bulk = time.perf_counter() - t
    t = time.perf_counter()
    sharded = simulate_build(build, vectors="all", mode="bulk", jobs=args.jobs,
                             optimize=True, **common)
    t_sharded = time.perf_counter() - t
    r_py, r_bulk = py["vectors"] / t_py, bulk["vectors"] / t_bulk
    r_sharded = sharded["vectors"] / t_sharded

    rows = [
        ("golden, int64 path (batches of 256)", f"{g_old:,.0f} images/s"),
        ("golden, default path (exact float BLAS)", f"{g_new:,.0f} images/s"),
        ("golden speed-up", f"{g_new / g_old:.2f}x"),
        ("RTL, Python-driven bench",
         (f"{r_py:,.1f} images/s ({py['vectors']} images, {t_py:.1f} s, "
          f"bit-exact {py['passed']})")),
        ("RTL, bulk bench",
         (f"{r_bulk:,.1f} images/s ({bulk['vectors']} images, {t_bulk:.1f} s, "
          f"bit-exact {bulk['passed']})")),
        (f"RTL, bulk bench, {sharded['jobs']} simulator processes",
         (f"{r_sharded:,.1f} images/s ({sharded['vectors']} images, {t_sharded:.1f} s, "
          f"bit-exact {sharded['passed']})")),
        ("RTL bulk / Python-driven", f"{r_bulk / r_py:.1f}x"),
        ("golden (default) / RTL bulk", f"{g_new / r_bulk:.1f}x"),
        ("golden (int64) / RTL bulk", f"{g_old / r_bulk:.1f}x"),
        (f"golden (default) / RTL bulk, {sharded['jobs']} processes",
         f"{g_new / r_sharded:.1f}x"),
        (f"golden (int64) / RTL bulk, {sharded['jobs']} processes",
         f"{g_old / r_sharded:.1f}x"),
        ("golden (default) / RTL Python-driven", f"{g_new / r_py:.0f}x"),
        ("bulk: simulated cycles (stalls)", f"{bulk['stalled_cycles']:,}"),
        ("accuracy: RTL / golden",
         f"{bulk['accuracy']:.2%} / {bulk['golden_accuracy']:.2%}"),
        ("first run incl. Verilator build: Python / bulk",
         f"{t_build_py:.1f} s / {t_build_bulk:.1f} s"),
    ]
    steps = dict(bulk["timings"])
    inner = steps.pop("simulation_steps") or {}
    rows.append(("bulk run, seconds per step", ", ".join(
        f"{k} {v:.3f}" for k, v in steps.items())))
    rows.append(("  simulation split", ", ".join(
        f"{k} {v:.3f}" for k, v in inner.items() if v is not None)))
    width = max(len(k) for k, _ in rows)
    print(f"hwquant verification benchmark  (stall {args.stall}, build {build})")
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")
    (work / "bench_verify.json").write_text(json.dumps(dict(rows), indent=2))


if __name__ == "__main__":
    main()
