"""Structure of hwquant's adder graph and da4ml's, counted the same way (no synthesis).

For each matrix of :data:`bench_cmvm.CASES` (same seeds, unsigned 8-bit inputs) da4ml 0.6.0's
``cmvm.solve`` runs in its own virtualenv (as in ``bench_cmvm.py``) and dumps its solution's
operations; they are rebuilt here as an :class:`hwquant.cmvm.AdderGraph` (every stage
chained, each operand's shift and sign folded into the node; checked against ``W @ x``), so
both graphs are counted by the same definitions: ``adders`` (:attr:`AdderGraph.adders`),
``result bits`` (each adder's full result width), ``logic bits`` (:attr:`AdderGraph.adder_bits`:
the result width less the low bits that are wires) and the cost model's LUTs
(:func:`hwquant.estimate.cmvm.graph_resources`, xilinx and ice40).

    .venv/bin/python benchmarks/cmvm_structure.py [--cases int4,int8] [--penalty best|N|None]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from benchmarks.bench_cmvm import CASES, X_BITS, _da4ml_python
from hwquant.cmvm import AdderGraph, _Builder, build_adder_graph
from hwquant.estimate.cmvm import graph_resources
from hwquant.ir import range_bits

_DUMP = r'''
import json, sys, time
import numpy as np
from da4ml.cmvm import solve
w = np.load(sys.argv[1]); hi = float(sys.argv[3])
started = time.perf_counter()
sol = solve(np.ascontiguousarray(w.T, dtype=np.float32), qintervals=[(0.0, hi, 1.0)] * w.shape[1])
seconds = time.perf_counter() - started
stages = [{"inp_shifts": [int(v) for v in s.inp_shifts], "out_idxs": [int(v) for v in s.out_idxs],
           "out_shifts": [int(v) for v in s.out_shifts], "out_negs": [bool(v) for v in s.out_negs],
           "ops": [[int(o.id0), int(o.id1), int(o.opcode), int(o.data)] for o in s.ops]}
          for s in sol.solutions]
json.dump({"seconds": seconds, "cost": float(sol.cost), "stages": stages}, open(sys.argv[2], "w"))
'''


def da4ml_graph(w, hi, solution) -> AdderGraph:
    """da4ml's dumped ``solution`` as an :class:`AdderGraph` (a buffer entry is a term
    ``(signal, shift, negate)``; an add/sub op becomes one node of its two terms)."""
    ranges = [(0, hi)] * w.shape[1]
    b = _Builder(ranges)
    terms = [(i, 0, False) for i in range(w.shape[1])]
    for stage in solution["stages"]:
        buf = []
        for id0, id1, opcode, data in stage["ops"]:
            if opcode == -1:  # an input of the stage
                g, e, n = terms[id0]
                buf.append((g, e + stage["inp_shifts"][id0], n))
            elif opcode in (0, 1):  # buf[id0] +- (buf[id1] << data)
                (g0, e0, n0), (g1, e1, n1) = buf[id0], buf[id1]
                e1, n1 = e1 + data, n1 ^ (opcode == 1)
                base = min(e0, e1)
                buf.append((b.add(g0, e0 - base, n0, g1, e1 - base, n1, shared=True), base,
                            False))
            else:
                raise ValueError(f"da4ml opcode {opcode} not expected in a constant matrix")
        terms = [(-1, 0, False) if idx < 0 else
                 (buf[idx][0], buf[idx][1] + shift, buf[idx][2] ^ neg)
                 for idx, shift, neg in zip(stage["out_idxs"], stage["out_shifts"],
                                            stage["out_negs"], strict=True)]
    out_ranges = [b._range_of({i: int(c) for i, c in enumerate(row) if c}) for row in w]
    return AdderGraph(b.n_inputs, tuple(ranges), tuple(b.nodes), tuple(terms), tuple(out_ranges))


def da4ml_adder_graph(python, w, hi, work):
    """Run da4ml's ``solve`` on ``w`` (inputs ``0..hi``) with the virtualenv's ``python``;
    ``(graph, solution)``: its solution rebuilt as an :class:`AdderGraph`, and the dump (with
    da4ml's ``seconds``)."""
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    wf, out, script = work / "w.npy", work / "solution.json", work / "dump.py"
    np.save(wf, w)
    script.write_text(_DUMP)
    subprocess.run([str(python), str(script), str(wf), str(out), str(hi)], check=True,
                   env={**os.environ, "PYTHONPATH": ""})
    solution = json.loads(out.read_text())
    return da4ml_graph(w, hi, solution), solution


def structure(graph) -> dict:
    negations = [j for j, (s, _, n) in enumerate(graph.outputs) if n and s >= 0]
    result = (sum(n.bits for n in graph.nodes)
              + sum(range_bits(*graph.output_ranges[j]) for j in negations))
    return {"adders": graph.adders, "result_bits": result, "logic_bits": graph.adder_bits,
            "depth": graph.depth, "lut_xilinx": graph_resources(graph, "xilinx").lut,
            "lut_ice40": graph_resources(graph, "ice40").lut}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--penalty", default="best", help="best (default), an int, or None")
    ap.add_argument("--da4ml-venv", default=str(Path.home() / ".cache" / "hwquant-bench"
                                                / "da4ml-venv"))
    args = ap.parse_args()
    penalty = {"None": None, "best": "best"}.get(args.penalty) or int(args.penalty)
    python = _da4ml_python(Path(args.da4ml_venv))
    hi = (1 << X_BITS) - 1
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for case in args.cases.split(","):
            rng = np.random.default_rng(list(CASES).index(case))
            w = np.asarray(CASES[case](rng), dtype=np.int64)
            started = time.perf_counter()
            ours = build_adder_graph(w, [(0, hi)] * w.shape[1], subtraction_penalty=penalty)
            seconds = time.perf_counter() - started
            xs = rng.integers(0, hi + 1, size=(64, w.shape[1]))
            assert np.array_equal(ours.evaluate(xs), xs @ w.T)
            rows[case] = {"hwquant": dict(structure(ours), seconds=round(seconds, 1))}
            if python is None:
                continue
            theirs, solution = da4ml_adder_graph(python, w, hi, Path(tmp) / case)
            assert np.array_equal(theirs.evaluate(xs), xs @ w.T), "da4ml graph rebuilt wrongly"
            rows[case]["da4ml"] = dict(structure(theirs), seconds=round(solution["seconds"], 1),
                                       stages=[sum(op[2] in (0, 1) for op in s["ops"])
                                               for s in solution["stages"]])
    keys = ["adders", "result_bits", "logic_bits", "depth", "lut_xilinx", "lut_ice40", "seconds"]
    print(f"{'case':6} {'design':8} " + " ".join(f"{k:>11}" for k in keys))
    for case, designs in rows.items():
        for name, r in designs.items():
            print(f"{case:6} {name:8} " + " ".join(f"{r[k]:>11,}" for k in keys)
                  + (f"  adders per stage {r['stages']}" if "stages" in r else ""))
        if "da4ml" in designs:
            print(f"{case:6} {'ratio':8} " + " ".join(
                f"{designs['hwquant'][k] / designs['da4ml'][k]:>11.3f}" for k in keys[:-1]))


if __name__ == "__main__":
    main()
