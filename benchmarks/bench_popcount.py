"""Popcount alone: our compressor trees (:mod:`hwquant.hw.popcount`) vs Yosys's own.

For ``N`` = 64, 256 and 1024 input bits, between an input and an output register:

* ``ours``: :class:`hwquant.hw.popcount.Popcount` built for the family's LUT size ((6:3)
  counter columns for LUT6, a carry-in adder tree for LUT4), combinational;
* ``yosys``: the adder loop ``i[0] + i[1] + ... + i[N-1]`` as one expression, which Yosys turns
  into its own multi-operand adder.

Yosys counts (``synth_xilinx`` and ``synth_ice40`` through
:func:`hwquant.estimate.synth.synthesize`), LUTs per input bit side by side, and the ratio
ours / yosys. ``--pipeline K`` also synthesizes ours with a register every ``K`` stages (LUTs
and FFs). ``--fmax`` places and routes ``N = 64`` (the widest that fits the package's I/O) on
an ECP5-25F (``LFE5U-25F``, CABGA256) with nextpnr: ours combinational, ours with a register
after every stage and after every second stage, and Yosys's own, the median Fmax of three
seeds each (the reference points: a 16-bit adder reaches about 295 MHz there, Yosys's
unpipelined 64-input popcount about 95 MHz).

Usage::

    .venv/bin/python benchmarks/bench_popcount.py [--sizes 64,256,1024] [--families xilinx,ice40]
        [--pipeline 2] [--fmax] [--jobs 1]
"""

import argparse
import statistics
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

from hwquant.estimate.synth import place_and_route, synthesize
from hwquant.hw.popcount import Popcount, lut_inputs_of, popcount_bits
from hwquant.hw.registered import Registered

__all__ = ["AdderLoop", "measure", "main"]


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
            if k % 128 == 0:  # a plain wire (Yosys sees through it) keeps Python's stack short
                part = Signal(len(total), name=f"partial{k}")
                m.d.comb += part.eq(total)
                total = part
        m.d.comb += self.o.eq(total)
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


def fmax_ecp5(kind, pipeline, workdir, seeds=(1, 2, 3), n=64):
    """Median Fmax (MHz) over ``seeds`` of one 64-bit popcount on an LFE5U-25F, and the LUTs."""
    inner = AdderLoop(n) if kind == "yosys" else Popcount(n, lut_inputs=4,
                                                           stages_per_register=pipeline)
    name = f"fmax_{kind}{pipeline}"
    path = Path(workdir) / f"{name}.v"
    path.write_text(verilog.convert(Registered(inner), name="top"))
    res = synthesize(path, "top", "ecp5", workdir=Path(workdir) / name, splitnets=True,
                     netlist=True)
    fmax = []
    for seed in seeds:
        p = place_and_route(Path(workdir) / name / "netlist.json", "ecp5", "25k", "CABGA256",
                            workdir=Path(workdir) / f"{name}_pnr{seed}", seed=seed)
        fmax.append(min(p.fmax_mhz.values()))
    latency = 0 if kind == "yosys" else inner.latency
    return statistics.median(fmax), res.lut, latency


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="64,256,1024")
    ap.add_argument("--families", default="xilinx,ice40")
    ap.add_argument("--pipeline", type=int, default=0,
                    help="also measure ours with a register every K stages")
    ap.add_argument("--fmax", action="store_true",
                    help="also nextpnr Fmax of N=64 on ECP5-25F (ours 0/1/2 stages per register)")
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
    if args.fmax:
        with tempfile.TemporaryDirectory() as tmp:
            rows = [("yosys", 0), ("ours", 0), ("ours", 2), ("ours", 1)]
            print("\nN = 64 on LFE5U-25F (nextpnr, median of 3 seeds):")
            for kind, k in rows:
                f, lut, latency = fmax_ecp5(kind, k, tmp)
                label = kind if kind == "yosys" else f"ours, {k or 'no'} stage(s)/register"
                print(f"  {label:28s} Fmax {f:6.1f} MHz  LUT4 {lut:5d}  latency {latency}")


if __name__ == "__main__":
    main()
