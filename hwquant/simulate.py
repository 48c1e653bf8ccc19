"""Bit-exact verification of a build directory: golden model vs the emitted Verilog in
cocotb + Verilator, every output word and every per-layer probe compared, random valid gaps and
ready stalls; then a stall-free phase that measures cycles per inference. The default bench is
the in-simulator harness (whole test sets in seconds); the Python-driven one stays available."""

from __future__ import annotations

import os
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


#: ``jobs="auto"``: at least this many images per simulator process.
IMAGES_PER_JOB = 64

#: Bulk runs of at least this many predicted cycles (images x cycles per inference) get an
#: optimized Verilator model; shorter ones a quickly built one. Measured on the digits default
#: (770 cycles per image): the quick build saves about 7 s of a 20 s build and costs about
#: 12 ms per image, so it wins below roughly 500 images.
OPTIMIZED_BUILD_CYCLES = 400_000


def simulator_jobs(jobs, images: int) -> int:
    """Simulator processes for ``images`` images: ``jobs`` (a positive int) or ``"auto"``
    (one per usable core, at most one per :data:`IMAGES_PER_JOB` images), never more than
    the images."""
    if jobs == "auto":
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            cores = os.cpu_count() or 1
        jobs = max(1, min(cores, images // IMAGES_PER_JOB))
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"Number of simulator jobs must be a positive integer or 'auto', "
                         f"not {jobs!r}")
    return max(1, min(jobs, images))


def simulate_build(build_dir, *, vectors: int | str = 16, seed: int = 0, stall: float = 0.3,
                   throughput_items: int = 6, dataset=None, mode: str = "bulk",
                   jobs: int | str = 1, optimize: bool | None = None, verbose: bool = False,
                   progress=None) -> dict:
    """Simulate ``build_dir``'s probed Verilog against the golden model.

    ``vectors`` is a number of test images or ``"all"`` (the whole held-out split). ``mode``
    picks the bench: ``"bulk"`` (default: the in-simulator harness of
    :func:`hwquant.sim.bulk.run_bulk`, no Python per cycle) or ``"python"`` (the cocotb
    drivers of :func:`hwquant.sim.run`, Python on every clock edge). Both compare every word
    under the same valid-gap and ready-stall probabilities. ``jobs`` (bulk mode) splits the
    images into that many contiguous shards, each simulated in its own process with its own
    stall seed (``"auto"``: :func:`simulator_jobs`); the reports add up. ``optimize`` (bulk
    mode) forces an optimized (``True``) or quickly built (``False``) Verilator model; by
    default a run of at least :data:`OPTIMIZED_BUILD_CYCLES` predicted cycles gets one.

    Returns a report: ``vectors``, ``mismatches`` (output words that differ or are missing),
    ``first_mismatch_layer`` (the first layer, in stream order, whose probe disagrees),
    ``cycles_per_inference`` (measured, stall-free steady state), ``predicted_cycles``,
    ``accuracy`` (of the simulated class outputs) and ``golden_accuracy`` when the images
    have labels, ``streams`` (per-stream counts), ``mode``, ``sim_seconds`` and ``timings``
    (seconds per step: golden model, vectors, simulation, accuracy; ``simulation_steps``
    splits a bulk run, see :func:`hwquant.sim.bulk.run_bulk`).
    """
    from .sim.bulk import bulk_build, low_bits, read_capture_arrays, run_bulk
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
    predicted = report["cycles_per_inference"]
    jobs = 1 if mode == "python" else simulator_jobs(jobs, len(x))
    shards = [idx for idx in np.array_split(np.arange(len(x)), jobs) if len(idx)]
    specs = [_shard_spec(net, report, x[idx], {k: v[idx] for k, v in g.items()}, probes,
                         seed=seed + 7919 * i, stall=stall, mode=mode,
                         throughput_items=throughput_items if i == 0 else None)
             for i, idx in enumerate(shards)]
    timings["vectors"] = time.perf_counter() - clock
    where = "in-simulator harness" if mode == "bulk" else "Python drivers"
    items = max(3, throughput_items)
    in_jobs = f" in {len(specs)} simulator processes" if len(specs) > 1 else ""
    step(f"cocotb + Verilator ({where}): {len(x)} images with stalls{in_jobs}, {items} back "
         f"to back")
    verilog, top, root = build_dir / report["verilog_probes"], report["top"], \
        build_dir / "sim_build"
    started = time.perf_counter()
    # A short run is over before an optimized model has paid for its longer build.
    if optimize is None:
        optimize = len(x) * predicted >= OPTIMIZED_BUILD_CYCLES
    if len(specs) == 1:
        if mode == "bulk":
            result = run_bulk(verilog, top, spec=specs[0], build_root=root, optimize=optimize,
                              verbose=verbose)
        else:
            result = run(verilog, top, spec=specs[0], build_root=root, verbose=verbose)
    else:
        bulk_build(verilog, top, spec=specs[0], build_root=root, optimize=optimize,
                   verbose=verbose)
        result = _merge_shards(_run_shards(verilog, top, specs, root, optimize, verbose))
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
            paths = result["captures"]["o_stream"]
            paths = [paths] if isinstance(paths, str) else paths
            correct = 0
            for path, idx in zip(paths, shards, strict=True):
                words = read_capture_arrays(path, result["capture_widths"]["o_stream"])[1]
                got = low_bits(words, cls_bits)[:len(idx)].astype(np.int64)
                # A missing output counts as wrong.
                correct += int(np.sum(got == labels[idx][:len(got)]))
            accuracy = correct / len(labels)
        elif result["passed"]:
            accuracy = golden_accuracy  # every output word equals the golden one
    return {
        "vectors": len(x),
        "mode": mode,
        # Bulk runs: whether the Verilator model was built optimized (OPTIMIZED_BUILD_CYCLES).
        "optimized_model": bool(optimize) if mode == "bulk" else None,
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
        "jobs": len(specs),
        "timings": {**{k: round(v, 4) for k, v in timings.items()},
                    "accuracy": round(time.perf_counter() - clock, 4),
                    "simulation_steps": result.get("timings")},
    }


def _shard_spec(net, report, x, g, probes, *, seed, stall, mode, throughput_items):
    """The stream spec of one shard of images ``x`` (golden outputs ``g``); the stall-free
    throughput phase only when ``throughput_items`` is given."""
    words = (lambda a: a) if mode == "bulk" else packed_to_ints
    beats_in = report["ports"]["i_stream"]["beats_per_inference"]
    predicted = report["cycles_per_inference"]
    items = max(3, throughput_items or 0)
    spec = {
        "seed": seed,
        "inputs": {"i_stream": words(input_packed(net, x))},
        "outputs": {k: words(v) for k, v in expected_packed(net, g, probes).items()},
        "observe_only": [f"probe_{p}" for p in probes],
        "stall": {"valid_gap": stall, "ready_stall": stall},
        "timeout_cycles": int((len(x) + items) * max(predicted, beats_in) * 6 + 20_000),
    }
    if throughput_items is not None:
        x_tp = np.concatenate([x] * (items // len(x) + 1))[:items]
        spec["throughput"] = {"inputs": {"i_stream": words(input_packed(net, x_tp))},
                              "output": "o_stream", "items": items, "beats_per_item": 1}
    return spec


def _bulk_shard(job):
    """One shard's bulk run (in a worker process)."""
    from .sim.bulk import run_bulk

    verilog, top, spec, root, optimize, verbose = job
    return run_bulk(verilog, top, spec=spec, build_root=root, optimize=optimize,
                    verbose=verbose)


def _run_shards(verilog, top, specs, root, optimize, verbose) -> list:
    """Every shard's bulk run, concurrently, one process each (forked where the platform
    allows: the workers need nothing re-imported)."""
    import multiprocessing

    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    with ctx.Pool(len(specs)) as pool:
        return pool.map(_bulk_shard, [(verilog, top, s, root, optimize, verbose)
                                       for s in specs], chunksize=1)


def _merge_shards(results) -> dict:
    """One run result from the shards' (in image order): stream counts added, the first
    mismatches of the first shard that has any (indices within that shard), simulated
    cycles added, the throughput of the shard that measured it, captures as lists."""
    streams = {}
    for name in results[0]["streams"]:
        parts = [r["streams"][name] for r in results]
        first = next((p["first_mismatches"] for p in parts if p.get("first_mismatches")), [])
        streams[name] = {"expected": sum(p["expected"] for p in parts),
                         "received": sum(p["received"] for p in parts),
                         "mismatches": sum(p["mismatches"] for p in parts),
                         "first_mismatches": first}
    steps = {}
    for r in results:
        for key, value in (r.get("timings") or {}).items():
            if value is not None:
                steps[key] = max(steps.get(key, 0.0), value)  # the shards ran side by side
    return {"passed": all(r["passed"] for r in results), "streams": streams,
            "cycles": sum(r["cycles"] or 0 for r in results),
            "throughput": next((r["throughput"] for r in results if r.get("throughput")), None),
            "timed_out": any(r.get("timed_out") for r in results),
            "captures": {k: [r["captures"][k] for r in results]
                         for k in results[0]["captures"]},
            "capture_widths": results[0]["capture_widths"],
            "run_dir": results[0].get("run_dir"), "timings": steps}
