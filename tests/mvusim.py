"""The folded matrix-vector unit (:class:`hwquant.hw.mvu.MatrixVectorUnit`) in the Amaranth
simulator: named folds of a layer, random input vectors, and one layer's vectors streamed
through its MVU (shared by the MVU tests of each weight kind)."""

import numpy as np
from streamsim import simulate_stream

from hwquant.hw.mvu import MatrixVectorUnit
from hwquant.layout import pack_lanes, unpack_lanes

__all__ = ["divisors", "proper", "FOLDS", "run_mvu", "random_x"]


def divisors(n):
    """The divisors of ``n``, ascending."""
    return [d for d in range(1, n + 1) if n % d == 0]


def proper(n):
    """A middle proper divisor of ``n`` (``n`` itself when there is none)."""
    ds = [d for d in divisors(n) if 1 < d < n]
    return ds[len(ds) // 2] if ds else n


#: Named folds (PE, SIMD) of an (OC, F) layer.
FOLDS = {
    "unrolled": lambda oc, f: (oc, f),
    "nf1": lambda oc, f: (oc, proper(f)),  # NF = 1, SF > 1: no input buffer
    "sf1": lambda oc, f: (proper(oc), f),  # SF = 1, NF > 1: one-word banks
    "both": lambda oc, f: (proper(oc), proper(f)),
    "serial": lambda oc, f: (1, 1),
}


def run_mvu(layer, x, *, weights=None, seed=0, stalls=0.0):
    """Stream vectors ``x`` (N, F) through the layer's MVU; return ``((N, OC) outputs,
    cycles)``."""
    wm = layer.weight_matrix() if weights is None else weights
    pe, simd = layer.fold.pe, layer.fold.simd
    fin, fout = layer.in_format, layer.out_format
    words = [pack_lanes(beat, fin.bits) for v in x for beat in np.reshape(v, (-1, simd))]
    n_out = len(x) * layer.out_channels // pe
    out, cycles = simulate_stream(MatrixVectorUnit(layer, wm), words, n_out, seed=seed,
                                  valid_gap=stalls, ready_stall=stalls)
    assert None not in out, f"{out.count(None)} extra output beat(s)"
    beats = [unpack_lanes(w, fout.bits, pe, fout.signed) for w in out]
    return np.array(beats).reshape(len(x), layer.out_channels), cycles


def random_x(rng, fmt, n, fan_in):
    """``n`` random input vectors of ``fan_in`` values of ``fmt``, the format's lowest and
    highest value among them."""
    x = rng.integers(fmt.lo, fmt.hi, (n, fan_in), endpoint=True)
    x[0, 0], x[-1, -1] = fmt.lo, fmt.hi
    return x
