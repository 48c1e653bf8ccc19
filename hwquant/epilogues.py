"""The registry of epilogues: one row per :data:`hwquant.ir.EPILOGUES` type, naming its faces.

An epilogue turns a weight layer's ``ACC + B`` into its output integers (``docs/arithmetic.md``,
section Epilogues). Each row names the golden function (``golden(epilogue, acc, out_format,
channel_axis)`` in :mod:`hwquant.golden.epilogue`), the hardware module and the cost-model
module. Faces are imported lazily, so the golden model never imports Amaranth.
``tests/test_epilogues.py`` checks the table is complete.
"""

import importlib
from dataclasses import dataclass

from . import ir

__all__ = ["EpilogueKind", "EPILOGUE_KINDS", "epilogue_kind", "golden_epilogue",
           "hw_epilogue_module", "epilogue_cost_model"]


@dataclass(frozen=True)
class EpilogueKind:
    name: str  # the function name in each face module
    ir_type: type  # the IR class (one of ir.EPILOGUES)
    golden: str  # module with ``<name>(epilogue, acc, out_format, channel_axis)``
    hw: str  # module with the hardware of this epilogue
    estimate: str  # module with its cost model
    description: str


_GOLDEN, _HW, _ESTIMATE = "hwquant.golden.epilogue", "hwquant.hw.epilogue", \
    "hwquant.estimate.epilogue"

EPILOGUE_KINDS = {
    ir.Requant: EpilogueKind("requant", ir.Requant, _GOLDEN, _HW, _ESTIMATE,
                             "per-channel multiply, round-half-up shift, saturate"),
    ir.Thresholds: EpilogueKind("thresholds", ir.Thresholds, _GOLDEN, _HW, _ESTIMATE,
                                "count of passed per-channel thresholds (BN + sign, multi-bit)"),
    ir.Logits: EpilogueKind("logits", ir.Logits, _GOLDEN, _HW, _ESTIMATE,
                            "raw ACC + B, optionally times a per-class integer scale"),
}


def epilogue_kind(epilogue) -> EpilogueKind:
    """The registry row of an epilogue instance (or IR class)."""
    cls = epilogue if isinstance(epilogue, type) else type(epilogue)
    try:
        return EPILOGUE_KINDS[cls]
    except KeyError:
        raise TypeError(f"Epilogue must be one of "
                        f"{', '.join(t.__name__ for t in EPILOGUE_KINDS)}, not "
                        f"{cls.__name__}") from None


def golden_epilogue(epilogue):
    row = epilogue_kind(epilogue)
    return getattr(importlib.import_module(row.golden), row.name)


def hw_epilogue_module(epilogue):
    return importlib.import_module(epilogue_kind(epilogue).hw)


def epilogue_cost_model(epilogue):
    return importlib.import_module(epilogue_kind(epilogue).estimate)
