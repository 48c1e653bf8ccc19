"""Cycle-exact check of a component's timing model (:class:`hwquant.schedule.TimingModel`)
against the component itself in the Amaranth simulator, under random valid gaps and ready
stalls: every cycle, the model's output ``valid`` and input ``ready`` must equal the
hardware's."""

import random

from amaranth.sim import Simulator

__all__ = ["check_timing"]


def check_timing(dut, model, *, inputs=("i_stream",), outputs=("o_stream",), in_beats,
                 cycles, seed=0, valid_gap=0.0, ready_stall=0.0):
    """Run ``dut`` and ``model`` side by side for ``cycles`` cycles.

    ``in_beats[k]`` is the number of beats offered on input ``k`` (random payloads; valid
    stays high until taken, as the stream rules require). Returns ``{stream: transfers}`` of
    the hardware so a test can also check how many beats moved. Raises ``AssertionError``
    naming the first cycle and signal that differ.
    """
    rng = random.Random(seed)
    i_s = [getattr(dut, n) for n in inputs]
    o_s = [getattr(dut, n) for n in outputs]
    fired = {n: 0 for n in (*inputs, *outputs)}

    async def bench(ctx):
        left = list(in_beats)
        offering = [False] * len(i_s)
        for cyc in range(cycles):
            in_valid = []
            for k, s in enumerate(i_s):
                if not offering[k] and left[k] and not (valid_gap and rng.random() < valid_gap):
                    offering[k] = True
                    ctx.set(s.payload.as_value(), rng.getrandbits(len(s.payload.as_value())))
                ctx.set(s.valid, offering[k])
                in_valid.append(offering[k])
            out_ready = []
            for s in o_s:
                r = not (ready_stall and rng.random() < ready_stall)
                ctx.set(s.ready, r)
                out_ready.append(r)
            hw_valid = tuple(bool(ctx.get(s.valid)) for s in o_s)
            hw_ready = tuple(bool(ctx.get(s.ready)) for s in i_s)
            m_valid = tuple(bool(v) for v in model.valid())
            m_ready = tuple(bool(v) for v in model.ready(tuple(in_valid), tuple(out_ready)))
            assert m_valid == hw_valid, (f"cycle {cyc}: output valid {outputs} model {m_valid}, "
                                         f"hardware {hw_valid}")
            assert m_ready == hw_ready, (f"cycle {cyc}: input ready {inputs} model {m_ready}, "
                                         f"hardware {hw_ready}")
            model.tick(tuple(in_valid), hw_ready, hw_valid, tuple(out_ready))
            for k, n in enumerate(inputs):
                if in_valid[k] and hw_ready[k]:
                    fired[n] += 1
                    left[k] -= 1
                    offering[k] = False
            for k, n in enumerate(outputs):
                if hw_valid[k] and out_ready[k]:
                    fired[n] += 1
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return fired
