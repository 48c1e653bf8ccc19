"""Binary weight decomposition of the ``bdcnn`` kind (Binarized-DCNN, Kamiya, Yamashita, Abe,
Sato, Yamauchi and Fujiyoshi): every output neuron's weight vector ``w`` (``D`` weights; a
conv neuron's whole filter, all input channels and the window together) becomes ``M @ c``,
``M`` in ``{-1, +1}^(D x K)`` (``K`` binary bases), ``c`` in ``R^K``, without retraining.

Algorithm (the paper's exhaustive alternating one, with the stopping rule at the fixed point
of ``M``, see ``docs/arithmetic.md``): per restart, ``M`` random (the first restart starts from
the greedy decomposition of Hare et al. instead); repeat ``c = argmin ||w -
M c||`` (least squares, through the pseudo-inverse: ``M`` may have equal or opposite columns),
then ``M = argmin ||w - M c||`` exactly: the rows are independent, each picks the nearest of
the ``2**K`` codebook values ``b_j . c`` (``b_j`` the sign patterns), by a binary search in the
sorted codebook; until ``M`` no longer changes (at most :data:`MAX_ITERATIONS`). The best of
``L`` restarts (smallest error) per neuron wins.

Vectorised: all neurons of a layer (and all restarts, in chunks that bound memory) at once.
``M`` is kept as one pattern index per weight (``0 .. 2**K - 1``), so the least-squares step
reduces to per-pattern counts and sums (``M^T M = sum_j n_j b_j b_j^T``, ``M^T w = sum_j
s_j b_j``) and never materialises ``M``. Each row is sorted once: the exact M-step is monotone
in ``w``, so it is ``2**K - 1`` boundary positions in the sorted row (a binary search) and the
counts and sums are differences of prefix sums there: an iteration costs ``O(2**K log D)`` per
neuron, not ``O(D 2**K)``. Measured (``benchmarks/bench_bdcnn.py``): a 512 x 4608 layer at
``K = 6`` takes 4 to 6 s per restart on a two-core machine under load (332 iterations to the
fixed point, relative error 0.0009 on Gaussian weights): a third in the 2**K - 1 binary
searches (one per row; one vectorised search over all rows, exact by global ranks, measured
1.6 to 3.5 times slower: its scattered reads miss the cache), a third in the 6 x 6 least
squares.

Pure NumPy; no torch, no Amaranth.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass

import numpy as np

__all__ = ["sign_patterns", "decompose", "check_basis", "canonical_patterns", "basis_bits", "Decomposition", "quantize_coefficients",
           "nearest_patterns", "MAX_ITERATIONS", "DEFAULT_RESTARTS", "BASIS_RANGE",
           "DecompositionError", "MEMORY_LIMIT", "decomposition_bytes"]

#: Bases ``K`` a layer may have (and ``K < D``).
BASIS_RANGE = (1, 8)
#: Iteration cap of one restart (the fixed point is usually reached within a few tens).
MAX_ITERATIONS = 1000
#: Random restarts ``L`` (the paper does not state its count).
DEFAULT_RESTARTS = 10
#: Most bytes the decomposition of one layer may hold at once (the working set of one chunk
#: of restarts is bounded by :data:`CHUNK_BYTES`; a layer whose single restart exceeds this is
#: refused with a message instead of running out of memory).
MEMORY_LIMIT = 2 << 30
CHUNK_BYTES = 256 << 20


class DecompositionError(ValueError):
    """A weight matrix cannot be decomposed as asked (``K >= D``, too large)."""


def sign_patterns(k: int) -> np.ndarray:
    """All ``2**k`` rows of ``{-1, +1}^k`` in :func:`itertools.product` order (``(-1, ..., -1)``
    first, the last basis changing fastest): int64 ``(2**k, k)``. Pattern ``j``'s basis ``a``
    is ``+1`` where bit ``k - 1 - a`` of ``j`` is set."""
    return np.array(list(itertools.product((-1, 1), repeat=k)), dtype=np.int64).reshape(-1, k)


def nearest_patterns(w, c) -> np.ndarray:
    """Per row ``n`` and weight ``i``, the pattern ``j`` whose value ``b_j . c[n]`` is nearest to
    ``w[n, i]`` (ties: the lower value; among equal values the first pattern in
    :func:`sign_patterns` order). ``w`` ``(N, D)``, ``c`` ``(N, K)`` -> int64 ``(N, D)``."""
    w = np.asarray(w, dtype=np.float64)
    c = np.asarray(c, dtype=np.float64)
    b = sign_patterns(c.shape[1])
    v = c @ b.T  # (N, 2^K)
    order = np.argsort(v, axis=1, kind="stable")
    vs = np.take_along_axis(v, order, axis=1)
    # Thresholds between neighbours; w above a midpoint goes to the upper value.
    mid = (vs[:, 1:] + vs[:, :-1]) / 2
    # Per row: #{mid < w} (a tie at the midpoint stays with the lower value).
    pick = np.empty(w.shape, dtype=np.int64)
    for r in range(len(w)):
        pick[r] = order[r, np.searchsorted(mid[r], w[r], side="left")]
    return pick


def _lstsq(counts, sums, b):
    """Least-squares ``c`` per row from the pattern counts ``(R, 2^K)`` and the per-pattern
    weight sums ``(R, 2^K)``: ``c = pinv(M^T M) M^T w``."""
    outer = np.einsum("jk,jl->jkl", b, b).reshape(len(b), -1)
    k = b.shape[1]
    gram = (counts @ outer).reshape(-1, k, k)
    rhs = sums @ b
    return np.einsum("rkl,rl->rk", np.linalg.pinv(gram, hermitian=True), rhs)


def _per_pattern(idx, w, n):
    rows = len(idx)
    flat = (idx + n * np.arange(rows)[:, None]).ravel()
    counts = np.bincount(flat, minlength=rows * n).reshape(rows, n).astype(np.float64)
    sums = np.bincount(flat, weights=w.ravel(), minlength=rows * n).reshape(rows, n)
    return counts, sums


def _greedy(w, k):
    """Pattern indices of the greedy decomposition (Hare et al.): ``m_a = Sign(r)``,
    ``c_a = mean|r|``, ``r -= c_a m_a`` for ``a = 1..K``; the first restart starts here."""
    r = np.array(w, dtype=np.float64)
    idx = np.zeros(r.shape, dtype=np.int64)
    for a in range(k):
        m = np.where(r >= 0, 1.0, -1.0)
        r -= np.abs(r).mean(axis=1, keepdims=True) * m
        idx |= (m > 0).astype(np.int64) << (k - 1 - a)
    return idx


def _boundaries(ws, src, c, b):
    """For the sorted rows ``ws[src]`` (``ws`` ``(N, D)``) and coefficients ``c``: the sorted codebook order
    ``(R, 2^K)`` and the boundary positions ``(R, 2^K - 1)``: sorted position ``i`` takes rank
    ``#{t : bound[t] <= i}`` (``#{mid < w}``, a tie at a midpoint stays low)."""
    v = c @ b.T
    order = np.argsort(v, axis=1, kind="stable")
    vs = np.take_along_axis(v, order, axis=1)
    mid = (vs[:, 1:] + vs[:, :-1]) / 2
    # 2^K - 1 queries per row into its sorted weights (a loop over rows: one searchsorted
    # each is far cheaper than a vectorised binary search's scattered gathers).
    bounds = np.empty(mid.shape, dtype=np.int64)
    for j, r in enumerate(np.asarray(src)):
        bounds[j] = np.searchsorted(ws[r], mid[j], side="right")
    return bounds, order


def _segment_state(bounds, order, d):
    """What determines ``M`` of a sorted row: the boundaries and the pattern of every
    non-empty rank segment (-1 for empty ones)."""
    edges = np.concatenate([np.zeros((len(bounds), 1), dtype=np.int64), bounds,
                            np.full((len(bounds), 1), d, dtype=np.int64)], axis=1)
    nonempty = np.diff(edges, axis=1) > 0
    return np.concatenate([bounds, np.where(nonempty, order, -1)], axis=1)


def _segment_sums(bounds, order, cs, src, d):
    """Per-pattern counts and weight sums ``(R, 2^K)`` of the assignment ``bounds`` (from
    the prefix sums ``cs[src]`` of the sorted rows, ``cs`` ``(N, D + 1)``)."""
    rows = len(bounds)
    edges = np.concatenate([np.zeros((rows, 1), dtype=np.int64), bounds,
                            np.full((rows, 1), d, dtype=np.int64)], axis=1)
    cnt = np.diff(edges, axis=1).astype(np.float64)
    tot = np.diff(cs[np.asarray(src)[:, None], edges], axis=1)
    counts, sums = np.zeros_like(cnt), np.zeros_like(tot)
    np.put_along_axis(counts, order, cnt, axis=1)
    np.put_along_axis(sums, order, tot, axis=1)
    return counts, sums


def check_basis(k, d: int, name: str = "layer") -> None:
    """Raise :class:`DecompositionError` unless ``K`` is an integer in :data:`BASIS_RANGE`
    and fewer than the ``d`` weights per neuron of layer ``name``."""
    lo, hi = BASIS_RANGE
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not lo <= k <= hi:
        raise DecompositionError(f"Basis count K must be an integer in {lo}..{hi}, not {k!r}")
    if k >= d:
        raise DecompositionError(f"Layer '{name}': K={k} bases must be fewer than the {d} "
                                 f"weights of each neuron (K < D); use --basis {d - 1} or less")


def decomposition_bytes(rows: int, d: int, k: int) -> int:
    """Working set of one restart over ``rows`` neurons of ``d`` weights (bytes, about)."""
    return rows * d * (8 * 6) + rows * (1 << k) * 8 * 8


def _size(n: int) -> str:
    """``n`` bytes for a message: GiB, MiB or KiB with one decimal."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):.1f} {unit}"
    return f"{n} bytes"


@dataclass(frozen=True)
class Decomposition:
    """``w[n] ~ M[n] @ c[n]``: ``patterns`` int64 ``(N, D)`` (row ``i`` of ``M[n]`` is
    ``sign_patterns(K)[patterns[n, i]]``), ``coefficients`` float64 ``(N, K)``, the squared
    error per neuron, and how it was found."""

    patterns: np.ndarray
    coefficients: np.ndarray
    error: np.ndarray
    iterations: int
    restarts: int
    seconds: float

    @property
    def basis(self) -> int:
        return int(self.coefficients.shape[1])

    def signs(self) -> np.ndarray:
        """``M`` as int64 ``(N, K, D)`` of ``-1``/``+1``."""
        return sign_patterns(self.basis)[self.patterns].transpose(0, 2, 1)

    def approximation(self) -> np.ndarray:
        """``M @ c`` per neuron, ``(N, D)``."""
        v = self.coefficients @ sign_patterns(self.basis).T
        return np.take_along_axis(v, self.patterns, axis=1)


def decompose(weights, k: int, *, restarts: int = DEFAULT_RESTARTS, seed: int = 0,
              name: str = "layer", progress=None, max_iterations: int = MAX_ITERATIONS,
              memory_limit: int | None = None, init: str = "greedy",
              trace=None) -> Decomposition:
    """Decompose every row of ``weights`` ``(N, D)`` into ``K`` binary bases (module docstring).

    ``progress(done, total)`` is called after every chunk of restarts; ``trace`` (a list, for
    measurements) receives the number of rows whose ``M`` changed, per iteration. Raises
    :class:`DecompositionError` naming ``name`` for ``K`` outside :data:`BASIS_RANGE` or
    ``K >= D``, or a layer whose single restart needs more than ``memory_limit`` bytes
    (default :data:`MEMORY_LIMIT`)."""
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 2 or not w.size:
        raise DecompositionError(f"Layer '{name}': weights must be a non-empty (N, D) matrix, "
                                 f"not shape {w.shape}")
    n, d = w.shape
    check_basis(k, d, name)
    if restarts < 1:
        raise DecompositionError(f"Restarts must be at least 1, not {restarts}")
    one = decomposition_bytes(n, d, k)
    memory_limit = MEMORY_LIMIT if memory_limit is None else memory_limit
    if one > memory_limit:
        raise DecompositionError(
            f"Layer '{name}': decomposing {n} neurons of {d} weights at K={k} needs about "
            f"{_size(one)}, more than the {_size(memory_limit)} limit")
    t0 = time.monotonic()
    rng = np.random.default_rng(seed)
    b = sign_patterns(k)
    npat = len(b)
    per = max(1, min(restarts, CHUNK_BYTES // max(one, 1)))
    best_err = np.full(n, np.inf)
    best_idx = np.zeros((n, d), dtype=np.int64)
    best_c = np.zeros((n, k))
    iters_max = 0
    done = 0
    # Each row sorted once: the nearest-codebook assignment is monotone in w, so an M-step is
    # 2^K - 1 boundary positions in the sorted row, and the least-squares sums of a step are
    # differences of prefix sums there: O(2^K log D) per row and iteration, not O(D).
    order_w = np.argsort(w, axis=1, kind="stable")
    ws = np.take_along_axis(w, order_w, axis=1)
    cs = np.concatenate([np.zeros((n, 1)), np.cumsum(ws, axis=1)], axis=1)
    while done < restarts:
        r = min(per, restarts - done)
        ww = np.tile(w, (r, 1))  # rows: restart-major
        if done == 0 and init == "greedy":
            start = _greedy(w, k)
            idx = np.concatenate([start, rng.integers(0, npat, size=((r - 1) * n, d))])
        else:
            idx = rng.integers(0, npat, size=ww.shape)
        counts, sums = _per_pattern(idx, ww, npat)
        c = _lstsq(counts, sums, b)
        src = np.tile(np.arange(n), r)  # row of w behind each working row
        state = np.full((len(ww), 2 * npat - 1), -1, dtype=np.int64)
        rows = np.arange(len(ww))
        for it in range(max_iterations):
            bounds, order = _boundaries(ws, src[rows], c[rows], b)
            new = _segment_state(bounds, order, d)
            changed = (new != state[rows]).any(axis=1)
            state[rows] = new
            iters_max = max(iters_max, it + 1)
            if trace is not None:
                trace.append(int(changed.sum()))
            counts, sums = _segment_sums(bounds, order, cs, src[rows], d)
            c[rows] = _lstsq(counts, sums, b)
            rows = rows[changed]
            if not rows.size:
                break
        idx = nearest_patterns(ww, c)
        counts, sums = _per_pattern(idx, ww, npat)
        c = _lstsq(counts, sums, b)
        approx = np.take_along_axis(c @ b.T, idx, axis=1)
        err = ((ww - approx) ** 2).sum(axis=1).reshape(r, n)
        for j in range(r):
            better = err[j] < best_err
            best_err = np.where(better, err[j], best_err)
            best_idx[better] = idx[j * n:(j + 1) * n][better]
            best_c[better] = c[j * n:(j + 1) * n][better]
        done += r
        if progress is not None:
            progress(done, restarts)
    return Decomposition(best_idx, best_c, best_err, iters_max, restarts,
                         time.monotonic() - t0)


def quantize_coefficients(c, bits: int) -> tuple:
    """Fixed-point coefficients: ``C = sat(RHU(c * 2**f))`` as ``bits``-bit signed integers with
    one fraction ``f`` per layer, the largest that holds the largest ``|c|``. Returns
    ``(C int64 (N, K), f)``."""
    c = np.asarray(c, dtype=np.float64)
    hi = (1 << (bits - 1)) - 1
    top = float(np.abs(c).max())
    if not top > 0:
        return np.zeros(c.shape, dtype=np.int64), 0
    f = int(np.floor(np.log2(hi / top)))
    # RHU can push the largest past hi by rounding: then one fraction bit less.
    while np.floor(top * 2.0 ** f + 0.5) > hi:
        f -= 1
    q = np.clip(np.floor(c * 2.0 ** f + 0.5), -hi - 1, hi).astype(np.int64)
    return q, f


def canonical_patterns(weight_matrix, coefficients) -> np.ndarray:
    """The sign pattern of every integer weight: ``weight_matrix`` ``(N, D)`` integers,
    ``coefficients`` ``C`` ``(N, K)`` integers; weight ``i`` of row ``n`` takes the first pattern
    ``j`` (in :func:`sign_patterns` order) with ``b_j . C[n] = w[n, i]``. The one definition the
    golden model, the hardware's ROM and the validation share (the weights and ``C`` are what
    the IR stores; any pattern of the same value gives the same inner product). Raises
    ``ValueError`` for a weight no pattern represents."""
    w = np.asarray(weight_matrix, dtype=np.int64)
    c = np.asarray(coefficients, dtype=np.int64)
    if w.ndim != 2 or c.ndim != 2 or len(c) != len(w):
        raise ValueError(f"Need (N, D) weights and (N, K) coefficients, not {w.shape} and "
                         f"{c.shape}")
    v = c @ sign_patterns(c.shape[1]).T
    order = np.argsort(v, axis=1, kind="stable")
    vs = np.take_along_axis(v, order, axis=1)
    out = np.empty(w.shape, dtype=np.int64)
    for r in range(len(w)):
        pos = np.minimum(np.searchsorted(vs[r], w[r], side="left"), vs.shape[1] - 1)
        bad = vs[r, pos] != w[r]
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"weight {int(w[r, i])} of row {r} is no signed sum of its "
                             f"coefficients {c[r].tolist()}")
        out[r] = order[r, pos]
    return out


def basis_bits(weight_matrix, coefficients) -> np.ndarray:
    """``M+`` of :func:`canonical_patterns`: int64 ``(N, K, D)``, 1 where basis ``a`` of weight
    ``i`` is ``+1``."""
    k = np.asarray(coefficients).shape[1]
    pat = canonical_patterns(weight_matrix, coefficients)
    return np.stack([(pat >> (k - 1 - a)) & 1 for a in range(k)], axis=1)
