"""Cost face of the ``bitmask`` arithmetic kind: the ``PE`` dot engines of one MVU.

What :class:`hwquant.hw.bitmask.DotEngine` builds, per processing element:

* **Folded** (``m``-bit codes from the ROM): per lane ``m - 1`` rows of ``x_bits`` bits,
  each gated by one code bit and shifted by its fixed position (an AND gate per bit, one
  LUT on the LUT4 families, absorbed into the adder's LUT6 on xilinx; the shifts are
  wiring), the rows' sum (a :func:`~hwquant.estimate.common.macc` of
  ``m - 1`` terms: nothing for ``m = 2``), the conditional inversion (one LUT per bit of the
  lane on xilinx; folded into the lane sum on the LUT4 families), then one carry-save sum over the ``SIMD`` lanes and the count of negative lanes.
  Everything scales with ``m``; the span ``n`` only widens the rows' sum by the gaps between
  active positions. No multiplication, so no DSP block on any family.
* **Unrolled** (constant weights): a layer whose MVU builds the constant-matrix adder graph
  (the kind's ``constant_matrix`` flag) is costed by :mod:`hwquant.estimate.cmvm` through
  :mod:`hwquant.estimate.mvu`, not here; otherwise (bipolar inputs) the engine builds the
  ``fixed`` kind's constant products and is costed by :mod:`hwquant.estimate.fixed` on the
  same integer weights.

The weight ROM (``m`` bits per weight), registers, accumulators and the epilogue are costed by
:mod:`hwquant.estimate.model`. Accuracy against Yosys: see ``tests/test_bitmask_estimate.py``
(the tolerance it asserts and the measured errors in its docstring).
"""

from __future__ import annotations

import dataclasses
import math

from .. import ir
from ..bitmask import full_mask, parse
from ..plan import mvu_cycles
from . import fixed as fixed_cost
from .common import check_family, macc
from .fixed import is_unrolled
from .resources import Resources

__all__ = ["resources", "cycles", "dot_range", "word_bits", "layer_mask"]


def layer_mask(layer):
    """The layer's :class:`hwquant.bitmask.Mask`: the one place the cost model reads it."""
    pattern = layer.kind_data.pattern
    return full_mask(layer.weight_bits) if pattern is None else parse(pattern)


def _check(layer):
    if not isinstance(layer, (ir.Conv2d, ir.Linear)):
        raise TypeError(f"Dot engines belong to a conv2d or linear layer, not "
                        f"{type(layer).__name__}")
    if layer.encoding != "bitmask":
        raise ValueError(f"Layer '{layer.name}': the bitmask cost model cannot estimate weight "
                         f"encoding {layer.encoding!r}")


def _as_fixed(layer):
    """The same integer weights as a ``fixed`` layer (``n``-bit two's complement holds every
    ``n``-bit sign-magnitude value)."""
    return dataclasses.replace(layer, encoding="fixed", kind_data=None)


def _folded_engine(layer, family) -> Resources:
    """One PE of ``SIMD`` lanes fed with ``m``-bit codes."""
    fmt, simd = layer.in_format, layer.fold.simd
    mask = layer_mask(layer)
    xbits, act = fmt.bits, mask.active
    # Calibrated against Yosys 0.70 (tests/test_bitmask_estimate.py): a LUT6 takes the AND
    # gate into the adder bit it feeds; a LUT4 does not, but there the conditional inversion
    # folds into the lane sum's last LUT level.
    lut6 = family == "xilinx"
    gates = Resources(lut=0 if lut6 else xbits * len(act))
    if len(act) > 1:
        rows = [xbits + k - act[0] for k in act]  # the lowest row's shift is wiring
        lane_sum = macc(rows, family)
        mag_bits = xbits + act[-1] + math.ceil(math.log2(len(act)))
    else:
        lane_sum, mag_bits = Resources(), xbits + act[-1]
    term = mag_bits + (0 if fmt.signed else 1)
    invert = Resources(lut=term if lut6 else 0)
    lane = gates + lane_sum + invert
    count_bits = max(simd.bit_length(), 1)
    return lane * simd + macc([term] * simd + [count_bits], family)


def resources(layer, family, *, use_dsp=True) -> Resources:
    """LUTs of the ``PE`` dot engines of the MVU implementing a ``bitmask`` layer.

    ``use_dsp`` is passed on for unrolled layers costed as fixed constant products; the
    folded engine has no multiplication. Raises ``TypeError`` for a non-weight layer,
    ``ValueError`` for another encoding or an unknown family.
    """
    _check(layer)
    check_family(family)
    if is_unrolled(layer):
        return fixed_cost.resources(_as_fixed(layer), family, use_dsp=use_dsp)
    return _folded_engine(layer, family) * layer.fold.pe


def dot_range(layer, weights=None, *, simd) -> tuple:
    """Worst-case ``(lo, hi)`` of one PE's sum over ``simd`` lanes: exact for constant
    ``weights``; for ``None`` over any weight of the mask, as the hardware sizes it."""
    xs = (layer.in_format.lo, layer.in_format.hi)
    if weights is None:
        top = layer_mask(layer).max_magnitude
        prods = [w * x for w in (top, -top, 0) for x in xs]
        return simd * min(prods), simd * max(prods)
    return (sum(min(int(w) * x for x in xs) for w in weights),
            sum(max(int(w) * x for x in xs) for w in weights))


def word_bits(layer, simd) -> int:
    """Bits of the weight-ROM word of one PE and ``simd`` lanes: ``m`` per weight."""
    return simd * layer_mask(layer).bits


def cycles(layer) -> int:
    """Cycles per inference of the MVU when never stalled (:func:`hwquant.plan.mvu_cycles`)."""
    _check(layer)
    return mvu_cycles(layer)
