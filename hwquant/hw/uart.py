"""UART receiver and transmitter, 8N1 (8 data bits LSB first, no parity, one stop bit), with
the bit time given as a divisor of the clock; and :func:`baud_divisor`, which derives it."""

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["MIN_DIVISOR", "UartRx", "UartTx", "baud_divisor", "check_divisor"]

#: Fewest clock cycles per bit: the receiver samples at the middle of each bit.
MIN_DIVISOR = 4

#: Largest relative baud error accepted by :func:`baud_divisor` (a receiver sampling at the
#: middle of the bit tolerates about 4 % over the ten bits of a frame, for both ends together).
MAX_BAUD_ERROR = 0.02


def baud_divisor(clock_hz: float, baud: int) -> int:
    """Clock cycles per bit for ``baud`` from a ``clock_hz`` clock: the nearest integer.

    Raises
    ------
    ValueError
        The divisor would be below :data:`MIN_DIVISOR`, or the rate it gives is more than
        :data:`MAX_BAUD_ERROR` off ``baud``.
    """
    if not baud > 0 or not clock_hz > 0:
        raise ValueError(f"Baud rate and clock must be positive, not {baud!r} and "
                         f"{clock_hz!r} Hz")
    divisor = round(clock_hz / baud)
    if divisor < MIN_DIVISOR:
        raise ValueError(f"Baud rate {baud} is too fast for a {clock_hz / 1e6:g} MHz clock: "
                         f"at least {MIN_DIVISOR} clock cycles per bit are needed (at most "
                         f"{int(clock_hz // MIN_DIVISOR)} baud)")
    error = abs(clock_hz / divisor - baud) / baud
    if error > MAX_BAUD_ERROR:
        raise ValueError(f"Baud rate {baud} from a {clock_hz / 1e6:g} MHz clock is "
                         f"{error:.1%} off (divisor {divisor}); at most "
                         f"{MAX_BAUD_ERROR:.0%} works: choose another baud rate")
    return divisor


def check_divisor(divisor):
    """Raise ``ValueError`` unless ``divisor`` is an integer >= :data:`MIN_DIVISOR`."""
    if isinstance(divisor, bool) or not isinstance(divisor, int) or divisor < MIN_DIVISOR:
        raise ValueError(f"UART divisor must be an integer >= {MIN_DIVISOR} clock cycles per "
                         f"bit, not {divisor!r}")


class UartRx(wiring.Component):
    """8N1 receiver: bytes from the ``rx`` pin as a stream.

    ``rx`` goes through a two-flip-flop synchroniser (it is asynchronous to the clock). A
    falling edge starts a frame; the start bit is checked at its middle (a shorter low pulse is
    ignored), then each data bit is sampled at its middle, every ``divisor`` cycles, and the
    stop bit likewise. A frame whose stop bit is low is dropped (``framing_error`` pulses). The
    byte is offered on ``o_stream`` from the cycle after the stop bit's middle; a byte that
    completes while the previous one is still offered is dropped (``overrun`` pulses): a
    consumer must accept a byte within one frame time (``10 * divisor`` cycles).

    Resources: a counter of ``bits_for(divisor)`` bits, a 4-bit bit counter, an 8-bit shift
    register, the 8-bit output register, 2 synchroniser flip-flops, a few state bits.

    Members
    -------
    rx : ``In(1)``, the serial input (idle high).
    o_stream : ``Out(stream.Signature(8))``, one beat per byte received.
    overrun, framing_error : ``Out(1)``, one-cycle pulses.
    """

    rx: In(1, init=1)
    o_stream: Out(stream.Signature(8))
    overrun: Out(1)
    framing_error: Out(1)

    def __init__(self, divisor: int):
        check_divisor(divisor)
        self._divisor = divisor
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        divisor = self._divisor
        rx = Signal(init=1)
        m.submodules.sync_rx = FFSynchronizer(self.rx, rx, init=1)
        count = Signal(range(divisor))
        bit = Signal(range(9))
        shreg = Signal(8)

        with m.If(self.o_stream.ready):
            m.d.sync += self.o_stream.valid.eq(0)

        with m.FSM():
            with m.State("idle"), m.If(~rx):  # a falling edge: wait for the start bit's middle
                m.d.sync += count.eq(divisor // 2 - 1)
                m.next = "start"
            with m.State("start"):
                with m.If(count != 0):
                    m.d.sync += count.eq(count - 1)
                with m.Elif(rx):  # a glitch, not a start bit
                    m.next = "idle"
                with m.Else():
                    m.d.sync += [count.eq(divisor - 1), bit.eq(0)]
                    m.next = "data"
            with m.State("data"):
                with m.If(count != 0):
                    m.d.sync += count.eq(count - 1)
                with m.Else():
                    m.d.sync += [shreg.eq(Cat(shreg[1:], rx)), bit.eq(bit + 1),
                                 count.eq(divisor - 1)]
                    with m.If(bit == 7):
                        m.next = "stop"
            with m.State("stop"):
                with m.If(count != 0):
                    m.d.sync += count.eq(count - 1)
                with m.Else():
                    m.next = "idle"
                    with m.If(~rx):
                        m.d.comb += self.framing_error.eq(1)
                    with m.Elif(self.o_stream.valid & ~self.o_stream.ready):
                        m.d.comb += self.overrun.eq(1)
                    with m.Else():
                        m.d.sync += [self.o_stream.payload.eq(shreg),
                                     self.o_stream.valid.eq(1)]
        return m


class UartTx(wiring.Component):
    """8N1 transmitter: a stream of bytes onto the ``tx`` pin.

    A byte accepted on ``i_stream`` (``ready`` while idle) is sent as a start bit (low), its
    eight bits LSB first and a stop bit (high), each ``divisor`` cycles long; ``tx`` is a
    register (no glitches) and idles high. The next byte is accepted once the stop bit has
    lasted its full time: one frame every ``10 * divisor + 1`` cycles at most.

    Resources: a ``bits_for(divisor)``-bit counter, a 4-bit bit counter, a 9-bit shift
    register, the ``tx`` flip-flop and a busy flag.

    Members
    -------
    i_stream : ``In(stream.Signature(8))``
    tx : ``Out(1)``, the serial output (idle high).
    """

    i_stream: In(stream.Signature(8))
    tx: Out(1, init=1)

    def __init__(self, divisor: int):
        check_divisor(divisor)
        self._divisor = divisor
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        divisor = self._divisor
        count = Signal(range(divisor))
        remaining = Signal(range(10))
        shreg = Signal(9)
        busy = Signal()
        tx = Signal(init=1)
        m.d.comb += [self.tx.eq(tx), self.i_stream.ready.eq(~busy)]

        with m.If(busy):
            with m.If(count != 0):
                m.d.sync += count.eq(count - 1)
            with m.Elif(remaining == 0):
                m.d.sync += busy.eq(0)
            with m.Else():
                m.d.sync += [tx.eq(shreg[0]), shreg.eq(shreg >> 1),
                             remaining.eq(remaining - 1), count.eq(divisor - 1)]
        with m.Elif(self.i_stream.valid):  # start bit now; then the data bits and the stop bit
            m.d.sync += [shreg.eq(Cat(self.i_stream.payload, Const(1, 1))), tx.eq(0),
                         remaining.eq(9), count.eq(divisor - 1), busy.eq(1)]
        return m
