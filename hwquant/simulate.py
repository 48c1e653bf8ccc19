"""Bit-exact verification of a build directory: golden model vs the emitted Verilog in
cocotb + Verilator, every output word and every per-layer probe compared, random valid gaps and
ready stalls; then a stall-free phase that measures cycles per inference. The default bench is
the in-simulator harness (whole test sets in seconds); the Python-driven one stays available."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from . import golden
from .compile import load_build
from .layout import packed_to_ints
from .quant.grid import quantize_to_grid
from .quant.report import input_saturation
from .vectors import expected_packed, input_packed

__all__ = ["quantize_input", "held_out_set", "test_images", "simulate_build"]


def quantize_input(net, x) -> np.ndarray:
    """Real input images -> integers in the network's input format (RHU, saturated)."""
    f = net.input_format
    return quantize_to_grid(x, f.frac, f.lo, f.hi)


def held_out_set(net, n, seed: int, dataset=None):
    """``(x, labels, saturated)``: ``n`` integer test inputs (``"all"``: the whole held-out
    split, in order), their labels (``None`` for random inputs) and the fraction of their
    real values the input format saturated."""
    from .data import load_dataset

    rng = np.random.default_rng(seed)
    info = net.metadata.get("dataset") or {}
    if dataset is None and info:
        dataset = load_dataset(info.get("name"), path=info.get("path"))
    if dataset is None:
        if n == "all":
            raise ValueError("Vectors 'all' needs the network's dataset (recorded when it was "
                             "quantized) or a dataset argument; this network has none")
        f = net.input_format
        # Random legal inputs: nothing saturates.
        return rng.integers(f.lo, f.hi + 1, size=(n,) + net.input_shape), None, 0.0
    if n == "all":
        idx = np.arange(len(dataset.x_test))
    else:
        idx = np.sort(rng.choice(len(dataset.x_test), size=min(n, len(dataset.x_test)),
                                 replace=False))
    return (quantize_input(net, dataset.x_test[idx]), np.asarray(dataset.y_test)[idx],
            input_saturation(dataset.x_test[idx], net.input_format))


def test_images(net, n: int, seed: int, dataset=None) -> np.ndarray:
    """``n`` integer test inputs: from the held-out split of the dataset the network was
    quantized on (recorded in its metadata) or ``dataset``; random legal inputs otherwise.
    ``n = "all"`` takes the whole held-out split, in order."""
    return held_out_set(net, n, seed, dataset)[0]


def simulate_build(build_dir, *, vectors: int | str = 16, seed: int = 0, stall: float = 0.3,
                   throughput_items: int = 6, dataset=None, mode: str = "bulk",
                   verbose: bool = False, progress=None) -> dict:
    """Simulate ``build_dir``'s probed Verilog against the golden model.

    ``vectors`` is a number of test images or ``"all"`` (the whole held-out split). ``mode``
    picks the bench: ``"bulk"`` (default: the in-simulator harness of
    :func:`hwquant.sim.bulk.run_bulk`, no Python per cycle) or ``"python"`` (the cocotb
    drivers of :func:`hwquant.sim.run`, Python on every clock edge). Both compare every word
    under the same valid-gap and ready-stall probabilities.

    Returns a report: ``vectors``, ``mismatches`` (output words that differ or are missing),
    ``first_mismatch_layer`` (the first layer, in stream order, whose probe disagrees),
    ``cycles_per_inference`` (measured, stall-free steady state), ``predicted_cycles``,
    ``accuracy`` (of the simulated class outputs) and ``golden_accuracy`` when the images
    have labels, ``streams`` (per-stream counts), ``mode``, ``sim_seconds`` and ``timings``
    (seconds per step: golden model, vectors, simulation, accuracy; ``simulation_steps``
    splits a bulk run, see :func:`hwquant.sim.bulk.run_bulk`).
    """
    from .sim.bulk import hex_low_bits, read_capture_arrays, run_bulk
    from .sim.runner import run

    step = progress or (lambda msg: None)
    if vectors != "all" and (isinstance(vectors, bool) or not isinstance(vectors, int)
                             or vectors < 1):
        raise ValueError(f"Number of vectors must be a positive integer or 'all', "
                         f"not {vectors!r}")
    if mode not in ("bulk", "python"):
        raise ValueError(f"Simulation mode must be 'bulk' or 'python', not {mode!r}")
    build_dir = Path(build_dir)
    net, report = load_build(build_dir)
    x, labels, saturated = held_out_set(net, vectors, seed, dataset)
    timings = {}
    clock = time.perf_counter()
    step(f"golden model on {len(x)} images")
    g = golden.run(net, x)
    timings["golden"] = time.perf_counter() - clock
    clock = time.perf_counter()
    probes = report["probes"]
    # Packed arrays (whole-array NumPy); the Python-driven bench takes lists of ints.
    words = (lambda a: a) if mode == "bulk" else packed_to_ints
    expected = {k: words(v) for k, v in expected_packed(net, g, probes).items()}
    inputs = words(input_packed(net, x))
    beats_in = report["ports"]["i_stream"]["beats_per_inference"]
    predicted = report["cycles_per_inference"]
    items = max(3, throughput_items)
    x_tp = np.concatenate([x] * (items // len(x) + 1))[:items]
    spec = {
        "seed": seed,
        "inputs": {"i_stream": inputs},
        "outputs": expected,
        "observe_only": [f"probe_{p}" for p in probes],
        "stall": {"valid_gap": stall, "ready_stall": stall},
        "timeout_cycles": int((len(x) + items) * max(predicted, beats_in) * 6 + 20_000),
        "throughput": {"inputs": {"i_stream": words(input_packed(net, x_tp))},
                       "output": "o_stream", "items": items, "beats_per_item": 1},
    }
    timings["vectors"] = time.perf_counter() - clock
    where = "in-simulator harness" if mode == "bulk" else "Python drivers"
    step(f"cocotb + Verilator ({where}): {len(x)} images with stalls, {items} back to back")
    simulate = run_bulk if mode == "bulk" else run
    started = time.perf_counter()
    result = simulate(build_dir / report["verilog_probes"], report["top"], spec=spec,
                      build_root=build_dir / "sim_build", verbose=verbose)
    seconds = time.perf_counter() - started
    timings["simulation"] = seconds
    clock = time.perf_counter()
    streams = result["streams"]
    out = streams["o_stream"]
    mismatches = out["mismatches"] + abs(out["expected"] - out["received"])
    first_bad = next((p for p in probes
                      if streams[f"probe_{p}"]["mismatches"]
                      or streams[f"probe_{p}"]["received"] != streams[f"probe_{p}"]["expected"]),
                     None)
    tp = result.get("throughput") or {}
    measured = tp.get("median_interval")
    info = net.metadata.get("dataset") or {}
    accuracy = golden_accuracy = None
    if labels is not None and len(labels):
        golden_cls = np.argmax(g[net.output.name].reshape(len(x), -1), axis=1)
        golden_accuracy = float(np.mean(golden_cls == labels))
        if mode == "bulk":
            cls_bits = report["ports"]["o_stream"]["cls_bits"]
            _, digits = read_capture_arrays(result["captures"]["o_stream"])
            got = hex_low_bits(digits, cls_bits)[:len(labels)]
            # A missing output counts as wrong.
            accuracy = float(np.sum(got == labels[:len(got)]) / len(labels))
        elif result["passed"]:
            accuracy = golden_accuracy  # every output word equals the golden one
    return {
        "vectors": len(x),
        "mode": mode,
        # Fraction of the test images' pixel values outside the input format (saturated).
        "saturated_inputs": round(saturated, 6),
        "mismatches": int(mismatches),
        "passed": bool(result["passed"]) and mismatches == 0,
        "first_mismatch_layer": first_bad,
        "first_mismatches": out.get("first_mismatches", []),
        "accuracy": accuracy,
        "golden_accuracy": golden_accuracy,
        "cycles_per_inference": measured,
        "cycles_per_inference_mean": tp.get("cycles_per_item"),
        "latency_cycles": tp.get("latency"),
        "predicted_cycles": predicted,
        "cycle_error": (None if not measured else (measured - predicted) / predicted),
        "timed_out": bool(result.get("timed_out")),
        "stalled_cycles": result.get("cycles"),
        "sim_seconds": round(seconds, 3),
        "streams": {k: {kk: v[kk] for kk in ("expected", "received", "mismatches")}
                    for k, v in streams.items()},
        "dataset": info.get("name") or info.get("path"),
        "run_dir": result.get("run_dir"),
        "timings": {**{k: round(v, 4) for k, v in timings.items()},
                    "accuracy": round(time.perf_counter() - clock, 4),
                    "simulation_steps": result.get("timings")},
    }
