"""Lane pairs: a beat's signed lane sum ``sum_i s_i x_i`` (``s_i = +-1`` from a weight ROM)
with one adder per two lanes, the arithmetic shared by the folded ``template`` engine and the
memo engine's ``+-A`` channels (hardware :mod:`hwquant.hw.lane_pairs`, cost
:mod:`hwquant.estimate.lane_pairs`; no Amaranth here).

The ``SIMD`` lanes of a beat form the terms of :func:`pair_terms`: the pairs ``(2k, 2k + 1)``
and, with ``SIMD`` odd, the last lane alone. Each pair's ``u = x_a + x_b`` and
``v = x_a - x_b`` (and the lone lane's ``-x``) are built once for every PE that reads these
lanes. For a sign row, a pair's term is ``v`` when its two signs differ (bit ``d``), else
``u``, complemented when its first sign is ``-1`` (bit ``n``): the ones' complement
``~t = -t - 1``; a lone lane's term is ``x`` or ``-x`` (bit ``n``). A PE adds its
``ceil(SIMD / 2)`` terms in an adder tree whose ``ceil(SIMD / 2) - 1`` carry-ins give back
the complements' 1s, one per pair in lane order. With ``SIMD`` odd every pair has a carry-in;
with ``SIMD`` even the last pair has none, so the beat's sum is
``sum_i s_i x_i - [s_{SIMD-2} < 0]`` (:func:`leftovers`), which the consumer adds back once
per vector.

ROM field of one beat (:func:`pair_field`): ``SIMD`` bits, per term from the lowest lane up
``d`` at its first lane's bit and ``n`` at its last (``n`` alone for a lone lane).
"""

from __future__ import annotations

import numpy as np

__all__ = ["pair_terms", "pair_field", "leftovers", "beat_range", "vector_ranges"]


def pair_terms(simd) -> list:
    """The lanes of a beat's terms: ``(0, 1), (2, 3), ...``, and ``(SIMD - 1,)`` alone when
    ``SIMD`` is odd."""
    terms = [(i, i + 1) for i in range(0, simd - 1, 2)]
    return terms + [(simd - 1,)] if simd % 2 else terms


def pair_field(signs, simd) -> int:
    """The ROM field of one beat's ``+-1`` ``signs`` (``SIMD`` of them, lane 0 first): per
    term, ``d`` (the pair's signs differ) at its first lane's bit and ``n`` (its first sign
    is ``-1``) at its last lane's bit."""
    word = 0
    for t in pair_terms(simd):
        if len(t) == 2:
            word |= int(signs[t[0]] != signs[t[1]]) << t[0]
        word |= int(signs[t[0]] < 0) << t[-1]
    return word


def leftovers(signs, simd) -> np.ndarray:
    """Per row of ``+-1`` ``signs`` ``(N, F)`` and beat, 1 where the beat's last pair is
    complemented and no carry-in is left for it (``SIMD`` even), int64 ``(N, F / SIMD)``."""
    beats = np.asarray(signs, dtype=np.int64).reshape(len(signs), -1, simd)
    if simd % 2:
        return np.zeros(beats.shape[:2], dtype=np.int64)
    return (beats[:, :, simd - 2] < 0).astype(np.int64)


def beat_range(fmt, simd) -> tuple:
    """``(lo, hi)`` of one beat's pair sum over any signs: each lane ``+-x``, less the
    leftover complement's 1 with ``SIMD`` even."""
    return (simd * min(fmt.lo, -fmt.hi, 0) - (1 - simd % 2),
            simd * max(fmt.hi, -fmt.lo, 0))


def vector_ranges(signs, fmt, simd) -> np.ndarray:
    """Per row of ``+-1`` ``signs`` ``(N, F)`` (lane order), the ``(lo, hi)`` of its pair
    sums accumulated over the vector's beats, 0 included (every beat's range with 0: the
    running sums stay inside their total), int64 ``(N, 2)``."""
    s = np.asarray(signs, dtype=np.int64)
    beats = s.reshape(len(s), -1, simd)
    left = leftovers(s, simd)
    lo = np.minimum(beats * fmt.lo, beats * fmt.hi).sum(axis=2) - left
    hi = np.maximum(beats * fmt.lo, beats * fmt.hi).sum(axis=2) - left
    return np.stack([np.minimum(lo, 0).sum(axis=1), np.maximum(hi, 0).sum(axis=1)], axis=1)
