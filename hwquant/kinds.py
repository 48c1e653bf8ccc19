"""The registry of arithmetic kinds: one row per weight encoding, naming each of its faces.

Every encoding in :data:`hwquant.ir.ENCODINGS` has a golden inner product
(``golden/<kind>.py``), hardware (``hw/<kind>.py``, and the MVU-level engine class that
:class:`hwquant.hw.mvu.MatrixVectorUnit` instantiates: :class:`hwquant.hw.engine.LaneEngine`
over the per-lane ``DotEngine`` for kinds that are one sum of products), a cost model
(``estimate/<kind>.py``) and a kind-data class (:data:`hwquant.ir.KIND_DATA`, the layer's
``kind_data``: validated by the IR, serialised generically by ``hwquant.hwq``). Faces are
imported lazily, so the golden model never imports Amaranth. ``tests/test_kinds.py`` checks the
table is complete.
"""

import importlib
from dataclasses import dataclass

from . import ir

__all__ = ["Kind", "KINDS", "kind_of", "uses_constant_matrix", "golden_dot", "hw_dot_engine",
           "hw_engine", "cost_model"]

#: The MVU engine of kinds whose arithmetic is one plain sum of products per channel.
LANE_ENGINE = "hwquant.hw.engine:LaneEngine"


@dataclass(frozen=True)
class Kind:
    encoding: str
    golden: str  # module with ``dot(layer, cols)``
    hw: str  # module with the dot-engine component ``DotEngine``
    estimate: str  # module with ``resources(...)``
    description: str
    #: ``module:Class`` of the MVU-level engine (:class:`hwquant.hw.engine.Engine` subclass).
    engine: str = LANE_ENGINE
    #: Fully unrolled layers of this kind build the constant-matrix adder graph
    #: (:mod:`hwquant.cmvm`) from the IR's integer weights instead of one product per weight
    #: (for multi-bit, non-bipolar inputs; :func:`uses_constant_matrix`).
    constant_matrix: bool = False

    @property
    def data(self) -> type:
        """The kind-data class of this encoding (``layer.kind_data`` is an instance)."""
        return ir.KIND_DATA[self.encoding]


KINDS = {
    "fixed": Kind("fixed", "hwquant.golden.fixed", "hwquant.hw.fixed", "hwquant.estimate.fixed",
                  "signed b-bit integer weights; multiplier per product, adder tree",
                  constant_matrix=True),
    "pow2": Kind("pow2", "hwquant.golden.pow2", "hwquant.hw.pow2", "hwquant.estimate.pow2",
                 "zero or +-2^e weights (INQ, ternary TWN/TTQ); shifts and an adder tree",
                 constant_matrix=True),
    "binary": Kind("binary", "hwquant.golden.binary", "hwquant.hw.binary",
                   "hwquant.estimate.binary",
                   "-1/+1 weights (BNN, XNOR-Net); XNOR-popcount for bipolar inputs, an "
                   "add/subtract tree for multi-bit ones", engine="hwquant.hw.binary:BinaryEngine"),
    "bitmask": Kind("bitmask", "hwquant.golden.bitmask", "hwquant.hw.bitmask",
                    "hwquant.estimate.bitmask",
                    "sign-magnitude fixed point under a per-layer bit mask (m active of n "
                    "bits); m-1 fixed-shift partial products per weight, an adder tree",
                    constant_matrix=True),
    "template": Kind("template", "hwquant.golden.template", "hwquant.hw.template",
                     "hwquant.estimate.template",
                     "HLAC template kernels (+-1 on a 3x3 mask, magnitude in the requantization) "
                     "next to fixed channels; one shared window sum, 0-2 adds per template",
                     engine="hwquant.hw.template:TemplateEngine"),
    "bdcnn": Kind("bdcnn", "hwquant.golden.bdcnn", "hwquant.hw.bdcnn", "hwquant.estimate.bdcnn",
                  "Binarized-DCNN: weights as signed sums of K coefficients, inputs as Q bit "
                  "planes; AND-popcounts per basis and plane, shared plane popcounts",
                  engine="hwquant.hw.bdcnn:BdcnnEngine"),
}


def uses_constant_matrix(layer) -> bool:
    """Whether ``layer``'s MVU builds the constant-matrix adder graph: fully unrolled
    (``PE = OC``, ``SIMD = F``), a kind that allows it, and inputs whose codes are their values
    (not bipolar)."""
    fold = layer.fold
    return (kind_of(layer).constant_matrix and not layer.in_format.bipolar
            and fold.pe == layer.out_channels and fold.simd == layer.fan_in)


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


def hw_engine(layer):
    """The MVU-level engine class of ``layer``'s kind (imports Amaranth)."""
    module, cls = kind_of(layer).engine.split(":")
    return getattr(importlib.import_module(module), cls)


def cost_model(layer):
    return importlib.import_module(kind_of(layer).estimate)
