"""Calibrate the primitive cost model of :mod:`hwquant.estimate.resources` against Yosys.

Every primitive the analytical model composes (adders, registers, constant and variable
multipliers, muxes, ROMs, comparators, popcounts) is built here as a small Amaranth design
with registered inputs and outputs (reset-less, so no reset logic is counted and nothing is
optimised away), synthesized with :func:`hwquant.estimate.synth.synthesize` for ice40, ecp5
(``-nowidelut``), xilinx (``-flatten -noiopad -noclkbuf``) and gowin (``-nowidelut``), and the
LUT/DSP/BRAM counts are compared with the model. The registers around the primitive are not
part of the comparison (only ``register`` is compared on flip-flops).

Usage::

    .venv/bin/python benchmarks/calibrate_primitives.py                # every primitive, family
    .venv/bin/python benchmarks/calibrate_primitives.py -p adder -f ice40
    .venv/bin/python benchmarks/calibrate_primitives.py --fit          # refit the coefficients
    .venv/bin/python benchmarks/calibrate_primitives.py --cache c.json # reuse earlier runs

It prints one line per (case, family): Yosys and model counts and the relative LUT error
``(model - yosys) / max(yosys, 1)``, then the mean and worst absolute error per primitive and
family. ``--fit`` solves least squares for the coefficients of every linear LUT formula over
the features :mod:`hwquant.estimate.resources` defines and prints them in the form the module
stores them (``_LUT_COEFFS``), so a new Yosys version is a re-run and a paste. A full run is
364 syntheses, about 30 minutes on 2 cores (Verilog emission takes ~1 s per design,
``synth_xilinx`` ~6 s); pass ``--cache`` to keep the counts and re-run the report or the fit
in seconds.
"""

import argparse
import json
import random
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from amaranth.back import verilog
from amaranth.hdl import Array, Module, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hwquant.estimate import resources
from hwquant.estimate.synth import FAMILIES, synthesize

__all__ = ["Case", "RandomRom", "cases", "measure", "main"]


# -- Designs ----------------------------------------------------------------------------------

def _shape(bits, is_signed):
    return signed(bits) if is_signed else unsigned(bits)


class _Registered(wiring.Component):
    """``y`` is ``function(*registered inputs)``, registered. Every register is reset-less."""

    def __init__(self, inputs, output, function):
        self._function = function
        members = {f"i{n}": In(shape) for n, shape in enumerate(inputs)}
        members["y"] = Out(output)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        regs = []
        for n in range(len(self.signature.members) - 1):
            port = getattr(self, f"i{n}")
            reg = Signal.like(port, reset_less=True, name=f"r{n}")
            m.d.sync += reg.eq(port)
            regs.append(reg)
        y = Signal.like(self.y, reset_less=True, name="ry")
        m.d.sync += y.eq(self._function(*regs))
        m.d.comb += self.y.eq(y)
        return m


class RandomRom(wiring.Component):
    """A ROM of ``depth`` random ``width``-bit words (``seed``) behind a registered address.

    The read port is synchronous. ``enable=False``: always enabled, its data registered once
    more (the output register of a measurement); ``enable=True``: enabled by the registered
    input ``en``, its data the output (a weight ROM as the MVU builds it).
    """

    def __init__(self, depth, width, seed=0, *, enable=False):
        self._depth, self._width, self._seed, self._enable = depth, width, seed, enable
        members = {"addr": In(range(depth)), "y": Out(width)}
        if enable:
            members["en"] = In(1)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        rng = random.Random(self._seed)
        init = [rng.getrandbits(self._width) for _ in range(self._depth)]
        m.submodules.mem = mem = Memory(shape=unsigned(self._width), depth=self._depth,
                                        init=init)
        port = mem.read_port()
        addr = Signal.like(self.addr, reset_less=True)
        m.d.sync += addr.eq(self.addr)
        m.d.comb += port.addr.eq(addr)
        if self._enable:
            en = Signal(reset_less=True)
            m.d.sync += en.eq(self.en)
            m.d.comb += [port.en.eq(en), self.y.eq(port.data)]
        else:
            y = Signal.like(self.y, reset_less=True)
            m.d.sync += y.eq(port.data)
            m.d.comb += self.y.eq(y)
        return m


def _adder_tree(values):
    values = list(values)
    while len(values) > 1:
        pairs = [values[i] + values[i + 1] for i in range(0, len(values) - 1, 2)]
        values = pairs + ([values[-1]] if len(values) % 2 else [])
    return values[0]


def _product_shape(xbits, signed_x, weight):
    return (Signal(_shape(xbits, signed_x)) * weight).shape()


# -- Cases ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    """One calibration design: how to build it and what the model predicts for it."""

    primitive: str
    label: str
    params: dict
    build: object = field(repr=False)  # () -> Component
    model: object = field(repr=False)  # family -> Resources
    nodsp: bool = True
    compare: tuple = ("lut",)


def cases():
    """Every calibration case, in a fixed order (the constants are seeded)."""
    out = []

    for bits in (4, 8, 12, 16, 24, 32):
        out.append(Case(
            "adder", f"add{bits}", {"bits": bits},
            lambda b=bits: _Registered([b, b], b + 1, lambda a, c: a + c),
            lambda fam, b=bits: resources.adder(b, fam)))

    for bits in (4, 16, 64):
        out.append(Case(
            "register", f"reg{bits}", {"bits": bits},
            lambda b=bits: _Registered([b], b, lambda a: a),
            lambda fam, b=bits: resources.register(2 * b), compare=("lut", "ff")))

    for bits in (4, 8, 16, 32):
        out.append(Case(
            "comparator", f"lt{bits}", {"bits": bits},
            lambda b=bits: _Registered([b, b], 1, lambda a, c: a < c),
            lambda fam, b=bits: resources.comparator(b, fam)))

    for bits, ways in ((8, 2), (8, 3), (8, 4), (8, 8), (4, 16), (8, 16), (2, 32), (1, 64)):
        def build_mux(b=bits, w=ways):
            return _Registered([unsigned(b)] * w + [range(w)], b,
                               lambda *r: Array(r[:-1])[r[-1]])
        out.append(Case("mux", f"mux{bits}x{ways}", {"bits": bits, "ways": ways}, build_mux,
                        lambda fam, b=bits, w=ways: resources.mux(b, w, fam)))

    rng = random.Random(2024)
    const_specs = [(8, 127, False), (8, 3, False), (8, 5, False), (8, 85, False), (8, 255, False),
                   (4, 127, False), (12, 127, False), (16, 127, False), (8, 127, True),
                   (8, -127, True), (8, -3, True), (8, -1, True), (8, 64, True), (8, -5, False)]
    for _ in range(14):
        xbits = rng.choice((4, 6, 8, 10, 12))
        cbits = rng.choice((3, 4, 5, 6, 8))
        signed_x = rng.random() < 0.5
        weight = rng.randrange(-(1 << (cbits - 1)), 1 << (cbits - 1))
        const_specs.append((xbits, weight, signed_x))
    for xbits, weight, signed_x in const_specs:
        label = f"cmul{'s' if signed_x else 'u'}{xbits}x{weight}".replace("-", "m")

        def build_cmul(x=xbits, w=weight, s=signed_x):
            return _Registered([_shape(x, s)], _product_shape(x, s, w), lambda a: a * w)
        params = {"weight": weight, "xbits": xbits, "signed_x": signed_x}
        out.append(Case("const_multiplier", label, params, build_cmul,
                        lambda fam, p=params: resources.const_multiplier(
                            p["weight"], p["xbits"], p["signed_x"], fam),
                        compare=("lut", "dsp")))
    for xbits, weight in ((8, 127), (4, 5), (12, 100)):
        label = f"cmul_dsp{xbits}x{weight}"
        params = {"weight": weight, "xbits": xbits, "signed_x": False}

        def build_cmul_dsp(x=xbits, w=weight):
            return _Registered([unsigned(x)], _product_shape(x, False, w), lambda a: a * w)
        out.append(Case("const_multiplier", label, params, build_cmul_dsp,
                        lambda fam, p=params: resources.const_multiplier(
                            p["weight"], p["xbits"], False, fam, use_dsp=True),
                        nodsp=False, compare=("dsp",)))

    for abits, bbits, is_signed in ((2, 2, False), (4, 4, False), (6, 4, False), (8, 8, False),
                                    (8, 8, True), (12, 8, False), (16, 16, False),
                                    (16, 16, True), (24, 16, False)):
        for use_dsp in (False, True):
            label = f"mul{'s' if is_signed else 'u'}{abits}x{bbits}{'_dsp' if use_dsp else ''}"
            params = {"abits": abits, "bbits": bbits, "signed": is_signed, "use_dsp": use_dsp}

            def build_mul(a=abits, b=bbits, s=is_signed):
                return _Registered([_shape(a, s), _shape(b, s)], _shape(a + b, s),
                                   lambda x, y: x * y)
            out.append(Case("multiplier", label, params, build_mul,
                            lambda fam, p=params: resources.multiplier(
                                p["abits"], p["bbits"], fam, p["use_dsp"]),
                            nodsp=not use_dsp, compare=("dsp",) if use_dsp else ("lut", "dsp")))

    for depth, width in ((16, 8), (32, 8), (64, 8), (64, 16), (128, 8), (128, 16), (256, 4),
                         (256, 8), (256, 16), (512, 8), (512, 16), (1024, 8), (1024, 18),
                         (2048, 8), (4096, 4)):
        out.append(Case(
            "rom", f"rom{depth}x{width}", {"depth": depth, "width": width},
            lambda d=depth, w=width: RandomRom(d, w, seed=d * 1000 + w),
            lambda fam, d=depth, w=width: resources.rom(d, w, fam), compare=("lut", "bram")))

    for n in (8, 16, 32, 64, 128, 256):
        out.append(Case(
            "popcount", f"popcount{n}", {"n": n},
            lambda n=n: _Registered([n], range(n + 1),
                                    lambda a: _adder_tree(a[i] for i in range(len(a)))),
            lambda fam, n=n: resources.popcount(n, fam)))
    return out


# -- Measurement ------------------------------------------------------------------------------

def _key(case, family):
    return f"{case.label}/{family}/{'nodsp' if case.nodsp else 'dsp'}"


def _prepare(case, family, workdir):
    workdir = Path(workdir) / f"{case.label}_{family}_{'nodsp' if case.nodsp else 'dsp'}"
    workdir.mkdir(parents=True, exist_ok=True)
    verilog_path = workdir / "top.v"
    verilog_path.write_text(verilog.convert(case.build(), name="top"))
    return verilog_path


def _synthesize(case, family, verilog_path):
    start = time.monotonic()
    result = synthesize(verilog_path, "top", family, workdir=verilog_path.parent,
                        nodsp=case.nodsp, allow_dsp=not case.nodsp, pre_techmap=False)
    return {"lut": result.lut, "ff": result.ff, "dsp": result.dsp, "bram": result.bram,
            "carry": result.carry, "lutram": result.lutram,
            "cells": result.cells_by_type, "seconds": round(time.monotonic() - start, 2)}


def measure(case, family, workdir):
    """Synthesize one case for one family; return the Yosys counts as a dict."""
    return _synthesize(case, family, _prepare(case, family, workdir))


def collect(selected, families, *, jobs, cache_path, workdir):
    """Yosys counts for every (case, family), from the cache or from new runs."""
    cache = {}
    if cache_path is not None and Path(cache_path).is_file():
        cache = json.loads(Path(cache_path).read_text())
    todo = [(c, f) for c in selected for f in families if _key(c, f) not in cache]
    if todo:
        print(f"synthesizing {len(todo)} designs with {jobs} job(s)...", file=sys.stderr)
        # Verilog is emitted here (Amaranth is not thread-safe), Yosys runs in the pool.
        paths = [_prepare(c, f, workdir) for c, f in todo]
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = [pool.submit(_synthesize, c, f, p) for (c, f), p in zip(todo, paths)]
            for n, (future, (c, f)) in enumerate(zip(futures, todo), 1):
                cache[_key(c, f)] = future.result()
                print(f"  [{n}/{len(todo)}] {c.label} {f} "
                      f"({cache[_key(c, f)]['seconds']} s)", file=sys.stderr)
                if cache_path is not None:
                    Path(cache_path).write_text(json.dumps(cache, indent=1, sort_keys=True))
    return {(c.label, f): cache[_key(c, f)] for c in selected for f in families}


# -- Report -----------------------------------------------------------------------------------

def _rel(model, actual):
    return (model - actual) / max(actual, 1)


def report(selected, families, data):
    print(f"{'case':24s} {'family':7s} {'what':5s} {'yosys':>6s} {'model':>7s} {'rel.err':>8s}")
    summary = {}
    for case in selected:
        for fam in families:
            measured = data[(case.label, fam)]
            model = case.model(fam)
            for what in case.compare:
                got, want = getattr(model, what), measured[what]
                err = _rel(got, want)
                summary.setdefault((case.primitive, fam, what), []).append(err)
                flag = "  <-" if what in ("dsp", "bram") and got != want else ""
                print(f"{case.label:24s} {fam:7s} {what:5s} {want:6d} {got:7d} {err:+8.1%}{flag}")
    print()
    print(f"{'primitive':18s} {'family':7s} {'what':5s} {'n':>3s} {'mean|err|':>9s} "
          f"{'max|err|':>9s}")
    for (prim, fam, what), errs in sorted(summary.items()):
        errs = np.abs(errs)
        print(f"{prim:18s} {fam:7s} {what:5s} {len(errs):3d} {errs.mean():9.1%} "
              f"{errs.max():9.1%}")


def fit(selected, families, data):
    """Least-squares coefficients of every linear LUT formula, printed as Python."""
    print("_LUT_COEFFS = {")
    for prim in resources.LUT_FEATURES:
        rows = [c for c in selected if c.primitive == prim and "lut" in c.compare]
        if not rows:
            continue
        print(f"    {prim!r}: {{")
        for fam in families:
            pairs = [(resources.LUT_FEATURES[prim](fam, **c.params), data[(c.label, fam)]["lut"])
                     for c in rows]
            pairs = [(x, y) for x, y in pairs if x is not None]
            if not pairs:
                continue
            features = np.array([x for x, _ in pairs], dtype=float)
            target = np.array([y for _, y in pairs], dtype=float)
            coeffs, *_ = np.linalg.lstsq(features, target, rcond=None)
            predicted = features @ coeffs
            err = np.abs(predicted - target) / np.maximum(target, 1)
            coeff_text = ", ".join(f"{c:.4g}" for c in coeffs)
            print(f"        {fam!r}: ({coeff_text}),  # n={len(target)}, "
                  f"mean {err.mean():.1%}, max {err.max():.1%}")
        print("    },")
    print("}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-p", "--primitive", action="append",
                        help="only this primitive (repeatable)")
    parser.add_argument("-f", "--family", action="append", choices=FAMILIES,
                        help="only this family (repeatable)")
    parser.add_argument("-j", "--jobs", type=int, default=2, help="parallel Yosys runs")
    parser.add_argument("--cache", help="JSON file of earlier results, read and extended")
    parser.add_argument("--workdir", help="keep the synthesis directories here")
    parser.add_argument("--fit", action="store_true", help="print refitted coefficients")
    args = parser.parse_args(argv)

    selected = [c for c in cases() if not args.primitive or c.primitive in args.primitive]
    if not selected:
        parser.error(f"no cases for primitive(s) {args.primitive}")
    families = tuple(args.family or FAMILIES)
    with tempfile.TemporaryDirectory(prefix="hwquant-calibrate-") as tmp:
        data = collect(selected, families, jobs=args.jobs, cache_path=args.cache,
                       workdir=args.workdir or tmp)
    if args.fit:
        fit(selected, families, data)
    else:
        report(selected, families, data)


if __name__ == "__main__":
    main()
