"""Cycle-level handshake models of the hardware components, without data, and the network
replay built on them (pure Python: no Amaranth, no torch).

Every streaming component of :mod:`hwquant.hw` has a :class:`TimingModel` here that reproduces
its ``valid``/``ready`` behaviour cycle for cycle (tests compare the two under random stalls).
The network replay (:mod:`hwquant.schedule.replay`) steps the models of a whole dataflow plan
to predict cycles per inference and to size FIFOs.
"""

from .base import TimingModel
from .mvu import MatrixVectorUnitTiming
from .replay import Deadlock, ReplayResult, replay, size_fifos
from .sample import SampleCombineTiming, SampleQuantizerTiming
from .streams import (
    AddJoinTiming,
    ArgMaxTiming,
    ForkTiming,
    GatherTiming,
    ReduceTiming,
    StreamFifoTiming,
    StreamWidthTiming,
)
from .window import SlidingWindowTiming

__all__ = [
    "TimingModel",
    "SlidingWindowTiming",
    "MatrixVectorUnitTiming",
    "StreamFifoTiming",
    "StreamWidthTiming",
    "GatherTiming",
    "ForkTiming",
    "AddJoinTiming",
    "ReduceTiming",
    "ArgMaxTiming",
    "SampleQuantizerTiming",
    "SampleCombineTiming",
    "ReplayResult",
    "Deadlock",
    "replay",
    "size_fifos",
]
