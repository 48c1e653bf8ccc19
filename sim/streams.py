"""cocotb bus-functional models for Amaranth ``lib.stream`` ports.

An Amaranth ``stream.Signature(shape)`` member named ``<prefix>`` becomes three Verilog ports:

``<prefix>__payload``
    ``Shape.cast(shape).width`` bits; for an ``ArrayLayout`` lane 0 sits in the LSBs.
``<prefix>__valid``
    1 bit, driven by the producer.
``<prefix>__ready``
    1 bit, driven by the consumer.

A beat transfers at a rising clock edge where ``valid`` and ``ready`` are both high. Payloads
are handled as Python ints of any width (hundreds of bits are fine).

Timing discipline, hidden inside the classes: every model drives its signals just after the
falling clock edge and samples the handshake in the ``ReadOnly`` phase of that same time step,
when every combinational path (``ready`` depending on ``valid`` and the reverse) has settled to
the values the next rising edge will see. Nothing is ever written in ``ReadOnly``, and the
results do not depend on whether a simulator reports values before or after the registers
update at the rising edge (Verilator reports them after). All models on one clock share one
scheduler coroutine, so a cycle costs two simulator callbacks however many streams there are.

Transfers are recorded as ``(cycle, payload)`` where ``cycle`` numbers the rising edge of the
transfer, counted from the creation of the first model on that clock in the current test, so
the cycles of all models on one clock compare directly.

Models start working when created and drive their idle values (``valid`` or ``ready`` low)
at once, so create them outside the ``ReadOnly`` phase, typically right after reset.
"""

import collections
import numbers
from typing import ClassVar

import cocotb
from cocotb.triggers import Event, FallingEdge, ReadOnly

__all__ = ["StreamProbe", "StreamSink", "StreamSource"]


def _port(dut, prefix, member):
    name = f"{prefix}__{member}"
    try:
        return getattr(dut, name)
    except AttributeError:
        raise ValueError(f"Design has no port '{name}' (stream '{prefix}')") from None


def _probability(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number in [0, 1), not {value!r}")
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), not {value!r}")
    return float(value)


def _is_high(handle):
    value = handle.value
    return value.is_resolvable and int(value) == 1


class _ClockScheduler:
    """Runs every stream model of one clock: drive after the falling edge, sample in ReadOnly."""

    _schedulers: ClassVar[dict] = {}

    def __init__(self, clock):
        self.cycle = 0
        self.models = []
        self._clock = clock
        self._task = cocotb.start_soon(self._run())

    async def _run(self):
        while True:
            await FallingEdge(self._clock)
            self.cycle += 1
            models = list(self.models)
            for model in models:
                model._drive()
            await ReadOnly()
            for model in models:
                model._sample(self.cycle)

    @classmethod
    def of(cls, clock):
        # One scheduler per clock and test: cocotb ends every task when a test ends.
        key = clock._path
        scheduler = cls._schedulers.get(key)
        if scheduler is None or scheduler._task.done():
            scheduler = cls._schedulers[key] = cls(clock)
        return scheduler


class _StreamModel:
    def __init__(self, dut, prefix, clock):
        if not isinstance(prefix, str) or not prefix:
            raise TypeError(f"Stream prefix must be a non-empty string, not {prefix!r}")
        self.prefix = prefix
        self.clock = clock
        self._payload = _port(dut, prefix, "payload")
        self._valid = _port(dut, prefix, "valid")
        self._ready = _port(dut, prefix, "ready")
        self.transfers = []
        self._received = Event()
        self._scheduler = _ClockScheduler.of(clock)

    def _start(self):
        self._scheduler.models.append(self)

    @property
    def width(self):
        """Payload width in bits."""
        return len(self._payload)

    @property
    def count(self):
        """Number of transfers recorded so far."""
        return len(self.transfers)

    @property
    def cycle(self):
        """Cycle number transfers are recorded under now (it steps at every falling edge)."""
        return self._scheduler.cycle

    def _drive(self):
        pass

    def _sample(self, cycle):
        raise NotImplementedError

    def _record(self, cycle, payload):
        self.transfers.append((cycle, payload))
        self._received.set()

    async def wait_for(self, count):
        """Wait until at least ``count`` transfers have been recorded."""
        while len(self.transfers) < count:
            self._received.clear()
            await self._received.wait()


class StreamSource(_StreamModel):
    """Drive a stream into the design (the design's ``ready`` is an output).

    Beats queue up across calls to :meth:`send` and leave back to back: with ``valid_gap=0``
    and ``ready`` held high the source delivers one beat per cycle. Before each beat it
    inserts an idle cycle (``valid`` low) with probability ``valid_gap``, again and again, so
    gaps have geometric length. Once ``valid`` is raised, ``payload`` and ``valid`` stay
    stable until the beat is accepted, as the stream rules require.

    Parameters
    ----------
    dut : cocotb handle
        Top level of the design.
    prefix : str
        Stream name; the ports ``<prefix>__payload``, ``<prefix>__valid`` (driven here) and
        ``<prefix>__ready`` (sampled) must exist.
    clock : cocotb handle
        Clock of the stream.
    rng : random.Random
        Source of the gap decisions (seed it for reproducible runs).
    valid_gap : float
        Probability in ``[0, 1)`` of an idle cycle before a beat. Can be changed between
        beats through the attribute of the same name.

    Members
    -------
    transfers : list of (int, int)
        ``(cycle, payload)`` of every accepted beat.

    Raises
    ------
    TypeError
        If ``valid_gap`` is not a number.
    ValueError
        If a port is missing or ``valid_gap`` is out of range.
    """

    def __init__(self, dut, prefix, clock, *, rng, valid_gap=0.0):
        super().__init__(dut, prefix, clock)
        self._rng = rng
        self.valid_gap = valid_gap
        self._queue = collections.deque()
        self._queued = 0
        self._current = None
        self._valid.value = 0
        self._valid_high = False
        self._start()

    @property
    def valid_gap(self):
        """Probability of an idle cycle before each beat."""
        return self._valid_gap

    @valid_gap.setter
    def valid_gap(self, value):
        self._valid_gap = _probability("valid_gap", value)

    @property
    def idle(self):
        """``True`` when every beat handed to :meth:`send` has been accepted."""
        return self.count == self._queued

    async def send(self, beats):
        """Queue ``beats`` and wait until the design has accepted all of them.

        Parameters
        ----------
        beats : iterable of int
            Payloads, each in ``[0, 2**width)``.

        Raises
        ------
        TypeError
            If a beat is not an int.
        ValueError
            If a beat does not fit the payload port.
        """
        beats = list(beats)
        width = self.width
        for index, beat in enumerate(beats):
            if isinstance(beat, bool) or not isinstance(beat, numbers.Integral):
                raise TypeError(
                    f"Stream '{self.prefix}': beat {index} must be an int, not {beat!r}"
                )
            beat = beats[index] = int(beat)
            if not 0 <= beat < 1 << width:
                raise ValueError(
                    f"Stream '{self.prefix}': beat {index} does not fit {width} bits: {beat:#x}"
                )
        self._queue.extend(beats)
        self._queued += len(beats)
        await self.wait_for(self._queued)

    def _drive(self):
        if self._current is None:
            gap = self._valid_gap and self._rng.random() < self._valid_gap
            if self._queue and not gap:
                self._current = self._queue.popleft()
                self._payload.value = self._current
                if not self._valid_high:
                    self._valid.value = 1
                    self._valid_high = True
            elif self._valid_high:
                self._valid.value = 0
                self._valid_high = False

    def _sample(self, cycle):
        if self._current is not None and _is_high(self._ready):
            self._record(cycle, self._current)
            self._current = None


class StreamSink(_StreamModel):
    """Accept a stream from the design (the design's ``valid`` and ``payload`` are outputs).

    Every cycle the sink drives ``ready`` low with probability ``ready_stall`` and high
    otherwise, and records each transfer.

    Parameters
    ----------
    dut : cocotb handle
        Top level of the design.
    prefix : str
        Stream name; the ports ``<prefix>__payload``, ``<prefix>__valid`` (sampled) and
        ``<prefix>__ready`` (driven here) must exist.
    clock : cocotb handle
        Clock of the stream.
    rng : random.Random
        Source of the stall decisions.
    ready_stall : float
        Probability in ``[0, 1)`` that ``ready`` is low in a cycle; can be changed at any time
        through the attribute of the same name.

    Members
    -------
    transfers : list of (int, int)
        ``(cycle, payload)`` of every transfer.

    Raises
    ------
    TypeError
        If ``ready_stall`` is not a number.
    ValueError
        If a port is missing or ``ready_stall`` is out of range.
    """

    def __init__(self, dut, prefix, clock, *, rng, ready_stall=0.0):
        super().__init__(dut, prefix, clock)
        self._rng = rng
        self.ready_stall = ready_stall
        self._ready.value = 0
        self._ready_high = False
        self._start()

    @property
    def ready_stall(self):
        """Probability that ``ready`` is low in a cycle."""
        return self._ready_stall

    @ready_stall.setter
    def ready_stall(self, value):
        self._ready_stall = _probability("ready_stall", value)

    def _drive(self):
        ready = not (self._ready_stall and self._rng.random() < self._ready_stall)
        if ready != self._ready_high:
            self._ready.value = int(ready)
            self._ready_high = ready

    def _sample(self, cycle):
        if self._ready_high and _is_high(self._valid):
            self._record(cycle, int(self._payload.value))


class StreamProbe(_StreamModel):
    """Watch a stream without driving it (both ``valid`` and ``ready`` are design outputs).

    Meant for probe ports that expose an internal stream between two layers.

    Parameters
    ----------
    dut : cocotb handle
        Top level of the design.
    prefix : str
        Stream name; ``<prefix>__payload``, ``<prefix>__valid`` and ``<prefix>__ready`` are
        only sampled.
    clock : cocotb handle
        Clock of the stream.

    Members
    -------
    transfers : list of (int, int)
        ``(cycle, payload)`` of every transfer seen.

    Raises
    ------
    ValueError
        If a port is missing.
    """

    def __init__(self, dut, prefix, clock):
        super().__init__(dut, prefix, clock)
        self._start()

    def _sample(self, cycle):
        if _is_high(self._valid) and _is_high(self._ready):
            self._record(cycle, int(self._payload.value))
