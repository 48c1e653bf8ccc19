"""Amaranth Python-simulator harness for stream components, with random valid gaps and
ready stalls (the fast, broad level of the two test levels; cocotb + Verilator is the other)."""

import random

from amaranth.sim import Simulator

__all__ = ["simulate_stream", "simulate_streams"]


async def _drive(ctx, s, words, rng, valid_gap):
    """Send ``words`` on stream ``s``, holding ``valid`` low for random gaps of probability
    ``valid_gap`` before each beat."""
    for word in words:
        while valid_gap and rng.random() < valid_gap:
            ctx.set(s.valid, 0)
            await ctx.tick()
        ctx.set(s.payload.as_value(), word)
        ctx.set(s.valid, 1)
        await ctx.tick().until(s.ready)
    ctx.set(s.valid, 0)


async def _watch_extra_beats(ctx, s, out):
    """A few idle cycles with ``ready`` high after the expected beats: each extra beat is
    appended to ``out`` as ``None`` (an error the caller sees)."""
    ctx.set(s.ready, 1)
    for _ in range(8):
        *_, valid = await ctx.tick().sample(s.valid)
        if valid:
            out.append(None)


def simulate_stream(dut, in_words, n_out, *, seed=0, valid_gap=0.0, ready_stall=0.0,
                    max_cycles=200_000, i_name="i_stream", o_name="o_stream"):
    """Drive packed integer beats into ``dut.<i_name>``, collect ``n_out`` packed beats from
    ``dut.<o_name>``. Returns ``(out_words, cycles)``; raises ``TimeoutError`` on a hang."""
    rng_in, rng_out = random.Random(seed), random.Random(seed + 1)
    i_s, o_s = getattr(dut, i_name), getattr(dut, o_name)
    out, state = [], {"cycles": 0}

    async def producer(ctx):
        await _drive(ctx, i_s, in_words, rng_in, valid_gap)

    async def consumer(ctx):
        while len(out) < n_out:
            ready = not (ready_stall and rng_out.random() < ready_stall)
            ctx.set(o_s.ready, ready)
            *_, valid, payload = await ctx.tick().sample(o_s.valid, o_s.payload.as_value())
            state["cycles"] += 1
            if valid and ready:
                out.append(payload)
            if state["cycles"] > max_cycles:
                raise TimeoutError(f"stream produced {len(out)} of {n_out} beats in "
                                   f"{max_cycles} cycles")
        await _watch_extra_beats(ctx, o_s, out)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer, background=True)
    sim.add_testbench(consumer)
    sim.run()
    return out, state["cycles"]


def simulate_streams(dut, inputs, outputs, *, seed=0, valid_gap=0.0, ready_stall=0.0,
                     max_cycles=20_000):
    """Multi-stream :func:`simulate_stream`: ``inputs`` maps stream names to packed words
    (each driven with its own random gaps), ``outputs`` maps stream names to the number of
    beats to collect (each with its own random stalls). Returns ``{name: words}``; a beat
    after the expected ones appears as ``None``."""
    got = {name: [] for name in outputs}

    def producer(name, words, rng):
        async def bench(ctx):
            await _drive(ctx, getattr(dut, name), words, rng, valid_gap)
        return bench

    def consumer(name, n, rng):
        async def bench(ctx):
            s, out = getattr(dut, name), got[name]
            for _ in range(max_cycles):
                if len(out) == n:
                    break
                ready = not (ready_stall and rng.random() < ready_stall)
                ctx.set(s.ready, ready)
                *_, valid, payload = await ctx.tick().sample(s.valid, s.payload.as_value())
                if valid and ready:
                    out.append(payload)
            else:
                raise TimeoutError(f"{name} produced {len(out)} of {n} beats")
            await _watch_extra_beats(ctx, s, out)
        return bench

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for k, (name, words) in enumerate(inputs.items()):
        sim.add_testbench(producer(name, words, random.Random(seed * 100 + k)),
                          background=True)
    for k, (name, n) in enumerate(outputs.items()):
        sim.add_testbench(consumer(name, n, random.Random(seed * 100 + 50 + k)))
    sim.run()
    return got
