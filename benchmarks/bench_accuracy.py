"""Accuracy regression suite: golden-model accuracy drop versus float, every model × training
seed × method × weight width, with each method's default options.

Models (:mod:`hwquant.quant.accuracy`, digits 8×8): ``plain`` (the bundled default CNN),
``strided`` (5×5 padded conv, two stride-2 convs, one without BatchNorm), ``pooled`` (conv,
strided conv, average pool, two linear layers), ``residual`` (stem, an identity residual
block, max and adaptive average pool), ``mlp`` (three linear layers). Cases: fixed 8 and 4
bits, INQ 5/4/3 bits, ternary TWN and TTQ, each with the target it must stay within.

Writes ``accuracy.json`` (every row, the summary, the wall time), ``accuracy.md`` (the
table: mean and worst drop per case, worst per model, the misses) and ``accuracy.png``.

Usage::

    .venv/bin/python benchmarks/bench_accuracy.py [--models plain,mlp] [--seeds 0,1,2]
        [--cases inq-3,twn] [--out DIR]

The whole suite (5 models × 3 seeds × 7 cases) runs on one thread.
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from hwquant.data import load_dataset
from hwquant.quant import accuracy as A

__all__ = ["main"]


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(A.MODELS))
    ap.add_argument("--seeds", default=",".join(map(str, A.SEEDS)))
    ap.add_argument("--cases", default=",".join(c.name for c in A.CASES))
    ap.add_argument("--out", default="bench_accuracy_out", help="output directory")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    models = args.models.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    cases = [c for c in A.CASES if c.name in args.cases.split(",")]
    unknown = set(models) - set(A.MODELS)
    if unknown or not cases:
        ap.error(f"models must be among {','.join(A.MODELS)} and cases among "
                 f"{','.join(c.name for c in A.CASES)}")
    ds = load_dataset("digits")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    rows = []
    for model in models:
        for seed in seeds:
            t = time.perf_counter()
            graph = A.train_float(model, seed, ds)
            print(f"{model} seed {seed}: float trained in {time.perf_counter() - t:.1f} s",
                  flush=True)
            for case in cases:
                row = A.run_case(graph, ds, case, seed=seed)
                row.update(model=model, seed=seed)
                rows.append(row)
                print(f"  {case.name:8s} float {row['float']:.2%} golden "
                      f"{row['quantized']:.2%} drop {row['drop']:+.2f} (target "
                      f"{case.target}) {row['seconds']:.1f} s", flush=True)
    report = {"dataset": ds.name, "test_images": len(ds.y_test), "models": models,
              "seeds": seeds, "rows": rows, "summary": A.summarize(rows),
              "wall_seconds": round(time.perf_counter() - t0, 1)}
    A.dump(report, out / "accuracy.json")
    (out / "accuracy.md").write_text(A.render_markdown(report))
    A.plot_summary(report, out / "accuracy.png")
    print(A.render_markdown(report))
    print(f"-> {out / 'accuracy.json'}, {out / 'accuracy.md'}, {out / 'accuracy.png'}")
    return report


if __name__ == "__main__":
    main()
