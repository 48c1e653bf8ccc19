"""Resource estimation: analytical primitive costs and real Yosys/nextpnr counts.

:mod:`.resources` holds the :class:`Resources` record and the per-family cost of the
primitives (adders, registers, multipliers, muxes, ROMs, ...) the per-kind models compose,
calibrated against Yosys; :mod:`.synth` runs Yosys and nextpnr and folds their cell counts
into the same classes.
"""

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
]
