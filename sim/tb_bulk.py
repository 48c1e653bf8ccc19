"""cocotb test of the bulk harness (:mod:`hwquant.sim.bulk`): start phases, wait, compare.

The runner writes a spec (path in ``HWQUANT_BULK_SPEC``)::

    {"clock_period_ns": 10, "reset_cycles": 4,
     "inputs": ["i_stream"], "outputs": ["o_stream", "probe_conv1"],
     "expected": {"o_stream": "/abs/phase0.o_stream.expected", ...},   # hex words, one a line
     "phases": [{"index": 0, "seed": s, "valid_gap": t, "ready_stall": t, "timeout": n,
                 "drain": n, "beats": {"i_stream": n}, "expect": {"o_stream": n, ...}}, ...],
     "throughput": {"output": "o_stream", "items": k, "beats_per_item": 1} or null,
     "result_path": "/abs/result.json"}

Per phase the test writes the configuration ports, pulses ``start`` for one edge and waits for
``done`` with one trigger: no Python runs while the simulator works through the phase. Phase 0
is compared word by word with the expected files; phase 1 (optional) measures throughput on
the capture's cycle stamps. The result has the shape of :mod:`hwquant.sim.tb_stream`'s.
"""

import json
import os
import time
from pathlib import Path

import cocotb
from cocotb.triggers import FallingEdge, RisingEdge, SimTimeoutError, with_timeout

from .tb_stream import _failure_summary, _write_result, compare_stream, throughput_stats

__all__ = ["BULK_SPEC_ENV", "bulk_test", "read_capture", "read_words"]

#: Environment variable holding the path of the bulk spec JSON file.
BULK_SPEC_ENV = "HWQUANT_BULK_SPEC"


def read_words(path):
    """Hex words, one a line."""
    with open(path) as lines:
        return [int(line, 16) for line in lines if line.strip()]


def read_capture(path):
    """``[(cycle, payload), ...]`` from a harness capture file."""
    transfers = []
    with open(path) as lines:
        for line in lines:
            cycle, payload = line.split()
            transfers.append((int(cycle), int(payload, 16)))
    return transfers


async def _phase(dut, spec, phase):
    """Run one harness phase; ``(timed_out, cycles, first_input_cycle)``."""
    clock = dut.clk
    await FallingEdge(clock)
    dut.cfg_phase.value = phase["index"]
    dut.cfg_seed.value = phase["seed"]
    dut.cfg_valid_gap.value = phase["valid_gap"]
    dut.cfg_ready_stall.value = phase["ready_stall"]
    dut.cfg_timeout.value = phase["timeout"]
    dut.cfg_drain.value = phase["drain"]
    for name, count in phase["beats"].items():
        getattr(dut, f"cfg_beats_{name}").value = count
    for name, count in phase["expect"].items():
        getattr(dut, f"cfg_expect_{name}").value = count
    dut.start.value = 1
    await FallingEdge(clock)
    dut.start.value = 0
    # Generous simulated-time guard: the harness ends a phase itself after its timeout.
    limit = (phase["timeout"] + phase["drain"] + 16) * spec["clock_period_ns"] * 2
    try:
        await with_timeout(RisingEdge(dut.done), limit, "ns")
    except SimTimeoutError:
        return True, phase["timeout"], None
    return (bool(int(dut.timed_out.value)), int(dut.cycles.value),
            int(dut.first_input_cycle.value) or None)


async def _run(dut, spec):
    dut.start.value = 0
    dut.rst.value = 1
    for _ in range(spec["reset_cycles"]):
        await FallingEdge(dut.clk)
    dut.rst.value = 0

    phases = spec["phases"]
    started = time.perf_counter()
    timed_out, cycles, _ = await _phase(dut, spec, phases[0])
    seconds = time.perf_counter() - started
    streams = {}
    captures = {}
    for name in spec["outputs"]:
        captures[name] = str(Path.cwd() / f"phase0.{name}.out")
        streams[name] = compare_stream(read_words(spec["expected"][name]),
                                       read_capture(captures[name]))
    passed = not timed_out and all(
        s["mismatches"] == 0 and s["expected"] == s["received"] for s in streams.values())

    throughput = None
    tp = spec["throughput"]
    if tp is not None and not timed_out:
        tp_timed_out, _, first = await _phase(dut, spec, phases[1])
        if tp_timed_out:
            timed_out = True
            passed = False
        needed = tp["items"] * tp["beats_per_item"]
        beats = read_capture(Path.cwd() / f"phase1.{tp['output']}.out")[:needed]
        bpi = tp["beats_per_item"]
        completions = [beats[k * bpi + bpi - 1][0] for k in range(len(beats) // bpi)]
        throughput = throughput_stats(completions, first)
    return {"passed": passed, "streams": streams, "cycles": cycles, "throughput": throughput,
            "timed_out": timed_out, "error": None, "captures": captures,
            "phase_seconds": round(seconds, 4)}


@cocotb.test()
async def bulk_test(dut):
    """Run the bulk spec named by ``HWQUANT_BULK_SPEC``; write the result; fail on mismatch."""
    spec_path = os.environ.get(BULK_SPEC_ENV)
    if not spec_path:
        raise RuntimeError(f"{BULK_SPEC_ENV} is not set; run this test through "
                           "hwquant.sim.run_bulk")
    spec = json.loads(Path(spec_path).read_text())
    result = await _run(dut, spec)
    _write_result(spec["result_path"], result)
    assert result["passed"], _failure_summary(result)
