"""Constant-matrix engines side by side: hwquant's adder graph, the old ``x * c`` form, da4ml.

For each matrix ``W`` (``y = W @ x``, unsigned 8-bit inputs) three designs are synthesized with
the same Yosys (``synth_xilinx -flatten -noiopad -noclkbuf -nodsp`` / ``synth_ice40``, no DSP
blocks), each between an input and an output register (da4ml's own top has the same two, plus
its one internal pipeline register):

* ``adder graph``: :class:`hwquant.hw.cmvm.ConstantMatrix` (signed digits + common
  subexpressions shared across the whole matrix; every node its own carry-chain adder), and
  with ``--designs merged`` the same graph with Yosys left to fold each row's adders into a
  carry-save tree (``separate_adders=False``);
* ``x * c``: one per-lane ``fixed`` dot engine per row (:class:`hwquant.hw.fixed.DotEngine`
  with constant weights): a constant product per weight and an adder tree, Yosys left to
  optimise — what a fully unrolled layer built before the constant-matrix engine;
* ``da4ml``: da4ml 0.6.0's ``cmvm.solve`` and its Verilog writer, run in a virtualenv of its
  own (created on first use under ``--da4ml-venv``, from PyPI; skipped with a message when
  it cannot be installed), with ``--stages S`` cut by its own ``to_pipeline``. Its solutions
  record wrong value intervals for many operations (int4: 198 of 837; e.g. ``x35 + x5``
  recorded as ``[-510, 0]``), its Verilog writer sizes and signs every wire from them, and so
  its Verilog as written differs from ``W @ x`` (its Python model, which ignores the
  intervals, is right). The bench therefore writes its Verilog twice: as written, and from the
  same solution with every interval recomputed exactly (each operation a linear form of the
  inputs; its step the LSB of the adder that makes it) — the one that is checked equal in
  Verilator and synthesized, and the one the table's ``da4ml`` rows are;
* ``da4ml-graph``: the same da4ml solution rebuilt as an :class:`hwquant.cmvm.AdderGraph`
  (``benchmarks/cmvm_structure.py``, checked against ``W @ x``) and then emitted, checked in
  Verilator and synthesized exactly as ours (:class:`ConstantMatrix` in the same registered
  top, ``--stages`` cuts by the same rule): the two algorithms compared through one Verilog
  writer.

Equivalence on random vectors: the adder graph's integer model against ``W @ x`` on all 200,
and the very Verilog that is synthesized (the registered top) run through Verilator on the
same 200 vectors, one a cycle, every output word compared (:func:`_rtl_mismatches`; 27 s for
the int8 32x144 case, whose Amaranth simulation took over 30 CPU minutes); da4ml's Verilog the
same way (behind :func:`_da4ml_check_top`, its output fields extended as its intervals say),
and its Python model on 200 vectors in its environment; the ``x * c`` engine's Amaranth
simulation (50 vectors). Matrices: ``int4`` 16x64 random signed 4-bit;
``pow2`` 16x64 INQ-style (0 or +-2^e, e <= 3, ~25 % zeros); ``int8`` 32x144 random signed
8-bit; ``conv1`` the digits default CNN's first layer quantized to 8 bits (trained here);
``mask3`` 16x36 (a 3x3 conv over 4 channels) bit-masked 3-of-8 weights, mask ``X0X.0X000``
(magnitudes 8, 32, 40; ~25 % zeros).

    .venv/bin/python benchmarks/bench_cmvm.py [--cases int4,pow2,int8,conv1,mask3]
        [--families xilinx,ice40]
        [--designs graph,merged,pipe,mul,mul-rows,da4ml,da4ml-graph]
        [--mul-rows N] [--out DIR] [--json F] [--stages S] [--fmax]

(``--designs pipe`` with ``--stages S``: the pipelined graph without the combinational one;
``merged``: the combinational graph with ``separate_adders=False``, Yosys left to fold each
row's adders into a carry-save tree.)

``--stages S`` also builds the adder graph with ``S`` pipeline register cuts
(:class:`hwquant.hw.cmvm.ConstantMatrix` ``stages``; checked in Verilator at its latency,
synthesized: LUT and FF against the combinational graph, and the cost model's register
bits); ``--fmax`` places and routes the graph (and the pipelined one) on an iCE40-HX8K
(CT256) behind a pin harness (:class:`_PinHarness`), median nextpnr Fmax of 3 seeds: only
cases that fit its 7,680 LCs (conv1; int4's 8.7 k ice40 LUTs do not).

The ``x * c`` form is slow to synthesise (31 min for 16x64 on xilinx with this Yosys);
``--designs graph,da4ml`` leaves it out. It is left out of int8 (32x144: hours).

Measured (Yosys 0.70 YoWASP; 2 cores, shared with other work; ``+ r-thru``: xilinx LUTs plus
the ``CARRY4`` select bits no LUT drives, :func:`_carry_route_throughs`, the LUT sites on a
device; ``graph, merged``: the same graph with ``separate_adders=False``, Yosys folding each
row's single-use adders into a carry-save tree; da4ml rows: its Verilog from its solution with
exact intervals, see above, ``words wrong`` its Verilog as written, of 3,200 output words;
``da4ml's graph``: its solution through our writer):

=====  ======  ==================  =======  ========  ======  ======  =======  ==============
case   family  design              LUT      + r-thru  carry   FF      synth s  equal (200)
=====  ======  ==================  =======  ========  ======  ======  =======  ==============
int4   xilinx  adder graph         7,854    8,441     2,637   781     53       True
int4   xilinx  graph, merged       8,370    8,783     1,838   781     110      True
int4   xilinx  da4ml               9,115    9,550     1,521   1,050   195      True (1,944 wrong)
int4   xilinx  da4ml's graph       8,523    9,618     2,652   781     69       True
int4   ice40   adder graph         8,667    --        8,179   781     28       True
int4   ice40   graph, merged       10,693   --        5,545   781     92       True
int4   ice40   da4ml               12,634   --        4,565   1,050   197      True (1,944 wrong)
int4   ice40   da4ml's graph       10,996   --        8,316   781     45       True
pow2   xilinx  adder graph         4,996    5,332     1,722   768     36       True
pow2   xilinx  graph, merged       5,218    5,487     1,218   768     47       True
pow2   xilinx  da4ml               5,851    6,172     1,030   1,024   79       True (3,100 wrong)
pow2   ice40   adder graph         5,572    --        5,235   768     19       True
pow2   ice40   graph, merged       6,733    --        3,652   768     29       True
pow2   ice40   da4ml               8,027    --        3,075   1,024   45       True (3,100 wrong)
conv1  xilinx  adder graph         1,907    2,233     663     341     16       True
conv1  xilinx  graph, merged       1,926    2,239     624     341     27       True
conv1  xilinx  da4ml               2,138    2,357     497     629     28       True (3,200 wrong)
conv1  ice40   adder graph         2,389    --        2,054   341     7        True
conv1  ice40   graph, merged       2,261    --        1,930   341     7        True
conv1  ice40   da4ml               2,952    --        1,546   629     13       True (3,200 wrong)
mask3  xilinx  adder graph         3,142    3,438     1,074   531     16       True
mask3  xilinx  graph, merged       3,343    3,527     709     531     48       True
mask3  xilinx  da4ml               3,632    3,786     572     774     52       True (1,514 wrong)
mask3  ice40   adder graph         3,598    --        3,299   531     8        True
mask3  ice40   graph, merged       4,386    --        2,130   531     27       True
mask3  ice40   da4ml               4,982    --        1,708   774     38       True (1,514 wrong)
int8   xilinx  graph, 1 cut        58,720   65,534    19,963  14,422  332      True (27 s check)
int8   xilinx  da4ml, 1 cut        69,634   74,538    13,589  12,918  1,231    True (5,018 of 6,400)
int8   xilinx  x * c, 4 of 32 rows 260,240  --        --      --      --       True (Amaranth 50)
=====  ======  ==================  =======  ========  ======  ======  =======  ==============

Ours / da4ml, LUT, xilinx (ice40): int4 **0.862x** (0.686x), pow2 0.854x (0.694x), conv1
0.892x (0.809x), mask3 0.865x (0.722x), int8 (one cut each, xilinx) 0.843x. With the
route-throughs (LUT sites, xilinx): 0.884x, 0.864x, 0.947x, 0.908x, 0.879x. Carry cells are
the price: ours has more ``CARRY4`` than da4ml's (int4 2,637 against 1,521), as every node is
its own chain (``graph, merged`` is between them), so on a 7-series slice count (at least
the ``CARRY4`` count, each in a slice of four LUTs) ours is not smaller: int4 at least 2,637
slices against da4ml's 2,388 (its LUT sites / 4). On iCE40 a carry shares the logic cell of
the LUT that computes its sum bit, so there the LUT count is the cell count. Keeping each node
its own adder pays on every case but conv1 on iCE40 (merged 2,261 against 2,389); the row
trees are ranked by logic bits for this form (by operand overlap instead, int4: 7,788 /
9,050 LUT, xilinx / iCE40). da4ml's graph through our writer shows the two algorithms apart
from the writers: ours 0.922x (int4, xilinx) and 0.788x (ice40) of it.

Against the old ``x * c`` form (LUT, xilinx / ice40; measured in earlier runs on the same
seeded matrices, the form is unchanged): int4 23,239 / 30,028 (2.96x / 3.46x ours), pow2
13,497 / 17,136 (2.70x / 3.08x), conv1 4,924 / 6,967 on an earlier run's conv1 matrix, whose
graph was 1,886 / 2,403 (2.6x / 2.9x), int8 about 4x. int8's ``x * c`` netlist needs hours
in Yosys, so it is measured on a sample of its rows (``--designs mul-rows``, rows 0, 8, 16,
24, each its own registered top: 7,886 / 7,907 / 8,547 / 8,190 LUT, 16-33 minutes each under
load, scaled by 32: 260,240; without the share of products that repeat an earlier row's, 244
of 4,591: 246,408, 4.2x ours). The sampling checked on int4, whose whole netlist was
measured: rows 0, 4, 8, 12 scaled give 31,724 LUT and without the repeats 20,927, around the
whole design's 23,239 (scaled 37 % over, the bound 10 % under); erring so on int8 the whole
would be 190,600-273,600 LUT, 3.2x-4.7x ours.

The adder-graph rows are the default graph, built with each subtraction rule of
:data:`hwquant.cmvm.SUBTRACTION_PENALTIES` and the one with fewer logic bits kept.

* int8, combinational: ABC9 had not finished after 68 minutes (killed, in an earlier run);
  with one pipeline cut (:class:`ConstantMatrix` ``stages=1``) the whole synthesis takes
  under 6 minutes, so int8 is measured pipelined, and da4ml's own int8 Verilog (combinational
  as ``solve`` returns it: all 5,446 adders in its stage 0) cut once by its own
  ``to_pipeline`` (``--stages 1``; 1,826 of its 6,264 operations' intervals repaired,
  bit-exact in Verilator).
* Structure (``benchmarks/cmvm_structure.py`` rebuilds da4ml's solution as an
  :class:`hwquant.cmvm.AdderGraph`, checked against ``W @ x``, and counts both graphs by the
  same definitions): every case has ~8 % more adders than da4ml and about as many logic
  bits, but fewer signed signals (da4ml shares differences freely and its rows are canonical
  signed digits; a signed operand costs the xilinx carry chain a LUT per sign-extension bit).
  What da4ml does that was tried here, by the cost model before the netlist change: its pair
  score (occurrences x the narrower operand's width, differences as freely as sums), no depth
  bound, canonical digits only, and its column decomposition ``W = W1 W2`` (its ``solve``
  keeps none for int8, int4, pow2 and mask3 and one for conv1): none was better than ours.
* Fmax on iCE40-HX8K (CT256, :class:`_PinHarness`, median of 3 seeds), conv1: 63.8 MHz, 2,684 LCs (merged: 63.7 MHz, 2,550 LCs;
  before the nodes were kept and the trees ranked by logic bits, 64.5 MHz and 2,785 LCs;
  with 2 cuts then 113.7 MHz, 3,158 LCs). int4 does not fit an iCE40.
* conv1's weights come from training the digits CNN here, which does not reproduce the matrix
  exactly from run to run; int4, pow2, mask3 and int8 are seeded and reproduce exactly.

Reproduce::

    bench_cmvm.py --cases int4,pow2,conv1,mask3 --designs graph,merged,da4ml,da4ml-graph \
        --families xilinx,ice40                                            # ~45 min
    bench_cmvm.py --cases int8 --designs pipe,da4ml --families xilinx --stages 1  # ~30 min
    bench_cmvm.py --cases conv1 --designs graph,merged --families ice40 --fmax
    bench_cmvm.py --cases int4 --designs graph --families xilinx,ice40 --stages 2
    bench_cmvm.py --cases int8 --designs mul-rows --mul-rows 4 --families xilinx  # ~2 h
    bench_cmvm.py --cases int4 --designs mul,mul-rows --families xilinx,ice40
    cmvm_structure.py                      # both graphs' structure (~1 min, no Yosys)
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
from amaranth.back import verilog
from amaranth.hdl import Cat, Module, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from hwquant import ir
from hwquant.cmvm import build_adder_graph, pipeline_plan
from hwquant.estimate.synth import place_and_route, synthesize
from hwquant.hw.cmvm import ConstantMatrix
from hwquant.hw.registered import Registered

__all__ = ["CASES", "main"]

X_BITS = 8
DA4ML = "da4ml==0.6.0"

_DA4ML_SCRIPT = r'''
"""da4ml's solution of W (argv[1]) and its Verilog, in argv[2] as written ("raw") and in
argv[3] with every operation's interval recomputed exactly ("repaired"); argv[4] input max,
argv[5] pipeline cuts (da4ml's own to_pipeline; 0: its solution as solve returns it)."""
import json, re, sys, time
import numpy as np
from da4ml.cmvm import solve
from da4ml.codegen.rtl.rtl_model import VerilogModel
from da4ml.trace.pipeline import to_pipeline
from da4ml.types import Pipeline, QInterval, minimal_kif

def exact(comb, inp=None):
    """comb with each op's interval the exact range of its value (the op as a linear form of
    the stage's inputs, each input over its interval) and its step the LSB weight of the adder
    that makes it (the finer of its operands' steps, the second shifted); inp: the intervals
    feeding the stage (the previous stage's outputs). Also the number of ops whose recorded
    interval does not contain their values."""
    n_in = comb.shape[0]
    q = list(comb.inp_qint) if inp is None else list(inp)
    sf = 2.0 ** np.asarray(comb.inp_shifts, dtype=float)  # the model scales its inputs
    lo_in, hi_in = np.array([v.min for v in q]) * sf, np.array([v.max for v in q]) * sf
    st_in = np.array([v.step for v in q]) * sf
    forms, ops, wrong = [], [], 0
    for op in comb.ops:
        if op.opcode == -1:
            v = np.zeros(n_in); v[op.id0] = 1.0
            step = float(st_in[op.id0])
        elif op.opcode in (0, 1):
            v = forms[op.id0] + (-1.0 if op.opcode else 1.0) * 2.0 ** op.data * forms[op.id1]
            step = min(ops[op.id0].qint.step, 2.0 ** op.data * ops[op.id1].qint.step)
        else:
            raise SystemExit(f"da4ml opcode {op.opcode} is not an add")
        forms.append(v)
        lo = float(np.sum(np.minimum(v * lo_in, v * hi_in)))
        hi = float(np.sum(np.maximum(v * lo_in, v * hi_in)))
        wrong += bool(lo < op.qint.min or hi > op.qint.max)
        ops.append(op._replace(qint=QInterval(lo, hi, step)))
    return comb._replace(ops=ops), wrong

def write(pipe, out):
    VerilogModel(pipe, "da4ml_cmvm", out, print_latency=False).write()
    last = open(f"{out}/src/da4ml_cmvm_stage{len(pipe.solutions) - 1}.v").read()
    bits = [int(h) - int(l) + 1 for h, l in re.findall(r"assign model_out\[(\d+):(\d+)\]", last)]
    # Per output: its field's bits, signed, and the weight of its LSB (2^-fractional bits).
    fields = [[b, bool(q.min < 0), -int(minimal_kif(q)[2])] for b, q in zip(bits, pipe.out_qint)]
    with open(f"{out}/src/fields.json", "w") as f:
        json.dump({"fields": fields, "stages": len(pipe.solutions)}, f)

w, hi, cuts = np.load(sys.argv[1]), float(sys.argv[4]), int(sys.argv[5])
started = time.perf_counter()
sol = solve(np.ascontiguousarray(w.T, dtype=np.float32), qintervals=[(0.0, hi, 1.0)] * w.shape[1])
seconds = time.perf_counter() - started
stages = tuple(sol.solutions)
if cuts:
    first = stages[0]
    split = to_pipeline(first, first.latency[1] / (cuts + 1), verbose=False)  # (min, max)
    stages = tuple(split.solutions) + stages[1:]
raw = Pipeline(stages)
repaired, prev, wrong = [], None, 0
for comb in stages:
    comb, bad = exact(comb, None if prev is None else prev.out_qint)
    repaired.append(comb); prev = comb; wrong += bad
repaired = Pipeline(tuple(repaired))
write(raw, sys.argv[2])
write(repaired, sys.argv[3])
x = np.random.default_rng(5).integers(0, int(hi) + 1, size=(200, w.shape[1])).astype(float)
model = lambda p: np.array([np.asarray(p(v), dtype=np.float64) for v in x])
print(json.dumps({"cost": float(sol.cost), "solve_seconds": seconds,
                  "equal": bool(np.array_equal(model(sol), x @ w.T)),
                  "equal_repaired": bool(np.array_equal(model(repaired), x @ w.T)),
                  "wrong_intervals": wrong, "ops": sum(len(c.ops) for c in stages)}))
'''


def _inq(rng, shape):
    e = rng.integers(0, 4, size=shape)
    return np.where(rng.random(shape) < 0.25, 0, rng.choice([-1, 1], size=shape) << e)


def _conv1():
    import torch

    from hwquant.data import calibration_split, load_dataset
    from hwquant.frontend import from_module
    from hwquant.quant.fixed import quantize_fixed
    from hwquant.train import default_model, train

    ds = load_dataset("digits")
    model = default_model(ds.x_train.shape[1:], ds.num_classes, seed=0)
    train(model, ds, seed=0, progress=False)
    graph = from_module(model, torch.tensor(ds.x_test[:2]))
    net = quantize_fixed(graph, calibration_split(ds), wbits=8, abits=8)
    layer = next(layer for layer in net.layers if isinstance(layer, ir.Conv2d))
    return np.asarray(layer.weight_matrix(), dtype=np.int64)


def _masked(rng, shape, pattern="X0X.0X000"):
    """Integer weights of a bit-masked layer: +-(bits inside the mask), ~25 % zeros."""
    from hwquant.bitmask import parse

    mags = parse(pattern).magnitudes()
    return rng.choice([-1, 1], size=shape) * rng.choice(mags[1:], size=shape) * (
        rng.random(shape) >= 0.25)


CASES = {
    "int4": lambda rng: rng.integers(-8, 8, size=(16, 64)),
    "pow2": lambda rng: _inq(rng, (16, 64)),
    "int8": lambda rng: rng.integers(-128, 128, size=(32, 144)),
    "conv1": lambda rng: _conv1(),
    "mask3": lambda rng: _masked(rng, (16, 36)),
}


class _RowProducts(wiring.Component):
    """The old form: one ``fixed`` per-lane dot engine (``x * c`` and an adder tree) per row."""

    def __init__(self, w, y_bits):
        from amaranth.lib import data

        self._w = w
        super().__init__({"x": In(data.ArrayLayout(unsigned(X_BITS), w.shape[1])),
                          "y": Out(data.ArrayLayout(signed(y_bits), w.shape[0]))})

    def elaborate(self, platform):
        from hwquant.hw.fixed import DotEngine

        m = Module()
        fmt = ir.ActFormat(X_BITS, False, 0)
        for j, row in enumerate(self._w):
            eng = DotEngine(simd=len(row), x_format=fmt, weight_bits=8, weights=row.tolist())
            m.submodules[f"row{j}"] = eng
            m.d.comb += [eng.x.eq(self.x), self.y[j].eq(eng.y)]
        return m


def _simulate(dut, xs, n_out):
    got = []

    async def bench(ctx):
        for x in xs:
            for i, v in enumerate(x):
                ctx.set(dut.x[i], int(v))
            got.append([ctx.get(dut.y[j]) for j in range(n_out)])

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()
    return np.array(got, dtype=np.int64)


def _rtl_check(verilog_paths, top, xs, want, y_bits, latency, work):
    """``True`` if every output word is right: :func:`_rtl_mismatches` is 0."""
    return _rtl_mismatches(verilog_paths, top, xs, want, y_bits, latency, work) == 0


def _rtl_mismatches(verilog_paths, top, xs, want, y_bits, latency, work):
    """Run the Verilog ``verilog_paths`` (a file or a list; module ``top``: ``clk``, ``rst``,
    flat ``x`` and ``y`` of signed ``y_bits`` lanes, ``latency`` cycles from ``x`` to ``y``)
    through Verilator on every vector of ``xs`` (one per cycle); the number of output words
    that differ from ``want`` (all of them if the run writes too few lines).

    The harness reads the vectors with ``$readmemh`` and writes one ``y`` a line; built with
    ``--binary`` in ``work`` (a few seconds to minutes, unoptimized C++)."""
    from hwquant.sim import verilator_env

    paths = [verilog_paths] if isinstance(verilog_paths, (str, Path)) else list(verilog_paths)
    work.mkdir(parents=True, exist_ok=True)
    n, n_in = xs.shape
    n_out = want.shape[1]
    nx, ny = n_in * X_BITS, n_out * y_bits
    (work / "x.hex").write_text("".join(
        f"{sum(int(v) << (X_BITS * k) for k, v in enumerate(x)):0{-(-nx // 4)}x}\n"
        for x in xs))
    (work / "tb.v").write_text(f"""module tb;
  reg clk = 0;
  reg [{nx - 1}:0] mem [0:{n - 1}];
  reg [{nx - 1}:0] x = 0;
  wire [{ny - 1}:0] y;
  integer i, f;
  {top} dut(.clk(clk), .rst(1'b0), .x(x), .y(y));
  initial begin
    $readmemh("x.hex", mem);
    f = $fopen("y.hex", "w");
    for (i = 0; i < {n + latency - 1}; i = i + 1) begin
      if (i < {n}) x = mem[i];
      #1 clk = 1;
      #1 clk = 0;
      if (i >= {latency - 1}) $fwrite(f, "%h\\n", y);
    end
    $fclose(f);
    $finish;
  end
endmodule
""")
    (work / "y.hex").unlink(missing_ok=True)
    env = verilator_env()
    subprocess.run(["verilator", "--binary", "-j", "1", "-Wno-fatal", "-Wno-lint",
                    "-Wno-style", "--top-module", "tb", "-CFLAGS", "-O0", "-Mdir", "obj",
                    "tb.v", *[str(Path(p).resolve()) for p in paths]],
                   cwd=work, env=env, check=True, capture_output=True)
    subprocess.run(["obj/Vtb"], cwd=work, env=env, check=True, capture_output=True)
    lines = (work / "y.hex").read_text().split()
    if len(lines) != n:
        return int(want.size)
    mask = (1 << y_bits) - 1
    got = np.array([[(int(line, 16) >> (y_bits * j)) & mask for j in range(n_out)]
                    for line in lines], dtype=np.int64)
    got = np.where(got >> (y_bits - 1), got - (1 << y_bits), got)
    return int(np.count_nonzero(got != want))


def _da4ml_sources(src_dir):
    """da4ml's Verilog files in ``src_dir`` for synthesis: its top and stages and the static
    modules, without its wrapper and ``lookup_table.v`` (which reads a placeholder memory
    file, unused by a constant-matrix design); ``shift_adder.v`` patched
    (:func:`_patch_shift_adder`)."""
    _patch_shift_adder(src_dir / "static" / "shift_adder.v")
    src = [p for p in sorted(src_dir.glob("da4ml_cmvm*.v")) if not p.name.endswith("_wrapper.v")]
    return src + [p for p in sorted((src_dir / "static").glob("*.v"))
                  if p.name != "lookup_table.v"]


def _da4ml_check_top(src_dir, n_in, y_bits):
    """``(wrapper, top, latency)``: da4ml's Verilog in ``src_dir`` behind a wrapper with
    :func:`_rtl_mismatches`'s ports (``clk``, ``rst``, flat ``x``, ``y`` of ``y_bits`` lanes),
    each output field sign- or zero-extended and shifted to its LSB's weight as ``fields.json``
    (written by the da4ml run from its solution's output intervals) says; the latency is
    da4ml's stage count + 1 (a register in front of every stage and one at the output)."""
    info = json.loads((src_dir / "fields.json").read_text())
    lines, pos = [], 0
    for j, (bits, signed_field, lsb) in enumerate(info["fields"]):
        # Fractional bits (only in a field whose interval is wrong) are dropped.
        low = pos + max(0, -lsb)
        lane = f"y[{(j + 1) * y_bits - 1}:{j * y_bits}]"
        keep = min(pos + bits - low, y_bits - max(lsb, 0))
        fill = f"o[{pos + bits - 1}]" if signed_field else "1'b0"
        pad = y_bits - max(lsb, 0) - keep
        parts = [f"{{{pad}{{{fill}}}}}"] if pad else []
        parts.append(f"o[{low + keep - 1}:{low}]")
        parts += [f"{lsb}'b0"] if lsb > 0 else []
        lines.append(f"  assign {lane} = {{{', '.join(parts)}}};")
        pos += bits
    n_out = len(info["fields"])
    wrapper = src_dir / "da4ml_check.v"
    wrapper.write_text(
        f"module da4ml_check(input clk, input rst, input [{n_in * X_BITS - 1}:0] x,\n"
        f"                   output [{n_out * y_bits - 1}:0] y);\n"
        f"  wire [{pos - 1}:0] o;\n"
        f"  da4ml_cmvm dut(.clk(clk), .model_inp(x), .model_out(o));\n"
        + "\n".join(lines) + "\nendmodule\n")
    return wrapper, "da4ml_check", info["stages"] + 1


class _PinHarness(wiring.Component):
    """A registered top (flat ``x``, ``y``) behind few pins, for place and route: ``X_BITS``
    input pins shifted into ``x`` one lane a cycle, ``y``'s bits XOR-reduced to one output pin
    by a tree of 4-input XORs, registered at every level (so the harness's own paths are one
    LUT deep and the engine's set Fmax)."""

    def __init__(self, top):
        self._top = top
        super().__init__({"i": In(X_BITS), "o": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.top = top = self._top
        lanes = Signal(len(top.x), reset_less=True)
        m.d.sync += lanes.eq(Cat(self.i, lanes[:-X_BITS]))
        m.d.comb += top.x.eq(lanes)
        level = [top.y[k] for k in range(len(top.y))]
        while len(level) > 1:
            nxt = []
            for k in range(0, len(level), 4):
                bit = Signal(reset_less=True, name=f"xor{len(level)}_{k}")
                m.d.sync += bit.eq(Cat(*level[k:k + 4]).xor())
                nxt.append(bit)
            level = nxt
        m.d.comb += self.o.eq(level[0])
        return m


def _fmax_ice40(top, name, work, seeds=(1, 2, 3)):
    """Median nextpnr Fmax (MHz) of ``top`` (flat ``x``/``y``) behind :class:`_PinHarness` on
    an iCE40-HX8K (CT256) over ``seeds``, and its ``ICESTORM_LC`` use."""
    import statistics

    path = work / f"{name}_pnr.v"
    path.write_text(verilog.convert(_PinHarness(top), name="cmvm_pnr"))
    synthesize([path], "cmvm_pnr", "ice40", workdir=work / f"{name}_pnr", nodsp=True,
               allow_dsp=False, pre_techmap=False, netlist=True)
    fmax, cells = [], None
    for seed in seeds:
        p = place_and_route(work / f"{name}_pnr" / "netlist.json", "ice40", "hx8k", "ct256",
                            workdir=work / f"{name}_pnr_{seed}", seed=seed, freq_mhz=100)
        fmax.append(p.fmax)
        cells = p.utilization.get("ICESTORM_LC", (0, 0))[0]
    return {"fmax_mhz": round(statistics.median(fmax), 1), "seeds": [round(f, 1) for f in fmax],
            "lc": cells}


def _synth(verilog_paths, top, family, work, *, splitnets=False):
    """Yosys LUT, carry and FF counts of ``top``; on xilinx also ``route_through``: the
    ``CARRY4`` select inputs not driven by a LUT (:func:`_carry_route_throughs`)."""
    started = time.perf_counter()
    res = synthesize(verilog_paths, top, family, workdir=work, nodsp=True, allow_dsp=False,
                     pre_techmap=False, splitnets=splitnets, netlist=family == "xilinx")
    out = {"lut": res.lut, "carry": res.carry, "ff": res.ff,
           "seconds": round(time.perf_counter() - started, 1)}
    if family == "xilinx":
        out["route_through"] = _carry_route_throughs(res.netlist_path, top)
    return out


def _carry_route_throughs(netlist_path, top):
    """``CARRY4`` select (``S``) bits of the Yosys netlist that a net other than a LUT drives.

    In a 7-series slice the select inputs come only from the slice's LUTs, so each of these
    (a carry chain passing one operand's bit through, above the other operand's top) takes a
    LUT as a route-through on the device, which Yosys's LUT count leaves out: ``lut +
    route_through`` is the LUT sites the design occupies."""
    module = json.loads(Path(netlist_path).read_text())["modules"][top]
    from_lut = set()
    for cell in module["cells"].values():
        if cell["type"].startswith("LUT"):
            from_lut.update(b for b in cell["connections"]["O"] if isinstance(b, int))
    return sum(1 for cell in module["cells"].values() if cell["type"] == "CARRY4"
               for b in cell["connections"]["S"] if isinstance(b, int) and b not in from_lut)


def _sites(synth):
    """LUT sites of a xilinx result: its LUTs and its carry route-throughs."""
    return synth["lut"] + synth["route_through"]


def _patch_shift_adder(path):
    """da4ml's ``shift_adder`` selects ``accum[BW_OUT-1:0]`` also when ``BW_OUT`` exceeds the
    adder's width; Yosys makes the missing MSB undefined and then folds every adder that
    depends on it to ``x`` (the whole design vanishes). The sum is exact in ``accum``: two's
    complement when an operand is signed or it subtracts (the module pads a bit for that),
    unsigned otherwise; the patch extends it accordingly. Nothing else changes."""
    text = path.read_text()
    old = "  assign out = accum[BW_OUT-1:0];"
    new = ("  generate\n    if (BW_OUT > BW_ADD) begin : widen\n"
           "      assign out = {{(BW_OUT - BW_ADD){(SIGNED0 == 1 || SIGNED1 == 1 || IS_SUB == 1)"
           " & accum[BW_ADD-1]}}, accum};\n"
           "    end else begin : narrow\n      assign out = accum[BW_OUT-1:0];\n"
           "    end\n  endgenerate")
    if old in text:
        path.write_text(text.replace(old, new))


def _registered_graph(graph, y_bits, **options):
    """A fresh :class:`ConstantMatrix` of ``graph`` between port registers (``options``: its
    keyword arguments); every elaboration needs its own."""
    return Registered(ConstantMatrix(graph, unsigned(X_BITS), y_bits, **options))


def _pipelined(graph, y_bits, stages, xs, want, families, work, fmax):
    """The adder graph with ``stages`` pipeline cuts: checked in Verilator (latency
    ``2 + stages`` with the port registers), synthesized for ``families``, and placed and
    routed on ice40 if ``fmax``."""
    engine = ConstantMatrix(graph, unsigned(X_BITS), y_bits, stages=stages)
    top = Registered(engine)
    path = work / f"graph_s{stages}.v"
    path.write_text(verilog.convert(top, name="cmvm_graph"))
    ok = _rtl_check(path, "cmvm_graph", xs, want, y_bits, 2 + engine.latency,
                    work / f"graph_s{stages}_rtl")
    plan = pipeline_plan(graph, stages)
    out = {"stages": stages, "equal": bool(ok), "register_bits": plan.register_bits,
           "adders_per_stage": -(-graph.depth // (stages + 1))}
    print("graph", f"stages={stages}", out, flush=True)
    for fam in families:
        out[fam] = _synth([path], "cmvm_graph", fam, work / f"graph_s{stages}_{fam}")
        print("graph", f"stages={stages}", fam, out[fam], flush=True)
    if fmax:
        out["pnr"] = _fmax_ice40(_registered_graph(graph, y_bits, stages=stages),
                                 f"graph_s{stages}", work)
        print("graph", f"stages={stages}", "ice40 hx8k", out["pnr"], flush=True)
    return out


def _row_sample(w, y_bits, xs, want, n_rows, families, work):
    """The ``x * c`` form of ``w`` measured on ``n_rows`` of its rows, evenly spaced, each row
    its own registered top (its products and adder tree; rows share nothing in this form but
    identical products, which Yosys merges when they are in one netlist), synthesized one at a
    time, and scaled to the whole matrix: ``lut`` etc. are the sampled rows' mean times the row
    count. ``lut_merged`` takes off the share of products that repeat an earlier row's
    ``(column, weight)`` (``duplicate_products``), as if each were worth its row's mean LUTs per
    product: a lower bound for the one-netlist design. For matrices whose whole ``x * c`` form
    Yosys needs hours for (int8 32x144); every sampled row checked in Amaranth (50 vectors)."""
    n_out = w.shape[0]
    picks = sorted({int(i) for i in np.linspace(0, n_out, n_rows, endpoint=False)})
    seen, dups = set(), 0
    for r in range(n_out):
        for k, v in enumerate(w[r]):
            if v and (k, int(v)) in seen:
                dups += 1
            seen.add((k, int(v)))
    products = int(np.count_nonzero(w))
    out = {"rows": picks, "duplicate_products": dups, "products": products, "equal": True}
    per_row = {fam: [] for fam in families}
    for r in picks:
        one = w[r:r + 1]
        out["equal"] &= bool(np.array_equal(_simulate(_RowProducts(one, y_bits), xs[:50], 1),
                                            want[:50, r:r + 1]))
        path = work / f"mul_row{r}.v"
        path.write_text(verilog.convert(Registered(_RowProducts(one, y_bits)), name="cmvm_mul"))
        for fam in families:
            res = _synth([path], "cmvm_mul", fam, work / f"mul_row{r}_{fam}", splitnets=True)
            per_row[fam].append(res)
            print(f"x*c row {r}", fam, res, flush=True)
    for fam in families:
        got = per_row[fam]
        scaled = {k: round(sum(g[k] for g in got) * n_out / len(got)) for k in ("lut", "carry")}
        # Each row's top registers the whole input vector; the matrix registers it once.
        x_bits = w.shape[1] * X_BITS
        scaled["ff"] = x_bits + round(sum(g["ff"] - x_bits for g in got) * n_out / len(got))
        scaled["seconds"] = round(sum(g["seconds"] for g in got), 1)
        scaled["lut_merged"] = round(scaled["lut"] * (1 - dups / products))
        scaled["row_lut"] = [g["lut"] for g in got]
        out[fam] = scaled
    return out


def _da4ml_design(python, w, hi, xs, want, y_bits, cuts, families, work):
    """da4ml's solution of ``w`` and its Verilog (``cuts`` pipeline cuts by its own
    ``to_pipeline``): as written, checked in Verilator (words wrong counted), and with its
    operations' intervals repaired, checked (every word) and synthesized for ``families``."""
    np.save(work / "w.npy", w)
    script = work / "da4ml_run.py"
    script.write_text(_DA4ML_SCRIPT)
    raw, repaired = work / "da4ml_raw", work / "da4ml"
    out = subprocess.run([str(python), str(script), str(work / "w.npy"), str(raw),
                          str(repaired), str(float(hi)), str(cuts)],
                         capture_output=True, text=True, check=False,
                         env={**os.environ, "PYTHONPATH": ""})
    if out.returncode:
        print(f"da4ml failed on {work.name}: {out.stderr[-400:]}")
        return None
    info = json.loads(out.stdout.strip().splitlines()[-1])
    row = {"equal": info["equal"] and info["equal_repaired"], "cuts": cuts,
           "solve_seconds": round(info["solve_seconds"], 2), "ops": info["ops"],
           "wrong_intervals": info["wrong_intervals"]}
    for name, src_dir in (("raw", raw), ("repaired", repaired)):
        sources = _da4ml_sources(src_dir / "src")
        wrapper, top, latency = _da4ml_check_top(src_dir / "src", w.shape[1], y_bits)
        row[f"rtl_wrong_words_{name}"] = _rtl_mismatches([wrapper, *sources], top, xs, want,
                                                         y_bits, latency,
                                                         work / f"da4ml_{name}_rtl")
    row["rtl_words"] = int(want.size)
    row["equal"] &= row["rtl_wrong_words_repaired"] == 0
    print("da4ml", row, flush=True)
    for fam in families:  # the repaired netlist: ``sources`` of the last pass
        row[fam] = _synth(sources, "da4ml_cmvm", fam, work / f"da4ml_{fam}")
        print("da4ml", fam, row[fam], flush=True)
    return row


def _da4ml_python(venv: Path):
    python = venv / "bin" / "python"
    if python.exists():
        return python
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True,
                       capture_output=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", DA4ML, "numpy"],
                       check=True, capture_output=True, timeout=900)
    except (subprocess.SubprocessError, OSError) as error:
        print(f"da4ml: cannot be installed ({error}); its column is skipped")
        return None
    return python


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="int4,pow2,int8,conv1")
    ap.add_argument("--families", default="xilinx,ice40")
    ap.add_argument("--designs", default="graph,mul,da4ml")
    ap.add_argument("--out", default=None)
    ap.add_argument("--da4ml-venv", default=str(Path.home() / ".cache" / "hwquant-bench"
                                                / "da4ml-venv"))
    ap.add_argument("--json", default=None)
    ap.add_argument("--mul-rows", type=int, default=4,
                    help="rows of the matrix the mul-rows design synthesizes (x * c scaled "
                         "from a sample of rows)")
    ap.add_argument("--stages", type=int, default=0,
                    help="also synthesize the adder graph with this many pipeline cuts")
    ap.add_argument("--fmax", action="store_true",
                    help="also place and route the adder graph (and its pipelined form) on an "
                         "iCE40-HX8K, median Fmax of 3 seeds")
    args = ap.parse_args()
    work = Path(args.out or tempfile.mkdtemp(prefix="hwquant-bench-cmvm-"))
    work.mkdir(parents=True, exist_ok=True)
    designs = args.designs.split(",")
    families = args.families.split(",")
    da4ml = (_da4ml_python(Path(args.da4ml_venv))
             if {"da4ml", "da4ml-graph"} & set(designs) else None)
    results = []
    for case in args.cases.split(","):
        # One seed per case: the matrices do not depend on which cases a run includes.
        rng = np.random.default_rng(list(CASES).index(case))
        w = np.asarray(CASES[case](rng), dtype=np.int64)
        n_out, n_in = w.shape
        hi = (1 << X_BITS) - 1
        xs = rng.integers(0, hi + 1, size=(200, n_in))
        want = xs @ w.T
        # One graph (what compile builds) synthesized for every family.
        started = time.perf_counter()
        graph = build_adder_graph(w, [(0, hi)] * n_in)
        build_s = round(time.perf_counter() - started, 2)
        y_bits = max(ir.signed_bits_for(min(lo, 0), max(h, 0)) for lo, h in graph.output_ranges)
        row = {"case": case, "shape": [n_out, n_in], "graph_adders": graph.adders,
               "graph_depth": graph.depth, "graph_build_seconds": build_s}
        case_dir = work / case
        case_dir.mkdir(exist_ok=True)
        for name, separate in (("graph", True), ("merged", False)):
            if name not in designs:
                continue
            # The Verilog that is synthesized, checked in Verilator on every vector.
            top = _registered_graph(graph, y_bits, separate_adders=separate)
            path = case_dir / f"{name}.v"
            path.write_text(verilog.convert(top, name="cmvm_graph"))
            started = time.perf_counter()
            ok = np.array_equal(graph.evaluate(xs), want)
            ok &= _rtl_check(path, "cmvm_graph", xs, want, y_bits, 2, case_dir / f"{name}_rtl")
            row[name] = {"equal": bool(ok),
                         "check_seconds": round(time.perf_counter() - started, 1)}
            print(case, name, "equal", row[name], flush=True)
            for fam in families:
                row[name][fam] = _synth([path], "cmvm_graph", fam, case_dir / f"{name}_{fam}")
                print(case, name, fam, row[name][fam], flush=True)
            if args.fmax:
                fresh = _registered_graph(graph, y_bits, separate_adders=separate)
                row[name]["pnr"] = _fmax_ice40(fresh, name, case_dir)
                print(case, name, "ice40 hx8k", row[name]["pnr"], flush=True)
        if args.stages and ("graph" in designs or "pipe" in designs):
            row["graph_pipe"] = _pipelined(graph, y_bits, args.stages, xs, want, families,
                                           case_dir, args.fmax)
        if "da4ml-graph" in designs and da4ml is not None:
            # da4ml's solution as an AdderGraph, emitted and synthesized exactly as ours.
            from benchmarks.cmvm_structure import da4ml_adder_graph

            theirs, solution = da4ml_adder_graph(da4ml, w, hi, case_dir / "da4ml_graph")
            their_bits = max(ir.signed_bits_for(min(lo, 0), max(h, 0))
                             for lo, h in theirs.output_ranges)
            row["da4ml_graph"] = _pipelined(theirs, their_bits, args.stages, xs, want,
                                            families, case_dir / "da4ml_graph", False)
            row["da4ml_graph"]["equal"] &= bool(np.array_equal(theirs.evaluate(xs), want))
            row["da4ml_graph"]["adders"] = theirs.adders
            row["da4ml_graph"]["solve_seconds"] = round(solution["seconds"], 2)
        if "mul" in designs:
            ok = np.array_equal(_simulate(_RowProducts(w, y_bits), xs[:50], n_out), want[:50])
            top = Registered(_RowProducts(w, y_bits))
            path = case_dir / "mul.v"
            path.write_text(verilog.convert(top, name="cmvm_mul"))
            row["mul"] = {"equal": bool(ok)}
            for fam in families:
                # ABC9 trips an assertion on the products' wide nets without splitnets.
                row["mul"][fam] = _synth([path], "cmvm_mul", fam, case_dir / f"mul_{fam}",
                                         splitnets=True)
                print(case, "x*c", fam, row["mul"][fam], flush=True)
        if "mul-rows" in designs:
            row["mul"] = _row_sample(w, y_bits, xs, want, args.mul_rows, families, case_dir)
        if da4ml is not None and "da4ml" in designs:
            theirs = _da4ml_design(da4ml, w, hi, xs, want, y_bits, args.stages, families,
                                   case_dir)
            if theirs is not None:
                row["da4ml"] = theirs
        results.append(row)

    print(f"\nconstant-matrix engines, unsigned {X_BITS}-bit inputs, Yosys without DSPs")
    head = f"  {'case':<6} {'family':<7} {'design':<13} {'LUT':>7} {'+ r-thru':>8} " \
           f"{'carry':>6} {'FF':>6} {'synth s':>8}  equal"
    print(head)
    for row in results:
        for fam in families:
            pipe = f"graph S={args.stages}"
            for name, label in (("graph", "adder graph"), ("merged", "graph, merged"),
                                ("graph_pipe", pipe), ("mul", "x * c"), ("da4ml", "da4ml"),
                                ("da4ml_graph", f"da4ml's, S={args.stages}")):
                r = row.get(name)
                if not r or fam not in r:
                    continue
                s = r[fam]
                rtl = ("" if "rtl_wrong_words_raw" not in r else
                       f" (as written: {r['rtl_wrong_words_raw']:,} of {r['rtl_words']:,} words"
                       f" wrong, {r['wrong_intervals']} of {r['ops']} intervals)")
                sites = f"{_sites(s):>8,}" if "route_through" in s else f"{'':>8}"
                print(f"  {row['case']:<6} {fam:<7} {label:<13} {s['lut']:>7,} {sites} "
                      f"{s['carry']:>6,} {s['ff']:>6,} {s['seconds']:>8.1f}  {r['equal']}{rtl}")
                if "rows" in r:
                    print(f"  {'':<6} {fam:<7} (x * c scaled from rows {r['rows']}: LUT "
                          f"{s['row_lut']}; {r['duplicate_products']} of {r['products']} "
                          f"products repeat an earlier row's, without them {s['lut_merged']:,})")
            for mine, mine_label in (("graph", "graph"), ("merged", "merged"),
                                     ("graph_pipe", pipe)):
                g = row.get(mine, {}).get(fam)
                for name, label in (("da4ml", "da4ml"), ("da4ml_graph", "da4ml's graph"),
                                    ("mul", "x * c")):
                    other = row.get(name, {}).get(fam)
                    if g and other:
                        sites = ("" if "route_through" not in g else
                                 f", LUT + route-throughs {_sites(g) / _sites(other):.3f}x")
                        print(f"  {'':<6} {fam:<7} {mine_label} / {label}: LUT "
                              f"{g['lut'] / other['lut']:.3f}x{sites}")
        print(f"  {row['case']} adder graph: adders {row['graph_adders']}, depth "
              f"{row['graph_depth']}, built in {row['graph_build_seconds']} s")
        if "graph_pipe" in row:
            p = row["graph_pipe"]
            print(f"  {row['case']} pipelined: {p['stages']} cuts, at most "
                  f"{p['adders_per_stage']} adders a stage, {p['register_bits']:,} register "
                  f"bits (model)")
        for name in ("graph", "merged", "graph_pipe"):
            pnr = row.get(name, {}).get("pnr")
            if pnr:
                print(f"  {row['case']} {name} on iCE40-HX8K: Fmax {pnr['fmax_mhz']} MHz "
                      f"(seeds {pnr['seeds']}), {pnr['lc']:,} LCs")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
