"""Weight quantizers: fixed point, INQ power of two, ternary (TWN and asymmetric TTQ).

One quantizer object per method and bit width. Each has three faces, used by the schedules
(:mod:`hwquant.quant.schedules`) and by the lowering into the IR:

``fit(w) -> state``
    The per-layer constants computed from a float weight tensor (INQ: the exponent range
    ``n1, n2``; fixed: the fraction bits; TWN: threshold and scale; TTQ: threshold and the two
    initial scales).
``quantize(w, state) -> tensor``
    The quantized real values (torch), exactly on the set the state defines; used to freeze
    weights and for the final result.
``project(w, state) -> tensor``
    The same values in the forward pass with a straight-through gradient to ``w`` (scaled for
    TTQ), for retraining.
``lower(wq, state) -> LoweredWeights``
    The integer form the IR stores (``docs/arithmetic.md``, "Weight kinds") for projected
    values ``wq``.

Formulas follow the papers (see ``docs/arithmetic.md``, References): INQ §2.1 (exact integer ``n1``, Eq. (4) intervals with ties to
the larger magnitude, saturation at ``2**n1``), TWN §2.2 (``Δ = 0.7·E|W|`` with strict ``>``,
``α`` the mean magnitude above ``Δ``), TTQ §2.3 (``Δ = t·max|w|``, ``t = 0.05``, trained
positive and negative scales).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .. import ir
from .grid import frac_for_range, quantize_to_grid

__all__ = ["LoweredWeights", "FixedWeights", "InqWeights", "TernaryWeights", "make_quantizer",
           "inq_exponents", "inq_project", "WeightQuantError", "TTQ_THRESHOLD", "abs_max"]

#: Fraction bits never exceed this (a dead layer must not ask for absurd shifts).
MAX_FRAC = 24


class WeightQuantError(ValueError):
    """A weight tensor cannot be quantized (all zero, out of range)."""


@dataclass(frozen=True)
class LoweredWeights:
    """Integer weights for the IR, with the real scale they stand for.

    Real weight ``[oc, ...] = weight[oc, ...] * 2**-weight_frac * channel_scale[oc]``.
    """

    weight: np.ndarray
    weight_bits: int
    weight_frac: int
    encoding: str
    #: The layer's ``kind_data`` (``None``: the encoding's default, e.g. ``Pow2Data((1, 1))``).
    kind_data: object = None
    #: Per-output-channel real factor (ternary α), None when 1.
    channel_scale: np.ndarray | None = None


def _ste(w, q):
    """``q`` in the forward pass, identity gradient to ``w``."""
    return w + (q - w).detach()


def abs_max(w) -> float:
    """The largest weight magnitude of ``w``; raises :class:`WeightQuantError` if all are 0."""
    m = float(torch.as_tensor(w).detach().abs().max()) if torch.as_tensor(w).numel() else 0.0
    if m == 0.0:
        raise WeightQuantError("all weights are zero")
    return m


# -- fixed point ---------------------------------------------------------------------------
class FixedWeights:
    """Signed ``bits``-bit fixed point, one power-of-two scale per layer (``docs/arithmetic.md``)
    or, with ``per_channel``, one per output channel (folded into the requantization
    multiplier as :func:`hwquant.quant.fixed.channel_fixed_weights` does)."""

    method, trainable_scales = "fixed", False

    def __init__(self, bits: int, per_channel: bool = False):
        self.bits, self.per_channel = bits, per_channel
        self.hi = (1 << (bits - 1)) - 1

    def fit(self, w):
        layer = frac_for_range(abs_max(w), self.hi, MAX_FRAC)
        if not self.per_channel:
            return {"frac": layer}
        rows = torch.as_tensor(w).detach().abs().reshape(len(w), -1).amax(dim=1).tolist()
        return {"frac": np.array([frac_for_range(r, self.hi, MAX_FRAC) if r > 0 else layer
                                  for r in rows])}

    def _scales(self, w, state):
        frac = np.asarray(state["frac"], dtype=np.float64)
        shape = (-1,) + (1,) * (w.dim() - 1) if frac.ndim else ()
        return torch.tensor(np.exp2(frac), dtype=w.dtype).reshape(shape)

    def quantize(self, w, state):
        scale = self._scales(w, state)
        return torch.clamp(torch.floor(w.detach() * scale + 0.5), -self.hi - 1, self.hi) / scale

    def project(self, w, state):
        return _ste(w, self.quantize(w, state))

    def lower(self, wq, state):
        wq = np.asarray(wq, dtype=np.float64)
        frac = np.asarray(state["frac"])
        if frac.ndim == 0:
            w = quantize_to_grid(wq, int(frac), -self.hi - 1, self.hi)
            return LoweredWeights(w, self.bits, int(frac), "fixed")
        shape = (-1,) + (1,) * (wq.ndim - 1)
        w = np.clip(np.floor(wq * np.exp2(frac).reshape(shape) + 0.5), -self.hi - 1, self.hi)
        base = int(frac.min())
        return LoweredWeights(w.astype(np.int64), self.bits, base, "fixed",
                              channel_scale=np.exp2(base - frac))


# -- INQ -----------------------------------------------------------------------------------
def inq_exponents(s: float, bits: int) -> tuple:
    """``(n1, n2)`` of INQ Eq. (2): ``n1 = max{n : 3·2**(n-2) <= s}`` (exact form of
    ``floor(log2(4s/3))``), ``n2 = n1 + 1 - 2**(bits-2)``."""
    if not s > 0:
        raise WeightQuantError("all weights are zero")
    n1 = math.floor(math.log2(4.0 * s / 3.0))
    while math.ldexp(3.0, n1 - 2) > s:
        n1 -= 1
    while math.ldexp(3.0, n1 - 1) <= s:
        n1 += 1
    return n1, n1 + 1 - (1 << (bits - 2))


def inq_project(w: torch.Tensor, n1, n2, tie: str = "paper") -> torch.Tensor:
    """INQ Eq. (4) on every element (no gradient): nearest of ``{0, ±2**n2 .. ±2**n1}``.

    ``tie="paper"``: ``|w|`` in ``[3·2**(n-2), 3·2**(n-1))`` -> ``2**n``; below ``2**(n2-1)``
    -> 0 (ties to the larger magnitude). ``tie="caffe"``: the same intervals closed on the
    other side (ties to the smaller magnitude, as the official code). Above the top interval
    the value saturates at ``2**n1`` (INQ Eq. (4), normative). ``n1, n2`` are integers, or
    integer tensors broadcasting against ``w`` (one range per output channel).
    """
    w = w.detach()
    a = w.abs().to(torch.float64)
    tiny = torch.finfo(torch.float64).tiny
    n = torch.floor(torch.log2(torch.clamp(a, min=tiny) / 3.0)) + 2
    # Correct float log2 error: make 3·2**(n-2) <= a < 3·2**(n-1) exact.
    n = torch.where(a < 3.0 * torch.pow(2.0, n - 2), n - 1, n)
    n = torch.where(a >= 3.0 * torch.pow(2.0, n - 1), n + 1, n)
    if tie == "caffe":  # intervals (3·2**(n-2), 3·2**(n-1)]
        n = torch.where(a == 3.0 * torch.pow(2.0, n - 2), n - 1, n)
    elif tie != "paper":
        raise ValueError(f"INQ tie rule must be 'paper' or 'caffe', not {tie!r}")
    hi = torch.as_tensor(n1, dtype=torch.float64)
    lo = torch.as_tensor(n2, dtype=torch.float64)
    n = torch.clamp(n, lo, hi)
    low = torch.pow(2.0, lo - 1)
    zero = (a <= low) if tie == "caffe" else (a < low)
    q = torch.where(zero, torch.zeros_like(a), torch.pow(2.0, n)) * torch.sign(w)
    return q.to(w.dtype)


class InqWeights:
    """INQ power-of-two weights of ``bits`` bits (``2**(bits-2)`` exponents, zero, sign).

    ``fit`` fixes ``n1, n2`` from the weights it is given; the schedules call it once on the
    pre-trained weights so the set never changes (as INQ fixes n1 and n2 before training).
    ``per_channel``: one ``n1`` per output channel, from that channel's largest magnitude (the
    channels' different ranges go into the requantization multiplier as powers of two).
    """

    method, trainable_scales = "inq", False

    def __init__(self, bits: int, tie: str = "paper", per_channel: bool = False):
        self.bits, self.tie, self.per_channel = bits, tie, per_channel

    def fit(self, w):
        if not self.per_channel:
            n1, n2 = inq_exponents(abs_max(w), self.bits)
            return {"n1": n1, "n2": n2}
        w = torch.as_tensor(w).detach()
        abs_max(w)
        peaks = w.abs().reshape(len(w), -1).max(dim=1).values
        top = float(peaks.max())
        # A dead channel takes the layer's range (its weights quantize to zero anyway).
        pairs = [inq_exponents(float(p) if p > 0 else top, self.bits) for p in peaks]
        shape = (-1,) + (1,) * (w.dim() - 1)
        n1 = torch.tensor([p[0] for p in pairs], dtype=torch.int64).reshape(shape)
        n2 = torch.tensor([p[1] for p in pairs], dtype=torch.int64).reshape(shape)
        return {"n1": n1, "n2": n2}

    def quantize(self, w, state):
        return inq_project(w, state["n1"], state["n2"], self.tie)

    def project(self, w, state):
        return _ste(w, self.quantize(w, state))

    def lower(self, wq, state):
        wq = np.asarray(wq, dtype=np.float64)
        nz = wq != 0
        if not nz.any():
            raise WeightQuantError(f"every weight quantizes to zero with {self.bits}-bit INQ")
        ch_n1 = torch.as_tensor(state["n1"]).numpy().reshape(-1)
        ch_n2 = torch.as_tensor(state["n2"]).numpy().reshape(-1)
        n1 = np.broadcast_to(ch_n1.reshape(-1, *(1,) * (wq.ndim - 1)), wq.shape)
        n2 = np.broadcast_to(ch_n2.reshape(-1, *(1,) * (wq.ndim - 1)), wq.shape)
        exps = np.zeros(wq.shape, dtype=np.int64)
        exps[nz] = np.round(np.log2(np.abs(wq[nz]))).astype(np.int64)
        if not np.array_equal(np.ldexp(1.0, exps[nz]), np.abs(wq[nz])) \
                or (exps[nz] < n2[nz]).any() or (exps[nz] > n1[nz]).any():
            raise WeightQuantError("weights are not on the layer's INQ power-of-two set")
        if not self.per_channel:
            n_lo = int(exps[nz].min())
            w = np.zeros(wq.shape, dtype=np.int64)
            w[nz] = np.sign(wq[nz]).astype(np.int64) << (exps[nz] - n_lo)
            return LoweredWeights(w, self.bits, -n_lo, "pow2")
        # Per channel: codes relative to the channel's n2, the channel's 2**n2 relative to
        # the largest n2 as a (power-of-two) channel scale.
        ref = int(ch_n2.max())
        w = np.zeros(wq.shape, dtype=np.int64)
        w[nz] = np.sign(wq[nz]).astype(np.int64) << (exps[nz] - n2[nz])
        scale = np.ldexp(1.0, ch_n2 - ref)
        return LoweredWeights(w, self.bits, -ref, "pow2",
                              channel_scale=None if np.all(scale == 1.0) else scale)


# -- ternary -------------------------------------------------------------------------------
def _channel_mean(v, per_channel):
    if per_channel:
        return v.reshape(len(v), -1).mean(dim=1).reshape((-1,) + (1,) * (v.dim() - 1))
    return v.mean()


class TernaryWeights:
    """Ternary weights ``{−α, 0, +α}`` (TWN) or ``{−W^n, 0, +W^p}`` (``asymmetric``, TTQ).

    TWN: ``Δ = ratio·E|W|``, ``W̃ = sign(W)·[|W| > Δ]``, ``α = E(|W| : |W| > Δ)``, per layer
    or per output channel (``per_channel``). ``fit`` computes ``Δ, α`` from the given weights;
    ``refit`` tells the ``simple`` schedule to recompute them from the shadow weights on every
    forward pass, as the TWN code does. TTQ: ``Δ = t·max|W|`` per layer, scales ``W^p, W^n``
    start as the mean magnitude of each side and are trained (``trainable_scales``).
    """

    method = "ternary"

    def __init__(self, *, asymmetric=False, per_channel=False, ratio=0.7, t=0.05):
        self.bits, self.asymmetric, self.per_channel = 2, asymmetric, per_channel
        self.ratio, self.t = ratio, t
        self.trainable_scales = asymmetric
        self.refit = not asymmetric

    def _codes(self, w, delta):
        return (w > delta).to(w.dtype) - (w < -delta).to(w.dtype)

    def fit(self, w):
        w = torch.as_tensor(w).detach()
        abs_max(w)
        if self.asymmetric:
            delta = self.t * float(w.abs().max())
            pos, neg = w[w > delta], w[w < -delta]
            wp = float(pos.mean()) if pos.numel() else delta
            wn = float(-neg.mean()) if neg.numel() else delta
            return {"delta": delta, "scales": torch.tensor([wp, wn], dtype=w.dtype)}
        delta = self.ratio * _channel_mean(w.abs(), self.per_channel)
        codes = self._codes(w, delta)
        alpha = _channel_mean(w.abs() * codes.abs(), self.per_channel) / \
            torch.clamp(_channel_mean(codes.abs(), self.per_channel), min=1e-12)
        return {"delta": delta, "alpha": alpha}

    def quantize(self, w, state):
        """Ternary values of ``w``; differentiable in the TTQ scales only."""
        codes = self._codes(w.detach(), state["delta"])
        if self.asymmetric:
            wp, wn = torch.clamp(state["scales"], min=1e-6).unbind()
            return wp * (codes > 0) - wn * (codes < 0)
        return codes * state["alpha"]

    def project(self, w, state):
        q = self.quantize(w, state)
        if self.asymmetric:
            # Scaled STE of TTQ; the scale gradients come from autodiff (TTQ §3).
            codes = self._codes(w.detach(), state["delta"])
            wp, wn = torch.clamp(state["scales"], min=1e-6).detach().unbind()
            gain = torch.where(codes > 0, wp, torch.where(codes < 0, wn, torch.ones_like(wp)))
            return q + (w - w.detach()) * gain
        return _ste(w, q)

    def lower(self, wq, state):
        wq = np.asarray(wq, dtype=np.float64)
        codes = np.sign(wq).astype(np.int64)
        if not codes.any():
            raise WeightQuantError("every weight quantizes to zero (ternary)")
        if self.asymmetric:
            wp, wn = (float(v) for v in torch.clamp(state["scales"].detach(), min=1e-6))
            g = min(frac_for_range(max(wp, wn), 255, MAX_FRAC), MAX_FRAC)
            p, n = (max(1, math.floor(math.ldexp(v, g) + 0.5)) for v in (wp, wn))
            w = np.where(codes > 0, p, np.where(codes < 0, -n, 0))
            return LoweredWeights(w, 2, g, "pow2", kind_data=ir.Pow2Data((p, n)))
        mags = np.abs(wq).reshape(len(wq), -1)
        alpha = mags.max(axis=1)  # every nonzero entry of a channel is that channel's α
        if not alpha.any():
            raise WeightQuantError("every weight quantizes to zero (ternary)")
        alpha = np.where(alpha > 0, alpha, alpha[alpha > 0].min())
        return LoweredWeights(codes, 2, 0, "pow2", channel_scale=alpha)


#: TTQ's threshold factor ``t`` (``Δ = t·max|W|``) as :func:`make_quantizer` uses it: the
#: paper's 0.05 leaves nearly every weight non-zero; on the accuracy regression suite's small
#: models 0.15 loses less (worst drop 1.8 instead of 2.4 points on the models it missed).
TTQ_THRESHOLD = 0.15


def make_quantizer(method: str, bits: int, *, variant: str = "twn", granularity="layer",
                   tie="paper"):
    """The quantizer for ``method`` (fixed | inq | ternary) at ``bits`` weight bits."""
    if granularity not in ("layer", "channel"):
        raise ValueError(f"Scale granularity must be 'layer' or 'channel', not "
                         f"{granularity!r}")
    if method == "fixed":
        return FixedWeights(bits, per_channel=granularity == "channel")
    if method == "inq":
        return InqWeights(bits, tie=tie, per_channel=granularity == "channel")
    if method == "ternary":
        if variant not in ("twn", "ttq"):
            raise ValueError(f"Ternary variant must be 'twn' or 'ttq', not {variant!r}")
        return TernaryWeights(asymmetric=variant == "ttq", per_channel=granularity == "channel",
                              t=TTQ_THRESHOLD)
    raise ValueError(f"Unknown weight quantization method {method!r}")
