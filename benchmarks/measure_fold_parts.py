"""The folded MVU's accumulator and small weight ROM, each synthesized as its own design.

Whole-MVU runs mix these parts with everything else (and non-flattened runs of the MVU die in
ABC under YoWASP), so each part is built here alone, as :class:`hwquant.hw.mvu.MatrixVectorUnit`
builds it, with reset-less registered inputs:

* ``acc N/T``: one accumulator of ``N`` bits, ``acc <= Mux(first, t, acc + t)`` under an
  enable, ``t`` a signed ``T``-bit engine sum (stage 3 of the MVU). Inputs: ``T + 2`` FFs.
* ``rom DxW``: a ``D``-word ROM of random ``W``-bit words with a synchronous, enabled read
  port (the weight ROM of stage 1), its data read combinationally by the next stage (here:
  the outputs). Inputs: the address and the enable, ``ceil(log2 D) + 1`` FFs.

It prints Yosys's LUT and FF counts per family, the inputs' FFs subtracted, beside the cost
model (:func:`hwquant.estimate.common.accumulator` and
:func:`hwquant.estimate.common.weight_rom`).

Usage::

    PYTHONPATH=. .venv/bin/python benchmarks/measure_fold_parts.py [--cache c.json]
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

from amaranth.back import verilog
from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from benchmarks.calibrate_primitives import RandomRom
from hwquant.estimate import common
from hwquant.estimate.synth import FAMILIES, synthesize

ACCS = [(8, 6), (12, 12), (16, 12), (24, 18)]
ROMS = [(2, 48), (3, 16), (3, 48), (3, 384), (4, 48), (4, 384), (6, 96), (8, 96), (12, 96), (16, 96)]


class _Acc(wiring.Component):
    def __init__(self, bits, term_bits):
        self._bits = bits
        super().__init__({"t": In(signed(term_bits)), "first": In(1), "en": In(1),
                          "y": Out(signed(bits))})

    def elaborate(self, platform):
        m = Module()
        t = Signal.like(self.t, reset_less=True)
        first, en = Signal(reset_less=True), Signal(reset_less=True)
        acc = Signal(signed(self._bits), reset_less=True)
        m.d.sync += [t.eq(self.t), first.eq(self.first), en.eq(self.en)]
        with m.If(en):
            m.d.sync += acc.eq(Mux(first, t, acc + t))
        m.d.comb += self.y.eq(acc)
        return m


def _cases():
    for n, t in ACCS:
        yield f"acc {n}/{t}", (lambda n=n, t=t: _Acc(n, t)), t + 2, \
            (lambda fam, n=n: common.accumulator(n, fam))
    for d, w in ROMS:
        yield f"rom {d}x{w}", (lambda d=d, w=w: RandomRom(d, w, enable=True)), common.range_bits(d) + 1, \
            (lambda fam, d=d, w=w: common.weight_rom(d, w, fam))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", help="JSON file of earlier Yosys counts (read and updated)")
    parser.add_argument("-f", "--family", action="append", choices=FAMILIES)
    args = parser.parse_args(argv)
    families = args.family or list(FAMILIES)
    cache = {}
    if args.cache and Path(args.cache).is_file():
        cache = json.loads(Path(args.cache).read_text())
    print(f"{'case':12s} {'family':7s} {'yosys LUT':>9s} {'FF':>4s} {'model LUT':>9s} {'FF':>4s}")
    with tempfile.TemporaryDirectory() as tmp:
        for label, build, in_ffs, model in _cases():
            for fam in families:
                key = f"{label}|{fam}"
                if key not in cache:
                    path = Path(tmp) / f"{label.replace(' ', '_').replace('/', '_')}.v"
                    path.write_text(verilog.convert(build(), name="top"))
                    res = synthesize(path, "top", fam, workdir=Path(tmp) / f"{key}_w",
                                     nodsp=True, allow_dsp=False, pre_techmap=False)
                    cache[key] = {"lut": res.lut, "ff": res.ff, "carry": res.carry}
                    if args.cache:
                        Path(args.cache).write_text(json.dumps(cache, indent=1))
                got, est = cache[key], model(fam)
                print(f"{label:12s} {fam:7s} {got['lut']:9d} {got['ff'] - in_ffs:4d} "
                      f"{est.lut:9d} {est.ff:4d}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
