"""The registry of arithmetic kinds: one row per weight encoding, naming each of its faces.

Every encoding in :data:`hwquant.ir.ENCODINGS` has a golden inner product
(``golden/<kind>.py``), a hardware dot engine (``hw/<kind>.py``), a cost model
(``estimate/<kind>.py``) and a kind-data class (:data:`hwquant.ir.KIND_DATA`, the layer's
``kind_data``: validated by the IR, serialised generically by ``hwquant.hwq``). Faces are
imported lazily, so the golden model never imports Amaranth. ``tests/test_kinds.py`` checks the
table is complete.
"""

import importlib
from dataclasses import dataclass

from . import ir

__all__ = ["Kind", "KINDS", "kind_of", "golden_dot", "hw_dot_engine", "cost_model"]


@dataclass(frozen=True)
class Kind:
    encoding: str
    golden: str  # module with ``dot(layer, cols)``
    hw: str  # module with the dot-engine component ``DotEngine``
    estimate: str  # module with ``resources(...)``
    description: str

    @property
    def data(self) -> type:
        """The kind-data class of this encoding (``layer.kind_data`` is an instance)."""
        return ir.KIND_DATA[self.encoding]


KINDS = {
    "fixed": Kind("fixed", "hwquant.golden.fixed", "hwquant.hw.fixed", "hwquant.estimate.fixed",
                  "signed b-bit integer weights; multiplier per product, adder tree"),
    "pow2": Kind("pow2", "hwquant.golden.pow2", "hwquant.hw.pow2", "hwquant.estimate.pow2",
                 "zero or +-2^e weights (INQ, ternary TWN/TTQ); shifts and an adder tree"),
}


def kind_of(layer) -> Kind:
    try:
        return KINDS[layer.encoding]
    except KeyError:
        raise ValueError(f"Layer '{layer.name}': no arithmetic kind for encoding "
                         f"{layer.encoding!r}; known: {', '.join(KINDS)}") from None


def golden_dot(layer):
    return importlib.import_module(kind_of(layer).golden).dot


def hw_dot_engine(layer):
    return importlib.import_module(kind_of(layer).hw).DotEngine


def cost_model(layer):
    return importlib.import_module(kind_of(layer).estimate)
