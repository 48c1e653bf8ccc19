"""Quantization options: what the CLI flags select, validated before any work starts.

Torch-free, so the command line can build its parser and reject bad flags quickly.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field

from .. import ir
from .fixed import QuantizationError, check_bits

__all__ = ["QuantOptions", "RetrainConfig", "check_options", "check_portions", "METHODS",
           "METHOD_BITS", "DEFAULT_SCHEDULE", "DEFAULT_BITS", "SCHEDULES", "PARTITIONS",
           "DEFAULT_PORTIONS", "INQ_PORTIONS", "default_portions", "default_schedule",
           "FIXED_RETRAIN_BITS", "DEFAULT_GRANULARITY", "SCHEDULE_RETRAIN", "EDGE_LAYERS",
           "DEFAULT_EDGE_LAYERS", "HINT_DROP_POINTS", "accuracy_hint", "LAYER_BITS_METHODS",
           "EDGES", "parse_bits", "bits_label", "resolve_layer_bits", "OPTION_CHOICES"]

SCHEDULES = ("simple", "incremental", "layerwise")
PARTITIONS = ("magnitude", "random")
DEFAULT_PORTIONS = (0.5, 0.75, 0.875, 1.0)

#: INQ's accumulated portions per weight width: at 5 bits and more the paper's 5-bit list
#: (INQ §3.1); at 4 and 3 bits its 3-bit list, at 2 bits its 2-bit list (§3.3, ResNet-18).
#: The last step quantizes the remaining weights without retraining them; on the accuracy
#: regression suite's small models the paper's 4-bit list (last step 5 %, six steps) lost up
#: to 1.6 points at 4 bits, the eight-step list at most 0.7. (At 5 bits the six-step list
#: was no better than the four-step one: worst 0.9 against 0.7 points.)
INQ_PORTIONS = {
    5: DEFAULT_PORTIONS,
    4: (0.2, 0.4, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0),
    3: (0.2, 0.4, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0),
    2: (0.2, 0.4, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.975, 1.0),
}


def default_portions(bits: int) -> tuple:
    """INQ portions for ``bits``-bit weights (:data:`INQ_PORTIONS`; 5 and more: the 5-bit list)."""
    return INQ_PORTIONS[min(max(int(bits), 2), 5)]


#: Allowed weight widths per method.
METHOD_BITS = {"fixed": (2, 16), "inq": (2, 8), "ternary": (2, 2), "binary": (1, 1),
               "bitmask": (1, 16), "bdcnn": (1, 8)}


@dataclasses.dataclass
class RetrainConfig:
    """Retraining hyper-parameters (per retraining phase): Adam, cosine decay over the phase.

    ``epochs`` is the most a phase trains; after every epoch the golden-model-like forward
    (quantized weights and, with ``qat``, quantized activations) is scored by its loss on a
    validation split of ``val_fraction`` of the *training* images (never the test split); a
    phase stops
    after ``patience`` epochs without improvement and keeps its best epoch (or the state it
    started from, if no epoch beat it). ``qat``: activations pass through the golden model's
    fake-quantization while retraining. ``refit_channels``: after every quantization step each
    hidden layer's per-channel scale and bias are re-fitted on the calibration images so its
    pre-activations have the float model's per-channel mean and standard deviation (what
    re-estimating folded BatchNorm statistics means; ``docs/arithmetic.md``), then trained.

    ``epochs``, ``lr`` and ``patience`` left at None take the schedule's measured default
    (:data:`SCHEDULE_RETRAIN`; README, "Quantization defaults"): :meth:`resolved`."""

    epochs: int | None = None
    lr: float | None = None
    batch_size: int = 64
    weight_decay: float = 1e-4
    seed: int = 0
    progress: bool = True
    patience: int | None = None
    val_fraction: float = 0.15
    qat: bool = True
    refit_channels: bool = True

    def resolved(self, schedule) -> RetrainConfig:
        """This config with the unset fields taken from ``schedule``'s defaults."""
        base = SCHEDULE_RETRAIN.get(schedule, SCHEDULE_RETRAIN["incremental"])
        return dataclasses.replace(self, **{k: v for k, v in base.items()
                                            if getattr(self, k) is None})


#: Retraining defaults per schedule. The one phase of ``simple`` starts from every weight
#: quantized, far from the float optimum: a small step, longer, more patience. The phases of
#: ``incremental``/``layerwise`` retrain the float rest after a small step: a larger step,
#: shorter.
SCHEDULE_RETRAIN = {
    "simple": {"epochs": 30, "lr": 1e-3, "patience": 5},
    "incremental": {"epochs": 15, "lr": 1e-2, "patience": 3},
    "layerwise": {"epochs": 15, "lr": 1e-2, "patience": 3},
}


METHODS = ("fixed", "inq", "ternary", "binary", "bitmask", "bdcnn")
DEFAULT_SCHEDULE = {"fixed": None, "inq": "incremental", "ternary": "simple",
                    "binary": "simple", "bitmask": None, "bdcnn": None}
DEFAULT_BITS = {"fixed": 8, "inq": 5, "ternary": 2, "binary": 1, "bitmask": 3, "bdcnn": 6}
#: ``--method bitmask``: default span ``n`` (sign included), roundings, and the search budget
#: (evaluations beyond the same-pattern pass; :mod:`hwquant.quant.bitmask`).
BITMASK_SPAN = 8
BITMASK_ROUNDINGS = ("projection", "literal")
BITMASK_BUDGET = 500
#: ``--method binary``: activation widths (1 = bipolar), XNOR-Net scale choices, schedules,
#: and the default width of the network input (the first layer reads multi-bit pixels).
BINARY_ABITS = (1, 8)
BINARY_ALPHAS = ("none", "channel")
BINARY_SCHEDULES = ("simple", "none")
BINARY_INPUT_BITS = 8
#: Fixed-point weights of this width or fewer are retrained (``simple``) by default; wider
#: ones are post-training.
FIXED_RETRAIN_BITS = 4


#: Methods whose weight width can differ per layer (``--bits 4,conv1=8,edges=8``): the
#: others have one width (ternary 2, binary 1) or their own meaning of ``--bits`` (bitmask:
#: active bits, bdcnn: bases).
LAYER_BITS_METHODS = ("fixed", "inq")
#: The layer name of a per-layer width that means the first and the last conv/linear layer.
EDGES = "edges"


def parse_bits(text: str, sep: str = ","):
    """``(wbits, layer_bits)`` of a weight-width spec: ``B`` or ``B`` followed by per-layer
    widths ``LAYER=B`` (``sep``-separated; :data:`EDGES` names the first and the last
    conv/linear layer), e.g. ``4,conv2d_0=8,linear_6=8`` or ``4,edges=8``; ``layer_bits`` is
    None without per-layer widths. Raises :class:`QuantizationError` naming the bad part."""
    items = [t.strip() for t in str(text).split(sep)]
    example = f"4{sep}edges=8 or 4{sep}conv1=8{sep}fc=8"

    def width(value, what):
        try:
            return int(value)
        except ValueError:
            raise QuantizationError(f"{what} must be an integer, not {value!r} (a width spec "
                                    f"is B or B{sep}LAYER=B..., e.g. {example})") from None

    if not items or not items[0] or "=" in items[0]:
        raise QuantizationError(f"A weight-width spec starts with the width of every layer, "
                                f"then LAYER=B for the exceptions (e.g. {example}), not "
                                f"{text!r}")
    wbits = width(items[0], "Weight width")
    layers = {}
    for item in items[1:]:
        name, eq, value = item.partition("=")
        name = name.strip()
        if not eq or not name:
            raise QuantizationError(f"Per-layer weight widths are LAYER=B (e.g. {example}), "
                                    f"not {item!r}")
        if name in layers:
            raise QuantizationError(f"Layer '{name}' is given two weight widths in {text!r}")
        layers[name] = width(value.strip(), f"Weight width of layer '{name}'")
    return wbits, (layers or None)


def bits_label(wbits, layer_bits, sep: str = ",") -> str:
    """The canonical text of a width spec (:func:`parse_bits` reads it back): the width,
    then the per-layer widths in name order (``edges`` first)."""
    names = sorted(layer_bits or {}, key=lambda n: (n != EDGES, n))
    return sep.join([str(wbits), *(f"{n}={layer_bits[n]}" for n in names)])


def resolve_layer_bits(opts, names) -> dict:
    """``{layer: width}`` of every conv/linear layer in ``names`` (in order) for ``opts``:
    its ``wbits``, except where ``opts.layer_bits`` names the layer or :data:`EDGES` (the
    first and the last; a layer named explicitly wins over ``edges``). Raises
    :class:`QuantizationError` for a name that is not one of the model's weight layers, or a
    per-layer width on an edge layer that ``--edge-layers fixed8`` already sets."""
    names = list(names)
    given = dict(opts.layer_bits or {})
    unknown = sorted(set(given) - set(names) - {EDGES})
    if unknown:
        raise QuantizationError(f"--bits names {', '.join(repr(n) for n in unknown)}, not a "
                                f"conv/linear layer of the model (its weight layers: "
                                f"{', '.join(names)}; '{EDGES}': the first and the last)")
    widths = {n: opts.wbits for n in names}
    if EDGES in given and names:
        widths[names[0]] = widths[names[-1]] = given.pop(EDGES)
    widths.update(given)
    if opts.layer_bits and opts.resolved_edge_layers() == "fixed8":
        clash = [n for n in (names[0], names[-1]) if n in opts.layer_bits
                 or EDGES in opts.layer_bits]
        if clash:
            raise QuantizationError(f"Layer '{clash[0]}' gets 8-bit fixed point from "
                                    f"--edge-layers fixed8 and a width of its own from --bits; "
                                    f"give one of them")
    return widths


def default_schedule(method: str, bits: int):
    """The schedule a method uses at ``bits`` when none is given (None: post-training)."""
    if method == "fixed":
        return "simple" if bits <= FIXED_RETRAIN_BITS else None
    return DEFAULT_SCHEDULE[method]


@dataclass
class QuantOptions:
    """Everything that selects a quantization (CLI flags map one to one)."""

    method: str = "fixed"
    #: None: the method's default (:data:`DEFAULT_BITS`).
    wbits: int | None = None
    #: Per-layer weight widths ``{layer or "edges": bits}`` over ``wbits`` (fixed and inq,
    #: :data:`LAYER_BITS_METHODS`; :func:`resolve_layer_bits`); None: ``wbits`` everywhere.
    layer_bits: dict | None = None
    abits: int = 8
    #: None: the method's default at this width (:func:`default_schedule`); "none":
    #: post-training only.
    schedule: str | None = None
    #: None: INQ's portions for the weight width (:func:`default_portions`).
    portions: tuple | None = None
    partition: str = "magnitude"
    ternary: str = "twn"  # twn | ttq
    #: TWN α / INQ exponent range per layer or per output channel; None: the method's default
    #: (:data:`DEFAULT_GRANULARITY`). The logits layer always has one per layer.
    granularity: str | None = None
    tie: str = "paper"
    #: "same": every conv/linear layer with ``method``; "fixed8": the first and the last
    #: with 8-bit fixed-point weights (as TWN and TTQ keep them at full precision); None:
    #: the method's default (:data:`DEFAULT_EDGE_LAYERS`).
    edge_layers: str | None = None
    #: ``binary``: XNOR-Net per-output-channel weight scale, "none" or "channel".
    alpha: str = "none"
    #: ``binary``: width of the network input (None: :data:`BINARY_INPUT_BITS`); the other
    #: methods give the input ``abits`` bits.
    input_bits: int | None = None
    #: Calibrate activation ranges at this percentile of the magnitudes (in [50, 100]) instead
    #: of the maximum: outliers saturate, the rest keeps more resolution. None: the maximum.
    calib_percentile: float | None = None
    #: ``bitmask``: the span ``n`` (``wbits`` is the active bits ``m``, sign included), the
    #: rounding, masks fixed by hand (``conv1=X0.0XX,...``), one mask for all conv layers,
    #: and the search budget.
    span: int | None = None
    rounding: str = "projection"
    patterns: str | None = None
    same_pattern: bool = False
    search_budget: int = BITMASK_BUDGET
    #: ``bdcnn`` (``wbits`` is the basis count ``K``, ``abits`` the bit planes ``Q``): the
    #: coefficients' fixed-point width, the activation range mode, the restarts ``L``.
    coef_bits: int | None = None
    range_mode: str = "static"
    restarts: int = 10
    retrain: RetrainConfig = field(default_factory=RetrainConfig)

    def __post_init__(self):
        if self.wbits is None and self.method in DEFAULT_BITS:
            self.wbits = DEFAULT_BITS[self.method]

    def min_bits(self):
        """The narrowest weight width of any layer (``wbits`` and the per-layer widths): what
        the width-dependent defaults (schedule, INQ portions) follow."""
        widths = [w for w in (self.layer_bits or {}).values()
                  if isinstance(w, int) and not isinstance(w, bool)]
        if not isinstance(self.wbits, int) or isinstance(self.wbits, bool):
            return self.wbits
        return min([self.wbits, *widths])

    def resolved_schedule(self):
        if self.schedule is None:
            return default_schedule(self.method, self.min_bits()) \
                if self.method in METHODS else None
        return None if self.schedule == "none" else self.schedule

    def resolved_portions(self) -> tuple:
        return default_portions(self.min_bits()) if self.portions is None \
            else tuple(self.portions)

    def resolved_granularity(self) -> str:
        if self.granularity is not None:
            return self.granularity
        return DEFAULT_GRANULARITY.get((self.method, self.ternary), "layer")

    def resolved_span(self) -> int:
        return BITMASK_SPAN if self.span is None else self.span

    def resolved_coef_bits(self) -> int:
        from .bdcnn import DEFAULT_COEF_BITS

        return DEFAULT_COEF_BITS if self.coef_bits is None else self.coef_bits

    def resolved_input_bits(self) -> int:
        return BINARY_INPUT_BITS if self.input_bits is None else self.input_bits

    def resolved_edge_layers(self) -> str:
        if self.edge_layers is not None:
            return self.edge_layers
        return DEFAULT_EDGE_LAYERS.get(self.method, "same")

    def to_json(self) -> dict:
        d = {"method": self.method, "wbits": self.wbits, "abits": self.abits,
             "schedule": self.resolved_schedule() or "none"}
        if self.layer_bits:
            d["layer_bits"] = dict(self.layer_bits)
        if d["schedule"] == "incremental":
            d.update(portions=list(self.resolved_portions()), partition=self.partition)
        if self.method == "ternary":
            d.update(ternary=self.ternary, granularity=self.resolved_granularity())
        if self.method == "inq":
            d.update(tie=self.tie, granularity=self.resolved_granularity())
        if self.method == "fixed" and self.resolved_granularity() != "layer":
            d["granularity"] = self.resolved_granularity()
        if self.calib_percentile is not None:
            d["calib_percentile"] = self.calib_percentile
        if self.method == "bitmask":
            d.update(active=self.wbits, span=self.resolved_span(), rounding=self.rounding,
                     same_pattern=self.same_pattern, search_budget=self.search_budget)
            if self.patterns:
                d["patterns"] = self.patterns
        if self.method == "bdcnn":
            d.update(basis=self.wbits, qbits=self.abits, coef_bits=self.resolved_coef_bits(),
                     range=self.range_mode, restarts=self.restarts)
        if self.method == "binary":
            d.update(alpha=self.alpha, input_bits=self.resolved_input_bits(),
                     configuration=f"W1A{self.abits}")
        if self.resolved_edge_layers() != "same":
            d["edge_layers"] = self.resolved_edge_layers()
        if d["schedule"] != "none":
            r = self.retrain.resolved(d["schedule"])
            d["retrain"] = {"epochs": r.epochs, "lr": r.lr, "batch_size": r.batch_size,
                            "weight_decay": r.weight_decay, "seed": r.seed, "optimizer": "adam",
                            "patience": r.patience, "val_fraction": r.val_fraction,
                            "qat": r.qat, "refit_channels": r.refit_channels}
        return d


#: Weights of the first and last conv/linear layer per method when none is given.
DEFAULT_EDGE_LAYERS = {"ternary": "fixed8"}
EDGE_LAYERS = ("same", "fixed8")

#: The values each quantization option with a fixed set of them takes, by its command-line
#: name: the choices of ``hwquant quantize`` / ``compare`` and of ``hwquant sweep``'s method
#: specs (one table, so the two cannot drift apart).
OPTION_CHOICES = {
    "schedule": (*SCHEDULES, "none"),
    "partition": PARTITIONS,
    "ternary": ("twn", "ttq"),
    "scale": ("layer", "channel"),
    "edge-layers": EDGE_LAYERS,
    "tie": ("paper", "caffe"),
    "alpha": ("none", "channel"),
    "rounding": ("projection", "literal"),
    "range": ("static", "sample"),
}

#: Scale granularity per (method, ternary variant) when none is given.
DEFAULT_GRANULARITY = {("ternary", "twn"): "channel"}


def check_portions(portions) -> tuple | None:
    """Accumulated portions must increase strictly and end at 1.0 (INQ σ_1 < … < σ_N = 1).
    None (the width's default) passes."""
    if portions is None:
        return None
    try:
        p = tuple(float(v) for v in portions)
    except (TypeError, ValueError):
        raise QuantizationError(f"Portions must be numbers, not {portions!r}") from None
    if not p or p[-1] != 1.0 or any(b <= a for a, b in itertools.pairwise(p)) or p[0] <= 0:
        raise QuantizationError(f"Portions must increase strictly from above 0 and end at 1.0 "
                                f"(e.g. 0.5,0.75,0.875,1.0), not {','.join(map(str, p))}")
    return p


#: Retraining settings that differ per method (unless given): binary networks train long, in
#: small batches, with a larger step (measured on the digits default; README, "Binary
#: networks"). Binary training does not stop early.
METHOD_RETRAIN = {"binary": {"epochs": 100, "lr": 3e-2, "batch_size": 32}}


def retrain_config(method: str, *, epochs=None, lr=None, **fields) -> RetrainConfig:
    """The :class:`RetrainConfig` of ``method``: :data:`METHOD_RETRAIN` over the common
    defaults, ``epochs``/``lr`` (when not None) and ``fields`` over both."""
    values = {**METHOD_RETRAIN.get(method, {}), **fields}
    if epochs is not None:
        values["epochs"] = epochs
    if lr is not None:
        values["lr"] = lr
    return RetrainConfig(**values)


def _check_binary(opts) -> None:
    """``--method binary``: 1..8-bit activations, a known alpha, a multi-bit input."""
    lo, hi = BINARY_ABITS
    if isinstance(opts.abits, bool) or not isinstance(opts.abits, int) \
            or not lo <= opts.abits <= hi:
        raise QuantizationError(f"Activation width for binary must be an integer in {lo}..{hi} "
                                f"(1 = bipolar, BNN), not {opts.abits!r}")
    if opts.alpha not in BINARY_ALPHAS:
        raise QuantizationError(f"Binary weight scale --alpha must be one of "
                                f"{', '.join(BINARY_ALPHAS)}, not {opts.alpha!r}")
    bits = opts.input_bits
    if bits is not None and (isinstance(bits, bool) or not isinstance(bits, int)
                             or not 2 <= bits <= 16):
        raise QuantizationError(f"Input width --input-bits must be an integer in 2..16, not "
                                f"{bits!r}: the first layer of a binary network reads multi-bit "
                                f"input pixels (a binary input is not supported)")
    if getattr(opts, "edge_layers", None) not in (None, "same"):
        raise QuantizationError("--edge-layers applies to the multi-bit methods; --method binary "
                                "binarizes every layer's weights (the first reads multi-bit "
                                "input, the last produces logits)")
    schedule = opts.resolved_schedule() or "none"
    if schedule not in BINARY_SCHEDULES:
        raise QuantizationError(f"Binary networks retrain with the simple schedule (all layers "
                                f"binarized, straight-through estimator) or none, not "
                                f"{schedule!r}")


def _check_bitmask(opts) -> None:
    """``--method bitmask``: ``2 <= M <= N <= 16``, a known rounding, parsable patterns,
    post-training only."""
    from ..bitmask import SPAN_RANGE, parse

    m, n = opts.wbits, opts.resolved_span()
    if isinstance(n, bool) or not isinstance(n, int) or not SPAN_RANGE[0] <= n <= SPAN_RANGE[1]:
        raise QuantizationError(f"--span (bits of the masked format, sign included) must be an "
                                f"integer in {SPAN_RANGE[0]}..{SPAN_RANGE[1]}, not {n!r}")
    if isinstance(m, bool) or not isinstance(m, int):
        raise QuantizationError(f"--active must be an integer, not {m!r}")
    if m < 2:
        raise QuantizationError(f"--active (bits kept by the mask, sign included) must be at "
                                f"least 2 (the sign and one magnitude bit), not {m}")
    if m > n:
        raise QuantizationError(f"--active {m} is more than --span {n}: a mask keeps at most "
                                f"the {n} bits of the format")
    if opts.rounding not in BITMASK_ROUNDINGS:
        raise QuantizationError(f"--rounding must be one of {', '.join(BITMASK_ROUNDINGS)}, "
                                f"not {opts.rounding!r}")
    if opts.patterns:
        for item in str(opts.patterns).split(","):
            name, sep, pat = item.partition("=")
            if not sep or not name.strip():
                raise QuantizationError(f"--pattern entries are LAYER=PATTERN (e.g. "
                                        f"conv1=X0.0XX), not {item!r}")
            try:
                parse(pat.strip())
            except (TypeError, ValueError) as exc:
                raise QuantizationError(f"--pattern for layer '{name.strip()}': {exc}") from None
        if opts.same_pattern:
            raise QuantizationError("--same-pattern searches one mask for every conv layer; "
                                    "it cannot be combined with --pattern")
    b = opts.search_budget
    if isinstance(b, bool) or not isinstance(b, int) or b < 1:
        raise QuantizationError(f"--search-budget must be an integer >= 1, not {b!r}")
    if opts.resolved_schedule() is not None:
        raise QuantizationError("--method bitmask is post-training (no retraining); use "
                                "--schedule none or leave it unset")


def _check_bdcnn(opts) -> None:
    """``--method bdcnn``: ``K`` in 1..8, ``Q`` in 2..8, coefficients of 2..16 bits, the static
    or per-sample range, post-training only."""
    from .bdcnn import COEF_BITS_RANGE, QBITS_RANGE

    k, q, cb = opts.wbits, opts.abits, opts.resolved_coef_bits()
    for flag, v, (lo, hi) in (("--basis", k, METHOD_BITS["bdcnn"]), ("--qbits", q, QBITS_RANGE),
                              ("--coef-bits", cb, COEF_BITS_RANGE)):
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise QuantizationError(f"{flag} must be an integer in {lo}..{hi}, not {v!r}")
    if opts.range_mode not in ir.BDCNN_RANGES:
        raise QuantizationError(f"--range must be one of {', '.join(ir.BDCNN_RANGES)}, not "
                                f"{opts.range_mode!r}")
    if isinstance(opts.restarts, bool) or not isinstance(opts.restarts, int) \
            or opts.restarts < 1:
        raise QuantizationError(f"--restarts must be an integer >= 1, not {opts.restarts!r}")
    if opts.resolved_schedule() is not None:
        raise QuantizationError("--method bdcnn is post-training (no retraining); use "
                                "--schedule none or leave it unset")


def _check_layer_bits(opts, lo, hi) -> None:
    """Per-layer widths: only for :data:`LAYER_BITS_METHODS`, each in the method's range.
    (Whether the names are layers of the model is checked against the model,
    :func:`resolve_layer_bits`.)"""
    given = opts.layer_bits
    if not given:
        return
    if not isinstance(given, dict):
        raise QuantizationError(f"Per-layer weight widths must be a mapping layer -> bits, not "
                                f"{given!r}")
    if opts.method not in LAYER_BITS_METHODS:
        own = {"ternary": "ternary weights have 2 bits in every layer it quantizes (the "
                          "first and the last layer: --edge-layers fixed8)",
               "binary": "binary weights have 1 bit in every layer",
               "bitmask": "bitmask's --bits are the active bits of every conv layer's mask "
                          "(fix masks per layer with --pattern)",
               "bdcnn": "bdcnn's --basis is one count for every layer"}.get(opts.method, "")
        raise QuantizationError(f"Per-layer weight widths ({', '.join(given)}) apply to "
                                f"--method {' or '.join(LAYER_BITS_METHODS)}, not "
                                f"{opts.method}" + (f": {own}" if own else ""))
    for name, bits in given.items():
        if not isinstance(name, str) or not name:
            raise QuantizationError(f"Per-layer weight widths name layers, not {name!r}")
        check_bits(f"Weight width of layer '{name}' for {opts.method}", bits, lo, hi)


def check_options(opts: QuantOptions) -> None:
    """Reject bad options before any work is done (clear message, which option)."""
    if opts.method not in METHODS:
        raise QuantizationError(f"Quantization method must be one of {', '.join(METHODS)}, "
                                f"not {opts.method!r}")
    lo, hi = METHOD_BITS[opts.method]
    if opts.method == "ternary" and opts.wbits != 2:
        raise QuantizationError(f"Ternary weights have 2 bits (sign and zero); --bits "
                                f"{opts.wbits} is not allowed (use --method inq for more)")
    if opts.method == "binary" and opts.wbits != 1:
        raise QuantizationError(f"Binary weights have 1 bit (-1 or +1); --bits {opts.wbits} is "
                                f"not allowed (use --method ternary or inq for more)")
    if opts.method == "bitmask":
        _check_bitmask(opts)
    elif opts.method == "bdcnn":
        _check_bdcnn(opts)
    else:
        check_bits(f"Weight width for {opts.method}", opts.wbits, lo, hi)
    _check_layer_bits(opts, lo, hi)
    if opts.method == "binary":
        _check_binary(opts)
    elif opts.method != "bdcnn":
        check_bits("Activation width", opts.abits)
    if opts.method != "binary" and (opts.alpha != "none" or opts.input_bits is not None):
        raise QuantizationError(f"--alpha and --input-bits apply to --method binary, not "
                                f"{opts.method} (its input has --abits bits)")
    schedule = opts.resolved_schedule()
    if schedule is not None and schedule not in SCHEDULES:
        raise QuantizationError(f"Schedule must be one of {', '.join(SCHEDULES)} or none, "
                                f"not {schedule!r}")
    check_portions(opts.portions)
    if opts.partition not in PARTITIONS:
        raise QuantizationError(f"Partition must be one of {', '.join(PARTITIONS)}, not "
                                f"{opts.partition!r}")
    if opts.ternary not in ("twn", "ttq"):
        raise QuantizationError(f"Ternary variant must be twn or ttq, not {opts.ternary!r}")
    if opts.granularity not in (None, "layer", "channel"):
        raise QuantizationError(f"Scale granularity must be layer or channel, not "
                                f"{opts.granularity!r}")
    p = opts.calib_percentile
    if p is not None and (isinstance(p, bool) or not isinstance(p, (int, float))
                          or not 50 <= p <= 100):
        raise QuantizationError(f"--calib-percentile must be a number in 50..100, not {p!r}")
    if opts.edge_layers not in (None, *EDGE_LAYERS):
        raise QuantizationError(f"Edge layers must be one of {', '.join(EDGE_LAYERS)}, not "
                                f"{opts.edge_layers!r}")
    if opts.tie not in ("paper", "caffe"):
        raise QuantizationError(f"INQ tie rule must be paper or caffe, not {opts.tie!r}")
    r = opts.retrain.resolved(schedule or "simple")
    if not isinstance(r.epochs, int) or r.epochs < 0:
        raise QuantizationError(f"Retraining epochs must be an integer >= 0, not {r.epochs!r}")
    if not isinstance(r.patience, int) or r.patience < 1:
        raise QuantizationError(f"Early-stopping patience must be an integer >= 1, not "
                                f"{r.patience!r}")
    if not 0.0 <= r.val_fraction < 1.0:
        raise QuantizationError(f"Validation fraction must be in [0, 1), not "
                                f"{r.val_fraction!r}")




#: ``quantize`` names what usually helps when the golden model loses more than this many
#: points of test accuracy against float (the suite's targets are 0.5 to 2 points).
HINT_DROP_POINTS = 2.0


def accuracy_hint(opts: QuantOptions, float_acc: float, quantized_acc: float) -> str | None:
    """One line on what usually helps when ``quantized_acc`` is more than
    :data:`HINT_DROP_POINTS` below ``float_acc``; None otherwise."""
    drop = (float_acc - quantized_acc) * 100
    if drop <= HINT_DROP_POINTS:
        return None
    schedule = opts.resolved_schedule()
    epochs = opts.retrain.resolved(schedule or "simple").epochs
    tips = []
    if schedule is None or epochs == 0:
        tips.append("retraining (--schedule simple, or incremental for inq)")
    if opts.abits < 6:
        tips.append(f"more activation bits (--abits {opts.abits + 2})")
    if opts.method == "fixed":
        tips.append(f"more weight bits (--bits {opts.wbits + 1})")
    elif opts.method == "inq":
        if opts.wbits < METHOD_BITS["inq"][1]:
            tips.append(f"more weight bits (--bits {opts.wbits + 1})")
        if opts.resolved_granularity() == "layer":
            tips.append("one exponent range per channel (--scale channel)")
        if schedule == "incremental":
            tips.append("smaller INQ steps (--portions with more values)")
    elif opts.method == "ternary":
        if opts.resolved_granularity() == "layer" and opts.ternary == "twn":
            tips.append("one scale per channel (--scale channel)")
        tips.append("the other ternary variant (--ternary "
                    f"{'ttq' if opts.ternary == 'twn' else 'twn'})")
        tips.append("power-of-two weights with more bits (--method inq --bits 3)")
    if schedule is not None and epochs:
        tips.append(f"more retraining (--retrain-epochs {2 * epochs})")
    return (f"accuracy drops {drop:.1f} points (more than {HINT_DROP_POINTS:g}); what usually "
            f"helps: {'; '.join(tips[:3])}")
