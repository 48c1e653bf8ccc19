"""Popcount alone: our compressor trees (:mod:`hwquant.hw.popcount`) vs Yosys's own.

For ``N`` = 64, 256 and 1024 input bits, between an input and an output register:

* ``ours``: :class:`hwquant.hw.popcount.Popcount` built for the family's LUT size ((6:3)
  counter columns for LUT6, a carry-in adder tree for LUT4), combinational;
* ``yosys``: the adder loop ``i[0] + i[1] + ... + i[N-1]`` as one expression, which Yosys turns
  into its own multi-operand adder.

Yosys counts (``synth_xilinx`` and ``synth_ice40`` through
:func:`hwquant.estimate.synth.synthesize`), LUTs per input bit side by side, and the ratio
ours / yosys. ``--pipeline K`` also synthesizes ours with a register every ``K`` stages (LUTs
and FFs).

Usage::

    .venv/bin/python benchmarks/bench_popcount.py [--sizes 64,256,1024] [--families xilinx,ice40]
        [--pipeline 2] [--jobs 1]
"""

import argparse
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from amaranth.back import verilog
from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hwquant.estimate.synth import synthesize
from hwquant.hw.popcount import Popcount, lut_inputs_of, popcount_bits

__all__ = ["AdderLoop", "Registered", "measure", "main"]


class AdderLoop(wiring.Component):
    """Yosys's own popcount: ``sum(i[k])`` as one Amaranth expression."""

    def __init__(self, n):
        self._n = n
        super().__init__({"i": In(n), "o": Out(popcount_bits(n))})

    def elaborate(self, platform):
        m = Module()
        total = self.i[0]
        for k in range(1, self._n):
            total = total + self.i[k]
        m.d.comb += self.o.eq(total)
        return m


class Registered(wiring.Component):
    """An ``i -> o`` component between an input and an output register."""

    def __init__(self, inner):
        self._inner = inner
        super().__init__({"i": In(len(inner.i)), "o": Out(len(inner.o))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.inner = inner = self._inner
        x = Signal(len(inner.i))
        m.d.sync += [x.eq(self.i), self.o.eq(inner.o)]
        m.d.comb += inner.i.eq(x)
        return m


def measure(kind, n, family, workdir, pipeline=0):
    """Yosys result of one popcount design."""
    if kind == "yosys":
        inner = AdderLoop(n)
    else:
        inner = Popcount(n, lut_inputs=lut_inputs_of(family), stages_per_register=pipeline)
    name = f"{kind}{pipeline or ''}_{n}_{family}"
    path = Path(workdir) / f"{name}.v"
    path.write_text(verilog.convert(Registered(inner), name="top"))
    t0 = time.perf_counter()
    res = synthesize(path, "top", family, workdir=Path(workdir) / name, splitnets=True)
    return res, time.perf_counter() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="64,256,1024")
    ap.add_argument("--families", default="xilinx,ice40")
    ap.add_argument("--pipeline", type=int, default=0,
                    help="also measure ours with a register every K stages")
    ap.add_argument("--jobs", type=int, default=1)
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    families = args.families.split(",")
    jobs = [(k, n, f, 0) for f in families for n in sizes for k in ("ours", "yosys")]
    if args.pipeline:
        jobs += [("ours", n, f, args.pipeline) for f in families for n in sizes]
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(args.jobs) as pool:
        futures = {job: pool.submit(measure, job[0], job[1], job[2], tmp, job[3])
                   for job in jobs}
        results = {job: f.result() for job, f in futures.items()}
    print(f"{'family':7} {'N':>5} | {'ours LUT':>8} {'/bit':>5} | {'yosys LUT':>9} {'/bit':>5} "
          f"| {'ours/yosys':>10}" + (f" | {'piped LUT':>9} {'FF':>5}" if args.pipeline else ""))
    for f in families:
        for n in sizes:
            (ours, _), (loop, _) = results[("ours", n, f, 0)], results[("yosys", n, f, 0)]
            row = (f"{f:7} {n:5} | {ours.lut:8} {ours.lut / n:5.2f} | {loop.lut:9} "
                   f"{loop.lut / n:5.2f} | {ours.lut / loop.lut:10.2f}")
            if args.pipeline:
                piped, _ = results[("ours", n, f, args.pipeline)]
                row += f" | {piped.lut:9} {piped.ff:5}"
            print(row)
    print("(LUT: LUT6 on xilinx, LUT4 on ice40; carry cells not counted; registers at input "
          "and output not included in LUT)")


if __name__ == "__main__":
    main()
