"""Generic cocotb testbench for a design with stream ports, driven by a JSON spec.

The runner (:func:`hwquant.sim.runner.run`) writes the spec to a file and passes its path in
the ``HWQUANT_SIM_SPEC`` environment variable; the testbench writes its verdict to
``spec["result_path"]`` before the cocotb test passes or fails.

Spec (JSON object; payloads are hex strings such as ``"0x1f"`` or ``"1f"``, or ints)::

    {"seed": 1,                          # optional, default 0
     "clock_period_ns": 10,              # optional, default 10
     "inputs":  {"i_stream": ["<hex>", ...]},
     "outputs": {"o_stream": ["<hex>", ...], "probe_conv1": ["<hex>", ...]},
     "observe_only": ["probe_conv1"],    # optional: outputs whose ready the design drives
     "stall": {"valid_gap": 0.3, "ready_stall": 0.3},   # optional, default no stalls
     "timeout_cycles": 2000000,          # optional, default 1000000
     "reset_cycles": 4,                  # optional, default 4
     "drain_cycles": 32,                 # optional, idle cycles to catch extra beats
     "throughput": {"inputs": {"i_stream": ["<hex>", ...]}, "output": "o_stream",
                    "items": 8, "beats_per_item": 1},   # optional
     "result_path": "/abs/path/result.json"}

Phase 1 (checked): after reset, every input stream is driven with random idle cycles
(``valid_gap``) and every output that is not observe-only is accepted with random ready stalls
(``ready_stall``), from RNGs seeded by ``seed`` and the stream name; observe-only streams are
only watched. The phase ends when every input beat was accepted and every output stream got its
expected number of beats (or after ``timeout_cycles``), followed by ``drain_cycles`` idle
cycles that catch surplus beats. Every word of every stream is compared.

Phase 2 (``throughput``, optional): after the drain, the given inputs are driven without gaps and
every output is always ready. ``cycles_per_item`` is the mean interval between consecutive item
completions (an item is ``beats_per_item`` beats on ``output``; the mean over all intervals
after the first item is the steady-state rate), ``median_interval`` the median of those
intervals, ``latency`` the cycles from the first input beat accepted in this phase to the
completion of the first item.

Result (JSON object)::

    {"passed": bool,
     "streams": {name: {"expected": n, "received": n, "mismatches": m,
                        "first_mismatches": [{"index": i, "expected": "0x..", "got": "0x..",
                                              "cycle": c}, ...]}},
     "cycles": phase-1 cycles (reset release to the last expected beat, or to the timeout),
     "throughput": {"cycles_per_item": x, "median_interval": x, "latency": y, "items": k}
                   or null,
     "timed_out": bool (phase 1 or phase 2 hit timeout_cycles),
     "error": null or a message (malformed spec, missing port, payload wider than the port)}
"""

import itertools
import json
import math
import numbers
import os
import random
import statistics
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, RisingEdge, SimTimeoutError, with_timeout

from .streams import StreamProbe, StreamSink, StreamSource

__all__ = [
    "MAX_REPORTED_MISMATCHES",
    "SPEC_ENV",
    "compare_stream",
    "parse_spec",
    "stream_test",
    "throughput_stats",
]

#: Environment variable holding the path of the spec JSON file.
SPEC_ENV = "HWQUANT_SIM_SPEC"

#: Mismatches listed per stream in ``first_mismatches``.
MAX_REPORTED_MISMATCHES = 8

_SPEC_KEYS = {
    "seed",
    "clock_period_ns",
    "inputs",
    "outputs",
    "observe_only",
    "stall",
    "timeout_cycles",
    "reset_cycles",
    "drain_cycles",
    "throughput",
    "result_path",
}
_STALL_KEYS = {"valid_gap", "ready_stall"}
_THROUGHPUT_KEYS = {"inputs", "output", "items", "beats_per_item"}


def _spec_error(where, expected, value):
    place = f"Spec {where}" if where else "Spec"
    return ValueError(f"{place} must be {expected}, not {value!r}")


def _payload(where, value):
    if isinstance(value, bool):
        pass
    elif isinstance(value, numbers.Integral):
        if value >= 0:
            return int(value)
    elif isinstance(value, str):
        try:
            parsed = int(value.strip(), 16)
        except ValueError:
            pass
        else:
            if parsed >= 0 and not value.strip().startswith(("-", "+")):
                return parsed
    raise _spec_error(where, "a hex string or a non-negative int", value)


def _beats(where, value):
    if not isinstance(value, (list, tuple)):
        raise _spec_error(where, "a list of payloads", value)
    return [_payload(f"{where}[{index}]", item) for index, item in enumerate(value)]


def _streams(where, value):
    if not isinstance(value, dict):
        raise _spec_error(where, "an object mapping stream names to payloads", value)
    streams = {}
    for name, beats in value.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"Spec {where}: stream name must be an identifier, not {name!r}")
        streams[name] = _beats(f"{where}[{name!r}]", beats)
    return streams


def _integer(where, value, minimum):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"Spec {where} must be an integer of at least {minimum}, not {value!r}")
    return value


def _probability(where, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"Spec {where} must be a probability in [0, 1), not {value!r}")
    return float(value)


def _no_unknown(where, value, known):
    unknown = sorted(set(value) - known)
    if unknown:
        place = f"Spec {where}" if where else "Spec"
        raise ValueError(
            f"{place} has unknown key {unknown[0]!r}; expected keys are " + ", ".join(sorted(known))
        )


def parse_spec(spec):
    """Validate a spec and return it normalized (payloads as ints, defaults filled in).

    Parameters
    ----------
    spec : dict
        Spec as described in the module docstring. ``result_path`` may be absent (the runner
        fills it in).

    Returns
    -------
    dict
        A new dict with every key present.

    Raises
    ------
    ValueError
        If the spec is malformed: unknown keys, bad payloads, a stream named twice, an
        observe-only or throughput stream that is not declared, or an out-of-range number.
    """
    if not isinstance(spec, dict):
        raise TypeError(f"Spec must be a dict (a JSON object), not {type(spec).__name__}")
    _no_unknown("", spec, _SPEC_KEYS)
    seed = spec.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise _spec_error("seed", "an integer", seed)
    period = spec.get("clock_period_ns", 10)
    if (
        isinstance(period, bool)
        or not isinstance(period, (int, float))
        or not math.isfinite(period)
        or period <= 0
    ):
        raise ValueError(f"Spec clock_period_ns must be a positive number, not {period!r}")
    inputs = _streams("inputs", spec.get("inputs", {}))
    outputs = _streams("outputs", spec.get("outputs", {}))
    if not outputs:
        raise ValueError("Spec outputs must name at least one stream")
    both = sorted(set(inputs) & set(outputs))
    if both:
        raise ValueError(f"Spec names stream {both[0]!r} both as an input and as an output")
    observe_only = spec.get("observe_only", [])
    if not isinstance(observe_only, list) or not all(isinstance(n, str) for n in observe_only):
        raise ValueError(f"Spec observe_only must be a list of stream names, not {observe_only!r}")
    for name in observe_only:
        if name not in outputs:
            raise ValueError(f"Spec observe_only names {name!r}, which is not in outputs")
    stall = spec.get("stall", {})
    if not isinstance(stall, dict):
        raise _spec_error("stall", "an object", stall)
    _no_unknown("stall", stall, _STALL_KEYS)
    stall = {key: _probability(f"stall.{key}", stall.get(key, 0.0)) for key in sorted(_STALL_KEYS)}
    throughput = spec.get("throughput")
    if throughput is not None:
        if not isinstance(throughput, dict):
            raise ValueError(f"Spec throughput must be an object or null, not {throughput!r}")
        _no_unknown("throughput", throughput, _THROUGHPUT_KEYS)
        tp_inputs = _streams("throughput.inputs", throughput.get("inputs", {}))
        for name in tp_inputs:
            if name not in inputs:
                raise ValueError(f"Spec throughput.inputs names {name!r}, which is not in inputs")
        output = throughput.get("output")
        if output not in outputs:
            raise ValueError(f"Spec throughput.output must name one of the outputs, not {output!r}")
        throughput = {
            "inputs": tp_inputs,
            "output": output,
            "items": _integer("throughput.items", throughput.get("items"), 1),
            "beats_per_item": _integer(
                "throughput.beats_per_item", throughput.get("beats_per_item", 1), 1
            ),
        }
    result_path = spec.get("result_path")
    if result_path is not None and (
        not isinstance(result_path, str) or not os.path.isabs(result_path)
    ):
        raise ValueError(f"Spec result_path must be an absolute path, not {result_path!r}")
    return {
        "seed": seed,
        "clock_period_ns": period,
        "inputs": inputs,
        "outputs": outputs,
        "observe_only": list(observe_only),
        "stall": stall,
        "timeout_cycles": _integer("timeout_cycles", spec.get("timeout_cycles", 1_000_000), 1),
        "reset_cycles": _integer("reset_cycles", spec.get("reset_cycles", 4), 1),
        "drain_cycles": _integer("drain_cycles", spec.get("drain_cycles", 32), 0),
        "throughput": throughput,
        "result_path": result_path,
    }


def compare_stream(expected, transfers):
    """Compare the words of one stream.

    Parameters
    ----------
    expected : list of int
        Expected payloads, in order.
    transfers : list of (int, int)
        ``(cycle, payload)`` as recorded by a stream model.

    Returns
    -------
    dict
        ``{"expected", "received", "mismatches", "first_mismatches"}``; ``mismatches`` counts
        differing words among the first ``min(expected, received)``; a count difference shows
        in ``expected`` versus ``received``.
    """
    mismatches = []
    for index, (want, (cycle, got)) in enumerate(zip(expected, transfers)):
        if want != got:
            mismatches.append(
                {"index": index, "expected": hex(want), "got": hex(got), "cycle": cycle}
            )
    return {
        "expected": len(expected),
        "received": len(transfers),
        "mismatches": len(mismatches),
        "first_mismatches": mismatches[:MAX_REPORTED_MISMATCHES],
    }


def throughput_stats(completions, first_input_cycle):
    """Throughput figures from the cycles at which items completed.

    Parameters
    ----------
    completions : list of int
        Cycle of the last beat of each item, in order.
    first_input_cycle : int or None
        Cycle of the first input beat accepted in the throughput phase.

    Returns
    -------
    dict
        ``{"cycles_per_item", "median_interval", "latency", "items"}``; the intervals are
        ``None`` with fewer than two items, ``latency`` is ``None`` without an input beat.
    """
    intervals = [b - a for a, b in itertools.pairwise(completions)]
    return {
        "cycles_per_item": (sum(intervals) / len(intervals)) if intervals else None,
        "median_interval": statistics.median(intervals) if intervals else None,
        "latency": (
            completions[0] - first_input_cycle
            if completions and first_input_cycle is not None
            else None
        ),
        "items": len(completions),
    }


def _write_result(path, result):
    path = Path(path)
    temporary = path.with_name(path.name + ".partial")
    temporary.write_text(json.dumps(result, indent=1))
    temporary.replace(path)


def _check_fits(name, beats, width, role):
    for index, beat in enumerate(beats):
        if beat >> width:
            raise ValueError(
                f"Stream '{name}': {role} beat {index} ({beat:#x}) is wider than the "
                f"{width}-bit payload port"
            )


def _port(dut, name):
    try:
        return getattr(dut, name)
    except AttributeError:
        raise ValueError(f"Design has no port '{name}'") from None


async def _all_done(sending, monitors, expected):
    for task in sending:
        await task
    for name, monitor in monitors.items():
        await monitor.wait_for(expected[name])


async def _within(coroutine, timeout_ns):
    """Run ``coroutine`` for at most ``timeout_ns`` of simulated time; ``True`` if it ended."""
    try:
        await with_timeout(coroutine, timeout_ns, "ns")
    except SimTimeoutError:
        return False
    return True


async def _cycles(clock, count):
    for _ in range(count):
        await RisingEdge(clock)


async def _run_bench(dut, spec):
    clock = _port(dut, "clk")
    reset = getattr(dut, "rst", None)
    seed = spec["seed"]
    observe_only = set(spec["observe_only"])
    # Idle every handshake signal the bench drives before the first edge.
    for name in spec["inputs"]:
        _port(dut, f"{name}__valid").value = 0
    for name in spec["outputs"]:
        if name not in observe_only:
            _port(dut, f"{name}__ready").value = 0
    Clock(clock, spec["clock_period_ns"], unit="ns").start()
    if reset is not None:
        reset.value = 1
        for _ in range(spec["reset_cycles"]):
            await FallingEdge(clock)
        reset.value = 0

    stall = spec["stall"]
    sources = {
        name: StreamSource(
            dut, name, clock, rng=random.Random(f"{seed}/in/{name}"), valid_gap=stall["valid_gap"]
        )
        for name in spec["inputs"]
    }
    monitors = {}
    for name in spec["outputs"]:
        if name in observe_only:
            monitors[name] = StreamProbe(dut, name, clock)
        else:
            monitors[name] = StreamSink(
                dut,
                name,
                clock,
                rng=random.Random(f"{seed}/out/{name}"),
                ready_stall=stall["ready_stall"],
            )
    for name, source in sources.items():
        _check_fits(name, spec["inputs"][name], source.width, "input")
    for name, monitor in monitors.items():
        _check_fits(name, spec["outputs"][name], monitor.width, "expected")
    if spec["throughput"] is not None:
        for name, beats in spec["throughput"]["inputs"].items():
            _check_fits(name, beats, sources[name].width, "throughput input")

    # Phase 1: randomized handshakes, every word checked.
    counter = next(iter(monitors.values()))
    start = counter.cycle
    period = spec["clock_period_ns"]
    sending = [
        cocotb.start_soon(source.send(spec["inputs"][name])) for name, source in sources.items()
    ]
    expected = {name: len(beats) for name, beats in spec["outputs"].items()}
    timed_out = not await _within(
        _all_done(sending, monitors, expected), spec["timeout_cycles"] * period
    )
    cycles = spec["timeout_cycles"] if timed_out else counter.cycle - start
    await _cycles(clock, spec["drain_cycles"])
    streams = {
        name: compare_stream(spec["outputs"][name], list(monitor.transfers))
        for name, monitor in monitors.items()
    }
    passed = not timed_out and all(
        s["mismatches"] == 0 and s["expected"] == s["received"] for s in streams.values()
    )

    # Phase 2: no gaps, no stalls, measure the rate on one output.
    throughput = None
    tp = spec["throughput"]
    if tp is not None and not timed_out:
        for source in sources.values():
            source.valid_gap = 0.0
        for monitor in monitors.values():
            if isinstance(monitor, StreamSink):
                monitor.ready_stall = 0.0
        output = monitors[tp["output"]]
        base = output.count
        marks = {name: sources[name].count for name in tp["inputs"]}
        needed = tp["items"] * tp["beats_per_item"]
        sending = [
            cocotb.start_soon(sources[name].send(beats)) for name, beats in tp["inputs"].items()
        ]
        if not await _within(
            _all_done(sending, {"": output}, {"": base + needed}), spec["timeout_cycles"] * period
        ):
            timed_out = True
            passed = False
        beats = output.transfers[base : base + needed]
        bpi = tp["beats_per_item"]
        completions = [beats[k * bpi + bpi - 1][0] for k in range(len(beats) // bpi)]
        firsts = [
            sources[name].transfers[mark][0]
            for name, mark in marks.items()
            if len(sources[name].transfers) > mark
        ]
        throughput = throughput_stats(completions, min(firsts) if firsts else None)

    return {
        "passed": passed,
        "streams": streams,
        "cycles": cycles,
        "throughput": throughput,
        "timed_out": timed_out,
        "error": None,
    }


def _failure_summary(result):
    if result["error"]:
        return result["error"]
    lines = []
    if result["timed_out"]:
        lines.append("timed out")
    for name, stream in result["streams"].items():
        if stream["expected"] != stream["received"]:
            lines.append(f"{name}: expected {stream['expected']} beats, got {stream['received']}")
        for m in stream["first_mismatches"]:
            lines.append(f"{name}[{m['index']}]: expected {m['expected']}, got {m['got']}")
    return "; ".join(lines)


@cocotb.test()
async def stream_test(dut):
    """Run the spec named by ``HWQUANT_SIM_SPEC``, write the result, fail on any mismatch."""
    spec_path = os.environ.get(SPEC_ENV)
    if not spec_path:
        raise RuntimeError(f"{SPEC_ENV} is not set; run this testbench through hwquant.sim.run")
    raw = json.loads(Path(spec_path).read_text())
    result_path = raw.get("result_path") if isinstance(raw, dict) else None
    if not isinstance(result_path, str):
        raise _spec_error("result_path", "an absolute path", result_path)
    try:
        spec = parse_spec(raw)
        result = await _run_bench(dut, spec)
    except (TypeError, ValueError) as error:
        result = {
            "passed": False,
            "streams": {},
            "cycles": 0,
            "throughput": None,
            "timed_out": False,
            "error": str(error),
        }
    _write_result(result_path, result)
    assert result["passed"], _failure_summary(result)
