"""Timing models of the small streaming components: FIFO, width converter, fork, residual
add, pooling reducers and argmax (:mod:`hwquant.hw.fifo`, :mod:`~hwquant.hw.width`,
:mod:`~hwquant.hw.fork`, :mod:`~hwquant.hw.add`, :mod:`~hwquant.hw.pool`,
:mod:`~hwquant.hw.output`).

Each model reproduces its component's ``valid``/``ready`` cycle for cycle (see
:class:`~hwquant.schedule.base.TimingModel` for the three-phase protocol). They are stepped
millions of times by the network replay, so the state is a few plain ints and the returned
tuples are shared constants (a fork of more than 12 outputs builds its ``valid`` tuple).
"""

from math import lcm

from .base import TimingModel

# The tuples the models return, built once: stepping a model allocates nothing.
_T, _F = (True,), (False,)
_PAIRS = ((False, False), (False, True), (True, False), (True, True))

#: The dataflow network's FIFOs (plan stage :class:`hwquant.plan.Fifo`) take their input's
#: ``ready`` from their state alone (``StreamFifo(..., registered_ready=True)``): every layer
#: boundary cuts the combinational ready chain, so no path runs through several stages'
#: handshakes.
NETWORK_FIFO_REGISTERED_READY = True

__all__ = [
    "NETWORK_FIFO_REGISTERED_READY",
    "StreamFifoTiming",
    "StreamWidthTiming",
    "GatherTiming",
    "ForkTiming",
    "AddJoinTiming",
    "ReduceTiming",
    "ArgMaxTiming",
]


def _positive(value, what):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{what} must be a positive integer, not {value!r}")
    return value


class StreamFifoTiming(TimingModel):
    """:class:`hwquant.hw.fifo.StreamFifo` of ``depth`` beats.

    ``valid`` while it holds a beat; ``ready`` while it holds fewer than ``depth`` beats or
    (unless ``registered_ready``) a beat leaves this cycle. A beat accepted at cycle ``t`` is
    offered from ``t + 1``.
    """

    def __init__(self, depth: int, *, registered_ready: bool = False):
        self.depth = _positive(depth, "FIFO depth")
        self.registered_ready = bool(registered_ready)
        self.level = 0

    def valid(self):
        return _T if self.level else _F

    def ready(self, in_valid, out_ready):
        if self.level < self.depth:
            return _T
        return _F if self.registered_ready or not out_ready[0] else _T

    def tick(self, in_valid, in_ready, out_valid, out_ready):
        if in_valid[0] and in_ready[0]:
            self.level += 1
        if out_valid[0] and out_ready[0]:
            self.level -= 1


class StreamWidthTiming(TimingModel):
    """:class:`hwquant.hw.width.StreamWidth` from ``in_lanes`` to ``out_lanes``.

    With ``L = lcm(in_lanes, out_lanes)``, ``k_in = L / in_lanes`` input beats make a word of
    ``k_out = L / out_lanes`` output beats. The first ``k_in - 1`` beats of a word are always
    accepted (they go to the gather register); the last one only when the output register is
    empty or hands out its last beat this cycle. ``valid`` while output beats of the current
    word remain. Equal widths are a one-beat pipeline register (``k_in = k_out = 1``). A pure
    gather (``k_out = 1 < k_in``) holds one register: ``valid`` once ``k_in`` beats are in,
    ``ready`` while it is not full or the word leaves this cycle (:class:`GatherTiming`).
    """

    def __new__(cls, *args):
        if cls is StreamWidthTiming:
            in_lanes, out_lanes = args
            _positive(in_lanes, "Input lanes")
            _positive(out_lanes, "Output lanes")
            if out_lanes % in_lanes == 0 and out_lanes > in_lanes:
                return GatherTiming(out_lanes // in_lanes)
        return super().__new__(cls)

    def __init__(self, in_lanes: int, out_lanes: int):
        _positive(in_lanes, "Input lanes")
        _positive(out_lanes, "Output lanes")
        n = lcm(in_lanes, out_lanes)
        self.k_in, self.k_out = n // in_lanes, n // out_lanes
        self.gathered = 0  # input beats of the next word held in the gather register
        self.left = 0  # output beats of the current word not yet taken

    def valid(self):
        return _T if self.left else _F

    def ready(self, in_valid, out_ready):
        return _T if (self.gathered < self.k_in - 1 or self.left == 0
                      or (self.left == 1 and out_ready[0])) else _F

    def tick(self, in_valid, in_ready, out_valid, out_ready):
        if out_valid[0] and out_ready[0]:
            self.left -= 1
        if in_valid[0] and in_ready[0]:
            if self.gathered == self.k_in - 1:
                self.gathered = 0
                self.left = self.k_out
            else:
                self.gathered += 1


class GatherTiming(TimingModel):
    """The pure gather of :class:`hwquant.hw.width.StreamWidth` (``k`` input beats per output
    beat, one register): ``valid`` when ``k`` beats are held; ``ready`` while fewer are held
    or the word leaves this cycle."""

    def __init__(self, k: int):
        self.k = _positive(k, "Gathered beats")
        self.held = 0

    def valid(self):
        return _T if self.held == self.k else _F

    def ready(self, in_valid, out_ready):
        return _T if self.held < self.k or out_ready[0] else _F

    def tick(self, in_valid, in_ready, out_valid, out_ready):
        take = out_valid[0] and out_ready[0]
        acc = 1 if in_valid[0] and in_ready[0] else 0
        self.held = acc if take else self.held + acc


class ReduceTiming(StreamWidthTiming):
    """:class:`hwquant.hw.pool.MaxReduce` and :class:`~hwquant.hw.pool.AvgReduce` over
    ``window`` beats: the first ``window - 1`` beats of a window are always accepted, the last
    one when the output register is empty or emptied this cycle; one output beat per window,
    offered from the cycle after the window's last beat."""

    def __init__(self, window: int):
        _positive(window, "Pooling window")
        self.k_in, self.k_out = window, 1
        self.gathered = self.left = 0


class ArgMaxTiming(ReduceTiming):
    """:class:`hwquant.hw.output.ArgMax` over ``beats`` logit beats per inference (the same
    handshake as a reducer over a window of ``beats``)."""

    def __init__(self, beats: int):
        super().__init__(_positive(beats, "Logit beats"))


class ForkTiming(TimingModel):
    """:class:`hwquant.hw.fork.Fork` into ``n`` outputs (``o_stream0 .. o_stream{n-1}``).

    One beat register with a pending flag per output: output ``k`` is ``valid`` until it takes
    the beat. The input is ``ready`` when every output has taken the current beat or takes it
    this cycle; an accepted beat is offered to all outputs from the next cycle.
    """

    def __init__(self, n: int):
        self.outputs = _positive(n, "Fork outputs")
        self.pending = 0  # bit k: output k has not taken the current beat
        self._valid = [tuple(bool(p >> k & 1) for k in range(n)) for p in range(1 << n)] \
            if n <= 12 else None

    def valid(self):
        p = self.pending
        if self._valid is not None:
            return self._valid[p]
        return tuple(bool(p >> k & 1) for k in range(self.outputs))

    def ready(self, in_valid, out_ready):
        p = self.pending
        for r in out_ready:
            if p & 1 and not r:
                return _F
            p >>= 1
        return _T

    def tick(self, in_valid, in_ready, out_valid, out_ready):
        if in_valid[0] and in_ready[0]:
            self.pending = (1 << self.outputs) - 1
            return
        p, bit = self.pending, 1
        for r in out_ready:
            if r:
                p &= ~bit
            bit <<= 1
        self.pending = p


class AddJoinTiming(TimingModel):
    """:class:`hwquant.hw.add.AddJoin`: inputs ``a_stream``, ``b_stream``.

    A pair is taken when both inputs are valid and the output register is empty or emptied
    this cycle (each input's ``ready`` is the other's ``valid`` and that condition); the sum is
    offered from the next cycle.
    """

    inputs = 2

    def __init__(self):
        self.full = False

    def valid(self):
        return _T if self.full else _F

    def ready(self, in_valid, out_ready):
        if self.full and not out_ready[0]:
            return _PAIRS[0]
        return _PAIRS[2 * bool(in_valid[1]) + bool(in_valid[0])]

    def tick(self, in_valid, in_ready, out_valid, out_ready):
        if in_valid[0] and in_ready[0]:
            self.full = True
        elif out_ready[0]:
            self.full = False
