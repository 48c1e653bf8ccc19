"""Cost face of the ``template`` arithmetic kind: what :class:`hwquant.hw.template.
TemplateEngine` builds for one MVU (see its module docstring).

* **unrolled**: ``S``, the template channels' mask sums and the ``fixed`` channels' dots as
  one constant-matrix adder graph (:mod:`hwquant.estimate.cmvm`) and one subtractor per
  template channel (``2P - S``);
* **folded**: the beat's lane pairs (:func:`~hwquant.estimate.lane_pairs.shared_resources`,
  shared by every PE); per template PE its signed lane sum
  (:func:`~hwquant.estimate.lane_pairs.pe_resources`) and, with ``SIMD`` even, the
  combine's constant adder; per other PE a ``fixed`` dot engine of ``SIMD``
  ``weight_bits x x_bits`` products (:mod:`hwquant.estimate.fixed`), its combine the
  identity.

No multiplier for a template channel on any path. Registers of the parts, accumulators, the
weight ROM and the epilogue are costed by :mod:`hwquant.estimate.mvu`.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from .. import ir
from ..engine_shape import TemplateShape, template_pes
from ..layout import conv_weight_matrix
from ..plan import mvu_cycles
from . import cmvm as constant_matrix
from . import fixed as fixed_cost
from . import lane_pairs
from .common import check_family
from .resources import Resources, adder

__all__ = ["resources", "cycles", "dot_range", "word_bits", "multipliers", "fold_cost"]


def _check(layer):
    if not isinstance(layer, (ir.Conv2d, ir.Linear)):
        raise TypeError(f"Dot engines belong to a conv2d or linear layer, not "
                        f"{type(layer).__name__}")
    if layer.encoding != "template":
        raise ValueError(f"Layer '{layer.name}': the template cost model cannot estimate "
                         f"weight encoding {layer.encoding!r}")


def _ids(layer):
    return np.asarray(layer.kind_data.template_ids)


def multipliers(layer) -> int:
    """Multipliers the engine instantiates: none unrolled (constants are adder graphs) and
    none for a template PE; ``SIMD`` per other PE when folded."""
    _check(layer)
    if fixed_cost.is_unrolled(layer):
        return 0
    return layer.fold.simd * sum(not t for t in template_pes(layer, layer.fold.pe))


def fold_cost(layer, fold: ir.Fold) -> int:
    """``--fold auto`` ranks a template layer's folds by the products of its PEs that hold a
    ``fixed`` channel (``SIMD`` each; unrolled too, as the fixed kind is ranked by ``PE *
    SIMD``); template-only PEs need none. So it prefers one channel per PE (``PE = OC``)
    with the fewest lanes that meet the cycle target."""
    ids, pe = _ids(layer), fold.pe
    return fold.simd * sum(bool(np.any(ids[p::pe] < 0)) for p in range(pe))


def _combine_widths(layer):
    """Width of the combine of each PE (``2P - S``, ``S - 2P`` or ``P``): its channels'
    ``ACC`` range."""
    pe = layer.fold.pe
    lo, hi = np.asarray(TemplateShape.combine_ranges(layer, conv_weight_matrix(layer.weight))).T
    return [ir.signed_bits_for(int(min(lo[p::pe].min(), 0)), int(max(hi[p::pe].max(), 0)))
            for p in range(pe)]


def _unrolled_combine(layer, widths, family) -> Resources:
    """Unrolled: one subtractor per template channel."""
    return sum((adder(widths[c], family) for c in np.flatnonzero(_ids(layer) >= 0)),
               Resources())


def combine_luts(layer, family) -> int:
    """LUTs of the combine step alone (not in the engine's own logic), unrolled."""
    return _unrolled_combine(layer, _combine_widths(layer), family).lut


def resources(layer, family, *, use_dsp=True) -> Resources:
    """LUT/DSP of the template engine of ``layer``'s MVU and its combine step."""
    _check(layer)
    check_family(family)
    fmt, simd, pe = layer.in_format, layer.fold.simd, layer.fold.pe
    xbits = fmt.bits
    w = conv_weight_matrix(layer.weight)
    widths = _combine_widths(layer)
    if fixed_cost.is_unrolled(layer):
        graph = constant_matrix.resources(layer, TemplateShape.unrolled_matrix(layer, w), family)
        return graph + _unrolled_combine(layer, widths, family)
    res = lane_pairs.shared_resources(xbits, simd, family)
    per_pe = lane_pairs.pe_resources(xbits, simd, family)
    one_fixed = fixed_cost.resources(
        dataclasses.replace(layer, encoding="fixed", kind_data=None,
                            weight=np.zeros_like(layer.weight), fold=ir.Fold(1, simd)),
        family, use_dsp=use_dsp)
    for p, tpe in enumerate(template_pes(layer, pe)):
        if not tpe:
            res += one_fixed
            continue
        res += per_pe
        if simd % 2 == 0:  # the last pair's complement: the combine's constant
            res += adder(widths[p], family)
    return res


def dot_range(layer, weights=None, *, simd) -> tuple:
    """Worst-case ``(lo, hi)`` of one PE's partial sum over ``simd`` lanes: for constant
    ``weights`` of a template channel its mask sum, else as the ``fixed`` kind."""
    if weights is not None:
        w = np.asarray(weights, dtype=np.int64)
        if np.all(np.abs(w) == 1):  # a template row: the mask sum (either sign's cells)
            on = np.maximum(w, 0) if (w > 0).sum() <= (w < 0).sum() else np.maximum(-w, 0)
            return fixed_cost.dot_range(layer, on, simd=simd)
    return fixed_cost.dot_range(layer, weights, simd=simd)


def word_bits(layer, simd) -> int:
    """Bits of the weight-ROM word per PE (rounded up): ``SIMD`` mask bits for a template PE,
    ``SIMD * weight_bits`` for another."""
    tpes = template_pes(layer, layer.fold.pe)
    total = sum(simd if t else simd * layer.weight_bits for t in tpes)
    return math.ceil(total / len(tpes))


def cycles(layer) -> int:
    """Cycles per inference of the MVU when never stalled (:func:`hwquant.plan.mvu_cycles`)."""
    _check(layer)
    return mvu_cycles(layer)
