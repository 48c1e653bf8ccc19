"""Bulk simulation: whole vector sets through a design with no testbench code per cycle.

:func:`run_bulk` takes the same spec as :func:`hwquant.sim.runner.run` and returns a result of
the same shape, but the stimulus and the checks move into the simulator's clock domain: a
harness (``rtl_templates/bulk_harness.v.j2``, rendered for the design's stream ports) reads the
input beats from files, draws valid gaps and ready stalls from seeded xorshift registers with
the spec's probabilities, and writes every handshake on every output and probe stream to
capture files with cycle stamps. The cocotb test (:mod:`hwquant.sim.tb_bulk`, the only
Python the simulator imports) only resets, configures and starts each phase and waits for
``done``; the simulator runs freely in between (the clock runs inside the harness). When the
simulator has exited, :func:`run_bulk` compares every captured word with the expected ones
and measures the throughput from the cycle stamps, here, with whole-array NumPy operations
(input beats are raw bytes, captures fixed-size binary records: a file is one array, written
and read without any text formatting).

The harness and the design form one Verilog file; its build is content-addressed like every
other (:func:`hwquant.sim.runner.build`), so one Verilator build serves every bulk run of a
design, whatever the number of vectors, the seed or the stall probabilities.

Differences from the Python-driven bench: the random sequences differ (same probabilities,
another generator), and cycle stamps count from the start of each phase.

Beats may also be given as packed arrays: a 2-D uint8 array whose rows are the little-endian
bytes of the words (:func:`hwquant.layout.pack_lanes_array`, :mod:`hwquant.vectors`'s
``*_packed``). Those are checked against the port widths, written as bytes and compared with
whole-array NumPy operations; nothing in the run loops over words in Python. The result holds
``timings``: seconds spent preparing (spec checks, harness), on the build lookup, writing
the files, in the simulator process (split into start-up, phase 0, compare and the rest) and
reading the result.
"""

import json
import re
import shutil
import sys
import tempfile
import time
import zlib
from pathlib import Path

import jinja2

from ..errors import ToolFailedError
from .runner import (
    build,
    check_toplevel,
    echo_log,
    log_tail,
    make_runner,
    missing_result_error,
    tool_environment,
)
from .tb_bulk import BULK_SPEC_ENV
from .tb_bulk import MODULE as TB_MODULE
from .tb_stream import MAX_REPORTED_MISMATCHES, parse_spec, throughput_stats

__all__ = [
    "BULK_BUILD_ARGS",
    "bulk_build",
    "HARNESS",
    "TB_MODULE",
    "as_words",
    "compare_words",
    "low_bits",
    "parse_ports",
    "read_capture",
    "read_capture_arrays",
    "render_harness",
    "run_bulk",
    "stall_threshold",
    "word_count",
    "words_value",
]

#: Module name of the rendered harness.
HARNESS = "hwquant_bulk"

#: Verilator flags of harness builds: the clock is a delay loop in the harness (--timing);
#: only the harness ports are public (they say so in the template), so Verilator may optimize
#: the design's internals away; optimized C++.
BULK_BUILD_ARGS = ("--timing", "--timescale", "1ns/1ps", "--no-public-flat-rw", "-O3",
                   "-CFLAGS", "-O2")
#: The same, for a short run (``optimize=False``): C++ unoptimized. On the digits default the
#: build takes about two thirds of the time and the model runs about 4.5x slower, so this wins
#: below a few hundred thousand simulated cycles.
QUICK_BUILD_ARGS = ("--timing", "--timescale", "1ns/1ps", "--no-public-flat-rw",
                    "-CFLAGS", "-O0")

_TEMPLATE = "bulk_harness.v.j2"
_PORT = re.compile(r"^\s*(input|output|inout)\s+(?:wire\s+|reg\s+)?(?:signed\s+)?"
                   r"(?:\[(\d+):(\d+)\]\s*)?([A-Za-z_][A-Za-z0-9_$]*)\s*;", re.MULTILINE)
_COUNTER_LIMIT = (1 << 32) - 1


def _templates_dir():
    from importlib import resources

    for package in ("hwquant.rtl_templates", "rtl_templates"):
        try:
            path = Path(str(resources.files(package)))
        except (ModuleNotFoundError, TypeError):
            continue
        if (path / _TEMPLATE).is_file():
            return path
    path = Path(__file__).resolve().parents[1] / "rtl_templates"
    if (path / _TEMPLATE).is_file():
        return path
    raise FileNotFoundError(f"The harness template {_TEMPLATE} was not found; is hwquant "
                            f"installed with its data files?")


def parse_ports(text, toplevel):
    """Ports of module ``toplevel`` in Yosys-style Verilog (one declaration per line).

    Returns
    -------
    dict of str to (str, int)
        ``{port: (direction, width)}``.

    Raises
    ------
    ValueError
        If the module is not in ``text``.
    """
    check_toplevel(toplevel)
    match = re.search(rf"^module\s+{re.escape(toplevel)}\s*\(", text, re.MULTILINE)
    if match is None:
        raise ValueError(f"Verilog has no module '{toplevel}'")
    end = text.find("endmodule", match.end())
    body = text[match.end(): end if end >= 0 else len(text)]
    ports = {}
    for direction, msb, lsb, name in _PORT.findall(body):
        width = int(msb) - int(lsb) + 1 if msb else 1
        ports[name] = (direction, width)
    return ports


def _stream_width(ports, name, *, payload_dir, valid_dir, ready_dir):
    for member, direction in (("payload", payload_dir), ("valid", valid_dir),
                              ("ready", ready_dir)):
        port = f"{name}__{member}"
        if port not in ports:
            raise ValueError(f"Design has no port '{port}'")
        if ports[port][0] != direction:
            raise ValueError(f"Port '{port}' must be an {direction}, not an {ports[port][0]}")
    return ports[f"{name}__payload"][1]


def _salt(role, name):
    return f"{zlib.crc32(f'{role}/{name}'.encode()):08x}"


def render_harness(dut, ports, inputs, outputs, observe_only=(), *, half_period=5):
    """Verilog of the bulk harness around module ``dut``.

    Parameters
    ----------
    dut : str
        Module name of the design.
    ports : dict
        :func:`parse_ports` of the design.
    inputs, outputs : iterable of str
        Stream names driven into and taken out of the design.
    observe_only : iterable of str
        Outputs whose ``ready`` the design drives (probes).
    half_period : int, float or str
        Half clock period in nanoseconds (a Verilog delay literal).

    Raises
    ------
    ValueError
        If a stream port is missing or has the wrong direction, or the design has no ``clk``.
    """
    if ports.get("clk", ("",))[0] != "input":
        raise ValueError("Design has no port 'clk'")
    observe_only = set(observe_only)
    ins = [{"name": n, "salt": _salt("in", n),
            "width": _stream_width(ports, n, payload_dir="input", valid_dir="input",
                                   ready_dir="output")} for n in inputs]
    outs = [{"name": n, "salt": _salt("out", n), "observe_only": n in observe_only,
             "width": _stream_width(ports, n, payload_dir="output", valid_dir="output",
                                    ready_dir="output" if n in observe_only else "input")}
            for n in outputs]
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(_templates_dir())),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    return env.get_template(_TEMPLATE).render(
        harness=HARNESS, dut=dut, has_rst=ports.get("rst", ("",))[0] == "input",
        inputs=ins, outputs=outs, half_period=half_period)


def stall_threshold(probability):
    """A probability as the harness's 16-bit threshold (``round(p * 65536)``)."""
    return min(round(probability * 65536), 65535)


class _LazyNumpy:
    """NumPy, imported on first use: the Python-driven testbench imports this package inside
    the simulator and needs no NumPy there."""

    def __getattr__(self, name):
        import numpy

        return getattr(numpy, name)


np = _LazyNumpy()


def _is_packed(beats):
    return ("numpy" in sys.modules and isinstance(beats, np.ndarray)
            and beats.dtype == np.uint8 and beats.ndim == 2)


def _byte_count(width):
    """Bytes of a ``width``-bit input beat in its file (what ``$fread`` takes)."""
    return max(1, -(-width // 8))


def word_count(width):
    """32-bit words of a ``width``-bit payload in a capture record (what ``%u`` writes)."""
    return max(1, -(-width // 32))


def _as_bytes(beats, count):
    """Beats (ints, or a packed little-endian byte array) as an ``(N, count)`` uint8 array of
    little-endian bytes (:func:`_check_fits` has checked that every beat fits)."""
    if _is_packed(beats):
        have = beats.shape[1]
        if have >= count:
            return np.ascontiguousarray(beats[:, :count])
        return np.pad(beats, ((0, 0), (0, count - have)))
    data = b"".join(int(w).to_bytes(count, "little") for w in beats)
    return np.frombuffer(data, dtype=np.uint8).reshape(len(beats), count)


def as_words(beats, width):
    """Beats as the ``(N, word_count(width))`` uint32 array a capture record holds (least
    significant word first)."""
    return _as_bytes(beats, 4 * word_count(width)).view("<u4")


def _write_beats(path, beats, width):
    """An input file: each beat as :func:`_byte_count` raw bytes, most significant first."""
    Path(path).write_bytes(_as_bytes(beats, _byte_count(width))[:, ::-1].tobytes())


def _check_fits(name, beats, width, role):
    if _is_packed(beats):
        full, part = divmod(width, 8)
        over = np.zeros(len(beats), dtype=bool)
        if beats.shape[1] > full:
            over |= (beats[:, full] >> part) != 0
            if beats.shape[1] > full + 1:
                over |= np.any(beats[:, full + 1:] != 0, axis=1)
        bad = np.flatnonzero(over)
        if not len(bad):
            return
        index = int(bad[0])
        beat = int.from_bytes(beats[index].tobytes(), "little")
        raise ValueError(f"Stream '{name}': {role} beat {index} ({beat:#x}) is wider than "
                         f"the {width}-bit payload port")
    for index, beat in enumerate(beats):
        if beat >> width:
            raise ValueError(f"Stream '{name}': {role} beat {index} ({beat:#x}) is wider than "
                             f"the {width}-bit payload port")


def _split_packed(spec):
    """``spec`` with every packed beat array replaced by ``[]`` (for :func:`parse_spec`), and
    the arrays as ``{(section, stream): array}``; other arrays become lists."""
    if not isinstance(spec, dict):
        return spec, {}
    spec = dict(spec)
    packed = {}
    sections = [("inputs", spec, "inputs"), ("outputs", spec, "outputs")]
    if isinstance(spec.get("throughput"), dict):
        spec["throughput"] = dict(spec["throughput"])
        sections.append(("throughput", spec["throughput"], "inputs"))
    for section, holder, key in sections:
        streams = holder.get(key)
        if not isinstance(streams, dict):
            continue
        streams = dict(streams)
        for name, beats in streams.items():
            if _is_packed(beats):
                packed[(section, name)] = beats
                streams[name] = []
            elif "numpy" in sys.modules and isinstance(beats, np.ndarray):
                streams[name] = beats.tolist()
        holder[key] = streams
    return spec, packed


def _phases(spec):
    """The harness phases of a parsed spec: the checked run, then the optional throughput."""
    stall = spec["stall"]
    first = {
        "index": 0,
        "seed": zlib.crc32(str(spec["seed"]).encode()),
        "valid_gap": stall_threshold(stall["valid_gap"]),
        "ready_stall": stall_threshold(stall["ready_stall"]),
        "timeout": spec["timeout_cycles"],
        "drain": spec["drain_cycles"],
        "beats": {n: len(b) for n, b in spec["inputs"].items()},
        "expect": {n: len(b) for n, b in spec["outputs"].items()},
    }
    phases = [first]
    tp = spec["throughput"]
    if tp is not None:
        phases.append({
            "index": 1,
            "seed": first["seed"] ^ 0x5BD1E995,
            "valid_gap": 0,
            "ready_stall": 0,
            "timeout": spec["timeout_cycles"],
            "drain": 0,
            "beats": {n: len(tp["inputs"].get(n, [])) for n in spec["inputs"]},
            "expect": {n: (tp["items"] * tp["beats_per_item"] if n == tp["output"] else 0)
                       for n in spec["outputs"]},
        })
    for phase in phases:
        for count in (*phase["beats"].values(), *phase["expect"].values(), phase["timeout"],
                      phase["drain"]):
            if count > _COUNTER_LIMIT:
                raise ValueError(f"Spec counts must fit 32 bits, not {count}")
    return phases


def bulk_build(verilog_path, toplevel, *, spec, build_root, optimize=True, verbose=False):
    """Build (or find) the Verilator model of the bulk harness :func:`run_bulk` uses for this
    design and spec's streams; its build directory. Lets several runs of one design (shards
    of a vector set, in other processes) share one build."""
    return _prepare(verilog_path, toplevel, spec, build_root, 600.0, verbose, {},
                    optimize=optimize)[3]


def _prepare(verilog_path, toplevel, spec, build_root, timeout_s, verbose, timings, *,
             optimize=True):
    """Checks, harness and build of a run: ``(parsed spec, payload widths, phases,
    build directory)``; ``timings`` gets ``prepare`` and ``build_lookup``."""
    clock = time.perf_counter()
    spec, packed = _split_packed(spec)
    parsed = parse_spec(spec)
    for (section, name), beats in packed.items():
        holder = parsed["throughput"]["inputs"] if section == "throughput" else parsed[section]
        holder[name] = beats
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or timeout_s <= 0:
        raise ValueError(f"Timeout must be a positive number of seconds, not {timeout_s!r}")
    check_toplevel(toplevel)
    text = Path(verilog_path).read_text()
    try:
        ports = parse_ports(text, toplevel)
        harness = render_harness(toplevel, ports, parsed["inputs"], parsed["outputs"],
                                 parsed["observe_only"],
                                 half_period=f"{parsed['clock_period_ns'] / 2:g}")
        for name, beats in parsed["inputs"].items():
            _check_fits(name, beats, ports[f"{name}__payload"][1], "input")
        for name, beats in parsed["outputs"].items():
            _check_fits(name, beats, ports[f"{name}__payload"][1], "expected")
        if parsed["throughput"] is not None:
            for name, beats in parsed["throughput"]["inputs"].items():
                _check_fits(name, beats, ports[f"{name}__payload"][1], "throughput input")
        phases = _phases(parsed)
    except ValueError as error:
        raise ValueError(f"Simulation of '{toplevel}': {error}") from None

    widths = {n: ports[f"{n}__payload"][1] for n in (*parsed["inputs"], *parsed["outputs"])}
    timings["prepare"] = time.perf_counter() - clock
    clock = time.perf_counter()
    build_root = Path(build_root).resolve()
    sources = build_root / "bulk_sources"
    sources.mkdir(parents=True, exist_ok=True)
    combined = f"{text.rstrip()}\n\n{harness}"
    # Written once per distinct text (the name is its hash), so concurrent runs never race.
    source = sources / f"{zlib.crc32(combined.encode()):08x}-{len(combined)}.v"
    if not source.is_file() or source.read_text() != combined:
        partial = Path(tempfile.mkstemp(dir=sources, suffix=".partial")[1])
        partial.write_text(combined)
        partial.replace(source)
    build_dir = build(source, HARNESS, build_root=build_root,
                      extra_args=BULK_BUILD_ARGS if optimize else QUICK_BUILD_ARGS,
                      verbose=verbose)

    timings["build_lookup"] = time.perf_counter() - clock
    return parsed, widths, phases, build_dir


def run_bulk(verilog_path, toplevel, *, spec, build_root, timeout_s=600.0, optimize=True,
             verbose=False):
    """Simulate a design against a stream spec with the bulk harness.

    Same parameters, result and errors as :func:`hwquant.sim.runner.run` (beats may also be
    packed arrays, see the module docstring); ``optimize=False`` builds the model with
    :data:`QUICK_BUILD_ARGS` (faster to build, slower to run). The result also holds ``"mode": "bulk"``,
    ``"captures"``: ``{stream: path}`` of the checked phase's capture files (read them with
    :func:`read_capture` or :func:`read_capture_arrays`), and ``"timings"`` (seconds per
    step, see the module docstring).
    """
    timings = {}
    parsed, widths, phases, build_dir = _prepare(verilog_path, toplevel, spec, build_root,
                                                 timeout_s, verbose, timings,
                                                 optimize=optimize)
    build_root = Path(build_root).resolve()
    clock = time.perf_counter()

    runs = build_root / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix=f"{toplevel}-bulk-", dir=runs))
    for name, beats in parsed["inputs"].items():
        _write_beats(run_dir / f"phase0.{name}.in", beats, widths[name])
    tp = parsed["throughput"]
    if tp is not None:
        for name in parsed["inputs"]:
            _write_beats(run_dir / f"phase1.{name}.in", tp["inputs"].get(name, []),
                         widths[name])
    result_path = run_dir / "result.json"
    bulk_spec = {
        "clock_period_ns": parsed["clock_period_ns"],
        "reset_cycles": parsed["reset_cycles"],
        "phases": phases,
        "result_path": str(result_path),
    }
    spec_path = run_dir / "spec.json"
    spec_path.write_text(json.dumps(bulk_spec, indent=1))
    log = run_dir / "sim.log"
    module_dir = _install_testbench(build_root)
    timings["write"] = time.perf_counter() - clock

    # No assertion rewriting: it loads pytest's plugins, and the test asserts nothing.
    extra = {BULK_SPEC_ENV: str(spec_path), "COCOTB_REWRITE_ASSERTION_FILES": ""}
    timeout = shutil.which("timeout")
    if timeout is not None:
        extra["SIM_CMD_PREFIX"] = f"{timeout} -s KILL {float(timeout_s):g}"
    runner = make_runner(verbose, python_paths=(module_dir,))
    failure = None
    launched = time.time()
    started = time.monotonic()
    try:
        with tool_environment(extra):
            runner.test(test_module=TB_MODULE, hdl_toplevel=HARNESS,
                        hdl_toplevel_lang="verilog", build_dir=build_dir, test_dir=run_dir,
                        results_xml=str(run_dir / "results.xml"), extra_env=extra,
                        log_file=log)
    except (RuntimeError, SystemExit, OSError) as error:
        failure = error
    elapsed = time.monotonic() - started
    ended = time.time()
    clock = time.perf_counter()
    if verbose:
        echo_log(log)
    if not result_path.is_file():
        raise missing_result_error(f"Bulk simulation of '{toplevel}'", failure, elapsed,
                                   timeout_s, log)
    try:
        raw = json.loads(result_path.read_text())
        ran = raw["phases"]
        ran[0]["cycles"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise ToolFailedError(f"Bulk simulation of '{toplevel}' wrote an unreadable result "
                              f"{result_path}; log {log}:\n{log_tail(log)}") from None
    timings["simulator_process"] = elapsed
    # Wall clocks of this process and the simulator's: start-up (simulator binary, embedded
    # Python, cocotb) until the test module is imported, then until the test runs; exit
    # plus the runner's bookkeeping after it.
    timings["simulator_startup"] = max(0.0, raw["imported"] - launched)
    timings["cocotb_to_test"] = max(0.0, raw["test_started"] - raw["imported"])
    timings["phase0"] = ran[0]["seconds"]
    timings["phase1"] = ran[1]["seconds"] if len(ran) > 1 else None
    timings["simulator_exit"] = max(0.0, ended - raw["test_finished"])

    result = _compare(parsed, run_dir, widths, ran)
    timings["compare"] = time.perf_counter() - clock
    result["run_dir"] = str(run_dir)
    result["mode"] = "bulk"
    result["seconds"] = round(elapsed, 3)
    result["timings"] = {k: (None if v is None else round(v, 4)) for k, v in timings.items()}
    return result


def _install_testbench(build_root):
    """The directory holding the testbench module (a copy of :mod:`hwquant.sim.tb_bulk`
    named :data:`TB_MODULE`), the one Python module the simulator imports."""
    text = (Path(__file__).resolve().parent / "tb_bulk.py").read_text()
    directory = build_root / "bulk_testbench" / f"{zlib.crc32(text.encode()):08x}"
    target = directory / f"{TB_MODULE}.py"
    if not target.is_file() or target.read_text() != text:
        directory.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkstemp(dir=directory, suffix=".partial")[1])
        partial.write_text(text)
        partial.replace(target)
    return directory


def _compare(parsed, run_dir, widths, ran):
    """The result of a finished run: every captured word of phase 0 compared with the
    expected ones, the throughput from phase 1's cycle stamps (shape of
    :mod:`hwquant.sim.tb_stream`'s result)."""
    timed_out = any(p["timed_out"] for p in ran)
    streams = {}
    captures = {}
    for name, beats in parsed["outputs"].items():
        captures[name] = str(run_dir / f"phase0.{name}.out")
        cycles, got = read_capture_arrays(captures[name], widths[name])
        streams[name] = compare_words(as_words(beats, widths[name]), got, cycles)
    passed = not timed_out and all(
        s["mismatches"] == 0 and s["expected"] == s["received"] for s in streams.values())
    throughput = None
    tp = parsed["throughput"]
    if tp is not None and len(ran) > 1:
        needed = tp["items"] * tp["beats_per_item"]
        stamps, _ = read_capture_arrays(run_dir / f"phase1.{tp['output']}.out",
                                        widths[tp["output"]])
        bpi = tp["beats_per_item"]
        stamps = stamps[:needed][bpi - 1::bpi]
        throughput = throughput_stats(stamps.tolist(), ran[1]["first_input_cycle"])
    return {"passed": passed, "streams": streams, "cycles": ran[0]["cycles"],
            "throughput": throughput, "timed_out": timed_out, "error": None,
            "captures": captures, "capture_widths": {n: widths[n] for n in captures}}


# -- capture files as arrays -------------------------------------------------------------------


def read_capture_arrays(path, width):
    """A harness capture file of a ``width``-bit stream as ``(cycles, words)``: an int64 array
    of the cycle stamps and the ``(N, word_count(width))`` uint32 array of the payloads (least
    significant word first), read as one array.

    Raises
    ------
    ValueError
        If the file is not a whole number of records of that width.
    """
    raw = np.fromfile(path, dtype="<u4")
    columns = 1 + word_count(width)
    size = Path(path).stat().st_size
    if size % (4 * columns):
        raise ValueError(f"{path}: {size} bytes is not a whole number of {4 * columns}-byte "
                         f"capture records of a {width}-bit stream")
    records = raw.reshape(-1, columns)
    return records[:, 0].astype(np.int64), records[:, 1:]


def words_value(row) -> int:
    """One payload of a capture (a row of uint32 words, least significant first) as an int."""
    return int.from_bytes(np.ascontiguousarray(row, dtype="<u4").tobytes(), "little")


def read_capture(path, width):
    """``[(cycle, payload), ...]`` from a harness capture file of a ``width``-bit stream."""
    cycles, words = read_capture_arrays(path, width)
    return [(c, words_value(w)) for c, w in zip(cycles.tolist(), words)]


def low_bits(words, bits):
    """The low ``bits`` bits (at most 64) of each payload of a capture, as uint64."""
    if not 0 <= bits <= 64:
        raise ValueError(f"low_bits takes up to 64 bits, not {bits}")
    value = words[:, 0].astype(np.uint64) if words.shape[1] else np.zeros(len(words),
                                                                         dtype=np.uint64)
    if bits > 32 and words.shape[1] > 1:
        value |= words[:, 1].astype(np.uint64) << np.uint64(32)
    return value & np.uint64((1 << bits) - 1) if bits < 64 else value


def compare_words(expected, got, cycles):
    """:func:`hwquant.sim.tb_stream.compare_stream` on word arrays, vectorised.

    ``expected`` and ``got`` are ``(N, K)`` uint32 arrays of payload words (:func:`as_words`,
    :func:`read_capture_arrays`), ``cycles`` the cycle stamps of ``got``; the result is the
    same as ``compare_stream``'s on the words as ints.
    """
    width = max(expected.shape[1], got.shape[1])

    def padded(a):
        return a if a.shape[1] == width else np.pad(a, ((0, 0), (0, width - a.shape[1])))

    count = min(len(expected), len(got))
    bad = np.flatnonzero(np.any(padded(expected[:count]) != padded(got[:count]), axis=1))
    first = [{"index": int(i), "expected": hex(words_value(expected[i])),
              "got": hex(words_value(got[i])), "cycle": int(cycles[i])}
             for i in bad[:MAX_REPORTED_MISMATCHES]]
    return {"expected": len(expected), "received": len(got), "mismatches": len(bad),
            "first_mismatches": first}
