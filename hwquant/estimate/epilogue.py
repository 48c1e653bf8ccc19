"""Cost face of the epilogues (:data:`hwquant.ir.EPILOGUES`): what the ``PE`` epilogue lanes
of one MVU cost, from ``ACC`` to the output lane (the MVU's output register is costed by the
MVU model, :mod:`hwquant.estimate.mvu`).

One function per epilogue type, named as in :data:`hwquant.epilogues.EPILOGUE_KINDS`, each
``f(epilogue, layer, family, *, acc_bits, use_dsp=True) -> Resources`` for all ``PE`` lanes;
:func:`resources` picks it through the registry. The per-channel constants of channel
``nf*PE + p`` are selected by the output-fold index into a register (:func:`picked`: the
selection of :func:`~.common.const_select` and the register; free when they agree over the
folds, e.g. ``NF = 1``):

* :func:`requant`: a bias adder (or a constant folded into the rounding adder), the multiply
  (a constant one as Yosys maps ``x * const``, or a selected constant into a
  :func:`~hwquant.estimate.resources.multiplier`), the pipeline register on the product, the
  rounding adder over the bits the shift keeps, the saturation.
* :func:`thresholds`: per lane an optional negation (channels of both directions), ``T``
  comparisons of ``ACC`` with per-channel constants (a constant one is a carry chain without
  LUTs on iCE40, a selected one a full comparator), the pipeline register on the ``T``
  results, their popcount.
* :func:`logits`: the bias adder and, with a per-class scale, the constant multiply as
  shift-and-add over the scale's canonical signed digits (a selected scale: a multiplier),
  then the pipeline register.

Every lane has one pipeline register (:data:`hwquant.hw.epilogue.Epilogue.LATENCY`), counted
as flip-flops of the value's width.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .. import ir
from .common import const_add, const_compare, const_select, csd_digits, saturation
from .resources import Resources, adder, comparator, ice40_piece_in_dsp, multiplier, mux, popcount

__all__ = ["resources", "requant", "thresholds", "logits", "absorbed_lanes", "dead_low_bits",
           "USE_DSP"]

#: Yosys infers DSP blocks by default (``synthesize(..., allow_dsp=True)``); so does the model.
USE_DSP = True


def _lanes(layer):
    """``[[channel of fold n for n in range(NF)] for p in range(PE)]``."""
    pe = layer.fold.pe
    nf = layer.out_channels // pe
    return [[n * pe + p for n in range(nf)] for p in range(pe)]


def resources(layer, family, *, acc_bits, lane_bits=None, zero_bits=None,
              use_dsp=USE_DSP) -> Resources:
    """The epilogue lanes of ``layer``'s MVU, by the type of ``layer.epilogue``.

    ``acc_bits`` is the epilogue's input width; ``lane_bits`` (per PE, at most ``acc_bits``)
    the bits that vary in each lane's input: the combine register sign-extends each PE's
    ``ACC`` to ``acc_bits``, its copies of the sign bit are one flip-flop, and Yosys's
    ``wreduce`` narrows the adders, comparators and multipliers behind it to the lane's own
    width (a 21-bit requantization input holding a 15-bit template sum is one ECP5 DSP
    block, not two). ``zero_bits`` (per PE): low bits of the lane known to be constant zero.

    Raises
    ------
    TypeError
        An epilogue type without a cost face (never a silent zero).
    """
    from ..epilogues import epilogue_kind

    ep = layer.epilogue
    face = globals().get(epilogue_kind(ep).name)
    if face is None:
        raise TypeError(f"Layer '{layer.name}': the cost model has no face for epilogue "
                        f"{type(ep).__name__}")
    return face(ep, layer, family, acc_bits=_lane_bits(layer, acc_bits, lane_bits),
                zero_bits=zero_bits or [0] * layer.fold.pe, use_dsp=use_dsp)


def _lane_bits(layer, acc_bits, lane_bits) -> list:
    if lane_bits is None:
        return [acc_bits] * layer.fold.pe
    return [max(1, min(int(b), acc_bits)) for b in lane_bits]


def absorbed_lanes(layer, family, *, acc_bits, lane_bits=None, use_dsp=USE_DSP) -> list:
    """Per PE lane: whether the DSP block of its requantization multiply takes the MVU's
    combine register in as its input register (``xilinx_dsp`` packs the flip-flops that feed a
    DSP48E1's A port; measured on one-layer 4-bit networks: the Xilinx flip-flops fall short of
    the registers by about ``acc_bits`` per such lane). Only Xilinx; only requantization."""
    if family != "xilinx" or not isinstance(layer.epilogue, ir.Requant):
        return [False] * layer.fold.pe
    rq = layer.epilogue
    return [_requant_lane(bits, [int(layer.bias[c]) for c in chans],
                          [int(rq.multiplier[c]) for c in chans], rq.shift, rq.lo, rq.hi,
                          layer.out_format.bits, family, use_dsp).dsp > 0
            for chans, bits in zip(_lanes(layer), _lane_bits(layer, acc_bits, lane_bits),
                                   strict=True)]


def picked(values, family) -> Resources:
    """A per-channel constant selected by the fold index into its register
    (:meth:`hwquant.hw.epilogue.Epilogue._picked`): the selection and, when the values vary,
    a reset-less register of the bits that vary (a bit equal in every value is a constant
    input: Yosys removes its flip-flop)."""
    values = [int(v) for v in values]
    res = const_select(values, family)
    if len(set(values)) > 1:
        width = ir.signed_bits_for(min(min(values), 0), max(max(values), 0))
        mask = (1 << width) - 1
        varying = 0
        for v in values:
            varying |= (v ^ values[0]) & mask
        res += Resources(ff=varying.bit_count())
    return res


def _bias_add(biases, acc_bits, family) -> tuple:
    """``(cost, bits after, constant left to fold into a later adder)`` of ``ACC + B``."""
    if len(set(biases)) > 1:
        return picked(biases, family) + adder(acc_bits, family), acc_bits + 1, 0
    return Resources(), acc_bits, biases[0]


def requant(epilogue, layer, family, *, acc_bits, zero_bits=None,
            use_dsp=USE_DSP) -> Resources:
    """``sat(rshift_rhu((ACC + B) * M, shift), lo, hi)`` on every lane."""
    rq = epilogue
    total = Resources()
    for chans, bits in zip(_lanes(layer), acc_bits, strict=True):
        biases = [int(layer.bias[c]) for c in chans]
        mults = [int(rq.multiplier[c]) for c in chans]
        total += _requant_lane(bits, biases, mults, rq.shift, rq.lo, rq.hi,
                               layer.out_format.bits, family, use_dsp)
    return total


def _requant_lane(acc_bits, biases, mults, shift, lo, hi, out_bits, family, use_dsp):
    from .fixed import const_product

    res = picked(biases, family)
    t_bits = acc_bits
    varying = len(set(biases)) > 1
    scaled = any(m != 1 for m in mults)
    constant_mult = len(set(mults)) == 1
    pre_add = varying or (scaled and any(biases))
    if pre_add:
        t_bits += 1  # a variable bias, or one the multiplier needs first
        biases = [0]
    product = Resources()
    if scaled:
        if constant_mult:
            product = const_product(mults[0], t_bits, True, family, use_dsp=use_dsp)[0]
            t_bits += max(2, mults[0].bit_length() + 1)
        else:
            mbits = ir.signed_bits_for(min(mults), max(mults))
            product = multiplier(t_bits, mbits, family, use_dsp, signed=True)
            # In logic Yosys keeps only the multiplier bits some channel sets: one
            # partial-product row each (a bit set by every channel is a plain shifted copy),
            # summed by an adder per row but one.
            rows = int(np.bitwise_or.reduce(np.abs(mults))).bit_count()
            left = t_bits % 16
            if product.dsp == 0:
                product = adder(t_bits + mbits, family) * max(rows - 1, 0)
            elif family == "ice40" and left and not ice40_piece_in_dsp(left, mbits):
                # The piece of a split multiply too small for an SB_MAC16 is such logic.
                product = (multiplier(t_bits - left, mbits, family, use_dsp, signed=True)
                           + adder(left + mbits, family) * max(rows - 1, 0)
                           + adder(max(t_bits + mbits - 18, 1), family))
            chosen = picked(mults, family)
            if product.dsp and family in ("ice40", "xilinx"):
                # ice40_dsp / xilinx_dsp pack the multiplier's input register into the block.
                chosen = dataclasses.replace(chosen, ff=0)
            product += chosen
            t_bits += mbits
    # A DSP48E1 multiply takes the bias adder in front (its pre-adder) and the rounding
    # constant after it (its post-adder): xilinx_dsp packs both; ice40_dsp packs the rounding
    # constant into the SB_MAC16 adder (no pre-adder there).
    in_dsp = family == "xilinx" and product.dsp > 0
    post_in_dsp = family in ("xilinx", "ice40") and product.dsp > 0
    if pre_add and not in_dsp:
        res += adder(acc_bits, family)
    res += product
    used = max(t_bits - max(shift, 0) + 1, 1)
    # The pipeline register on the product. By a constant multiplier (one channel per lane)
    # Yosys keeps only the bits the rounding reads (from bit ``shift - 1`` up), and on xilinx
    # packs even those into the DSP48E1 (its MREG). By a selected multiplier the whole product
    # is registered in the fabric.
    if constant_mult and scaled:
        res += Resources(ff=0 if in_dsp else min(used, t_bits))
    else:
        res += Resources(ff=t_bits)
    # The pipeline register stands between the bias adder and the rounding adder: Yosys
    # cannot fold the rounding constant into the bias adder.
    merged = False
    if (shift > 0 or any(biases)) and not post_in_dsp and not merged:
        res += const_add(t_bits, used, family)
        if any(biases) and family in ("ecp5", "gowin"):
            res += Resources(lut=round(used / 2))  # bias and rounding constants apart
    return res + saturation(used, lo, hi, out_bits, family)


def thresholds(epilogue, layer, family, *, acc_bits, zero_bits=None,
               use_dsp=USE_DSP) -> Resources:
    """``lo + #{t : d*(ACC + B) >= d*T[c, t]}`` on every lane (no multiplier, no bias
    adder: the bias is folded into the constants); a comparison with a constant as
    :func:`~hwquant.estimate.common.const_compare` prices it, on the lane's bits above the
    constant's trailing zeros (the constant rounded up to the lane's ``zero_bits``)."""
    thr = np.asarray(epilogue.thresholds, dtype=np.int64)
    direction = np.asarray(epilogue.direction, dtype=np.int64)
    bias = np.asarray(layer.bias, dtype=np.int64)
    count = thr.shape[1]
    nf = layer.out_channels // layer.fold.pe
    # The fold index one stage on (the selections read a register of it).
    total = Resources(ff=max(1, (nf - 1).bit_length())) if nf > 1 else Resources()
    zero_bits = zero_bits or [0] * layer.fold.pe
    for chans, lane_bits, zero in zip(_lanes(layer), acc_bits, zero_bits, strict=True):
        dirs = [int(direction[c]) for c in chans]
        bits = lane_bits
        reach = 1 << lane_bits
        res = Resources()
        if len(set(dirs)) > 1:
            # Mux(neg[nf], -acc, acc): a negation and a 2:1 mux, one bit wider.
            res += const_select([int(d < 0) for d in dirs], family)
            res += adder(lane_bits, family) + mux(lane_bits + 1, 2, family)
            bits += 1
        elif dirs[0] < 0:
            res += adder(lane_bits, family)
            bits += 1
        for t in range(count):
            ks = [int(np.clip(direction[c] * (thr[c, t] - bias[c]), -reach, reach))
                  for c in chans]
            if all(abs(k) == reach for k in ks) and len(set(ks)) == 1:
                continue  # always or never passed: a constant
            if len(set(ks)) == 1:
                # Compare with a constant: the bits at and above the constant's lowest set
                # bit (the bits below cannot change the outcome; with z constant-zero low
                # bits, v >= k is v >= k rounded up to a multiple of 2**z). A negated lane's
                # zero bits stay zero.
                k = -(-ks[0] >> zero << zero) if zero and abs(ks[0]) < reach else ks[0]
                res += const_compare(max(bits - max(_trailing_zeros(k, bits), zero), 1),
                                     family)
            else:
                kbits = ir.signed_bits_for(min(ks), max(ks))
                res += const_select(ks, family) + comparator(max(bits, kbits), family)
            res += Resources(ff=1)  # the pipeline register on the comparison
        if count > 1:
            res += popcount(count, family)
        if layer.out_format.lo:
            res += adder(max(count.bit_length(), 1), family)
        total += res
    return total


def _trailing_zeros(k, bits) -> int:
    """Low bits of a ``bits``-wide value that ``value >= k`` does not depend on:
    ``value >= k`` is ``value >> t >= k >> t`` for ``k`` a multiple of ``2**t``."""
    if k == 0:
        return bits - 1  # the sign bit alone
    return min((k & -k).bit_length() - 1, bits - 1)


def dead_low_bits(layer, acc_bits, zero_bits=None) -> list:
    """Per PE lane: the low bits of ``ACC`` the epilogue never reads (``acc_bits`` per lane;
    ``zero_bits``: low bits of ``ACC`` known to be constant zero).

    A threshold epilogue whose thresholds are constants (the same over the folds) compares
    ``ACC >= K``, which does not depend on the bits below ``K``'s lowest set bit (with ``z``
    constant-zero low bits, ``ACC >= K`` is ``ACC >= K'``, ``K`` rounded up to a multiple of
    ``2**z``: ABC finds this); a threshold that is always or never passed reads nothing. Yosys removes the unread bits
    with the logic and the flip-flops that only feed them, back through the registers that
    merely copy them (the MVU's combine register, and its accumulators when ``SF = 1``).
    Requantization and logits read every bit (0)."""
    ep = layer.epilogue
    pe = layer.fold.pe
    if not isinstance(ep, ir.Thresholds):
        return [0] * pe
    thr = np.asarray(ep.thresholds, dtype=np.int64)
    direction = np.asarray(ep.direction, dtype=np.int64)
    bias = np.asarray(layer.bias, dtype=np.int64)
    zero_bits = zero_bits or [0] * pe
    out = []
    for chans, bits, z in zip(_lanes(layer), acc_bits, zero_bits, strict=True):
        if any(direction[c] < 0 for c in chans):
            out.append(0)
            continue
        reach = 1 << bits
        dead = bits
        for t in range(thr.shape[1]):
            ks = [int(np.clip(thr[c, t] - bias[c], -reach, reach)) for c in chans]
            if len(set(ks)) > 1:
                dead = 0
                break
            if abs(ks[0]) == reach:
                continue  # always or never passed
            k = -((-ks[0]) >> z) << z  # rounded up to a multiple of 2**z
            dead = min(dead, max(_trailing_zeros(k, bits), z))
        out.append(dead)
    return out


def logits(epilogue, layer, family, *, acc_bits, zero_bits=None,
           use_dsp=USE_DSP) -> Resources:
    """``(ACC + B) * scale`` (``scale`` None: ``ACC + B``) on every lane."""
    scale = None if epilogue is None else epilogue.scale
    total = Resources()
    for chans, lane_bits in zip(_lanes(layer), acc_bits, strict=True):
        biases = [int(layer.bias[c]) for c in chans]
        res, bits, constant = _bias_add(biases, lane_bits, family)
        scales = [1] * len(chans) if scale is None else [int(scale[c]) for c in chans]
        if constant:
            res += const_add(lane_bits, lane_bits, family)  # a constant bias
        if any(s != 1 for s in scales):
            if len(set(scales)) == 1:
                res += shift_add(scales[0], bits, family)
            else:
                sbits = max(s.bit_length() for s in scales) + 1
                res += picked(scales, family)
                res += multiplier(bits, sbits, family, use_dsp, signed=True)
        total += res + Resources(ff=layer.out_format.bits)  # the pipeline register
    return total


def shift_add(constant, bits, family) -> Resources:
    """``v * constant`` (a positive integer) as shift-and-add over its canonical signed
    digits: one adder per digit but one, each as wide as the partial sum."""
    digits = csd_digits(constant)
    res = Resources()
    width = bits
    for shift, _ in digits[1:]:
        width = max(width, bits + shift) + 1
        res += adder(width - 1, family)
    return res
