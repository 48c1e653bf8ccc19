"""Benchmark of the default digits CNN, all numbers measured in one run, printed side by side.

Prints: training time and accuracy, compile time, golden-model images/s (whole test set),
simulated images/s (cocotb + Verilator, stall-free), predicted vs measured cycles per
inference, and analytical-model vs Yosys LUT/FF/DSP/BRAM (with the model's error).

    .venv/bin/python benchmarks/bench_default.py [--family ice40] [--wbits 8 --abits 8]
        [--fold auto] [--vectors 32] [--out bench_out]
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from hwquant import golden
from hwquant.compile import compile_network
from hwquant.data import calibration_split, load_dataset
from hwquant.estimate.report import estimate_build
from hwquant.frontend import load_model
from hwquant.quant.fixed import quantize_fixed
from hwquant.simulate import quantize_input, simulate_build
from hwquant.train import default_model, export_model, train


def _timed(fn, *args, **kwargs):
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", default="ice40", choices=["ice40", "ecp5", "xilinx", "gowin"])
    ap.add_argument("--wbits", type=int, default=8)
    ap.add_argument("--abits", type=int, default=8)
    ap.add_argument("--fold", default="auto")
    ap.add_argument("--vectors", type=int, default=32)
    ap.add_argument("--out", default=None, help="keep the build here (default: temporary)")
    args = ap.parse_args()
    work = Path(args.out or tempfile.mkdtemp(prefix="hwquant-bench-"))
    work.mkdir(parents=True, exist_ok=True)

    ds = load_dataset("digits")
    model = default_model(ds.x_train.shape[1:], ds.num_classes, seed=0)
    acc_float, t_train = _timed(train, model, ds, seed=0, progress=False)
    export_model(model, torch.tensor(ds.x_test[:2]), work / "model.pt2")
    graph = load_model(work / "model.pt2")
    net, t_quant = _timed(quantize_fixed, graph, calibration_split(ds), wbits=args.wbits,
                          abits=args.abits, metadata={"dataset": {"name": "digits"}})

    x = quantize_input(net, ds.x_test)
    golden.predict(net, x[:8])  # warm up
    pred, t_golden = _timed(golden.predict, net, x)
    acc_q = float((pred == ds.y_test).mean())

    comp, t_compile = _timed(compile_network, net, work / "build", fold=args.fold)
    # First simulation includes the Verilator build; the second reuses it.
    _, t_sim_first = _timed(simulate_build, work / "build", vectors=args.vectors, stall=0.0,
                            throughput_items=args.vectors)
    sim, t_sim = _timed(simulate_build, work / "build", vectors=args.vectors, stall=0.0,
                        throughput_items=args.vectors)
    est, t_est = _timed(estimate_build, work / "build", family=args.family, synth=True)

    m, s = est["model"], est["synth"]
    rows = [
        ("float accuracy (digits test)", f"{acc_float:.2%}"),
        (f"fixed w{args.wbits}/a{args.abits} accuracy (golden)", f"{acc_q:.2%}"),
        ("train time", f"{t_train:.1f} s"),
        ("quantize time", f"{t_quant:.2f} s"),
        ("compile time (fold + 2x Verilog)", f"{t_compile:.1f} s"),
        ("golden model", f"{len(x) / t_golden:,.0f} images/s ({len(x)} images)"),
        ("simulation incl. Verilator build", f"{t_sim_first:.1f} s"),
        ("simulation, build reused",
         (f"{2 * sim['vectors'] / t_sim:,.1f} images/s ({2 * sim['vectors']} images, "
          f"{t_sim:.1f} s)")),
        ("golden / simulated speed",
         f"{(len(x) / t_golden) / (2 * sim['vectors'] / t_sim):,.0f}x"),
        ("bit-exact", f"{sim['passed']} ({sim['mismatches']} mismatches)"),
        ("cycles per inference: predicted", str(sim["predicted_cycles"])),
        ("cycles per inference: measured", str(sim["cycles_per_inference"])),
        ("cycles: measured / predicted",
         f"{sim['cycles_per_inference'] / sim['predicted_cycles']:.3f}"),
    ]
    for key in ("lut", "ff", "dsp", "bram"):
        ratio = f"{m[key] / s[key]:.2f}" if s[key] else "n/a"
        rows.append((f"{key.upper()} ({args.family}): model / Yosys",
                     f"{m[key]} / {s[key]}  (ratio {ratio})"))
    rows.append(("estimate time (model + Yosys)", f"{t_est:.1f} s"))
    width = max(len(k) for k, _ in rows)
    print(f"hwquant default-CNN benchmark  (fold={args.fold}, build in {work})")
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")
    print("  per layer (folding, cycles):")
    for row in comp.report["layers"]:
        fold = f"PE={row['pe']} SIMD={row['simd']}" if row["pe"] else ""
        print(f"    {row['name']:<12} {fold:<18} {row['cycles']:>6}")
    (work / "bench.json").write_text(json.dumps(dict(rows), indent=2))


if __name__ == "__main__":
    main()
