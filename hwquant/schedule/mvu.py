"""Handshake model of :class:`hwquant.hw.mvu.MatrixVectorUnit`, and the unit's latency
contract (this package stays free of Amaranth: the hardware imports the constant from here)."""

from .base import TimingModel

__all__ = ["BASE_LATENCY", "MatrixVectorUnitTiming", "mvu_latency"]

#: Cycles from issuing the last slice of a neuron fold to its output beat's ``valid`` in an MVU
#: whose engine is combinational; each pipeline cut inside the engine adds one.
BASE_LATENCY = 6

_YES, _NO = (True,), (False,)


def mvu_latency(engine_stages: int = 0) -> int:
    """An MVU's latency with ``engine_stages`` pipeline cuts in its dot engine."""
    if isinstance(engine_stages, bool) or not isinstance(engine_stages, int) \
            or engine_stages < 0:
        raise ValueError(f"Engine stages must be a non-negative integer, not {engine_stages!r}")
    return BASE_LATENCY + engine_stages


class MatrixVectorUnitTiming(TimingModel):
    """Cycle-exact ``valid``/``ready`` model of a matrix-vector unit with ``nf`` neuron folds
    and ``sf`` synapse folds (``NF * SF`` cycles per vector).

    The unit's rules, which this model replays:

    * The pipeline advances (``en``) whenever its output register is empty or taken this
      cycle. A *step* (one slice of one neuron fold) issues in an advancing cycle when its
      operand is there: with ``nf == 1`` the input beat offered this cycle (``ready = en``);
      with ``nf > 1``, in fold 0 the beat offered now or one already in the double buffer,
      in later folds always (the buffer replays).
    * With ``nf > 1`` the input is ready whenever fewer than ``2 * sf`` beats have arrived
      since the start of the vector being computed (``lead``).
    * An output beat is valid ``latency - 1`` advancing cycles after the advancing cycle in
      which its fold's last step issued (``latency`` = :func:`mvu_latency` of
      ``engine_stages``, the pipeline cuts inside the engine, which advance with the rest).

    State is three counters and a ``latency``-bit shift register, so a step costs a few
    integer operations.
    """

    __slots__ = ("_mask", "_out", "_words", "latency", "lead", "n", "nf", "pipe", "s", "sf")

    def __init__(self, nf: int, sf: int, *, engine_stages: int = 0):
        if nf < 1 or sf < 1:
            raise ValueError(f"Folds must be positive integers, not nf={nf!r}, sf={sf!r}")
        self.nf, self.sf = int(nf), int(sf)
        self.latency = mvu_latency(engine_stages)
        self._out = 1 << (self.latency - 1)
        self._mask = (1 << self.latency) - 1
        self._words = 2 * self.sf
        self.lead = 0  # beats in the buffer since the current vector's first (nf > 1)
        self.n = 0  # neuron fold of the next step
        self.s = 0  # slice of the next step
        self.pipe = 0  # bit k: a fold's last step is k + 1 stages in; bit latency - 1: output valid

    def valid(self) -> tuple:
        return _YES if self.pipe & self._out else _NO

    def ready(self, in_valid: tuple, out_ready: tuple) -> tuple:
        if self.nf == 1:
            return _YES if not self.pipe & self._out or out_ready[0] else _NO
        return _YES if self.lead < self._words else _NO

    def tick(self, in_valid: tuple, in_ready: tuple, out_valid: tuple, out_ready: tuple) -> None:
        en = not self.pipe & self._out or out_ready[0]
        if not en:
            if in_valid[0] and in_ready[0]:
                self.lead += 1
            return
        s = self.s
        if self.nf == 1:
            issue = in_valid[0]
        else:
            issue = self.n or self.lead > s or in_valid[0]
            if in_valid[0] and in_ready[0]:
                self.lead += 1
        done = False
        if issue:
            if s == self.sf - 1:
                done = True
                self.s = 0
                if self.n == self.nf - 1:
                    self.n = 0
                    if self.nf > 1:
                        self.lead -= self.sf
                else:
                    self.n += 1
            else:
                self.s = s + 1
        self.pipe = ((self.pipe << 1) | done) & self._mask
