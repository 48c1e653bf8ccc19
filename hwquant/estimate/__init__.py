"""Resource estimation: analytical primitive costs and real Yosys/nextpnr counts.

:mod:`.resources` holds the :class:`Resources` record and the per-family cost of the
primitives (adders, registers, multipliers, muxes, ROMs, ...) the per-kind models compose,
calibrated against Yosys, and :mod:`.common` the helpers shared by the cost models (carry-save
sums, counters, constant selects, RAM and ROM placement, widths); :mod:`.synth` runs Yosys and
nextpnr and folds their cell counts into the same classes. :mod:`.model` costs the stages of a
network's dataflow plan part by part (:func:`estimate_network`; per stage type
:mod:`.stages`, the MVU :mod:`.mvu`), with the dot engines from each arithmetic kind's cost
face (:mod:`.fixed`, :mod:`.pow2`) and the epilogues from :mod:`.epilogue`; :mod:`.fit`
checks an estimate against a board (:func:`check_fit`); :mod:`.report` models a build
directory and compares with Yosys (:func:`estimate_build`).
"""

from .fit import DoesNotFitError, Fit, check_fit
from .model import NetworkEstimate, estimate_network
from .report import estimate_build, synthesize_build
from .resources import (
    Resources,
    adder,
    comparator,
    const_multiplier,
    dsp_blocks,
    multiplier,
    mux,
    popcount,
    register,
    rom,
    rom_in_bram,
)
from .synth import PnrResult, SynthResult, place_and_route, synthesize

__all__ = [
    "Resources",
    "adder",
    "register",
    "const_multiplier",
    "multiplier",
    "mux",
    "rom",
    "rom_in_bram",
    "dsp_blocks",
    "comparator",
    "popcount",
    "SynthResult",
    "PnrResult",
    "synthesize",
    "place_and_route",
    "NetworkEstimate",
    "estimate_network",
    "check_fit",
    "Fit",
    "DoesNotFitError",
    "estimate_build",
    "synthesize_build",
]
