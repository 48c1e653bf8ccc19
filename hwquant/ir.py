"""The quantized-network IR: one frozen, typed description that every later stage reads.

Pure Python + NumPy (no torch, no Amaranth). A :class:`Network` is a tuple of layers in
topological order; each layer names its producers in ``inputs`` (``"input"`` is the network
input). Tensors are ``(C, H, W)`` feature maps or ``(N,)`` vectors, without the batch axis.

Integer semantics of every field are defined in ``docs/arithmetic.md`` and executed by
:mod:`hwquant.golden`. In short: an activation tensor holds integers ``X`` with real value
``X * 2**-frac`` (:class:`ActFormat`; a bipolar 1-bit tensor holds codes with values
``2X - 1``); a weight layer holds integer weights ``W`` with real value ``W * 2**-weight_frac``,
per-kind data (``kind_data``, :data:`KIND_DATA`) and an integer bias at accumulator scale; its
output is
``epilogue``: ``sat(rshift_rhu((ACC + B) * M, shift), lo, hi)`` (:class:`Requant`), a count of
passed thresholds (:class:`Thresholds`) or, for the last layer, the logits ``ACC + B``
(:class:`Logits`).

Passes are functions ``Network -> Network`` (use :func:`dataclasses.replace`); call
:meth:`Network.validate` after each one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "ActFormat",
    "BIPOLAR",
    "Fold",
    "ENGINES",
    "Requant",
    "Thresholds",
    "Logits",
    "Epilogue",
    "EPILOGUES",
    "Conv2d",
    "Linear",
    "MaxPool2d",
    "AvgPool2d",
    "Flatten",
    "Add",
    "Layer",
    "WeightLayer",
    "Network",
    "ENCODINGS",
    "KIND_DATA",
    "FixedData",
    "Pow2Data",
    "BitmaskData",
    "BinaryData",
    "TemplateData",
    "BdcnnData",
    "POW2_BITS",
    "INPUT",
    "accumulator_range",
    "accumulator_bits",
    "matrix_range",
    "MAX_BITS",
    "signed_bits_for",
    "unsigned_bits_for",
]

#: Widest integer anywhere in the IR (accumulators, logits); keeps int64 golden math exact.
MAX_BITS = 48

#: Largest requantization shift either way: a 48-bit accumulator times a 16-bit multiplier
#: has at most 64 bits, so a longer right shift only ever gives 0 or -1, a longer left shift
#: overflows every output format.
REQUANT_MAX_SHIFT = 64

#: Name of the network input in ``Layer.inputs``.
INPUT = "input"

#: Code widths of a ``pow2`` weight; exponents ``e`` in ``0 .. 2**(bits-2) - 1`` (INQ).
POW2_BITS = (2, 8)


def _integer(value, what):
    """``value`` as an int; ``TypeError`` unless it is an integer (a bool is not)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{what} must be an integer, not {value!r}")
    return int(value)


def _integers(value, what):
    """``value`` as a tuple of ints; ``TypeError`` unless it is a sequence of integers."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise TypeError(f"{what} must be a tuple of integers, not {value!r}")
    value = tuple(value)
    if any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in value):
        raise TypeError(f"{what} must be a tuple of integers, not {value!r}")
    return tuple(int(v) for v in value)


def _check_type(value, types, what):
    if not isinstance(value, types):
        names = " or ".join(t.__name__ for t in (types if isinstance(types, tuple) else (types,)))
        raise TypeError(f"{what} must be {names}, not {type(value).__name__}")


def _frozen_int_array(value, name, *, ndim=None):
    try:
        src = np.asarray(value)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name} must be an integer array, not {value!r}: {e}") from None
    if src.dtype.kind not in "biuf" and src.size:
        raise TypeError(f"{name} must be an integer array, not {src.dtype}")
    if src.dtype.kind == "f" and src.size and not (np.all(np.isfinite(src))
                                                   and np.array_equal(src, np.round(src))):
        bad = src.flat[int(np.argmax(~np.isfinite(src) | (src != np.round(src))))]
        raise ValueError(f"{name} must hold integers, not {float(bad)!r}")
    if src.size and src.dtype.kind in "uf" and (src.max() > np.iinfo(np.int64).max
                                                or src.min() < np.iinfo(np.int64).min):
        raise ValueError(f"{name} must hold 64-bit signed integers")
    arr = np.array(src, dtype=np.int64, copy=True)
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, not shape {arr.shape}")
    arr.setflags(write=False)
    return arr


def _pair(value, what):
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    value = tuple(value)
    if len(value) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise TypeError(f"{what} must be an integer or a pair of integers, not {value!r}")
    return value


def signed_bits_for(lo: int, hi: int) -> int:
    """Smallest two's-complement width holding every integer in ``[lo, hi]``."""
    lo, hi = int(lo), int(hi)
    return max((-lo - 1).bit_length() if lo < 0 else 0, hi.bit_length() if hi > 0 else 0) + 1


def unsigned_bits_for(hi: int) -> int:
    """Smallest unsigned width holding ``0..hi`` (at least 1)."""
    return max(1, int(hi).bit_length())


def range_bits(lo: int, hi: int) -> int:
    """Width of a signal holding ``[lo, hi]``: unsigned when ``lo >= 0``, else signed."""
    return unsigned_bits_for(hi) if lo >= 0 else signed_bits_for(lo, hi)


@dataclass(frozen=True)
class ActFormat:
    """Integer activation format: ``bits`` wide, signed or not, real value ``X * 2**-frac``.

    ``bipolar`` (only with ``bits=1, signed=False, frac=0``; see :data:`BIPOLAR`): the code bit
    stands for ``+1`` (code 1) or ``-1`` (code 0), ``value(code) = 2*code - 1``. ``lo``/``hi``
    are always codes (0/1 for bipolar); the arithmetic of a consumer sees :meth:`value`.
    Padding inserts code 0 in every format: value 0, or ``-1`` for bipolar.
    """

    bits: int
    signed: bool
    frac: int
    bipolar: bool = False

    def __post_init__(self):
        if isinstance(self.bits, bool) or not isinstance(self.bits, int) \
                or not 1 <= self.bits <= MAX_BITS:
            raise ValueError(f"Activation width must be an integer in 1..{MAX_BITS}, "
                             f"not {self.bits!r}")
        if isinstance(self.frac, bool) or not isinstance(self.frac, int):
            raise TypeError(f"Activation fraction bits must be an integer, not {self.frac!r}")
        if not isinstance(self.signed, bool):
            raise TypeError(f"Activation signed flag must be a bool, not {self.signed!r}")
        if not isinstance(self.bipolar, bool):
            raise TypeError(f"Activation bipolar flag must be a bool, not {self.bipolar!r}")
        if self.bipolar and (self.bits, self.signed, self.frac) != (1, False, 0):
            raise ValueError(f"A bipolar activation format has bits=1, signed=False, frac=0, "
                             f"not bits={self.bits}, signed={self.signed}, frac={self.frac}")

    def value(self, code):
        """The integers a consumer's arithmetic sees for ``code`` (int64): ``2*code - 1`` for
        bipolar, the code itself otherwise."""
        code = np.asarray(code, dtype=np.int64)
        return 2 * code - 1 if self.bipolar else code

    @property
    def value_lo(self) -> int:
        return -1 if self.bipolar else self.lo

    @property
    def value_hi(self) -> int:
        return 1 if self.bipolar else self.hi

    @property
    def lo(self) -> int:
        return -(1 << (self.bits - 1)) if self.signed else 0

    @property
    def hi(self) -> int:
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1

    def to_json(self):
        d = {"bits": self.bits, "signed": self.signed, "frac": self.frac}
        if self.bipolar:
            d["bipolar"] = True
        return d

    @classmethod
    def from_json(cls, d):
        return cls(bits=int(d["bits"]), signed=bool(d["signed"]), frac=int(d["frac"]),
                   bipolar=bool(d.get("bipolar", False)))


#: The bipolar 1-bit format (BNN activations): code 1 = +1, code 0 = -1.
BIPOLAR = ActFormat(1, False, 0, bipolar=True)


#: MVU dot engines a layer can be built with (:attr:`Fold.engine`): ``plain``, its kind's own
#: engine; ``memo``, :class:`hwquant.hw.memo.MemoEngine` (value-grouped sums, one product per
#: distinct weight value; :mod:`hwquant.memo`). An implementation choice: the integer
#: semantics of the layer do not depend on it.
ENGINES = ("plain", "memo")


@dataclass(frozen=True)
class Fold:
    """MVU folding: ``pe`` output channels and ``simd`` input elements per cycle, the dot
    engine (one of :data:`ENGINES`) that computes them, and ``stages``, the pipeline register
    cuts inside that engine (0: combinational). Only an engine built as a constant-matrix
    adder graph (a fully unrolled layer, :func:`hwquant.engine_stages.engine_graph`) can be
    cut; each cut adds a cycle to the MVU's latency (:mod:`hwquant.engine_stages`).

    ``lane_pairs`` is a form of the folded ``memo`` engine: its ``+-A`` PEs read their signed
    sums from the beat's shared lane pairs (True, fewer LUTs where a LUT has four inputs) or
    sum their lanes as AND-gated groups (False, where the gate folds into an adder's LUT6);
    the compiler picks the cheaper for the family (:func:`hwquant.engines.choose_engines`).
    Ignored by every other engine."""

    pe: int = 1
    simd: int = 1
    engine: str = "plain"
    stages: int = 0
    lane_pairs: bool = True

    def __post_init__(self):
        for name in ("pe", "simd"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"Fold {name.upper()} must be a positive integer, not {v!r}")
        v = self.stages
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise ValueError(f"Fold engine stages must be a non-negative integer, not {v!r}")
        if self.engine not in ENGINES:
            raise ValueError(f"Fold engine must be one of {', '.join(ENGINES)}, not "
                             f"{self.engine!r}")
        if not isinstance(self.lane_pairs, bool):
            raise TypeError(f"Fold lane_pairs must be True or False, not {self.lane_pairs!r}")


@dataclass(frozen=True, eq=False)
class Requant:
    """``Y = sat(rshift_rhu((ACC + B) * multiplier[c], shift), lo, hi)`` per output channel.

    ``multiplier`` is a per-channel signed integer array (all ones for the power-of-two case);
    ``shift`` may be negative (a left shift). ReLU is ``lo = 0``. Also the epilogue of
    :class:`AvgPool2d`, with a single multiplier.
    """

    multiplier: np.ndarray
    shift: int
    lo: int
    hi: int

    def __post_init__(self):
        object.__setattr__(self, "multiplier", _frozen_int_array(self.multiplier, "multiplier",
                                                                 ndim=1))
        for what in ("shift", "lo", "hi"):
            object.__setattr__(self, what, _integer(getattr(self, what),
                                                    f"Requantization {what}"))
        if self.lo > self.hi:
            raise ValueError(f"Requantization bounds are empty: lo={self.lo} > hi={self.hi}")
        if abs(self.shift) > REQUANT_MAX_SHIFT:
            raise ValueError(f"Requantization shift must be within +-{REQUANT_MAX_SHIFT}, "
                             f"not {self.shift}")
        if max(abs(self.lo), abs(self.hi)) >= 1 << MAX_BITS:
            raise ValueError(f"Requantization bounds must fit {MAX_BITS} bits, not "
                             f"[{self.lo}, {self.hi}]")

    @property
    def is_shift_only(self) -> bool:
        return bool(np.all(self.multiplier == 1))

    def check(self, layer) -> None:
        """Raise ``ValueError`` naming ``layer`` unless this epilogue fits it."""
        if self.multiplier.shape != (layer.out_channels,):
            raise ValueError(f"Layer '{layer.name}': requant multiplier must have one entry per "
                             f"output channel")


@dataclass(frozen=True, eq=False)
class Thresholds:
    """Multi-threshold epilogue: ``Y[c] = lo + #{t : d[c]*(ACC + B)[c] >= d[c]*T[c, t]}``.

    ``lo`` is the layer's ``out_format.lo`` and ``d = direction``: ``+1`` compares
    ``ACC + B >= T`` (BatchNorm with a positive gamma), ``-1`` compares ``ACC + B <= T``
    (negative gamma). ``thresholds`` is ``(out_channels, T)`` int64, each row non-decreasing,
    ``1 <= T <= out_format.hi - out_format.lo`` (one threshold for a 1-bit output, ``2**N - 1``
    for an ``N``-bit one). For a bipolar 1-bit output the count 0/1 is the bit code (``-1``/``+1``).
    A constant channel (gamma = 0) uses thresholds outside the accumulator range: all below it
    (with ``d = +1``) count every threshold, all above it count none.
    """

    thresholds: np.ndarray
    direction: np.ndarray

    def __post_init__(self):
        object.__setattr__(self, "thresholds", _frozen_int_array(self.thresholds, "thresholds",
                                                                 ndim=2))
        object.__setattr__(self, "direction", _frozen_int_array(self.direction, "direction",
                                                                ndim=1))

    @property
    def count(self) -> int:
        """Thresholds per channel."""
        return int(self.thresholds.shape[1])

    def check(self, layer) -> None:
        """Raise ``ValueError`` naming ``layer`` unless this epilogue fits it."""
        oc, name = layer.out_channels, layer.name
        if self.thresholds.shape[0] != oc or self.count < 1:
            raise ValueError(f"Layer '{name}': thresholds must have shape ({oc}, T) with T >= 1, "
                             f"not {self.thresholds.shape}")
        if self.direction.shape != (oc,):
            raise ValueError(f"Layer '{name}': threshold direction must have shape ({oc},), "
                             f"not {self.direction.shape}")
        if not np.all(np.abs(self.direction) == 1):
            raise ValueError(f"Layer '{name}': threshold directions must be +1 or -1, not "
                             f"{sorted(set(self.direction.tolist()) - {1, -1})}")
        levels = layer.out_format.hi - layer.out_format.lo
        if self.count > levels:
            raise ValueError(f"Layer '{name}': {self.count} thresholds per channel do not fit "
                             f"output format {layer.out_format} (at most {levels})")
        if np.any(np.diff(self.thresholds, axis=1) < 0):
            raise ValueError(f"Layer '{name}': thresholds must be non-decreasing per channel")
        if self.thresholds.size and np.abs(self.thresholds).max() >= 1 << (MAX_BITS - 1):
            raise ValueError(f"Layer '{name}': thresholds must be {MAX_BITS}-bit signed integers")


@dataclass(frozen=True, eq=False)
class Logits:
    """Logits epilogue of the last layer: ``Y[c] = (ACC + B)[c]``, or ``(ACC + B)[c] * scale[c]``
    with a per-class positive integer ``scale`` (classes whose weights carry different real
    scales, so that ``argmax`` compares like with like). ``scale=None`` is the identity.
    """

    scale: np.ndarray | None = None

    def __post_init__(self):
        if self.scale is not None:
            object.__setattr__(self, "scale", _frozen_int_array(self.scale, "scale", ndim=1))

    def check(self, layer) -> None:
        """Raise ``ValueError`` naming ``layer`` unless this epilogue fits it."""
        if self.scale is None:
            return
        if self.scale.shape != (layer.out_channels,):
            raise ValueError(f"Layer '{layer.name}': logits scale must have shape "
                             f"({layer.out_channels},), not {self.scale.shape}")
        if np.any(self.scale < 1) or np.any(self.scale >= 1 << 16):
            raise ValueError(f"Layer '{layer.name}': logits scales must be integers in "
                             f"1..65535")


#: Epilogue types of a weight layer (``hwquant.epilogues`` names each one's faces).
EPILOGUES = (Requant, Thresholds, Logits)
Epilogue = Requant | Thresholds | Logits


# -- per-kind weight data -------------------------------------------------------------------
#
# Each weight encoding has one frozen dataclass holding what its arithmetic needs beyond the
# integer weights (``kind_data`` of a weight layer). Its ``check(layer)`` validates the layer's
# weights for the kind. Fields are ints, bools, strings, None, (nested) tuples of those, or
# int64 arrays: ``hwquant.hwq`` serialises them generically, so a new kind adds its class to
# :data:`KIND_DATA` and a row to ``hwquant.kinds``, and nothing else.


@dataclass(frozen=True)
class FixedData:
    """``fixed`` weights: signed ``weight_bits``-bit integers, no further data."""

    def check(self, layer) -> None:
        wlo, whi = -(1 << (layer.weight_bits - 1)), (1 << (layer.weight_bits - 1)) - 1
        if layer.weight.size and (layer.weight.min() < wlo or layer.weight.max() > whi):
            raise ValueError(f"Layer '{layer.name}': weights exceed {layer.weight_bits}-bit "
                             f"range")


@dataclass(frozen=True)
class Pow2Data:
    """``pow2`` weights: zero, ``+P * 2**e`` or ``-N * 2**e``, ``sign_scales = (P, N)``.

    ``(1, 1)`` for INQ and TWN; two integers for asymmetric ternary (TTQ) layers.
    """

    sign_scales: tuple = (1, 1)

    def __post_init__(self):
        scales = tuple(self.sign_scales)
        if len(scales) != 2 or not all(isinstance(v, (int, np.integer))
                                       and not isinstance(v, bool) for v in scales):
            raise TypeError(f"Sign scales must be two integers, not {self.sign_scales!r}")
        object.__setattr__(self, "sign_scales", tuple(int(v) for v in scales))

    def check(self, layer) -> None:
        lo_b, hi_b = POW2_BITS
        name, bits = layer.name, layer.weight_bits
        if not lo_b <= bits <= hi_b:
            raise ValueError(f"Layer '{name}': pow2 weights need {lo_b}..{hi_b} code bits, "
                             f"not {bits}")
        p, n = self.sign_scales
        if not (1 <= p < 1 << 16 and 1 <= n < 1 << 16):
            raise ValueError(f"Layer '{name}': sign_scales must be two integers in "
                             f"1..65535, not {self.sign_scales}")
        w = layer.weight
        mag = np.where(w > 0, w // p, np.where(w < 0, -w // n, 0))
        exact = np.where(w > 0, w % p == 0, np.where(w < 0, (-w) % n == 0, True))
        emax = (1 << (bits - 2)) - 1
        # Exponents beyond MAX_BITS can never fit an accumulator (8-bit codes allow 63).
        ok = exact & ((mag == 0) | ((mag & (mag - 1)) == 0)) & (mag <= 1 << min(emax, MAX_BITS))
        if not ok.all():
            bad = int(w.flat[int(np.argmin(ok.ravel()))])
            raise ValueError(f"Layer '{name}': weight {bad} is not 0, +{p}*2^e or -{n}*2^e "
                             f"with e in 0..{emax} ({bits}-bit pow2 code)")


@dataclass(frozen=True)
class BinaryData:
    """``binary`` weights: every weight is ``-1`` or ``+1`` (BNN, XNOR-Net), stored with
    ``weight_bits = 1`` (one code bit per weight, ``1`` for ``+1``). No further data: a
    per-channel scale (XNOR-Net's alpha) folds into the epilogue."""

    def check(self, layer) -> None:
        if layer.weight_bits != 1:
            raise ValueError(f"Layer '{layer.name}': binary weights take weight_bits=1 (one "
                             f"code bit per weight), not {layer.weight_bits}")
        w = layer.weight
        ok = (w == 1) | (w == -1)
        if not ok.all():
            bad = int(w.flat[int(np.argmin(ok.ravel()))])
            raise ValueError(f"Layer '{layer.name}': binary weights must be -1 or +1, not {bad}")


@dataclass(frozen=True)
class BitmaskData:
    """``bitmask`` weights: ``weight_bits``-bit sign-magnitude fixed point under a per-layer
    bit mask (:mod:`hwquant.bitmask`): every weight is ``±(sum of 2**k over active positions
    k it sets)``. ``pattern`` is the mask in pattern notation (``X0.0XX``; a paper code such
    as ``5_2_0_1_0`` is accepted and stored as its pattern); its span must be
    ``weight_bits`` and its fraction bits ``weight_frac``. ``None``: every magnitude bit
    active (plain sign-magnitude)."""

    pattern: str | None = None

    def __post_init__(self):
        if self.pattern is not None:
            from .bitmask import parse

            object.__setattr__(self, "pattern", parse(self.pattern).pattern)

    def mask(self, layer):
        """The layer's :class:`hwquant.bitmask.Mask`."""
        from .bitmask import full_mask, parse

        if self.pattern is None:
            return full_mask(layer.weight_bits, min(max(layer.weight_frac, 0),
                                                    layer.weight_bits - 1))
        return parse(self.pattern)

    def check(self, layer) -> None:
        name = layer.name
        if not 2 <= layer.weight_bits <= 16:
            raise ValueError(f"Layer '{name}': bitmask weights span 2..16 bits, not "
                             f"{layer.weight_bits}")
        mask = self.mask(layer)
        if self.pattern is not None and (mask.span != layer.weight_bits
                                         or mask.frac != layer.weight_frac):
            raise ValueError(f"Layer '{name}': bit mask {mask.pattern} is a {mask.span}-bit "
                             f"format with {mask.frac} fraction bits; the layer has "
                             f"weight_bits={layer.weight_bits}, weight_frac={layer.weight_frac}")
        ok = mask.representable(layer.weight) & (np.abs(layer.weight) <= mask.max_magnitude)
        if not ok.all():
            bad = int(layer.weight.flat[int(np.argmin(ok.ravel()))])
            raise ValueError(f"Layer '{name}': weight {bad} is not representable under the bit "
                             f"mask {mask.pattern} (integer magnitudes from bits "
                             f"{', '.join(f'2^{k}' for k in reversed(mask.active))})")


@dataclass(frozen=True)
class TemplateData:
    """``template`` weights (:mod:`hwquant.templates`): a conv layer whose channels are either
    HLAC template kernels or plain ``fixed`` weights. ``template_ids[c]`` is the 0-based HLAC
    mask of channel ``c`` (``-1``: a ``fixed`` channel, signed ``weight_bits``-bit integers),
    ``signs[c]`` is ``+1`` or ``-1``; a template channel's weights are exactly
    ``signs[c] * (2 * mask - 1)`` on every input channel (its real magnitude ``a`` is in the
    requantization multiplier). ``ACC = signs[c] * (2 * sum_on X - sum X)`` for a template
    channel (``docs/arithmetic.md``, "Template kernels")."""

    template_ids: tuple = ()
    signs: tuple = ()

    def __post_init__(self):
        object.__setattr__(self, "template_ids", _integers(self.template_ids, "Template ids"))
        object.__setattr__(self, "signs", _integers(self.signs, "Template signs"))

    def is_template(self, c: int) -> bool:
        return self.template_ids[c] >= 0

    def check(self, layer) -> None:
        from .templates import HLAC_MASKS, masks

        name, oc = layer.name, layer.out_channels
        if not isinstance(layer, Conv2d) or layer.weight.ndim != 4:
            raise ValueError(f"Layer '{name}': template kernels belong to a conv layer")
        if layer.kernel != (3, 3):
            raise ValueError(f"Layer '{name}': template kernels are 3x3, not "
                             f"{layer.kernel[0]}x{layer.kernel[1]}")
        if layer.in_format.bipolar:
            raise ValueError(f"Layer '{name}': template kernels need multi-bit inputs, not "
                             f"bipolar ones")
        if len(self.template_ids) != oc or len(self.signs) != oc:
            raise ValueError(f"Layer '{name}': template ids and signs need one entry per "
                             f"output channel ({oc})")
        if not 2 <= layer.weight_bits <= 16:
            raise ValueError(f"Layer '{name}': template layers take 2..16-bit weights, not "
                             f"{layer.weight_bits}")
        n = len(HLAC_MASKS)
        if any(not -1 <= t < n for t in self.template_ids):
            raise ValueError(f"Layer '{name}': template ids must be -1 (fixed) or 0..{n - 1}")
        if any(s not in (1, -1) for s in self.signs):
            raise ValueError(f"Layer '{name}': template signs must be +1 or -1")
        if all(t < 0 for t in self.template_ids):
            raise ValueError(f"Layer '{name}': a template layer needs a template channel")
        wlo, whi = -(1 << (layer.weight_bits - 1)), (1 << (layer.weight_bits - 1)) - 1
        table = masks()
        for c, (t, s) in enumerate(zip(self.template_ids, self.signs, strict=True)):
            w = layer.weight[c]
            if t >= 0:
                want = s * (2 * table[t] - 1)
                if not np.all(w == want):
                    raise ValueError(f"Layer '{name}': channel {c} is not template {t} "
                                     f"({HLAC_MASKS[t]}, sign {s:+d}): its weights must be "
                                     f"{s:+d} on the mask and {-s:+d} off it on every input "
                                     f"channel")
            elif w.min() < wlo or w.max() > whi:
                raise ValueError(f"Layer '{name}': channel {c}'s weights exceed "
                                 f"{layer.weight_bits}-bit range")


#: Activation range modes of the ``bdcnn`` kind (``docs/arithmetic.md``).
BDCNN_RANGES = ("static", "sample")


@dataclass(frozen=True)
class BdcnnData:
    """``bdcnn`` weights (Binarized-DCNN): every output channel's weights are signed sums of
    ``basis`` integer coefficients, ``W[n, i] = sum_a C[n, a] * M[n, a, i]``, ``M`` in
    ``{-1, +1}`` (the layer's ``weight`` holds the sums, at scale ``2**-weight_frac``;
    ``coefficients`` is ``C``, ``(OC, basis)`` nested tuples of ``coef_bits``-bit signed
    integers). ``M`` is the canonical one of :func:`hwquant.bdcnn.canonical_patterns`. The
    input is split into ``qbits`` bit planes of ``q = X - in_format.lo`` (static range: the
    input format's own minimum and step; ``docs/arithmetic.md``). ``range="sample"``: the
    planes are those of the per-sample quantization of the whole input map
    (:func:`hwquant.golden.bdcnn.sample_acc`), the input any unsigned or signed format."""

    basis: int = 1
    qbits: int = 8
    coef_bits: int = 8
    coefficients: tuple = ()
    range: str = "static"

    def __post_init__(self):
        for what in ("basis", "qbits", "coef_bits"):
            object.__setattr__(self, what, _integer(getattr(self, what), f"bdcnn {what}"))
        rows = tuple(_integers(r, "bdcnn coefficients") for r in self.coefficients)
        object.__setattr__(self, "coefficients", rows)
        if self.range not in BDCNN_RANGES:
            raise ValueError(f"bdcnn range must be one of {', '.join(BDCNN_RANGES)}, not "
                             f"{self.range!r}")

    def check(self, layer) -> None:
        name, k = layer.name, self.basis
        if not 1 <= k <= 8:
            raise ValueError(f"Layer '{name}': bdcnn basis count must be in 1..8, not {k}")
        if k >= layer.fan_in:
            raise ValueError(f"Layer '{name}': bdcnn needs fewer bases than weights per neuron "
                             f"(K={k}, D={layer.fan_in})")
        if not 2 <= self.coef_bits <= 16:
            raise ValueError(f"Layer '{name}': bdcnn coefficient width must be in 2..16, not "
                             f"{self.coef_bits}")
        fmt = layer.in_format
        if self.range == "sample":
            if fmt.bipolar or not 2 <= self.qbits <= 8:
                raise ValueError(f"Layer '{name}': bdcnn with a per-sample range quantizes a "
                                 f"non-bipolar input to 2..8 bit planes, not {self.qbits} of "
                                 f"{fmt}")
        elif fmt.bipolar or fmt.bits != self.qbits:
            raise ValueError(f"Layer '{name}': bdcnn with {self.qbits} bit planes reads a "
                             f"{self.qbits}-bit input, not {fmt}")
        c = np.array(self.coefficients, dtype=np.int64).reshape(-1, k) if self.coefficients \
            else np.zeros((0, k), dtype=np.int64)
        if c.shape != (layer.out_channels, k):
            raise ValueError(f"Layer '{name}': bdcnn coefficients must have shape "
                             f"({layer.out_channels}, {k}), not {c.shape}")
        lim = 1 << (self.coef_bits - 1)
        if c.size and (c.min() < -lim or c.max() >= lim):
            raise ValueError(f"Layer '{name}': bdcnn coefficients exceed {self.coef_bits} bits")
        from .bdcnn import canonical_patterns

        try:
            canonical_patterns(layer.weight_matrix(), c)
        except ValueError as exc:
            raise ValueError(f"Layer '{name}': {exc}") from None


#: The kind-data class of every weight encoding the IR knows (one arithmetic kind each;
#: ``hwquant.kinds`` names its faces).
KIND_DATA = {"fixed": FixedData, "pow2": Pow2Data, "binary": BinaryData,
             "bitmask": BitmaskData, "template": TemplateData, "bdcnn": BdcnnData}

#: Weight encodings the IR knows.
ENCODINGS = tuple(KIND_DATA)


@dataclass(frozen=True, eq=False)
class _WeightLayerBase:
    name: str
    inputs: tuple
    in_format: ActFormat
    #: Integer weights; value = weight * 2**-weight_frac.
    weight: np.ndarray
    weight_bits: int
    weight_frac: int
    #: Integer bias at accumulator scale 2**-(in_format.frac + weight_frac).
    bias: np.ndarray
    #: What turns ``ACC + B`` into the output: :class:`Requant`, :class:`Thresholds` or
    #: :class:`Logits` (last layer only). ``None`` is accepted as shorthand for ``Logits()``.
    epilogue: Epilogue
    out_format: ActFormat
    encoding: str = "fixed"
    fold: Fold = field(default_factory=Fold)
    #: What the encoding needs beyond the integers: an instance of ``KIND_DATA[encoding]``
    #: (e.g. :class:`Pow2Data`); ``None`` is that class's default.
    kind_data: object = None

    @property
    def out_channels(self) -> int:
        return int(self.weight.shape[0])

    @property
    def requant(self) -> Requant | None:
        """The epilogue if it is a :class:`Requant`, else ``None`` (read-only compatibility
        view for readers written before :attr:`epilogue`)."""
        return self.epilogue if isinstance(self.epilogue, Requant) else None

    @property
    def fan_in(self) -> int:
        return int(np.prod(self.weight.shape[1:]))

    def weight_matrix(self) -> np.ndarray:
        """Weights as ``(out_channels, fan_in)`` in the layer's natural (torch) order."""
        return self.weight.reshape(self.out_channels, -1)

    def _check_weights(self):
        where = f"Layer '{self.name}'"
        _check_type(self.in_format, ActFormat, f"{where}: input format")
        _check_type(self.out_format, ActFormat, f"{where}: output format")
        _check_type(self.fold, Fold, f"{where}: fold")
        _check_type(self.encoding, str, f"{where}: weight encoding")
        for what in ("weight_bits", "weight_frac"):
            object.__setattr__(self, what, _integer(getattr(self, what), f"{where}: {what}"))
        object.__setattr__(self, "weight", _frozen_int_array(self.weight, f"{self.name}.weight"))
        if self.weight.ndim < 2 or 0 in self.weight.shape:
            raise ValueError(f"{where}: weights must be a non-empty (OUT, IN) or (OC, IC, KH, "
                             f"KW) array, not shape {self.weight.shape}")
        object.__setattr__(self, "bias", _frozen_int_array(self.bias, f"{self.name}.bias", ndim=1))
        if self.encoding not in KIND_DATA:
            raise ValueError(f"Layer '{self.name}': weight encoding must be one of "
                             f"{', '.join(KIND_DATA)}, not {self.encoding!r}")
        if not 1 <= self.weight_bits <= 32:
            raise ValueError(f"Layer '{self.name}': weight width must be in 1..32, "
                             f"not {self.weight_bits}")
        data_cls = KIND_DATA[self.encoding]
        if self.kind_data is None:
            object.__setattr__(self, "kind_data", data_cls())
        if type(self.kind_data) is not data_cls:
            raise TypeError(f"Layer '{self.name}': {self.encoding} weights take "
                            f"{data_cls.__name__} kind data, not "
                            f"{type(self.kind_data).__name__}")
        self.kind_data.check(self)
        if self.bias.shape != (self.out_channels,):
            raise ValueError(f"Layer '{self.name}': bias must have shape ({self.out_channels},), "
                             f"not {self.bias.shape}")
        if self.epilogue is None:
            object.__setattr__(self, "epilogue", Logits())
        if not isinstance(self.epilogue, EPILOGUES):
            raise TypeError(f"Layer '{self.name}': epilogue must be one of "
                            f"{', '.join(t.__name__ for t in EPILOGUES)}, not "
                            f"{type(self.epilogue).__name__}")
        self.epilogue.check(self)
        if self.out_format.bipolar and not isinstance(self.epilogue, Thresholds):
            raise ValueError(f"Layer '{self.name}': a bipolar output needs a Thresholds "
                             f"epilogue, not {type(self.epilogue).__name__}")
        if self.out_channels % self.fold.pe or self.fan_in % self.fold.simd:
            raise ValueError(f"Layer '{self.name}': PE={self.fold.pe} must divide "
                             f"{self.out_channels} output channels and SIMD={self.fold.simd} "
                             f"must divide fan-in {self.fan_in}")

    @property
    def acc_frac(self) -> int:
        return self.in_format.frac + self.weight_frac


@dataclass(frozen=True, eq=False)
class Conv2d(_WeightLayerBase):
    """2-D convolution, groups=1. ``weight`` is ``(OC, IC, KH, KW)``; ``in_shape`` is (C, H, W)."""

    in_shape: tuple = ()
    stride: tuple = (1, 1)
    padding: tuple = (0, 0)

    def __post_init__(self):
        object.__setattr__(self, "stride", _pair(self.stride, f"Layer '{self.name}': stride"))
        object.__setattr__(self, "padding", _pair(self.padding, f"Layer '{self.name}': padding"))
        object.__setattr__(self, "in_shape", _integers(self.in_shape,
                                                       f"Layer '{self.name}': input shape"))
        self._check_weights()
        if self.weight.ndim != 4:
            raise ValueError(f"Layer '{self.name}': conv weight must be 4-D (OC, IC, KH, KW)")
        if len(self.in_shape) != 3 or self.in_shape[0] != self.weight.shape[1]:
            raise ValueError(f"Layer '{self.name}': input shape {self.in_shape} does not match "
                             f"weight input channels {self.weight.shape[1]}")
        if min(self.stride) < 1 or min(self.padding) < 0:
            raise ValueError(f"Layer '{self.name}': stride must be >= 1 and padding >= 0")
        oh, ow = self.out_shape[1:]
        if oh < 1 or ow < 1:
            raise ValueError(f"Layer '{self.name}': kernel {self.kernel} does not fit input "
                             f"{self.in_shape[1:]} with padding {self.padding}")

    @property
    def kernel(self) -> tuple:
        return (int(self.weight.shape[2]), int(self.weight.shape[3]))

    @property
    def out_shape(self) -> tuple:
        _, h, w = self.in_shape
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.padding
        return (self.out_channels, (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1)


@dataclass(frozen=True, eq=False)
class Linear(_WeightLayerBase):
    """Fully connected layer on a vector; ``weight`` is ``(OUT, IN)``."""

    def __post_init__(self):
        self._check_weights()
        if self.weight.ndim != 2:
            raise ValueError(f"Layer '{self.name}': linear weight must be 2-D (OUT, IN)")

    @property
    def in_shape(self) -> tuple:
        return (self.fan_in,)

    @property
    def out_shape(self) -> tuple:
        return (self.out_channels,)


@dataclass(frozen=True)
class _PoolBase:
    name: str
    inputs: tuple
    in_shape: tuple
    kernel: tuple
    stride: tuple
    padding: tuple
    in_format: ActFormat

    def _check_geometry(self):
        for what in ("kernel", "stride", "padding"):
            object.__setattr__(self, what, _pair(getattr(self, what),
                                                 f"Layer '{self.name}': {what}"))
        object.__setattr__(self, "in_shape", _integers(self.in_shape,
                                                       f"Layer '{self.name}': input shape"))
        _check_type(self.in_format, ActFormat, f"Layer '{self.name}': input format")
        if len(self.in_shape) != 3:
            raise ValueError(f"Layer '{self.name}': input shape must be (C, H, W), not "
                             f"{self.in_shape}")
        if min(self.kernel) < 1 or min(self.stride) < 1 or min(self.padding) < 0:
            raise ValueError(f"Layer '{self.name}': kernel and stride must be >= 1, padding >= 0")
        if self.padding[0] * 2 > self.kernel[0] or self.padding[1] * 2 > self.kernel[1]:
            raise ValueError(f"Layer '{self.name}': padding {self.padding} must be at most half "
                             f"the kernel {self.kernel}")
        if self.out_shape[1] < 1 or self.out_shape[2] < 1:
            raise ValueError(f"Layer '{self.name}': window {self.kernel} does not fit input "
                             f"{self.in_shape[1:]}")

    @property
    def out_shape(self) -> tuple:
        c, h, w = self.in_shape
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.padding
        return (c, (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1)


@dataclass(frozen=True)
class MaxPool2d(_PoolBase):
    """Max over each window; padded positions hold ``in_format.lo`` (never win unless all are)."""

    def __post_init__(self):
        self._check_geometry()

    @property
    def out_format(self) -> ActFormat:
        return self.in_format


@dataclass(frozen=True, eq=False)
class AvgPool2d(_PoolBase):
    """Window sum (padding counts as zeros, torch ``count_include_pad=True``) then requantized:
    ``Y = sat(rshift_rhu(SUM * multiplier[0], shift), lo, hi)`` with one shared multiplier."""

    out_format: ActFormat = None
    requant: Requant = None

    def __post_init__(self):
        self._check_geometry()
        if self.out_format is None or self.requant is None:
            raise ValueError(f"Layer '{self.name}': average pooling needs out_format and requant")
        _check_type(self.out_format, ActFormat, f"Layer '{self.name}': output format")
        _check_type(self.requant, Requant, f"Layer '{self.name}': requant")
        if self.requant.multiplier.shape != (1,):
            raise ValueError(f"Layer '{self.name}': average pooling takes one multiplier")
        if self.in_format.bipolar or self.out_format.bipolar:
            raise ValueError(f"Layer '{self.name}': average pooling of bipolar activations is "
                             f"not defined")


@dataclass(frozen=True)
class Flatten:
    """(C, H, W) -> (C*H*W,) in torch (channel-major) order."""

    name: str
    inputs: tuple
    in_shape: tuple
    in_format: ActFormat

    def __post_init__(self):
        object.__setattr__(self, "in_shape", _integers(self.in_shape,
                                                       f"Layer '{self.name}': input shape"))
        _check_type(self.in_format, ActFormat, f"Layer '{self.name}': input format")

    @property
    def out_shape(self) -> tuple:
        return (int(np.prod(self.in_shape, dtype=object)),)

    @property
    def out_format(self) -> ActFormat:
        return self.in_format


@dataclass(frozen=True)
class Add:
    """Residual add: both operands shifted left to the finer scale, summed, then
    ``Y = sat(rshift_rhu(A' + B', f_fine - out_format.frac), lo, hi)``; ``relu`` sets lo = 0."""

    name: str
    inputs: tuple
    in_shape: tuple
    in_formats: tuple
    out_format: ActFormat
    relu: bool = False

    def __post_init__(self):
        object.__setattr__(self, "in_shape", _integers(self.in_shape,
                                                       f"Layer '{self.name}': input shape"))
        object.__setattr__(self, "in_formats", tuple(self.in_formats))
        for fmt in (*self.in_formats, self.out_format):
            _check_type(fmt, ActFormat, f"Layer '{self.name}': format")
        if not isinstance(self.relu, bool):
            raise TypeError(f"Layer '{self.name}': relu must be a bool, not {self.relu!r}")
        if len(self.inputs) != 2 or len(self.in_formats) != 2:
            raise ValueError(f"Layer '{self.name}': add takes exactly two inputs")
        if any(f.bipolar for f in (*self.in_formats, self.out_format)):
            raise ValueError(f"Layer '{self.name}': residual add of bipolar activations is not "
                             f"defined")

    @property
    def out_shape(self) -> tuple:
        return self.in_shape

    @property
    def fine_frac(self) -> int:
        return max(f.frac for f in self.in_formats)

    @property
    def lo(self) -> int:
        return max(0, self.out_format.lo) if self.relu else self.out_format.lo


WeightLayer = Conv2d | Linear
Layer = Conv2d | Linear | MaxPool2d | AvgPool2d | Flatten | Add
_LAYER_TYPES = (Conv2d, Linear, MaxPool2d, AvgPool2d, Flatten, Add)


def accumulator_range(layer: WeightLayer) -> tuple:
    """Worst-case ``(lo, hi)`` of ``ACC + B`` over all inputs in ``in_format``, per channel.

    Computed from the actual integer weights, so the accumulator width derived from it can never
    overflow. Returns two int64 arrays of shape ``(out_channels,)``.
    """
    return matrix_range(layer.weight_matrix(), layer.bias, layer.in_format)


def accumulator_bits(layer: WeightLayer) -> int:
    """Signed width holding ``ACC`` and ``ACC + B`` of every channel for every legal input of
    ``layer`` (the plain sum of products; the MVU's accumulators and epilogue input, and what
    the cost model counts)."""
    lo, hi = accumulator_range(layer)
    lo_nb, hi_nb = lo - layer.bias, hi - layer.bias
    return signed_bits_for(int(min(lo.min(), lo_nb.min())), int(max(hi.max(), hi_nb.max())))


def matrix_range(weight_matrix, bias, in_format: ActFormat) -> tuple:
    """Per-row ``(lo, hi)`` of ``W @ x + bias`` over every ``x`` in ``in_format`` (its
    values: ``-1``/``+1`` for a bipolar format)."""
    w = np.asarray(weight_matrix, dtype=np.int64)
    xlo, xhi = in_format.value_lo, in_format.value_hi
    lo = np.minimum(w * xlo, w * xhi).sum(axis=1) + bias
    hi = np.maximum(w * xlo, w * xhi).sum(axis=1) + bias
    # Padding inserts code 0: value 0 (inside [xlo, xhi] for every format we produce) or, for
    # a bipolar input, -1 = xlo.
    return lo, hi


@dataclass(frozen=True)
class Network:
    """A quantized network: input geometry and format, layers in topological order."""

    name: str
    input_shape: tuple
    input_format: ActFormat
    layers: tuple
    #: Free-form, JSON-serialisable provenance (method, dataset, accuracy, class names ...).
    metadata: dict = field(default_factory=dict, compare=False)

    def __post_init__(self):
        _check_type(self.name, str, "Network name")
        object.__setattr__(self, "input_shape", _integers(self.input_shape,
                                                          "Network input shape"))
        _check_type(self.input_format, ActFormat, "Network input format")
        _check_type(self.layers, (tuple, list), "Network layers")
        object.__setattr__(self, "layers", tuple(self.layers))
        _check_type(self.metadata, dict, "Network metadata")
        self.validate()

    # -- queries ---------------------------------------------------------------------------
    @property
    def output(self) -> Layer:
        return self.layers[-1]

    def layer(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"Network has no layer named {name!r}")

    @property
    def weight_layers(self) -> tuple:
        return tuple(layer for layer in self.layers if isinstance(layer, (Conv2d, Linear)))

    def consumers(self, name: str) -> tuple:
        return tuple(layer for layer in self.layers if name in layer.inputs)

    def shape_of(self, name: str) -> tuple:
        return self.input_shape if name == INPUT else self.layer(name).out_shape

    def format_of(self, name: str) -> ActFormat:
        return self.input_format if name == INPUT else self.layer(name).out_format

    def replace_layer(self, name: str, **changes) -> Network:
        layers = tuple(dataclasses.replace(layer, **changes) if layer.name == name else layer
                       for layer in self.layers)
        return dataclasses.replace(self, layers=layers)

    # -- validation ------------------------------------------------------------------------
    def validate(self) -> None:
        """Check names, topology, shapes and formats; raise ``ValueError`` naming the layer."""
        if not self.layers:
            raise ValueError("Network has no layers")
        if len(self.input_shape) not in (1, 3):
            raise ValueError(f"Network input shape must be (C, H, W) or (N,), "
                             f"not {self.input_shape}")
        seen = {INPUT}
        for layer in self.layers:
            if not isinstance(layer, _LAYER_TYPES):
                raise TypeError(f"Network layers must be IR layers, not {type(layer).__name__}")
            if not isinstance(layer.name, str) or not layer.name.isidentifier():
                raise ValueError(f"Layer name must be an identifier, not {layer.name!r}")
            if not isinstance(layer.inputs, tuple) \
                    or not all(isinstance(src, str) for src in layer.inputs):
                raise TypeError(f"Layer '{layer.name}': inputs must be a tuple of layer names, "
                                f"not {layer.inputs!r}")
            if layer.name in seen:
                raise ValueError(f"Layer name {layer.name!r} is used twice (or is reserved)")
            for src in layer.inputs:
                if src not in seen:
                    raise ValueError(f"Layer '{layer.name}' reads {src!r}, which is not "
                                     f"defined before it")
            shapes = [self.shape_of(src) for src in layer.inputs]
            formats = [self.format_of(src) for src in layer.inputs]
            if isinstance(layer, Add):
                if shapes[0] != shapes[1] or shapes[0] != layer.in_shape:
                    raise ValueError(f"Layer '{layer.name}': operand shapes {shapes} differ")
                if tuple(formats) != tuple(layer.in_formats):
                    raise ValueError(f"Layer '{layer.name}': operand formats do not match "
                                     f"their producers")
            else:
                if len(layer.inputs) != 1:
                    raise ValueError(f"Layer '{layer.name}' takes one input")
                if shapes[0] != layer.in_shape:
                    raise ValueError(f"Layer '{layer.name}': input shape {layer.in_shape} does "
                                     f"not match producer shape {shapes[0]}")
                if formats[0] != layer.in_format:
                    raise ValueError(f"Layer '{layer.name}': input format {layer.in_format} "
                                     f"does not match producer format {formats[0]}")
            if isinstance(layer, (Conv2d, Linear)) and isinstance(layer.epilogue, Logits) \
                    and layer is not self.layers[-1]:
                raise ValueError(f"Layer '{layer.name}': only the last layer may emit logits")
            seen.add(layer.name)
        for layer in self.layers[:-1]:
            if not self.consumers(layer.name):
                raise ValueError(f"Layer '{layer.name}' output is never used")
