"""Timing model of :class:`hwquant.hw.window.SlidingWindow`, and the window geometry that the
generator and the model share (pure Python: no Amaranth).

Memory mode (``simd`` divides ``C``) keeps the map's recent rows in a circular buffer of
``simd``-lane words and hands rows between its writer and its reader row by row; register mode
(``simd`` a multiple of ``C``) walks the padded map one position per cycle and serialises each
completed window. :func:`window_geometry` is the single definition of both schedules; the
hardware is built from it and :class:`SlidingWindowTiming` replays it.
"""

import numbers
from dataclasses import dataclass

from .base import TimingModel

__all__ = [
    "WindowGeometry",
    "window_geometry",
    "window_in_lanes",
    "window_beats",
    "SlidingWindowTiming",
]

ORDERS = ("kernel", "channel")


def _divisors(n: int) -> list:
    return [d for d in range(1, n + 1) if n % d == 0]


def _clamp(v: int, lo: int, hi: int) -> int:
    return max(lo, min(v, hi))


def window_in_lanes(channels: int, simd: int) -> int:
    """Lanes of the sliding window's input stream: ``simd`` when it divides ``channels``
    (memory mode, pixels folded into ``channels / simd`` beats), else ``channels`` (register
    mode, one pixel per beat)."""
    return simd if channels % simd == 0 else channels


@dataclass(frozen=True)
class WindowGeometry:
    """Everything the sliding-window generator and its timing model derive from the layer.

    Members
    -------
    in_shape, kernel, stride, padding : tuples of int
    simd : int
        Output lanes.
    order : str
        ``"kernel"`` or ``"channel"``.
    memory : bool
        Memory mode (``simd`` divides ``C``); else register mode.
    in_lanes : int
    out_size : (OH, OW)
    beats_per_window : int
        ``KH*KW*C / simd``.
    chunks : int
        Memory mode: beats per input pixel, ``C / simd`` (1 in register mode).
    rows : int
        Memory mode: whole rows of the circular buffer (0 in register mode).
    depth : int
        Memory mode: buffer words, ``rows * W * chunks``.
    need : tuple of int
        Memory mode, per output row: complete input rows (counted from the row's lowest
        needed row) that must be in the buffer before the row's first beat.
    release : tuple of int
        Memory mode, per output row: rows freed when its last beat is issued (the last output
        row frees the rest of the map).
    least : int
        Memory mode: the least value (0 or negative) of the reader's count of complete rows
        held. It goes negative when the reader frees rows the writer has not completed yet
        (rows no window reads: a stride larger than the kernel, the bottom of a map).
    """

    in_shape: tuple
    kernel: tuple
    stride: tuple
    padding: tuple
    simd: int
    order: str
    memory: bool
    in_lanes: int
    out_size: tuple
    beats_per_window: int
    chunks: int
    rows: int
    depth: int
    need: tuple
    release: tuple
    least: int

    @property
    def beats_per_map(self) -> int:
        """Output beats per feature map."""
        return self.out_size[0] * self.out_size[1] * self.beats_per_window

    @property
    def row_words(self) -> int:
        """Memory mode: words (input beats) per input row, ``W * chunks``."""
        return self.in_shape[2] * self.chunks


def _pair(v):
    try:
        a, b = v
        return int(a), int(b)
    except (TypeError, ValueError):
        return None


def window_geometry(in_shape, kernel, stride, padding, *, simd, order="kernel"):
    """Validate a sliding window and derive its schedule (:class:`WindowGeometry`).

    Raises
    ------
    ValueError
        Non-positive geometry, a kernel larger than the padded map, an unknown ``order``, or a
        ``simd`` that neither divides ``C`` nor is a multiple of ``C`` dividing ``KH*KW*C``
        (``order="channel"``: divisors of ``C`` only).
    """
    pairs = [_pair(v) for v in (kernel, stride, padding)]
    try:
        c, h, w = (int(v) for v in in_shape)
    except (TypeError, ValueError):
        c = h = w = 0
    if (None in pairs or min(c, h, w, *pairs[0], *pairs[1]) < 1 or min(pairs[2]) < 0):
        raise ValueError(f"Sliding window geometry must be positive, not shape {in_shape}, "
                         f"kernel {kernel}, stride {stride}, padding {padding}")
    (kh, kw), (sh, sw), (ph, pw) = pairs
    oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    if h + 2 * ph < kh or w + 2 * pw < kw:
        raise ValueError(f"Kernel {kernel} does not fit input {(h, w)} with padding "
                         f"{padding}")
    if order not in ORDERS:
        raise ValueError(f"Sliding window order must be 'kernel' or 'channel', not {order!r}")
    lanes = kh * kw * c
    allowed = _divisors(c)
    if order == "kernel":
        allowed += [d for d in _divisors(lanes) if d > c and d % c == 0]
    if isinstance(simd, numbers.Integral) and not isinstance(simd, bool):
        simd = int(simd)
    if not isinstance(simd, int) or simd not in allowed:
        rule = ("divide the {c} channels" if order == "channel" else
                "divide the {c} channels or be a multiple of them dividing the {n} window "
                "lanes").format(c=c, n=lanes)
        raise ValueError(f"Sliding window SIMD must {rule} ({', '.join(map(str, allowed))}), "
                         f"not {simd!r}")
    memory = c % simd == 0
    geo = {"in_shape": (c, h, w), "kernel": (kh, kw), "stride": (sh, sw),
           "padding": (ph, pw), "simd": simd, "order": order, "memory": memory,
           "in_lanes": window_in_lanes(c, simd), "out_size": (oh, ow),
           "beats_per_window": lanes // simd}
    if not memory:
        return WindowGeometry(**geo, chunks=1, rows=0, depth=0, need=(), release=(),
                              least=0)
    # Output row oy reads input rows lo(oy) .. hi(oy)-1 (the window's rows inside the map).
    tops = [oy * sh - ph for oy in range(oh)]
    lo = [_clamp(t, 0, h) for t in tops]
    hi = [_clamp(t + kh, 0, h) for t in tops]
    # A row made of top padding alone still waits for the map's first row: it must never be
    # emitted before the map has begun (the map may never come).
    need = tuple(1 if t + kh <= 0 else b - a for t, a, b in zip(tops, lo, hi))
    release = tuple([lo[i + 1] - lo[i] for i in range(oh - 1)] + [h - lo[-1]])
    # Rows the buffer must hold so that the writer can complete the next output row's input
    # (the next map's first rows after the last output row) while the current one is read.
    nxt = [lo[i + 1] + need[i + 1] for i in range(oh - 1)] + [h + need[0]]
    rows = max(2, *(n - a for n, a in zip(nxt, lo)))
    chunks = c // simd
    return WindowGeometry(**geo, chunks=chunks, rows=rows, depth=rows * w * chunks,
                          need=need, release=release,
                          least=min(0, *(n - r for n, r in zip(need, release))))


def window_beats(in_shape, kernel, stride, padding, simd) -> int:
    """Output beats per feature map: ``OH * OW * KH*KW*C / simd``."""
    return window_geometry(in_shape, kernel, stride, padding, simd=simd).beats_per_map


class SlidingWindowTiming(TimingModel):
    """Cycle-exact handshake model of :class:`hwquant.hw.window.SlidingWindow`.

    Memory mode, with ``held`` the complete input rows in the buffer counted from the lowest
    row the reader still reads (negative while the writer owes rows the reader has passed):

    * ``i_stream.ready = held < rows`` (state only); every ``W * C / simd`` accepted beats
      complete a row (``held += 1`` at that edge).
    * The output register advances when it is empty or being emptied; it then takes a beat
      (``valid`` next cycle) if ``held >= need[oy]``, else becomes empty. After the last beat
      of output row ``oy`` (``OW * KH*KW*C / simd`` beats), ``held -= release[oy]`` at the
      same edge and the next output row (the next map's first after ``OH - 1``) begins.

    Register mode: the walk over the padded map steps when the window register is empty or its
    last beat leaves, and the position needs no pixel or one is offered; a completed window is
    then valid for ``beats_per_window`` beats.

    ``valid``, ``ready`` and ``tick`` use plain ints and precomputed tuples only.
    """

    def __init__(self, in_shape, kernel, stride, padding, *, simd, order="kernel"):
        g = window_geometry(in_shape, kernel, stride, padding, simd=simd, order=order)
        self.geometry = g
        self._ov = False
        if g.memory:
            self._rows, self._row_words = g.rows, g.row_words
            self._need, self._release = g.need, g.release
            self._oh = g.out_size[0]
            self._row_beats = g.out_size[1] * g.beats_per_window
            self._held = 0
            self._wcol = 0  # words written into the row in progress
            self._oy = 0
            self._k = 0  # beats issued in the current output row
            self.ready, self.tick = self._ready_memory, self._tick_memory
            return
        _, h, w = g.in_shape
        (kh, kw), (sh, sw), (ph, pw) = g.kernel, g.stride, g.padding
        (oh, ow) = g.out_size
        hp, wp = h + 2 * ph, w + 2 * pw
        rows_emit = {oy * sh + kh - 1 for oy in range(oh)}
        cols_emit = {ox * sw + kw - 1 for ox in range(ow)}
        inside, emit = [], []
        for py in range(hp):
            for px in range(wp):
                inside.append(ph <= py < ph + h and pw <= px < pw + w)
                emit.append(py in rows_emit and px in cols_emit)
        # A window of padding alone completing before the first pixel: the walk waits at the
        # map's first position until a pixel is offered.
        needs = list(inside)
        if any((oy * sh + kh - 1, ox * sw + kw - 1) < (ph, pw)
               for oy in range(oh) for ox in range(ow)):
            needs[0] = True
        self._inside, self._needs, self._emit = tuple(inside), tuple(needs), tuple(emit)
        self._positions = hp * wp
        self._last_beat = g.beats_per_window - 1
        self._p = 0
        self._j = 0
        self.ready, self.tick = self._ready_register, self._tick_register

    @property
    def held(self) -> int:
        """Memory mode: complete rows held (see the class description)."""
        return self._held

    def valid(self):
        return (self._ov,)

    def _ready_memory(self, in_valid, out_ready):
        return (self._held < self._rows,)

    def _tick_memory(self, in_valid, in_ready, out_valid, out_ready):
        held = self._held
        if not self._ov or out_ready[0]:
            issue = held >= self._need[self._oy]
            self._ov = issue
            if issue:
                self._k += 1
                if self._k == self._row_beats:
                    self._k = 0
                    held -= self._release[self._oy]
                    self._oy += 1
                    if self._oy == self._oh:
                        self._oy = 0
        if in_valid[0] and in_ready[0]:
            self._wcol += 1
            if self._wcol == self._row_words:
                self._wcol = 0
                held += 1
        self._held = held

    def _ready_register(self, in_valid, out_ready):
        advance = not self._ov or (out_ready[0] and self._j == self._last_beat)
        return (advance and self._inside[self._p],)

    def _tick_register(self, in_valid, in_ready, out_valid, out_ready):
        p = self._p
        advance = not self._ov or (out_ready[0] and self._j == self._last_beat)
        if advance and (in_valid[0] or not self._needs[p]):
            self._ov = self._emit[p]
            self._j = 0
            self._p = p + 1 if p + 1 < self._positions else 0
        elif self._ov and out_ready[0]:
            if self._j == self._last_beat:
                self._ov = False
                self._j = 0
            else:
                self._j += 1
