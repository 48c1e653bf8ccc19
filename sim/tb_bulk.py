"""cocotb test of the bulk harness (:mod:`hwquant.sim.bulk`): start each phase, wait for it.

The runner writes a spec (path in ``HWQUANT_BULK_SPEC``)::

    {"clock_period_ns": 10, "reset_cycles": 4,
     "phases": [{"index": 0, "seed": s, "valid_gap": t, "ready_stall": t, "timeout": n,
                 "drain": n, "beats": {"i_stream": n}, "expect": {"o_stream": n, ...}}, ...],
     "result_path": "/abs/result.json"}

Per phase the test writes the configuration ports, pulses ``start`` for one edge and waits for
``done`` with one trigger: no Python runs while the simulator works through the phase. A phase
after one that timed out is not started. The result lists per phase ``timed_out``, ``cycles``,
``first_input_cycle`` and ``seconds`` (wall time), plus the wall clock (``time.time()``) at
which this module was imported and the test started and finished; the runner compares the
captures and measures the throughput itself (in its own process, with NumPy), and derives the
simulator's start-up and exit costs from the clocks.

This module is the only Python the simulator loads besides cocotb: it imports nothing from
hwquant (the runner puts a copy of it on the simulator's path under :data:`MODULE`), so the
simulator does not pay for importing the package, NumPy or the build tools.
"""

import json
import os
import time
from pathlib import Path

import cocotb
from cocotb.triggers import FallingEdge, RisingEdge, SimTimeoutError, with_timeout

#: When the simulator imported this module (cocotb is imported before it).
_IMPORTED = time.time()

__all__ = ["BULK_SPEC_ENV", "MODULE", "bulk_test"]

#: Environment variable holding the path of the bulk spec JSON file.
BULK_SPEC_ENV = "HWQUANT_BULK_SPEC"

#: Module name of this file's copy on the simulator's path.
MODULE = "hwquant_bulk_tb"


async def _phase(dut, spec, phase):
    """Run one harness phase; its result entry."""
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
    started = time.perf_counter()
    dut.start.value = 1
    await FallingEdge(clock)
    dut.start.value = 0
    # Generous simulated-time guard: the harness ends a phase itself after its timeout.
    limit = (phase["timeout"] + phase["drain"] + 16) * spec["clock_period_ns"] * 2
    try:
        await with_timeout(RisingEdge(dut.done), limit, "ns")
    except SimTimeoutError:
        return {"timed_out": True, "cycles": phase["timeout"], "first_input_cycle": None,
                "seconds": time.perf_counter() - started}
    return {"timed_out": bool(int(dut.timed_out.value)), "cycles": int(dut.cycles.value),
            "first_input_cycle": int(dut.first_input_cycle.value) or None,
            "seconds": time.perf_counter() - started}


async def _run(dut, spec):
    dut.start.value = 0
    dut.rst.value = 1
    for _ in range(spec["reset_cycles"]):
        await FallingEdge(dut.clk)
    dut.rst.value = 0
    phases = []
    for phase in spec["phases"]:
        phases.append(await _phase(dut, spec, phase))
        if phases[-1]["timed_out"]:
            break
    return phases


def _write_result(path, result):
    path = Path(path)
    temporary = path.with_name(path.name + ".partial")
    temporary.write_text(json.dumps(result, indent=1))
    temporary.replace(path)


@cocotb.test()
async def bulk_test(dut):
    """Run the bulk spec named by ``HWQUANT_BULK_SPEC``; write the per-phase results."""
    started = time.time()
    spec_path = os.environ.get(BULK_SPEC_ENV)
    if not spec_path:
        raise RuntimeError(f"{BULK_SPEC_ENV} is not set; run this test through "
                           "hwquant.sim.run_bulk")
    spec = json.loads(Path(spec_path).read_text())
    phases = await _run(dut, spec)
    _write_result(spec["result_path"], {"phases": phases, "imported": _IMPORTED,
                                        "test_started": started, "test_finished": time.time()})
