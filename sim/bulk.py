"""Bulk simulation: whole vector sets through a design with no testbench code per cycle.

:func:`run_bulk` takes the same spec as :func:`hwquant.sim.runner.run` and returns a result of
the same shape, but the stimulus and the checks move into the simulator's clock domain: a
harness (``rtl_templates/bulk_harness.v.j2``, rendered for the design's stream ports) reads the
input beats from files, draws valid gaps and ready stalls from seeded xorshift registers with
the spec's probabilities, and writes every handshake on every output and probe stream to
capture files with cycle stamps. The cocotb test (:mod:`hwquant.sim.tb_bulk`) only resets,
configures and starts each phase, waits for ``done`` and compares every captured word with the
expected ones; the simulator runs freely in between (the clock is cocotb's C-level clock).

The harness and the design form one Verilog file; its build is content-addressed like every
other (:func:`hwquant.sim.runner.build`), so one Verilator build serves every bulk run of a
design, whatever the number of vectors, the seed or the stall probabilities.

Differences from the Python-driven bench: the random sequences differ (same probabilities,
another generator), and cycle stamps count from the start of each phase.
"""

import json
import re
import shutil
import tempfile
import time
import zlib
from pathlib import Path

import jinja2

from ..errors import ToolFailedError
from .runner import _check_toplevel, _echo, _make_runner, _tail, _tool_environment, build
from .tb_bulk import BULK_SPEC_ENV, read_capture
from .tb_stream import parse_spec

__all__ = [
    "BULK_BUILD_ARGS",
    "HARNESS",
    "parse_ports",
    "read_capture",
    "render_harness",
    "run_bulk",
    "stall_threshold",
]

#: Module name of the rendered harness.
HARNESS = "hwquant_bulk"

#: Verilator flags of harness builds: the clock is a delay loop in the harness (--timing);
#: only the harness ports are public (they say so in the template), so Verilator may optimize
#: the design's internals away; optimized C++.
BULK_BUILD_ARGS = ("--timing", "--timescale", "1ns/1ps", "--no-public-flat-rw", "-O3",
                   "-CFLAGS", "-O2")

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
    _check_toplevel(toplevel)
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


def _write_words(path, words):
    Path(path).write_text("".join(f"{w:x}\n" for w in words))


def _check_fits(name, beats, width, role):
    for index, beat in enumerate(beats):
        if beat >> width:
            raise ValueError(f"Stream '{name}': {role} beat {index} ({beat:#x}) is wider than "
                             f"the {width}-bit payload port")


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


def run_bulk(verilog_path, toplevel, *, spec, build_root, timeout_s=600.0, verbose=False):
    """Simulate a design against a stream spec with the bulk harness.

    Same parameters, result and errors as :func:`hwquant.sim.runner.run`; the result also
    holds ``"mode": "bulk"`` and ``"captures"``: ``{stream: path}`` of the phase-1 capture
    files (read them with :func:`read_capture`).
    """
    parsed = parse_spec(spec)
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or timeout_s <= 0:
        raise ValueError(f"Timeout must be a positive number of seconds, not {timeout_s!r}")
    _check_toplevel(toplevel)
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
    build_dir = build(source, HARNESS, build_root=build_root, extra_args=BULK_BUILD_ARGS,
                      verbose=verbose)

    runs = build_root / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix=f"{toplevel}-bulk-", dir=runs))
    for name, beats in parsed["inputs"].items():
        _write_words(run_dir / f"phase0.{name}.in", beats)
    expected = {}
    for name, beats in parsed["outputs"].items():
        expected[name] = str(run_dir / f"phase0.{name}.expected")
        _write_words(expected[name], beats)
    tp = parsed["throughput"]
    if tp is not None:
        for name in parsed["inputs"]:
            _write_words(run_dir / f"phase1.{name}.in", tp["inputs"].get(name, []))
    result_path = run_dir / "result.json"
    bulk_spec = {
        "clock_period_ns": parsed["clock_period_ns"],
        "reset_cycles": parsed["reset_cycles"],
        "inputs": list(parsed["inputs"]),
        "outputs": list(parsed["outputs"]),
        "expected": expected,
        "phases": phases,
        "throughput": (None if tp is None else
                       {"output": tp["output"], "items": tp["items"],
                        "beats_per_item": tp["beats_per_item"]}),
        "result_path": str(result_path),
    }
    spec_path = run_dir / "spec.json"
    spec_path.write_text(json.dumps(bulk_spec, indent=1))
    log = run_dir / "sim.log"

    extra = {BULK_SPEC_ENV: str(spec_path)}
    timeout = shutil.which("timeout")
    if timeout is not None:
        extra["SIM_CMD_PREFIX"] = f"{timeout} -s KILL {float(timeout_s):g}"
    runner = _make_runner(verbose)
    failure = None
    started = time.monotonic()
    try:
        with _tool_environment(extra):
            runner.test(test_module="hwquant.sim.tb_bulk", hdl_toplevel=HARNESS,
                        hdl_toplevel_lang="verilog", build_dir=build_dir, test_dir=run_dir,
                        results_xml=str(run_dir / "results.xml"), extra_env=extra,
                        log_file=log)
    except (RuntimeError, SystemExit, OSError) as error:
        failure = error
    elapsed = time.monotonic() - started
    if verbose:
        _echo(log)
    if not result_path.is_file():
        if failure is not None and elapsed >= timeout_s:
            reason = f"exceeded the {timeout_s:g} s timeout"
        elif failure is not None:
            reason = f"failed ({failure})"
        else:
            reason = "wrote no result file"
        raise ToolFailedError(f"Bulk simulation of '{toplevel}' {reason}; log {log}:\n"
                              f"{_tail(log)}")
    try:
        result = json.loads(result_path.read_text())
    except ValueError:
        raise ToolFailedError(f"Bulk simulation of '{toplevel}' wrote an unreadable result "
                              f"{result_path}; log {log}:\n{_tail(log)}") from None
    if result.get("error"):
        raise ValueError(f"Simulation of '{toplevel}': {result['error']}")
    result["run_dir"] = str(run_dir)
    result["mode"] = "bulk"
    result["seconds"] = round(elapsed, 3)
    return result
