"""Board top: the network behind a UART host link (:mod:`hwquant.host` defines the bytes).

::

    rx -> UartRx -> image buffer (StreamFifo, one image of bytes) -> PixelAssembler
       -> NetworkTop -> ReplySerializer -> UartTx -> tx

The clock comes in on ``clk``; ``rst`` (active high, asynchronous: a button, or tied low) is
synchronised to it by a reset synchroniser that also holds the design in reset for two cycles
after configuration.
"""

from amaranth.hdl import ClockDomain, ClockSignal, Module, Signal, Value
from amaranth.lib import data, stream, wiring
from amaranth.lib.cdc import ResetSynchronizer
from amaranth.lib.wiring import In, Out

from .. import ir
from .. import plan as P
from ..host import LinkFormat
from .fifo import StreamFifo
from .network import NetworkTop
from .streams import activation_signature
from .uart import UartRx, UartTx, baud_divisor, check_divisor

__all__ = ["BoardTop", "PixelAssembler", "ReplySerializer"]


class PixelAssembler(wiring.Component):
    """Bytes to input beats: ``beat_bytes`` bytes (lane 0 first, each lane ``lane_bytes``
    bytes little-endian, of which the low ``bits`` bits are kept) make one beat.

    Timing: a byte is accepted per cycle while no beat is offered; the beat is offered from the
    cycle after its last byte and held until taken (the byte input waits meanwhile).

    Resources: a ``beat_bytes * 8``-bit shift register, a byte counter, a valid flag.

    Members
    -------
    i_stream : ``In(stream.Signature(8))``
    o_stream : ``Out(activation_signature(fmt, lanes))``
    """

    def __init__(self, fmt: ir.ActFormat, lanes: int, lane_bytes: int):
        self._fmt, self._lanes, self._lane_bytes = fmt, lanes, lane_bytes
        super().__init__({"i_stream": In(stream.Signature(8)),
                          "o_stream": Out(activation_signature(fmt, lanes))})

    def elaborate(self, platform):
        m = Module()
        nbytes = self._lanes * self._lane_bytes
        shreg = Signal(8 * nbytes)
        count = Signal(range(max(nbytes, 2)))  # never zero bits wide (Verilator rejects it)
        m.d.comb += self.i_stream.ready.eq(~self.o_stream.valid)
        with m.If(self.o_stream.ready):
            m.d.sync += self.o_stream.valid.eq(0)
        with m.If(self.i_stream.valid & self.i_stream.ready):
            m.d.sync += shreg.eq(shreg[8:] if nbytes > 1 else 0)
            m.d.sync += shreg[-8:].eq(self.i_stream.payload)
            with m.If(count == nbytes - 1):
                m.d.sync += [count.eq(0), self.o_stream.valid.eq(1)]
            with m.Else():
                m.d.sync += count.eq(count + 1)
        for lane in range(self._lanes):
            lo = 8 * self._lane_bytes * lane
            m.d.comb += self.o_stream.payload[lane].eq(shreg[lo:lo + self._fmt.bits])
        return m


class ReplySerializer(wiring.Component):
    """One ``{cls, logits}`` beat to the reply bytes of :class:`hwquant.host.LinkFormat`: the
    class index, then (``link.logits``) every logit sign-extended to whole bytes, each value
    little-endian.

    Timing: a beat is taken when no reply is being sent; its bytes are offered one per cycle
    while the byte consumer is ready.

    Resources: a register of the reply (``reply_bytes * 8`` bits), a byte counter, a busy flag;
    a ``reply_bytes``-way byte mux.

    Members
    -------
    i_stream : ``In(stream.Signature(layout))``, the network's output beat.
    o_stream : ``Out(stream.Signature(8))``
    """

    def __init__(self, layout: data.StructLayout, link: LinkFormat):
        self._link = link
        super().__init__({"i_stream": In(stream.Signature(layout)),
                          "o_stream": Out(stream.Signature(8))})

    def elaborate(self, platform):
        m = Module()
        link = self._link
        nbytes = link.reply_bytes
        reply = Signal(8 * nbytes)
        index = Signal(range(max(nbytes, 2)))  # never zero bits wide (Verilator rejects it)
        busy = Signal()
        beat = self.i_stream.payload
        fields = [Value.cast(beat.cls)]
        widths = [8 * link.cls_bytes]
        if link.logits:
            for lane in range(link.classes):
                fields.append(Value.cast(beat.logits[lane]))  # signed lanes stay signed
                widths.append(8 * link.logit_bytes)
        m.d.comb += self.i_stream.ready.eq(~busy)
        with m.If(self.i_stream.valid & ~busy):
            lo = 0
            for field, width in zip(fields, widths):
                # Assigning to a wider slice extends by the value's signedness.
                m.d.sync += reply[lo:lo + width].eq(field)
                lo += width
            m.d.sync += [busy.eq(1), index.eq(0)]
        byte = Signal(8)
        m.d.comb += byte.eq(reply.word_select(index, 8))
        m.d.comb += [self.o_stream.valid.eq(busy), self.o_stream.payload.eq(byte)]
        with m.If(busy & self.o_stream.ready):
            with m.If(index == nbytes - 1):
                m.d.sync += busy.eq(0)
            with m.Else():
                m.d.sync += index.eq(index + 1)
        return m


class BoardTop(wiring.Component):
    """The network behind an 8N1 UART: images in on ``rx``, classes (and logits) out on ``tx``.

    Parameters
    ----------
    plan : :class:`hwquant.plan.Plan` or :class:`hwquant.ir.Network`
    divisor : int
        Clock cycles per UART bit (:func:`hwquant.hw.uart.baud_divisor`; see
        :meth:`for_clock`).
    logits : bool
        Send the logits after the class index.
    buffer_bytes : int, optional
        Bytes the receive buffer holds; default one image (:class:`hwquant.host.LinkFormat`),
        so a host that waits for each reply never loses a byte.

    Members
    -------
    clk : ``In(1)``, the board clock; the design's ``sync`` domain.
    rst : ``In(1)``, active-high asynchronous reset request, synchronised inside.
    rx : ``In(1)``, UART from the host (idle high).
    tx : ``Out(1)``, UART to the host (idle high).

    Latency: an image's reply starts about one pipeline latency of the network after its last
    byte's stop bit; throughput is bounded by the link (``10 * divisor`` cycles per byte) unless
    the network is slower.
    """

    clk: In(1)
    rst: In(1)
    rx: In(1, init=1)
    tx: Out(1, init=1)

    def __init__(self, plan, *, divisor: int, logits: bool = False, buffer_bytes=None):
        if isinstance(plan, ir.Network):
            plan = P.plan_network(plan)
        self._plan = plan
        self._divisor = divisor
        self._link = LinkFormat.of(plan.network, logits=logits)
        self._buffer = self._link.image_bytes if buffer_bytes is None else buffer_bytes
        if isinstance(self._buffer, bool) or not isinstance(self._buffer, int) or \
                self._buffer < 1:
            raise ValueError(f"Receive buffer must hold at least 1 byte, not {buffer_bytes!r}")
        check_divisor(divisor)
        super().__init__()

    @classmethod
    def for_clock(cls, plan, clock_hz: float, baud: int = 115200, **kwargs):
        """A board top for a ``clock_hz`` clock at ``baud`` (8N1)."""
        return cls(plan, divisor=baud_divisor(clock_hz, baud), **kwargs)

    @property
    def link(self) -> LinkFormat:
        """The byte format of the link."""
        return self._link

    @property
    def divisor(self) -> int:
        return self._divisor

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = ClockDomain("sync")
        m.d.comb += ClockSignal("sync").eq(self.clk)
        m.submodules.reset_sync = ResetSynchronizer(self.rst, domain="sync")

        net = self._plan.network
        link = self._link
        m.submodules.uart_rx = rx = UartRx(self._divisor)
        m.submodules.buffer = buffer = StreamFifo(ir.ActFormat(8, False, 0), 1, self._buffer,
                                                  registered_ready=True)
        m.submodules.assembler = assembler = PixelAssembler(net.input_format, link.lanes,
                                                            link.lane_bytes)
        m.submodules.network = network = NetworkTop(self._plan)
        m.submodules.serializer = serializer = ReplySerializer(
            network.o_stream.payload.shape(), link)
        m.submodules.uart_tx = tx = UartTx(self._divisor)

        m.d.comb += rx.rx.eq(self.rx)
        m.d.comb += [buffer.i_stream.valid.eq(rx.o_stream.valid),
                     buffer.i_stream.payload[0].eq(rx.o_stream.payload),
                     rx.o_stream.ready.eq(buffer.i_stream.ready)]
        m.d.comb += [assembler.i_stream.valid.eq(buffer.o_stream.valid),
                     assembler.i_stream.payload.eq(buffer.o_stream.payload[0]),
                     buffer.o_stream.ready.eq(assembler.i_stream.ready)]
        wiring.connect(m, assembler.o_stream, network.i_stream)
        wiring.connect(m, network.o_stream, serializer.i_stream)
        wiring.connect(m, serializer.o_stream, tx.i_stream)
        m.d.comb += self.tx.eq(tx.tx)
        return m
