"""Pooling reducers over windows in channel order (from the folded sliding window): each
window is ``window`` consecutive beats of the same ``lanes`` channels, one per kernel offset;
one output beat per window."""

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .. import ir
from .arith import rshift_rhu, saturate
from .handshake import register_stage
from .streams import activation_signature

__all__ = ["MaxReduce", "AvgReduce", "register_stage"]


def _check_geometry(lanes, window):
    for what, v in (("lanes", lanes), ("window", window)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"Pooling {what} must be a positive integer, not {v!r}")


def _window_reduce(m, i_s, o_s, lanes, window, acc_shape, combine, finish):
    """Shared datapath and handshake of the reducers: fold ``combine`` over the ``window``
    beats of a window into per-lane accumulators (the first beat loads them), apply
    ``finish`` to the last combination and register it as the output beat."""
    x, y = i_s.payload, o_s.payload
    if window == 1:
        with m.If(register_stage(m, i_s, o_s)):
            m.d.sync += [y[k].eq(finish(x[k])) for k in range(lanes)]
        return
    count = Signal(range(window), name="count")
    acc = [Signal(acc_shape, name=f"acc{k}", reset_less=True) for k in range(lanes)]
    last = Signal(name="last")  # count == window - 1, a register: ready is one gate
    m.d.comb += i_s.ready.eq(~last | ~o_s.valid | o_s.ready)
    accept = i_s.valid & i_s.ready
    with m.If(accept & last):
        m.d.sync += [count.eq(0), last.eq(0), o_s.valid.eq(1)]
        m.d.sync += [y[k].eq(finish(combine(acc[k], x[k]))) for k in range(lanes)]
    with m.Elif(o_s.ready):
        m.d.sync += o_s.valid.eq(0)
    with m.If(i_s.valid & ~last):  # accept & ~last: ready is high before the last beat
        m.d.sync += [count.eq(count + 1), last.eq(count == window - 2)]
        m.d.sync += [acc[k].eq(Mux(count == 0, x[k], combine(acc[k], x[k])))
                     for k in range(lanes)]


class _Reducer(wiring.Component):
    """Streams and geometry shared by the reducers (``lanes`` channels per beat, ``window``
    beats per output beat)."""

    def __init__(self, lanes, window, in_format, out_format):
        _check_geometry(lanes, window)
        self._lanes, self._window = lanes, window
        super().__init__({
            "i_stream": In(activation_signature(in_format, lanes)),
            "o_stream": Out(activation_signature(out_format, lanes)),
        })

    @property
    def lanes(self) -> int:
        return self._lanes

    @property
    def window(self) -> int:
        return self._window


class MaxReduce(_Reducer):
    """Per-channel maximum over a window of ``window`` beats (``docs/arithmetic.md``,
    *MaxPool2d*; padding arrives from the sliding window as the format's ``lo``).

    Timing: the first ``window - 1`` beats of a window are accepted whenever they arrive; the
    last one when the output register is empty or emptied this cycle; its result is offered
    from the next cycle (latency 1). One input beat per cycle, one output beat per window.
    ``o_stream.valid`` is a register. :class:`hwquant.schedule.streams.ReduceTiming` is this
    contract.

    Resources: per lane a running-maximum register, a comparator and a 2:1 mux (one more mux
    loads the window's first beat); an output register of ``lanes * bits`` bits; a counter of
    ``window`` states. ``window = 1`` is a pipeline register.

    Parameters
    ----------
    lanes : int
        Channels per beat.
    window : int
        Kernel positions per window (``KH * KW``), beats per output beat.
    fmt : :class:`hwquant.ir.ActFormat`
        Format of the input and of the output.

    Members
    -------
    i_stream : ``In(activation_signature(fmt, lanes))``
    o_stream : ``Out(activation_signature(fmt, lanes))``

    Raises
    ------
    ValueError
        If ``lanes`` or ``window`` is not a positive integer.
    """

    def __init__(self, lanes, window, fmt):
        self._fmt = fmt
        super().__init__(lanes, window, fmt, fmt)

    def elaborate(self, platform):
        m = Module()
        shape = signed(self._fmt.bits) if self._fmt.signed else unsigned(self._fmt.bits)
        _window_reduce(m, self.i_stream, self.o_stream, self._lanes, self._window, shape,
                       lambda a, v: Mux(v > a, v, a), lambda s: s)
        return m


class AvgReduce(_Reducer):
    """Per-channel window sum, then ``sat(rshift_rhu(sum * multiplier, shift), lo, hi)``
    (``docs/arithmetic.md``, *AvgPool2d*; padding arrives as zeros).

    Timing: as :class:`MaxReduce` (:class:`hwquant.schedule.streams.ReduceTiming`); the
    requantization sits between the last addition and the output register.

    Resources: per lane an accumulator of ``bits + ceil(log2(window))`` bits with its adder, the
    constant multiply (shift-and-add; none when the multiplier is 1), the rounding adder and
    the saturation comparators; an output register of ``lanes * out_bits`` bits; a counter of
    ``window`` states.

    Parameters
    ----------
    lanes : int
        Channels per beat.
    window : int
        Kernel positions per window (``KH * KW``), beats per output beat.
    in_format, out_format : :class:`hwquant.ir.ActFormat`
    requant : :class:`hwquant.ir.Requant`
        One multiplier, the shift and the bounds (within ``out_format``).

    Members
    -------
    i_stream : ``In(activation_signature(in_format, lanes))``
    o_stream : ``Out(activation_signature(out_format, lanes))``

    Raises
    ------
    ValueError
        If ``lanes`` or ``window`` is not a positive integer, the requantization has more
        than one multiplier or its bounds leave ``out_format``.
    """

    def __init__(self, lanes, window, in_format, out_format, requant):
        if not isinstance(requant, ir.Requant) or requant.multiplier.shape != (1,):
            raise ValueError(f"Average pooling takes a requantization with one multiplier, "
                             f"not {requant!r}")
        if requant.lo < out_format.lo or requant.hi > out_format.hi:
            raise ValueError(f"Average pooling bounds [{requant.lo}, {requant.hi}] must lie "
                             f"within the output format's [{out_format.lo}, {out_format.hi}]")
        self._in_format, self._requant = in_format, requant
        super().__init__(lanes, window, in_format, out_format)

    def elaborate(self, platform):
        m = Module()
        rq, fmt = self._requant, self._in_format
        mult = int(rq.multiplier[0])
        bits = fmt.bits + (self._window - 1).bit_length()
        shape = signed(bits) if fmt.signed else unsigned(bits)

        def finish(s):
            if mult != 1:
                s = s * mult
            return saturate(rshift_rhu(s, rq.shift), rq.lo, rq.hi)

        _window_reduce(m, self.i_stream, self.o_stream, self._lanes, self._window, shape,
                       lambda a, v: a + v, finish)
        return m
