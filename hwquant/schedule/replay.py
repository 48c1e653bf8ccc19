"""Network replay: step the timing models of every stage of a :class:`~hwquant.plan.Plan`
together, cycle by cycle, as the hardware would run, to predict cycles per inference and to
derive FIFO depths.

The replay drives the network input without gaps and keeps the output always ready (the
stall-free steady state that ``hwquant sim`` measures). Every stage's model is the
cycle-exact model of its component (tested against the component under random stalls), so
the replay is the hardware's handshake schedule without the data.

FIFO sizing (:func:`size_fifos`): a first replay with unbounded FIFOs gives the best period
``T*`` and each FIFO's largest occupancy (a depth that can never block). Then each FIFO, the
largest first, is shrunk by bisection to the least depth whose replay still completes every
inference every ``T*`` cycles without deadlock (the others at their current depths). The
result keeps the bottleneck rate by construction, and the last replay proves it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import plan as P
from .base import TimingModel

__all__ = ["ReplayResult", "Deadlock", "replay", "size_fifos", "stage_model"]

#: Depth standing in for an unbounded FIFO.
UNBOUNDED = 1 << 40


class Deadlock(RuntimeError):
    """No transfer happened anywhere for longer than any stage can be busy."""


class _SourceTiming(TimingModel):
    inputs, outputs = 0, 1

    def __init__(self, beats):
        self.left = beats
        self._v = (beats > 0,)

    def valid(self):
        return self._v

    def ready(self, in_valid, out_ready):
        return ()

    def tick(self, in_valid, in_ready, out_valid, out_ready):
        if out_valid[0] and out_ready[0]:
            self.left -= 1
            self._v = (self.left > 0,)


def stage_model(stage, *, fifo_depth=None):
    """The timing model of one plan stage (``fifo_depth`` overrides a FIFO's depth)."""
    from .mvu import MatrixVectorUnitTiming
    from .sample import SampleCombineTiming, SampleQuantizerTiming
    from .streams import (
        NETWORK_FIFO_REGISTERED_READY,
        AddJoinTiming,
        ArgMaxTiming,
        ForkTiming,
        ReduceTiming,
        StreamFifoTiming,
        StreamWidthTiming,
    )
    from .window import SlidingWindowTiming

    if isinstance(stage, P.SampleQuant):
        from ..golden.bdcnn import reciprocal_shift

        return SampleQuantizerTiming(stage.beats,
                                     stage.qbits + reciprocal_shift(stage.in_format.bits))
    if isinstance(stage, P.SampleCombine):
        return SampleCombineTiming(stage.beats)
    if isinstance(stage, P.Window):
        return SlidingWindowTiming(stage.in_shape, stage.kernel, stage.stride, stage.padding,
                                   simd=stage.simd, order=stage.order)
    if isinstance(stage, P.Mvu):
        return MatrixVectorUnitTiming(stage.nf, stage.sf, engine_stages=stage.engine_stages)
    if isinstance(stage, (P.MaxReduce, P.AvgReduce)):
        return ReduceTiming(stage.window)
    if isinstance(stage, P.Width):
        return StreamWidthTiming(stage.in_lanes, stage.lanes)
    if isinstance(stage, P.Fork):
        return ForkTiming(stage.branches)
    if isinstance(stage, P.Join):
        return AddJoinTiming()
    if isinstance(stage, P.Fifo):
        return StreamFifoTiming(stage.depth if fifo_depth is None else fifo_depth,
                                registered_ready=NETWORK_FIFO_REGISTERED_READY)
    if isinstance(stage, P.ArgMax):
        return ArgMaxTiming(stage.classes // stage.in_lanes)
    raise TypeError(f"No timing model for stage {stage.name!r} ({type(stage).__name__})")


@dataclass(frozen=True)
class ReplayResult:
    """Outcome of a replay: completion cycle of every inference, the steady-state period,
    the latency (cycles from the first input beat accepted to the first inference's last
    output beat, as the simulation measures it) and each FIFO's largest occupancy (beats
    held)."""

    completions: tuple
    period: int
    latency: int
    max_occupancy: dict
    cycles: int


def replay(plan, *, images: int = 3, fifo_depths: dict | None = None,
           max_cycles: int | None = None) -> ReplayResult:
    """Run the plan's timing models for ``images`` inferences back to back.

    ``fifo_depths`` overrides depths by FIFO stage name (:data:`UNBOUNDED` for none). Raises
    :class:`Deadlock` when nothing moves for longer than any stage can be busy, or when
    ``max_cycles`` pass.
    """
    stages = plan.stages
    fifo_depths = fifo_depths or {}
    index = {st.name: i for i, st in enumerate(stages)}
    models = []
    for st in stages:
        if isinstance(st, P.Source):
            models.append(_SourceTiming(st.beats * images))
        else:
            models.append(stage_model(st, fifo_depth=fifo_depths.get(st.name)))
    n = len(stages)
    srcs = [tuple((index[r.stage], r.port) for r in st.inputs) for st in stages]
    dsts = [[None] * st.outputs for st in stages]
    for i, s in enumerate(srcs):
        for k, (j, p) in enumerate(s):
            dsts[j][p] = (i, k)
    out_stage = n - 1  # the arg-max: its output goes to the always-ready sink
    for i, d in enumerate(dsts):
        if i != out_stage and any(x is None for x in d):
            raise P.PlanError(f"Stage {stages[i].name!r} has an output nobody reads")
    fifo_idx = [i for i, st in enumerate(stages) if isinstance(st, P.Fifo)]
    level = {i: 0 for i in fifo_idx}
    peak = {i: 0 for i in fifo_idx}
    busiest = max([1] + [st.nf * st.sf for st in stages if isinstance(st, P.Mvu)]
                  + [st.window for st in stages if isinstance(st, (P.MaxReduce, P.AvgReduce))])
    # The longest any stage works between transfers on the watched streams: an MVU's vector,
    # a window's row of windows (a few of its input rows, at one beat per cycle).
    # A per-sample quantizer loads a whole map (reading a FIFO, watched) and then emits it
    # while its input waits: up to its own busy time between transfers of a watched stream.
    rows = max([1] + [st.beats for st in stages if isinstance(st, P.Window)]
               + [st.busy for st in stages if isinstance(st, P.SampleQuant)])
    idle_limit = 4 * busiest + 2 * rows + 256
    if max_cycles is None:
        max_cycles = (images + 2) * 4 * plan.bottleneck_cycles() + 100_000

    valid_fns = [m.valid for m in models]
    ready_fns = [m.ready for m in models]
    tick_fns = [m.tick for m in models]
    # Each stage's inputs as one (producer, port) pair when it has one input (the common
    # case), and each output's reader; the arg-max's output goes to an always-ready sink.
    single_src = [s[0] if len(s) == 1 else None for s in srcs]
    single_dst = [d[0] if len(d) == 1 and d[0] is not None else None for d in dsts]
    watched = [(i, True) for i in fifo_idx] + [(0, False), (out_stage, False)]
    V = [()] * n
    R = [()] * n
    IV = [()] * n
    OR = [()] * n
    completions = []
    rev = list(range(n - 1, -1, -1))
    sink_ready = (True,)
    cycle, idle = 0, 0
    first_input = None  # cycle of the first beat the network accepts
    while len(completions) < images:
        for i in range(n):
            V[i] = valid_fns[i]()
        for i in rev:
            d = single_dst[i]
            if d is not None:
                o = (R[d[0]][d[1]],)
            elif i == out_stage:
                o = sink_ready
            else:
                o = tuple(R[ci][ck] for ci, ck in dsts[i])
            s = single_src[i]
            if s is not None:
                iv = (V[s[0]][s[1]],)
            else:
                iv = tuple(V[j][p] for j, p in srcs[i])
            OR[i] = o
            IV[i] = iv
            R[i] = ready_fns[i](iv, o)
        for i in range(n):
            tick_fns[i](IV[i], R[i], V[i], OR[i])
        # Progress is watched where it must show: the FIFOs, the input and the output (a
        # stage between two of them moves within its own busy time).
        moved = False
        for i, is_fifo in watched:
            iv, r, v, o = IV[i], R[i], V[i], OR[i]
            fin = bool(iv) and iv[0] and r[0]
            fout = v[0] and o[0]
            if is_fifo:
                if fin:
                    level[i] += 1
                    peak[i] = max(peak[i], level[i])
                if fout:
                    level[i] -= 1
            if fin or fout:
                moved = True
            if fout and i == 0 and first_input is None:
                first_input = cycle
        if V[out_stage][0]:
            completions.append(cycle)
        cycle += 1
        idle = 0 if moved else idle + 1
        if idle > idle_limit:
            raise Deadlock(f"Deadlock after {cycle} cycles: {len(completions)} of {images} "
                           f"inferences done, nothing moved for {idle} cycles")
        if cycle > max_cycles:
            raise Deadlock(f"{len(completions)} of {images} inferences done after {cycle} "
                           f"cycles")
    period = completions[-1] - completions[-2] if images > 1 else completions[0]
    # Latency as the simulation measures it: from the first input beat accepted (a stage may
    # hold its ready low for a few cycles after reset) to the first inference's completion.
    return ReplayResult(tuple(completions), period, completions[0] - (first_input or 0),
                        {stages[i].name: peak[i] for i in fifo_idx}, cycle)


def size_fifos(plan, *, images: int = 3, progress=None) -> tuple:
    """Least FIFO depths that keep the unbounded schedule's period.

    1. Replay with unbounded FIFOs: the best period ``T*`` and each FIFO's peak occupancy
       (a depth that never blocks, so it keeps ``T*`` by construction).
    2. Try every FIFO at depth 1, then at ``min(peak, 2)``, together: the line buffers of
       the sliding windows absorb most bursts, so small FIFOs usually keep ``T*``.
    3. Otherwise bisect each FIFO whose peak exceeds 2, the largest memory first, between 1
       and its peak, the others at their current depths.

    Every accepted configuration was replayed and completes an inference every ``T*``
    cycles without deadlock. Returns ``(plan with the depths, ReplayResult of it)``.
    """
    say = progress or (lambda msg: None)
    names = list(plan.fifos)
    if not names:
        return plan, replay(plan, images=images)
    free = replay(plan, images=images, fifo_depths={nm: UNBOUNDED for nm in names})
    target = free.period
    peak = {nm: max(1, free.max_occupancy[nm]) for nm in names}

    def run(trial):
        try:
            res = replay(plan, images=images, fifo_depths=trial)
        except Deadlock:
            return None
        return res if res.period <= target else None

    for trial in ({nm: 1 for nm in names}, {nm: min(peak[nm], 2) for nm in names}):
        best = run(trial)
        if best is not None:
            say(f"FIFOs: depth {max(trial.values())} keeps {target} cycles per inference")
            return plan.with_fifo_depths(trial), best
    width = {st.name: st.lanes * st.fmt.bits for st in plan.stages if isinstance(st, P.Fifo)}
    depths = dict(peak)
    for nm in sorted(names, key=lambda k: -peak[k] * width[k]):
        if peak[nm] <= 2:
            continue
        lo, hi = 1, peak[nm]  # hi is known to keep the period
        while lo < hi:
            mid = (lo + hi) // 2
            if run({**depths, nm: mid}) is not None:
                hi = mid
            else:
                lo = mid + 1
        depths[nm] = hi
        say(f"FIFO {nm}: depth {hi} (peak {peak[nm]} unbounded)")
    sized = plan.with_fifo_depths(depths)
    return sized, replay(sized, images=images)
