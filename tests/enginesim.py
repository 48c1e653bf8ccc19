"""Amaranth-simulator helpers for the combinational dot engines' unit tests.

A dot engine (``hwquant.hw.fixed/pow2/bitmask/binary.DotEngine``) has an ``x`` port of SIMD
lanes, optionally a ``w`` port (the ROM word of a folded engine) and a ``y`` output; these
helpers drive every input row through it and collect ``y``.
"""

import numpy as np
from amaranth.sim import Simulator

__all__ = ["all_inputs", "simulate_engine"]


def all_inputs(fmt, lanes):
    """Every input vector of ``lanes`` lanes of format ``fmt``, one per row (lane 0 slowest)."""
    xs = np.meshgrid(*[np.arange(fmt.lo, fmt.hi + 1)] * lanes, indexing="ij")
    return np.array(xs).reshape(lanes, -1).T


def simulate_engine(dut, xs, codes=None):
    """``y`` for every row of ``xs``, under every weight row of ``codes`` (outer loop).

    ``codes`` is None (an engine with constant weights) or a sequence of rows; a row is an
    int (the whole ``w`` word) or one value per lane of ``w``. Returns the ``y`` values in
    order, ``len(codes) * len(xs)`` of them.
    """
    got = []

    async def testbench(ctx):
        for row in ([None] if codes is None else codes):
            if isinstance(row, (int, np.integer)):
                ctx.set(dut.w, int(row))
            elif row is not None:
                for i, c in enumerate(row):
                    ctx.set(dut.w[i], int(c))
            for x in xs:
                for i, v in enumerate(x):
                    ctx.set(dut.x[i], int(v))
                got.append(ctx.get(dut.y))

    sim = Simulator(dut)
    sim.add_testbench(testbench)
    sim.run()
    return np.array(got)
