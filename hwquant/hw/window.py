"""Sliding-window generator: a pixel stream in, a window stream out (padding, stride, any K)."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from .streams import activation_signature, lane_shape

__all__ = ["SlidingWindow"]


def _emit_mask(padded: int, kernel: int, stride: int, out: int) -> int:
    """Bit ``p`` set when padded coordinate ``p`` is the last row/column of an output window."""
    mask = 0
    for o in range(out):
        mask |= 1 << (o * stride + kernel - 1)
    return mask


class SlidingWindow(wiring.Component):
    """Sliding windows of a feature map, generated on the fly from a raster pixel stream.

    The generator walks the *padded* map ``(H + 2*PH) x (W + 2*PW)`` one position per cycle.
    Inside the image it consumes one input pixel; on the border it inserts ``pad_value``
    without consuming (a map whose padding alone completes windows before its first pixel,
    padding >= kernel, starts only once that pixel is offered). Each step shifts a
    ``KH x KW`` window register left by one column and loads the new column from a line buffer
    holding the previous ``KH - 1`` padded rows (one memory word per padded column, read one
    cycle ahead so it maps to block RAM). When the step completes a window at a position
    selected by the stride, the window is offered on ``o_stream``.

    Parameters
    ----------
    in_shape : (C, H, W)
    kernel, stride, padding : pairs of int
    fmt : :class:`hwquant.ir.ActFormat`
        Lane format of input and output.
    pad_value : int
        Value of padded positions (0 for convolution and average pooling, ``fmt.lo`` for max
        pooling).

    Members
    -------
    i_stream : ``In(activation_signature(fmt, C))``
        One pixel per beat, raster order.
    o_stream : ``Out(activation_signature(fmt, KH*KW*C))``
        One window per beat, output positions in raster order; lane ``(kh*KW + kw)*C + c``.

    Throughput and latency: one padded position per cycle, so ``(H+2PH)*(W+2PW)`` cycles per
    map when the consumer keeps up; a window appears one cycle after its last pixel arrives.
    Resources: ``KH*KW*C*bits`` window flip-flops, a ``(W+2PW) x (KH-1)*C*bits`` line buffer,
    two small position counters.
    """

    def __init__(self, in_shape, kernel, stride, padding, fmt, *, pad_value=0):
        c, h, w = (int(v) for v in in_shape)
        (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
        if min(c, h, w, kh, kw, sh, sw) < 1 or min(ph, pw) < 0:
            raise ValueError(f"Sliding window geometry must be positive, not shape {in_shape}, "
                             f"kernel {kernel}, stride {stride}, padding {padding}")
        self._in_shape = (c, h, w)
        self._kernel, self._stride, self._padding = (kh, kw), (sh, sw), (ph, pw)
        self._padded = (h + 2 * ph, w + 2 * pw)
        self._out = ((h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1)
        if min(self._out) < 1:
            raise ValueError(f"Kernel {kernel} does not fit input {(h, w)} with padding "
                             f"{padding}")
        if not fmt.lo <= pad_value <= fmt.hi:
            raise ValueError(f"Pad value {pad_value} is outside the lane range "
                             f"[{fmt.lo}, {fmt.hi}]")
        self._fmt = fmt
        self._pad_value = pad_value
        # A window made of padding alone can complete before the map's first pixel (padding
        # >= kernel). Stepping there freely would emit it before the map has begun, i.e. run
        # into a map that may never come; such a generator waits at the map's first position
        # until the first pixel is offered.
        first = (ph, pw)
        self._wait_for_map = any(
            (oy * sh + kh - 1, ox * sw + kw - 1) < first
            for oy in range(self._out[0]) for ox in range(self._out[1]))
        super().__init__({
            "i_stream": In(activation_signature(fmt, c)),
            "o_stream": Out(activation_signature(fmt, kh * kw * c)),
        })

    @property
    def out_size(self):
        """Output map height and width."""
        return self._out

    @property
    def cycles_per_map(self) -> int:
        """Cycles per feature map when never stalled: one per padded position."""
        return self._padded[0] * self._padded[1]

    def elaborate(self, platform):
        m = Module()
        c, h, w = self._in_shape
        (kh, kw), (sh, sw), (ph, pw) = self._kernel, self._stride, self._padding
        hp, wp = self._padded
        bits = self._fmt.bits
        pix_bits = c * bits

        py = Signal(range(hp))
        px = Signal(range(wp))
        inside = Signal()
        # Only the comparisons padding needs (no constant-true compares in the netlist).
        bounds = []
        if ph:
            bounds += [py >= ph, py < ph + h]
        if pw:
            bounds += [px >= pw, px < pw + w]
        m.d.comb += inside.eq(Cat(*bounds).all() if bounds else 1)

        advance = Signal()  # the output register is free (or being emptied this cycle)
        step = Signal()  # this cycle processes padded position (py, px)
        needs_pixel = inside
        if self._wait_for_map:
            needs_pixel = inside | ((py == 0) & (px == 0))
        m.d.comb += [
            advance.eq(~self.o_stream.valid | self.o_stream.ready),
            step.eq(advance & (~needs_pixel | self.i_stream.valid)),
            self.i_stream.ready.eq(advance & inside),
        ]

        pad_lane = Const(self._pad_value, lane_shape(self._fmt)).as_unsigned()
        pad_pixel = Cat(*([pad_lane] * c))
        new_pixel = Signal(pix_bits)
        m.d.comb += new_pixel.eq(Mux(inside, self.i_stream.payload.as_value(), pad_pixel))

        # Column entering the window: rows py-KH+1 .. py at column px, top row first.
        column = []
        if kh > 1:
            lb = memory.Memory(shape=unsigned((kh - 1) * pix_bits), depth=wp, init=[])
            m.submodules.line_buffer = lb
            wr = lb.write_port()
            rd = lb.read_port(transparent_for=(wr,))
            px_next = Signal.like(px)
            m.d.comb += px_next.eq(Mux(step, Mux(px == wp - 1, 0, px + 1), px))
            # Read one cycle ahead: rd.data always holds the word of the current column.
            m.d.comb += [rd.addr.eq(px_next), rd.en.eq(1)]
            old_rows = [rd.data[i * pix_bits:(i + 1) * pix_bits] for i in range(kh - 1)]
            column = old_rows + [new_pixel]
            m.d.comb += [
                wr.addr.eq(px),
                wr.en.eq(step),
                wr.data.eq(Cat(*column[1:])),
            ]
        else:
            column = [new_pixel]

        # Window register, row-major: win[r][k] is the pixel at kernel offset (r, k).
        win = [[Signal(pix_bits, name=f"win_{r}_{k}") for k in range(kw)] for r in range(kh)]
        with m.If(step):
            for r in range(kh):
                for k in range(kw - 1):
                    m.d.sync += win[r][k].eq(win[r][k + 1])
                m.d.sync += win[r][kw - 1].eq(column[r])
        m.d.comb += self.o_stream.payload.eq(Cat(*(win[r][k] for r in range(kh)
                                                    for k in range(kw))))

        row_mask = Const(_emit_mask(hp, kh, sh, self._out[0]), hp)
        col_mask = Const(_emit_mask(wp, kw, sw, self._out[1]), wp)
        emit = Signal()
        m.d.comb += emit.eq(row_mask.bit_select(py, 1) & col_mask.bit_select(px, 1))

        with m.If(step):
            with m.If(px == wp - 1):
                m.d.sync += px.eq(0)
                m.d.sync += py.eq(Mux(py == hp - 1, 0, py + 1))
            with m.Else():
                m.d.sync += px.eq(px + 1)
            m.d.sync += self.o_stream.valid.eq(emit)
        with m.Elif(self.o_stream.ready):
            m.d.sync += self.o_stream.valid.eq(0)
        return m

