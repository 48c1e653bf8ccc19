"""Quantization options: what the CLI flags select, validated before any work starts.

Torch-free, so the command line can build its parser and reject bad flags quickly.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field

from .fixed import QuantizationError, _check_bits

__all__ = ["QuantOptions", "RetrainConfig", "check_options", "check_portions", "METHODS",
           "METHOD_BITS", "DEFAULT_SCHEDULE", "DEFAULT_BITS", "SCHEDULES", "PARTITIONS",
           "DEFAULT_PORTIONS"]

SCHEDULES = ("simple", "incremental", "layerwise")
PARTITIONS = ("magnitude", "random")
DEFAULT_PORTIONS = (0.5, 0.75, 0.875, 1.0)

#: Allowed weight widths per method.
METHOD_BITS = {"fixed": (2, 16), "inq": (2, 8), "ternary": (2, 2), "binary": (1, 1)}


@dataclasses.dataclass
class RetrainConfig:
    """Retraining hyper-parameters (per retraining phase): Adam, cosine decay over the phase.

    Defaults measured on the digits default CNN (train seed 0, float 99.11 %): with them INQ
    keeps 5/4/3-bit weights within 0.2/0.2/0.9 points of float and TWN within 0.5
    (``tests/test_schedules.py`` asserts the INQ targets)."""

    epochs: int = 8
    lr: float = 1e-2
    batch_size: int = 64
    weight_decay: float = 1e-4
    seed: int = 0
    progress: bool = True


METHODS = ("fixed", "inq", "ternary", "binary")
DEFAULT_SCHEDULE = {"fixed": None, "inq": "incremental", "ternary": "simple",
                    "binary": "simple"}
DEFAULT_BITS = {"fixed": 8, "inq": 5, "ternary": 2, "binary": 1}
#: ``--method binary``: activation widths (1 = bipolar), XNOR-Net scale choices, schedules,
#: and the default width of the network input (the first layer reads multi-bit pixels).
BINARY_ABITS = (1, 8)
BINARY_ALPHAS = ("none", "channel")
BINARY_SCHEDULES = ("simple", "none")
BINARY_INPUT_BITS = 8


@dataclass
class QuantOptions:
    """Everything that selects a quantization (CLI flags map one to one)."""

    method: str = "fixed"
    #: None: the method's default (:data:`DEFAULT_BITS`).
    wbits: int | None = None
    abits: int = 8
    #: None: the method's default (:data:`DEFAULT_SCHEDULE`); "none": post-training only.
    schedule: str | None = None
    portions: tuple = DEFAULT_PORTIONS
    partition: str = "magnitude"
    ternary: str = "twn"  # twn | ttq
    granularity: str = "layer"  # layer | channel (TWN α)
    tie: str = "paper"
    #: ``binary``: XNOR-Net per-output-channel weight scale, "none" or "channel".
    alpha: str = "none"
    #: ``binary``: width of the network input (None: :data:`BINARY_INPUT_BITS`); the other
    #: methods give the input ``abits`` bits.
    input_bits: int | None = None
    retrain: RetrainConfig = field(default_factory=RetrainConfig)

    def __post_init__(self):
        if self.wbits is None and self.method in DEFAULT_BITS:
            self.wbits = DEFAULT_BITS[self.method]

    def resolved_schedule(self):
        s = DEFAULT_SCHEDULE[self.method] if self.schedule is None else self.schedule
        return None if s == "none" else s

    def resolved_input_bits(self) -> int:
        return BINARY_INPUT_BITS if self.input_bits is None else self.input_bits

    def to_json(self) -> dict:
        d = {"method": self.method, "wbits": self.wbits, "abits": self.abits,
             "schedule": self.resolved_schedule() or "none"}
        if d["schedule"] == "incremental":
            d.update(portions=list(self.portions), partition=self.partition)
        if self.method == "ternary":
            d.update(ternary=self.ternary, granularity=self.granularity)
        if self.method == "inq":
            d["tie"] = self.tie
        if self.method == "binary":
            d.update(alpha=self.alpha, input_bits=self.resolved_input_bits(),
                     configuration=f"W1A{self.abits}")
        if d["schedule"] != "none":
            r = self.retrain
            d["retrain"] = {"epochs": r.epochs, "lr": r.lr, "batch_size": r.batch_size,
                            "weight_decay": r.weight_decay, "seed": r.seed, "optimizer": "adam"}
        return d


def check_portions(portions) -> tuple:
    """Accumulated portions must increase strictly and end at 1.0 (INQ σ_1 < … < σ_N = 1)."""
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
    schedule = opts.resolved_schedule() or "none"
    if schedule not in BINARY_SCHEDULES:
        raise QuantizationError(f"Binary networks retrain with the simple schedule (all layers "
                                f"binarized, straight-through estimator) or none, not "
                                f"{schedule!r}")


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
    _check_bits(f"Weight width for {opts.method}", opts.wbits, lo, hi)
    if opts.method == "binary":
        _check_binary(opts)
    else:
        _check_bits("Activation width", opts.abits)
        if opts.alpha != "none" or opts.input_bits is not None:
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
    if opts.granularity not in ("layer", "channel"):
        raise QuantizationError(f"Ternary scale granularity must be layer or channel, not "
                                f"{opts.granularity!r}")
    if opts.tie not in ("paper", "caffe"):
        raise QuantizationError(f"INQ tie rule must be paper or caffe, not {opts.tie!r}")
    r = opts.retrain
    if not isinstance(r.epochs, int) or r.epochs < 0:
        raise QuantizationError(f"Retraining epochs must be an integer >= 0, not {r.epochs!r}")


