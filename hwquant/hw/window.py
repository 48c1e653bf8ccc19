"""Sliding-window generator: a folded pixel stream in, a folded window stream out (padding,
stride, any kernel)."""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from ..schedule.window import window_geometry
from .streams import activation_signature, lane_shape

__all__ = ["SlidingWindow"]


class SlidingWindow(wiring.Component):
    """Sliding windows of a feature map, generated on the fly from a folded raster stream.

    Windows are emitted per output position in raster order, each as ``KH*KW*C / simd`` beats
    of ``simd`` lanes. With ``order="kernel"`` (for the MVU) the beats are the window-lane
    vector (lane ``(kh*KW + kw)*C + c``) cut into ``simd``-lane chunks: for each kernel offset
    ``(kh, kw)`` in raster order, its ``C / simd`` channel chunks. With ``order="channel"``
    (for pooling) the beats are, for each channel chunk, the ``KH*KW`` kernel offsets in raster
    order. Padded positions carry ``pad_value`` in every lane.

    **Memory mode** (``simd`` divides ``C``). The input is the map in the folded convention
    (``C / simd`` beats per pixel). A writer stores every beat, in arrival order, into a
    circular buffer of ``rows`` input rows (:attr:`buffer_rows`, ``W * C / simd`` words of
    ``simd`` lanes each, one synchronous read port: block or LUT RAM). A reader walks the output
    beats with incremental counters and reads one word per beat (padded beats read nothing).
    Writer and reader hand rows over whole: output row ``oy`` starts once the input rows it
    reads are complete (a row made of top padding alone waits for the map's first row, so
    nothing is emitted before a map begins), and when its last beat is issued it frees the
    rows the next output row no longer reads; the writer accepts while fewer than ``rows``
    complete rows are held. ``rows`` is the least that lets the writer complete the next output
    row's input (the next map's first rows after a map's last output row) while the current
    one is read, typically ``KH + SH``, so maps follow each other back to back.

    **Register mode** (``simd`` a multiple of ``C`` dividing ``KH*KW*C``, kernel order only,
    for maps of few channels). One whole pixel per input beat. The generator walks the padded
    map one position per cycle, shifting a ``KH x KW`` window register fed from a line buffer
    of the previous ``KH - 1`` rows; each completed window is emitted as ``KH*KW*C / simd``
    beats from the window register, during which the walk holds.

    Parameters
    ----------
    in_shape : (C, H, W)
    kernel, stride, padding : pairs of int
    fmt : :class:`hwquant.ir.ActFormat`
        Lane format of input and output.
    simd : int
        Output lanes: a divisor of ``C`` (memory mode), or a multiple of ``C`` dividing
        ``KH*KW*C`` (register mode).
    order : ``"kernel"`` or ``"channel"``
        Beat order within a window.
    pad_value : int
        Value of padded positions (0 for convolution and average pooling, ``fmt.lo`` for max
        pooling).

    Members
    -------
    i_stream : ``In(activation_signature(fmt, in_lanes))``
        The maps, raster pixels, each pixel ``C / in_lanes`` beats; maps back to back.
    o_stream : ``Out(activation_signature(fmt, simd))``
        The windows, :attr:`beats_per_map` beats per map.

    Raises
    ------
    ValueError
        Bad geometry, ``order`` or ``simd`` (the message lists the allowed SIMD values), or a
        pad value outside the lane range.

    Timing (memory mode): the input accepts one beat per cycle while the buffer has room
    (``i_stream.ready`` depends on state only). The output issues one beat per cycle while the
    consumer takes them and the current output row's input rows are complete: if the last
    input beat an output row needs is taken in cycle ``n``, its first beat is valid in cycle
    ``n + 2``. Never stalled and with the input keeping up, maps follow each other without a
    gap, :attr:`beats_per_map` cycles each; rows whose windows read more input beats than they
    emit (a stride wider than the kernel) run at the input's rate instead. Register mode: one
    padded position per cycle plus ``beats_per_window - 1`` cycles per window; a window is
    valid the cycle after its last pixel is taken. ``o_stream.valid`` is a register in both
    modes. :class:`hwquant.schedule.window.SlidingWindowTiming` reproduces both handshakes
    cycle for cycle.
    Resources (memory mode): ``rows * W * C * bits`` buffer bits, ``simd * bits`` output
    flip-flops (the read port's register), counters (kernel, channel chunk, output position,
    buffer address, rows held). Register mode: ``KH*KW*C*bits`` window flip-flops, a
    ``(W + 2PW) x (KH - 1)*C*bits`` line buffer, a ``simd``-lane output multiplexer.
    """

    def __init__(self, in_shape, kernel, stride, padding, fmt, *, simd, order="kernel",
                 pad_value=0):
        geo = window_geometry(in_shape, kernel, stride, padding, simd=simd, order=order)
        if not fmt.lo <= pad_value <= fmt.hi:
            raise ValueError(f"Pad value {pad_value} is outside the lane range "
                             f"[{fmt.lo}, {fmt.hi}]")
        self._geo = geo
        self._fmt = fmt
        self._pad_value = pad_value
        super().__init__({
            "i_stream": In(activation_signature(fmt, geo.in_lanes)),
            "o_stream": Out(activation_signature(fmt, simd)),
        })

    @property
    def geometry(self):
        """The :class:`hwquant.schedule.window.WindowGeometry` this generator implements."""
        return self._geo

    @property
    def in_lanes(self) -> int:
        """Input lanes: ``simd`` in memory mode, ``C`` in register mode."""
        return self._geo.in_lanes

    @property
    def simd(self) -> int:
        return self._geo.simd

    @property
    def order(self) -> str:
        return self._geo.order

    @property
    def out_size(self):
        """Output map height and width."""
        return self._geo.out_size

    @property
    def beats_per_map(self) -> int:
        """Output beats per map: ``OH * OW * KH*KW*C / simd``."""
        return self._geo.beats_per_map

    @property
    def buffer_rows(self) -> int:
        """Input rows held by the memory-mode buffer (0 in register mode)."""
        return self._geo.rows

    def _pad_word(self, lanes):
        lane = Const(self._pad_value, lane_shape(self._fmt)).as_unsigned()
        return Cat(*([lane] * lanes))

    def elaborate(self, platform):
        if self._geo.memory:
            return self._elaborate_memory()
        return self._elaborate_register()

    # -- memory mode -----------------------------------------------------------------------

    def _levels(self):
        """Reader loop levels, innermost first: ``(name, size, (dy, dx, dc))`` of size > 1."""
        g = self._geo
        (kh, kw), (sh, sw) = g.kernel, g.stride
        oh, ow = g.out_size
        cf = ("cf", g.chunks, (0, 0, 1))
        kernel = [("kw", kw, (0, 1, 0)), ("kh", kh, (1, 0, 0))]
        inner = [cf, *kernel] if g.order == "kernel" else [*kernel, cf]
        levels = inner + [("ox", ow, (0, sw, 0)), ("oy", oh, (sh, 0, 0))]
        return [lv for lv in levels if lv[1] > 1]

    def _elaborate_memory(self):
        m = Module()
        g = self._geo
        _, h, w = g.in_shape
        ph, pw = g.padding
        chunks, row_words, depth, rows = g.chunks, g.row_words, g.depth, g.rows
        i_s, o_s = self.i_stream, self.o_stream

        buf = memory.Memory(shape=unsigned(g.simd * self._fmt.bits), depth=depth, init=[])
        m.submodules.buffer = buf
        wr = buf.write_port()
        rd = buf.read_port()

        # Complete rows held, counted from the lowest row the reader still reads. Negative
        # while the writer completes rows that no window reads and the reader has passed.
        held = Signal(range(g.least, rows + 1))

        # -- writer: every input beat into the next word of the circular buffer.
        write = Signal()
        row_done = Signal()
        m.d.comb += [
            i_s.ready.eq(held < rows),
            write.eq(i_s.valid & i_s.ready),
            wr.data.eq(i_s.payload.as_value()),
            wr.en.eq(write),
        ]
        waddr = Signal(range(depth))
        m.d.comb += wr.addr.eq(waddr)
        with m.If(write):
            m.d.sync += waddr.eq(Mux(waddr == depth - 1, 0, waddr + 1))
        if row_words > 1:
            wcol = Signal(range(row_words))
            with m.If(write):
                m.d.sync += wcol.eq(Mux(wcol == row_words - 1, 0, wcol + 1))
            m.d.comb += row_done.eq(write & (wcol == row_words - 1))
        else:
            m.d.comb += row_done.eq(write)

        # -- reader: nested counters over the output beats of a map.
        levels = self._levels()
        counters = [Signal(range(size), name=f"r_{name}") for name, size, _ in levels]
        last = [cnt == size - 1 for cnt, (_, size, _) in zip(counters, levels)]

        # Per level, the change of (row, column, chunk) when it steps and the inner ones wrap;
        # the last entry is the step to the next map's first beat.
        spans = [tuple((size - 1) * s for s in step) for _, size, step in levels]
        deltas = []
        for i, (_, _, step) in enumerate(levels):
            deltas.append(tuple(step[k] - sum(sp[k] for sp in spans[:i]) for k in range(3)))
        deltas.append(tuple(-sum(sp[k] for sp in spans) for k in range(3)))
        map_rows = h  # a map later in the stream is h rows further on in the buffer

        def select(values):
            """The value of the innermost level that steps this beat (or the map's)."""
            v = Const(values[-1])
            for i in reversed(range(len(levels))):
                v = Mux(~last[i], Const(values[i]), v)
            return v

        # Buffer address of (row, column, chunk): row * W * chunks + column * chunks + chunk,
        # modulo the depth; linear, so every step adds a constant.
        addr_steps = [(dy * row_words + dx * chunks + dc) % depth for dy, dx, dc in deltas]
        addr_steps[-1] = (addr_steps[-1] + map_rows * row_words) % depth
        addr = Signal(range(depth), init=(-(ph * row_words + pw * chunks)) % depth)
        addr_sum = Signal(range(2 * depth))
        m.d.comb += addr_sum.eq(addr + select(addr_steps))
        if depth & (depth - 1):
            addr_next = Mux(addr_sum >= depth, addr_sum - depth, addr_sum)
        else:
            addr_next = addr_sum[:len(addr)]

        # Position inside the map, for the padding test (only along padded axes).
        inside_terms = []
        coords = []
        if ph:
            y = Signal(range(-ph, h + ph), init=-ph)
            coords.append((y, [d[0] for d in deltas]))
            inside_terms += [y >= 0, y < h]
        if pw:
            x = Signal(range(-pw, w + pw), init=-pw)
            coords.append((x, [d[1] for d in deltas]))
            inside_terms += [x >= 0, x < w]
        inside = Signal()
        m.d.comb += inside.eq(Cat(*inside_terms).all() if inside_terms else 1)

        # Output-row handshake with the writer: rows needed before the row's first beat, rows
        # released after its last one. The issue test held >= need[oy] is the sign bit of a
        # register, short = need[oy] - held - 1, which moves with held (a row written: -1)
        # and, when a row ends, by the next row's need minus this one's plus this row's
        # release. That step and the release are registers loaded, when a row ends, with the
        # next row's: no comparison or table lookup before issue.
        issue = Signal()
        oh = levels[-1][1] if levels and levels[-1][0] == "oy" else 1
        steps = [g.need[(k + 1) % oh] - g.need[k] + g.release[k] for k in range(oh)]
        if oh > 1:
            oy = counters[-1]
            row_end = Cat(*last[:-1]).all() if len(levels) > 1 else Const(1)
            lo_s, hi_s = min(steps + [0]), max(steps + [0])
            release = Signal(range(h + 1), init=g.release[0], name="release")
            step = Signal(range(lo_s, hi_s + 1), init=steps[0], name="short_step")
            next_release = Array(Const(g.release[(k + 1) % oh], range(h + 1))
                                 for k in range(oh))
            next_step = Array(Const(steps[(k + 1) % oh], range(lo_s, hi_s + 1))
                              for k in range(oh))
            with m.If(issue & row_end):
                m.d.sync += [release.eq(next_release[oy]), step.eq(next_step[oy])]
        else:
            row_end = Cat(*last).all() if levels else Const(1)
            release = Const(g.release[0], range(h + 1))
            step = Const(steps[0], range(min(steps[0], 0), max(steps[0], 0) + 1))
        span = rows + h + max(abs(v) for v in steps) + 2
        short = Signal(range(-span, span + 1), init=g.need[0] - 1, name="short")

        advance = Signal()
        can = Signal()
        m.d.comb += [
            advance.eq(~o_s.valid | o_s.ready),
            can.eq(short[-1]),  # short < 0
            issue.eq(advance & can),
            rd.addr.eq(addr),
            rd.en.eq(issue & inside),
        ]
        pad_r = Signal()
        with m.If(advance):
            m.d.sync += [o_s.valid.eq(can), pad_r.eq(~inside)]
        with m.If(issue):
            m.d.sync += addr.eq(addr_next)
            for sig, steps in coords:
                m.d.sync += sig.eq(sig + select(steps))
            for i, cnt in enumerate(counters):
                carry = Cat(*last[:i]).all() if i else Const(1)
                with m.If(carry):
                    m.d.sync += cnt.eq(Mux(last[i], 0, cnt + 1))
        released = Signal(range(h + 1))
        m.d.comb += released.eq(Mux(issue & row_end, release, 0))
        m.d.sync += held.eq(held + row_done - released)
        m.d.sync += short.eq(short - row_done + Mux(issue & row_end, step, 0))

        if inside_terms:
            m.d.comb += o_s.payload.eq(Mux(pad_r, self._pad_word(g.simd), rd.data))
        else:
            m.d.comb += o_s.payload.eq(rd.data)
        return m

    # -- register mode ---------------------------------------------------------------------

    def _elaborate_register(self):
        m = Module()
        g = self._geo
        c, h, w = g.in_shape
        (kh, kw), (sh, sw), (ph, pw) = g.kernel, g.stride, g.padding
        oh, ow = g.out_size
        hp, wp = h + 2 * ph, w + 2 * pw
        pix_bits = c * self._fmt.bits
        beats = g.beats_per_window
        i_s, o_s = self.i_stream, self.o_stream

        # Padded position; a 1-long axis has no counter (no zero-width signals).
        py = Signal(range(hp)) if hp > 1 else Const(0)
        px = Signal(range(wp)) if wp > 1 else Const(0)
        inside = Signal()
        bounds = []
        if ph:
            bounds += [py >= ph, py < ph + h]
        if pw:
            bounds += [px >= pw, px < pw + w]
        m.d.comb += inside.eq(Cat(*bounds).all() if bounds else 1)

        # Beat of the held window on o_stream.
        if beats > 1:
            beat = Signal(range(beats))
            last_beat = beat == beats - 1
        else:
            beat, last_beat = None, Const(1)

        advance = Signal()  # the window register is free (or its last beat leaves now)
        step = Signal()  # this cycle processes padded position (py, px)
        # A window made of padding alone can complete before the map's first pixel (padding
        # >= kernel). Stepping there freely would emit it before the map has begun, i.e. run
        # into a map that may never come; such a generator waits at the map's first position
        # until the first pixel is offered.
        wait_for_map = any((oy * sh + kh - 1, ox * sw + kw - 1) < (ph, pw)
                           for oy in range(oh) for ox in range(ow))
        needs_pixel = inside | ((py == 0) & (px == 0)) if wait_for_map else inside
        m.d.comb += [
            advance.eq(~o_s.valid | (o_s.ready & last_beat)),
            step.eq(advance & (~needs_pixel | i_s.valid)),
            i_s.ready.eq(advance & inside),
        ]

        new_pixel = Signal(pix_bits)
        m.d.comb += new_pixel.eq(Mux(inside, i_s.payload.as_value(), self._pad_word(c)))

        # Column entering the window: rows py-KH+1 .. py at column px, top row first.
        if kh > 1 and wp > 1:
            lb = memory.Memory(shape=unsigned((kh - 1) * pix_bits), depth=wp, init=[])
            m.submodules.line_buffer = lb
            wr = lb.write_port()
            rd = lb.read_port(transparent_for=(wr,))
            px_next = Signal.like(px)
            m.d.comb += px_next.eq(Mux(step, Mux(px == wp - 1, 0, px + 1), px))
            # Read one cycle ahead: rd.data always holds the word of the current column.
            m.d.comb += [rd.addr.eq(px_next), rd.en.eq(1), wr.addr.eq(px)]
            old_rows = [rd.data[i * pix_bits:(i + 1) * pix_bits] for i in range(kh - 1)]
            column = old_rows + [new_pixel]
            m.d.comb += [wr.data.eq(Cat(*column[1:])), wr.en.eq(step)]
        elif kh > 1:
            # One padded column: the line buffer is a single register.
            lb_word = Signal((kh - 1) * pix_bits, name="line_buffer")
            old_rows = [lb_word[i * pix_bits:(i + 1) * pix_bits] for i in range(kh - 1)]
            column = old_rows + [new_pixel]
            with m.If(step):
                m.d.sync += lb_word.eq(Cat(*column[1:]))
        else:
            column = [new_pixel]

        # Window register, row-major: win[r][k] is the pixel at kernel offset (r, k).
        win = [[Signal(pix_bits, name=f"win_{r}_{k}") for k in range(kw)] for r in range(kh)]
        with m.If(step):
            for r in range(kh):
                for k in range(kw - 1):
                    m.d.sync += win[r][k].eq(win[r][k + 1])
                m.d.sync += win[r][kw - 1].eq(column[r])
        window = Cat(*(win[r][k] for r in range(kh) for k in range(kw)))
        width = g.simd * self._fmt.bits
        if beat is None:
            m.d.comb += o_s.payload.eq(window)
        else:
            chunks = Array(window[j * width:(j + 1) * width] for j in range(beats))
            m.d.comb += o_s.payload.eq(chunks[beat])

        emit_rows = {oy * sh + kh - 1 for oy in range(oh)}
        emit_cols = {ox * sw + kw - 1 for ox in range(ow)}
        row_mask = Const(sum(1 << r for r in emit_rows), hp)
        col_mask = Const(sum(1 << k for k in emit_cols), wp)
        emit = Signal()
        m.d.comb += emit.eq(row_mask.bit_select(py, 1) & col_mask.bit_select(px, 1))

        with m.If(step):
            if wp > 1:
                with m.If(px == wp - 1):
                    m.d.sync += px.eq(0)
                    if hp > 1:
                        m.d.sync += py.eq(Mux(py == hp - 1, 0, py + 1))
                with m.Else():
                    m.d.sync += px.eq(px + 1)
            elif hp > 1:
                m.d.sync += py.eq(Mux(py == hp - 1, 0, py + 1))
            m.d.sync += o_s.valid.eq(emit)
            if beat is not None:
                m.d.sync += beat.eq(0)
        with m.Elif(o_s.valid & o_s.ready):
            if beat is None:
                m.d.sync += o_s.valid.eq(0)
            else:
                with m.If(last_beat):
                    m.d.sync += [o_s.valid.eq(0), beat.eq(0)]
                with m.Else():
                    m.d.sync += beat.eq(beat + 1)
        return m
