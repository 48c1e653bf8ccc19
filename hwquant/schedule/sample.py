"""Handshake models of the per-sample range's stages (:mod:`hwquant.hw.sample_quant`):
:class:`SampleQuantizerTiming` and :class:`SampleCombineTiming`."""

from .base import TimingModel

__all__ = ["SampleQuantizerTiming", "SampleCombineTiming"]

_T, _F = (True,), (False,)
_LOAD, _RANGE, _DIVIDE, _TOKEN, _EMIT = range(5)
_COMBINE_LATENCY = 3  # hwquant.hw.sample_quant.SampleCombine.LATENCY (no Amaranth here)
_COMBINE_OUT = 1 << (_COMBINE_LATENCY - 1)
_COMBINE_MASK = (1 << _COMBINE_LATENCY) - 1
_PAIRS = ((False, False), (False, True), (True, False), (True, True))


class SampleQuantizerTiming(TimingModel):
    """:class:`hwquant.hw.sample_quant.SampleQuantizer` of ``beats`` beats per map and a
    ``divide``-cycle divider (``Q + S``). Outputs: codes (port 0), tokens (port 1).

    * *load*: input ready; each beat taken moves the count, the map's last beat moves on.
    * *range*: one cycle; *divide*: ``divide`` cycles.
    * *token*: the token valid (from the state) until taken.
    * *emit*: the pipeline (read address -> memory data -> output register) advances when the
      output register is empty or taken; a beat issues per advancing cycle while beats remain;
      once none remain and none is in the memory stage, the map is done and *load* starts.
    The code output's ``valid`` is its register (it drains in any phase).
    """

    inputs, outputs = 1, 2
    __slots__ = ("beats", "count", "divide", "out", "pending", "phase", "step")

    def __init__(self, beats: int, divide: int):
        if beats < 1 or divide < 1:
            raise ValueError(f"Quantizer beats and divider cycles must be positive, not "
                             f"{beats!r}, {divide!r}")
        self.beats, self.divide = int(beats), int(divide)
        self.phase, self.count, self.step = _LOAD, 0, 0
        self.pending = self.out = False

    def valid(self):
        return _PAIRS[2 * self.out + (self.phase == _TOKEN)]

    def ready(self, in_valid, out_ready):
        return _T if self.phase == _LOAD else _F

    def tick(self, in_valid, in_ready, out_valid, out_ready):
        en = not self.out or out_ready[0]
        phase, pending = self.phase, self.pending
        issue = phase == _EMIT and self.count < self.beats
        if en:
            self.pending, self.out = issue, pending
        if phase == _LOAD:
            if in_valid[0]:
                if self.count == self.beats - 1:
                    self.count, self.phase = 0, _RANGE
                else:
                    self.count += 1
        elif phase == _RANGE:
            self.phase, self.step = _DIVIDE, 0
        elif phase == _DIVIDE:
            if self.step == self.divide - 1:
                self.phase = _TOKEN
            self.step += 1
        elif phase == _TOKEN:
            if out_ready[1]:
                self.phase = _EMIT
        elif en:
            if issue:
                self.count += 1
            elif not pending:
                self.count, self.phase = 0, _LOAD


class SampleCombineTiming(TimingModel):
    """:class:`hwquant.hw.sample_quant.SampleCombine` over ``beats`` MVU beats per sample
    (inputs: ``p_stream``, ``t_stream``).

    A beat is taken when both inputs are valid and the pipeline advances (its output register
    empty or taken); the token is taken with the sample's last beat. A result is offered
    :data:`LATENCY` advancing cycles after its beat was taken.
    """

    inputs = 2
    LATENCY = _COMBINE_LATENCY
    __slots__ = ("beats", "n", "pipe")

    def __init__(self, beats: int):
        if beats < 1:
            raise ValueError(f"Combine beats per sample must be positive, not {beats!r}")
        self.beats = int(beats)
        self.n = 0  # beats of the current sample taken
        self.pipe = 0  # bit k: a beat k + 1 stages in; the top bit: output valid

    def valid(self):
        return _T if self.pipe & _COMBINE_OUT else _F

    def ready(self, in_valid, out_ready):
        if self.pipe & _COMBINE_OUT and not out_ready[0]:
            return _PAIRS[0]
        take = in_valid[0] and in_valid[1]
        return _PAIRS[3] if take and self.n == self.beats - 1 else _PAIRS[2 * take]

    def tick(self, in_valid, in_ready, out_valid, out_ready):
        en = not self.pipe & _COMBINE_OUT or out_ready[0]
        if not en:
            return
        take = in_valid[0] and in_valid[1]
        if take:
            self.n = 0 if self.n == self.beats - 1 else self.n + 1
        self.pipe = ((self.pipe << 1) | take) & _COMBINE_MASK
