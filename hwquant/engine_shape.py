"""The static face of the MVU engine contract (:mod:`hwquant.hw.engine`) in plain Python:
how many sums an engine keeps and their worst-case ranges, shared by the hardware (every
:class:`~hwquant.hw.engine.Engine` inherits its shape) and the cost model
(:mod:`hwquant.estimate.mvu` sizes the registers and accumulators of an MVU from it), so the
two cannot disagree. Nothing here imports Amaranth.

A shape is a class with class methods only:

* ``parts_per_pe(layer)`` -> ``P``: partial sums per PE; ``shared_count(layer)`` -> ``S``:
  sums shared by all PEs;
* ``part_ranges(layer, weights)`` -> ``(OC, P, 2)``, ``shared_ranges(layer)`` -> ``S`` pairs,
  ``combine_ranges(layer, weights)`` -> ``(OC, 2)``: over a whole vector (the accumulators'
  and the combine register's ranges);
* ``beat_part_ranges(layer, weights, *, pe, simd)`` -> ``(PE, P, 2)`` and
  ``beat_shared_ranges(layer, *, simd)`` -> ``S`` pairs: the range of each sum the engine
  produces in one beat (its own lanes of the sums register), over every fold the PE serves;
* ``combine_zero_bits(layer)``: low bits of the combined ``ACC`` that are constant;
  ``live_parts(layer, *, pe)``: which partial sums the combine step reads;
  ``reads_part_sign(layer)``: whether it reads the partial sums' sign bits;
  ``part_dead_bits(layer, acc_dead)``: the partial sums' low bits that do not reach the
  bits of ``ACC`` the epilogue reads.

:func:`shape_for` gives a layer's shape (the registry's ``engine`` class names it).
"""

from __future__ import annotations

import numpy as np

from . import ir
from .lane_pairs import beat_range, leftovers, vector_ranges

__all__ = ["EngineShape", "BinaryShape", "TemplateShape", "BdcnnShape", "shape_for",
           "multibit_range", "channel_roles", "template_pes",
           "register_bits", "combine_register_bits"]


def combine_register_bits(ranges, pe, acc_bits) -> list:
    """Per PE, the signed width of the MVU's combine register (:class:`hwquant.hw.mvu.
    MatrixVectorUnit` builds it so): the range of its channels' ``ACC`` (``ranges`` ``(OC,
    2)``, channel ``c`` on PE ``c mod PE``), at most the epilogue's ``acc_bits``. The cost
    model sizes the arithmetic around the register from the same widths."""
    r = np.asarray(ranges, dtype=np.int64).reshape(-1, 2)
    return [min(ir.signed_bits_for(int(min(r[p::pe, 0].min(), 0)), int(max(r[p::pe, 1].max(), 0))),
                acc_bits) for p in range(pe)]


def register_bits(lo, hi) -> int:
    """Flip-flops of a register lane holding values in ``lo .. hi`` as Yosys keeps them: the
    bits that vary. Sign-extension copies of a signed value are one flip-flop (equal
    flip-flops merge); a value that is never negative has a constant-zero sign bit, which
    is no flip-flop; a constant 0 is none at all."""
    lo, hi = int(lo), int(hi)
    if lo == hi == 0:
        return 0
    if lo >= 0:
        return hi.bit_length()
    return ir.signed_bits_for(lo, max(hi, 0))


class EngineShape:
    """Defaults: one partial sum per PE, no shared sum, ``ACC`` the plain ``W @ x``."""

    @classmethod
    def parts_per_pe(cls, layer) -> int:
        return 1

    @classmethod
    def shared_count(cls, layer) -> int:
        return 0

    @classmethod
    def part_ranges(cls, layer, weights) -> np.ndarray:
        raise NotImplementedError

    @classmethod
    def shared_ranges(cls, layer) -> list:
        return []

    @classmethod
    def combine_ranges(cls, layer, weights) -> np.ndarray:
        """Default: ``ACC`` is the plain ``W @ x`` (whatever the engine's own sums), so its
        range is the matrix's over the input format (kinds whose ``ACC`` differs override)."""
        w = np.asarray(weights, dtype=np.int64)
        lo, hi = ir.matrix_range(w, np.zeros(len(w), dtype=np.int64), layer.in_format)
        return np.stack([lo, hi], axis=1)

    @classmethod
    def beat_part_ranges(cls, layer, weights, *, pe, simd) -> np.ndarray:
        raise NotImplementedError

    @classmethod
    def beat_shared_ranges(cls, layer, *, simd) -> list:
        return []

    @classmethod
    def combine_zero_bits(cls, layer) -> int:
        """Low bits of every combined ``ACC`` that are constant (no flip-flops)."""
        return 0

    @classmethod
    def live_parts(cls, layer, *, pe) -> np.ndarray:
        """Bool ``(PE, P)``: which partial sums the combine step reads (one it never reads is
        no logic: synthesis removes it with its registers)."""
        return np.ones((pe, cls.parts_per_pe(layer)), dtype=bool)

    @classmethod
    def reads_part_sign(cls, layer) -> bool:
        """Whether the combine step reads the sign bit of the (never negative) partial-sum
        accumulators; when it does not, that bit is no logic."""
        return True

    @classmethod
    def part_dead_bits(cls, layer, acc_dead) -> int:
        """Low bits of every partial sum that do not reach the combined ``ACC``'s bits at and
        above ``acc_dead`` (the ones the epilogue reads). Default 0: a combine step may mix
        every bit."""
        return 0


def _constant(layer, pe, simd) -> bool:
    return pe == layer.out_channels and simd == layer.fan_in


# -- binary ---------------------------------------------------------------------------------------

def multibit_range(weights, x_format, simd) -> tuple:
    """``(lo, hi)`` of ``sum_i w_i * x_i`` over ``simd`` lanes of ``x_format`` with ``+-1``
    weights (exact for constant ``weights``; ``None``: any weights)."""
    xlo, xhi = x_format.value_lo, x_format.value_hi
    if weights is None:
        mag = max(abs(xlo), abs(xhi))
        return -simd * mag, simd * mag
    lo = sum(min(w * xlo, w * xhi) for w in weights)
    hi = sum(max(w * xlo, w * xhi) for w in weights)
    return lo, hi


class BinaryShape(EngineShape):
    """``binary``: one sum per PE, the popcount (bipolar inputs, ``ACC = 2P - F``) or the
    signed sum (multi-bit inputs, ``ACC`` the sum)."""

    @classmethod
    def part_ranges(cls, layer, weights) -> np.ndarray:
        weights = np.asarray(weights, dtype=np.int64)
        oc, f = weights.shape
        if layer.in_format.bipolar:
            rows = [(0, f)] * oc
        else:
            rows = [multibit_range(row.tolist(), layer.in_format, f) for row in weights]
        return np.array(rows, dtype=np.int64).reshape(oc, 1, 2)

    @classmethod
    def combine_ranges(cls, layer, weights) -> np.ndarray:
        weights = np.asarray(weights, dtype=np.int64)
        oc, f = weights.shape
        if layer.in_format.bipolar:
            return np.array([(-f, f)] * oc, dtype=np.int64)
        return cls.part_ranges(layer, weights)[:, 0, :]

    @classmethod
    def combine_zero_bits(cls, layer) -> int:
        """``2P - F`` has a constant least significant bit (that of ``F``)."""
        return 1 if layer.in_format.bipolar else 0

    @classmethod
    def reads_part_sign(cls, layer) -> bool:
        """``2P - F`` is formed in the combine register's width, which the doubled sign bit
        of ``P`` falls out of."""
        return not layer.in_format.bipolar

    @classmethod
    def part_dead_bits(cls, layer, acc_dead) -> int:
        """Multi-bit inputs: ``ACC`` is the sum itself. Bipolar: bit ``i`` of ``2P`` is bit
        ``i - 1`` of ``P``, and subtracting ``F`` (a multiple of ``2**t``) carries from bit
        ``t`` up, so ``ACC``'s bits from ``L`` on read ``2P``'s from ``min(L, t)`` on."""
        if not layer.in_format.bipolar:
            return acc_dead
        f = layer.fan_in
        t = (f & -f).bit_length() - 1
        return max(min(acc_dead, t) - 1, 0)

    @classmethod
    def beat_part_ranges(cls, layer, weights, *, pe, simd) -> np.ndarray:
        weights = np.asarray(weights, dtype=np.int64)
        if layer.in_format.bipolar:
            rows = [(0, simd)] * pe
        elif _constant(layer, pe, simd):
            rows = [multibit_range(weights[p].tolist(), layer.in_format, simd)
                    for p in range(pe)]
        else:
            rows = [multibit_range(None, layer.in_format, simd)] * pe
        return np.array(rows, dtype=np.int64).reshape(pe, 1, 2)


# -- template -------------------------------------------------------------------------------------

def channel_roles(layer, weights):
    """Per channel ``(sign, on)``: ``sign`` 0 for a ``fixed`` channel, ``+-1`` for a
    template; ``on`` the 0/1 mask lanes of ``weights`` (``(OC, F)``, window-lane order)."""
    data = layer.kind_data
    w = np.asarray(weights, dtype=np.int64)
    roles = []
    for c in range(layer.out_channels):
        if data.template_ids[c] >= 0:
            s = int(data.signs[c])
            roles.append((s, (w[c] * s > 0).astype(np.int64)))
        else:
            roles.append((0, None))
    return roles


def template_pes(layer, pe) -> list:
    """Per PE: whether every channel it computes is a template channel."""
    ids = layer.kind_data.template_ids
    return [all(ids[c] >= 0 for c in range(p, layer.out_channels, pe)) for p in range(pe)]


def _lane_sum_range(fmt, n) -> tuple:
    return n * min(fmt.lo, 0), n * max(fmt.hi, 0)


class TemplateShape(EngineShape):
    """``template``; ``ACC = W @ x``.

    * Unrolled: one sum per channel (a template channel's mask sum ``P``, a fixed channel's
      dot) and one shared sum, the window sum ``S``; the combine forms ``s * (2P - S)``.
    * Folded: no shared sum. The beat's lanes form the terms of :mod:`hwquant.lane_pairs` (lane
      pairs, and the last lane alone when ``SIMD`` is odd); a template PE adds, per pair, the
      pair's ``x_a + x_b`` or ``x_a - x_b`` (built once for every PE), its ones' complement
      (``~t = -t - 1``) where the pair's first weight is ``-1``, and the lone lane ``+-x``
      (``-x`` built once); each adder's carry-in adds back one complemented pair's 1. With
      ``SIMD`` even one pair has no adder left: the PE's sum is then ``ACC - K``, ``K`` the
      channel's count of complemented last pairs (:meth:`negations`), which the combine adds.
      Any other PE is a ``fixed`` dot engine whose template channels are stored as their
      ``+-1`` weights (combine: the identity).
    """

    @classmethod
    def shared_count(cls, layer) -> int:
        return int(_constant(layer, layer.fold.pe, layer.fold.simd))

    @classmethod
    def negations(cls, layer, weights) -> np.ndarray:
        """Per channel, the constant the folded combine adds: with ``SIMD`` even, the number
        of beats whose last pair a template channel on a template PE complements, else 0
        (int64 ``(OC,)``)."""
        w = np.asarray(weights, dtype=np.int64)
        out = np.zeros(layer.out_channels, dtype=np.int64)
        pe, simd = layer.fold.pe, layer.fold.simd
        if _constant(layer, pe, simd):
            return out
        for p, tpe in enumerate(template_pes(layer, pe)):
            if tpe:
                out[p::pe] = leftovers(w[p::pe], simd).sum(axis=1)
        return out

    @classmethod
    def part_ranges(cls, layer, weights) -> np.ndarray:
        fmt = layer.in_format
        w = np.asarray(weights, dtype=np.int64)
        pe, simd = layer.fold.pe, layer.fold.simd
        zero = np.zeros(1, dtype=np.int64)
        rows = []
        if _constant(layer, pe, simd):
            for c, (sign, on) in enumerate(channel_roles(layer, w)):
                lo, hi = ir.matrix_range((on if sign else w[c])[None], zero, fmt)
                rows.append((int(lo[0]), int(hi[0])))
        else:
            tpes = template_pes(layer, pe)
            for c in range(layer.out_channels):
                if not tpes[c % pe]:
                    lo, hi = ir.matrix_range(w[c][None], zero, fmt)
                    rows.append((int(lo[0]), int(hi[0])))
                    continue
                rows.append(tuple(int(v) for v in vector_ranges(w[c][None], fmt, simd)[0]))
        return np.array(rows, dtype=np.int64).reshape(len(rows), 1, 2)

    @classmethod
    def shared_ranges(cls, layer) -> list:
        return [_lane_sum_range(layer.in_format, layer.fan_in)] * cls.shared_count(layer)

    @classmethod
    def unrolled_matrix(cls, layer, weights) -> np.ndarray:
        """The constant matrix a fully unrolled engine builds as one adder graph: row 0 the
        window sum ``S`` (all ones), then row ``1 + c`` channel ``c``'s part: its 0/1 mask
        ``P`` for a template channel, its weights for a fixed one. One graph lets the lane
        sums that ``S`` and the masks have in common (the same pixel over the input
        channels, for HLAC masks) be built once."""
        w = np.asarray(weights, dtype=np.int64)
        rows = [np.ones(w.shape[1], dtype=np.int64)]
        rows += [on if sign else w[c] for c, (sign, on) in enumerate(channel_roles(layer, w))]
        return np.stack(rows)

    @classmethod
    def beat_part_ranges(cls, layer, weights, *, pe, simd) -> np.ndarray:
        fmt = layer.in_format
        if _constant(layer, pe, simd):
            return cls.part_ranges(layer, weights)
        mag = max(abs(fmt.lo), abs(fmt.hi))
        half = 1 << (layer.weight_bits - 1)
        lo, hi = beat_range(fmt, simd)  # any +-1 weights
        rows = [(lo, hi) if t else (-simd * mag * half, simd * mag * half)
                for t in template_pes(layer, pe)]
        return np.array(rows, dtype=np.int64).reshape(pe, 1, 2)

    @classmethod
    def beat_shared_ranges(cls, layer, *, simd) -> list:
        return [_lane_sum_range(layer.in_format, simd)] * cls.shared_count(layer)


# -- bdcnn ----------------------------------------------------------------------------------------

def bdcnn_coefficients(layer) -> np.ndarray:
    """``C`` of a ``bdcnn`` layer, int64 ``(OC, K)``."""
    d = layer.kind_data
    return np.array(d.coefficients, dtype=np.int64).reshape(layer.out_channels, d.basis)


class BdcnnShape(EngineShape):
    """``bdcnn``: ``K * Q`` AND-popcounts per PE (basis ``a``, plane ``b`` at ``a * Q + b``)
    and ``Q`` shared plane popcounts; ``ACC = W @ x``."""

    @classmethod
    def parts_per_pe(cls, layer) -> int:
        return layer.kind_data.basis * layer.kind_data.qbits

    @classmethod
    def shared_count(cls, layer) -> int:
        return layer.kind_data.qbits

    @classmethod
    def part_ranges(cls, layer, weights) -> np.ndarray:
        oc, f = np.asarray(weights).shape
        return np.tile(np.array([0, f], dtype=np.int64), (oc, cls.parts_per_pe(layer), 1))

    @classmethod
    def shared_ranges(cls, layer) -> list:
        return [(0, layer.fan_in)] * layer.kind_data.qbits

    @classmethod
    def beat_part_ranges(cls, layer, weights, *, pe, simd) -> np.ndarray:
        """Folded: popcounts of ``SIMD`` gated bits; unrolled: of the lanes whose basis bit
        is set (none: the constant 0)."""
        from .bdcnn import basis_bits

        k, q = layer.kind_data.basis, layer.kind_data.qbits
        if _constant(layer, pe, simd):
            bits = basis_bits(np.asarray(weights), bdcnn_coefficients(layer))  # (OC, K, F)
            n = bits.sum(axis=2)  # (OC, K)
            hi = np.repeat(n, q, axis=1)
        else:
            hi = np.full((pe, k * q), simd, dtype=np.int64)
        return np.stack([np.zeros_like(hi), hi], axis=2)

    @classmethod
    def beat_shared_ranges(cls, layer, *, simd) -> list:
        return [(0, simd)] * layer.kind_data.qbits

    @classmethod
    def live_parts(cls, layer, *, pe) -> np.ndarray:
        """A basis whose coefficient is 0 in every channel of a PE is skipped by the combine
        step (:meth:`hwquant.hw.bdcnn.BdcnnEngine.combine`): its ``Q`` popcounts are unread."""
        c = bdcnn_coefficients(layer)
        q = layer.kind_data.qbits
        used = np.array([[bool(np.any(c[p::pe, a])) for a in range(c.shape[1])]
                         for p in range(pe)])
        return np.repeat(used, q, axis=1)


#: Shapes of the kinds with their own MVU engine (the lane-engine kinds size their single
#: sum from their cost face's ``dot_range``).
SHAPES = {"binary": BinaryShape, "template": TemplateShape, "bdcnn": BdcnnShape}


def shape_for(layer):
    """The engine shape of ``layer``'s plain engine, or ``None`` for a kind served by the
    lane engine (one sum of products per PE)."""
    return SHAPES.get(layer.encoding)
