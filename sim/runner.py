"""Build Verilog with Verilator and run cocotb testbenches on it.

This module is the only place in hwquant that knows simulator details: which Verilator, its
flags, its environment, the cocotb runner and its quirks. Everything else hands it a Verilog
file, a top-level name and a spec (see :mod:`hwquant.sim.tb_stream`) and gets a result dict.

Builds are content-addressed: ``build_root/<key>`` where ``key`` is the first 16 hex digits of
the SHA-256 of the Verilog text, the top-level name, the Verilator flags and the tool versions.
One build serves any number of runs; a build directory is complete when its stamp file exists
and is never rebuilt. The Verilator run-time library objects (``verilated*.o``, about four
fifths of a small design's compile time) are kept in a machine-wide cache,
``verilator-runtime/<key>`` under :func:`cache_home`, and copied into new builds (of any build
root); after the build, ``make -n`` confirms they were compiled with the very commands
the new build would use, and rebuilds them otherwise. Each run gets a fresh directory ``build_root/runs/<toplevel>-*`` holding
``spec.json``, ``result.json`` and ``sim.log`` (the build log is ``<build dir>/build.log``).
"""

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import cocotb
from cocotb_tools.runner import get_runner

from ..errors import ToolFailedError
from .tb_stream import SPEC_ENV, parse_spec
from .verilator import find_verilator, verilator_env, verilator_version

__all__ = ["BUILD_ARGS", "build", "run", "tool_environment", "make_runner", "log_tail",
           "echo_log", "check_toplevel", "missing_result_error"]

#: Verilator flags. Yosys-written Verilog (Amaranth's back end) pads and truncates operands
#: implicitly (WIDTHEXPAND, WIDTHTRUNC) and writes ``case`` statements without ``default``
#: after a default assignment (CASEINCOMPLETE); those lint warnings are fatal by default.
BUILD_ARGS = ("-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-Wno-CASEINCOMPLETE")
#: Flags :func:`run` adds: its benches run Python on every clock edge, which costs far more
#: than the model's evaluation, so the C++ is built unoptimized (about half the build time of
#: Verilator's default ``-Os`` on the digits default network).
DRIVEN_BUILD_ARGS = ("-CFLAGS", "-O0")

_STAMP = "hwquant-build.json"
_LOG_TAIL_LINES = 40
_KEY_FORMAT = 1
_RUNTIME_COMMANDS = "commands.json"
# Make variables cocotb's Verilator runner passes (waves are always off here).
_MAKE_VARS = ("VM_TRACE=0",)
_TOPLEVEL = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*\Z")

# os.environ is process-wide: one tool invocation at a time may patch it.
_environ_lock = threading.Lock()


@contextmanager
def tool_environment(extra=None):
    """Patch ``os.environ`` for the cocotb runner, restore it afterwards.

    The runner reads ``os.environ`` itself (``shutil.which("verilator")``, ``SIM_CMD_PREFIX``)
    and copies it over any ``extra_env``, so the variables have to be set there. Under pytest
    ``PYTEST_CURRENT_TEST`` is hidden so the runner reports failures to us instead of calling
    ``sys.exit``; ``WAVES`` is hidden because the build key does not cover tracing.
    """
    with _environ_lock:
        saved = dict(os.environ)
        try:
            env = verilator_env()
            for name in ("PYTEST_CURRENT_TEST", "WAVES", "GUI"):
                env.pop(name, None)
            env.update(extra or {})
            os.environ.clear()
            os.environ.update(env)
            yield
        finally:
            os.environ.clear()
            os.environ.update(saved)


def make_runner(verbose, *, python_paths=()):
    """cocotb's Verilator runner, with the simulator's ``PYTHONPATH`` made of
    ``python_paths`` first, then this process's ``sys.path`` (entries made absolute)."""
    runner = get_runner("verilator")
    runner.log.setLevel(logging.INFO if verbose else logging.WARNING)
    set_env_test = runner._set_env_test

    def _set_env_test():
        set_env_test()
        # The runner passes sys.path as PYTHONPATH, but the simulator runs in another working
        # directory: make the "current directory" entries absolute.
        paths = [str(p) for p in python_paths]
        paths += [os.path.abspath(p) if p else os.getcwd() for p in sys.path]
        runner.env["PYTHONPATH"] = os.pathsep.join(paths)

    runner._set_env_test = _set_env_test
    return runner


def log_tail(path, lines=_LOG_TAIL_LINES):
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def echo_log(path):
    try:
        sys.stdout.write(Path(path).read_text(errors="replace"))
    except OSError:
        pass
    sys.stdout.flush()


def missing_result_error(what, failure, elapsed, timeout_s, log) -> ToolFailedError:
    """The error for a simulation run that wrote no result file: why (time-out, runner
    failure, or nothing), with the end of its log."""
    if failure is not None and elapsed >= timeout_s:
        reason = f"exceeded the {timeout_s:g} s timeout"
    elif failure is not None:
        reason = f"failed ({failure})"
    else:
        reason = "wrote no result file"
    return ToolFailedError(f"{what} {reason}; log {log}:\n{log_tail(log)}")


def check_toplevel(toplevel):
    if not isinstance(toplevel, str) or not _TOPLEVEL.match(toplevel):
        raise ValueError(f"Top-level name must be a Verilog identifier, not {toplevel!r}")


def _build_key(text, toplevel, flags=BUILD_ARGS):
    root, _ = find_verilator()
    material = {
        "format": _KEY_FORMAT,
        "verilog": text,
        "toplevel": toplevel,
        "flags": list(flags),
        "verilator": list(verilator_version() or ()),
        "verilator_root": str(root),
        "cocotb": cocotb.__version__,
        "python": sys.version,
    }
    blob = json.dumps(material, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def cache_home() -> Path:
    """hwquant's machine-wide cache: ``$HWQUANT_CACHE_DIR``, else ``$XDG_CACHE_HOME/hwquant``,
    else ``~/.cache/hwquant``. Everything in it is content-addressed and may be deleted."""
    if os.environ.get("HWQUANT_CACHE_DIR"):
        return Path(os.environ["HWQUANT_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "hwquant"


def _runtime_cache_dir(build_root, flags=BUILD_ARGS):
    """Cache directory of the run-time objects for the current tools and flags: in
    :func:`cache_home`, or in ``build_root/_runtime`` when there is no home directory."""
    root, _ = find_verilator()
    env = verilator_env()
    material = {
        "format": _KEY_FORMAT,
        "verilator": list(verilator_version() or ()),
        "verilator_root": str(root),
        "cocotb": cocotb.__version__,
        "flags": list(flags),
        "env": {name: env.get(name) for name in ("CXX", "CXXFLAGS", "CPPFLAGS", "OBJCACHE")},
        "cxx": shutil.which("c++", path=env.get("PATH")),
    }
    key = hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:16]
    try:
        return cache_home() / "verilator-runtime" / key
    except RuntimeError:  # Path.home(): no home directory
        return Path(build_root) / "_runtime" / key


def _runtime_objects(build_dir):
    """Names of the run-time library objects a Verilator build links (``VM_GLOBAL_*``)."""
    text = (build_dir / "Vtop_classes.mk").read_text()
    names = []
    for match in re.finditer(r"^VM_GLOBAL_(?:FAST|SLOW) \+=((?:.*\\\n)*.*)$", text, re.MULTILINE):
        names.extend(match.group(1).replace("\\", " ").split())
    return names


def _compile_commands(build_dir, objects, env):
    """The compile command make would run for each object, or ``None`` if make fails."""
    targets = [f"{name}.o" for name in objects]
    try:
        dry_run = subprocess.run(
            ["make", "-n", "-B", "-f", "Vtop.mk", *_MAKE_VARS, *targets],
            cwd=build_dir,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if dry_run.returncode != 0:
        return None
    commands = {}
    for line in dry_run.stdout.splitlines():
        for name in objects:
            if f" -o {name}.o " in f"{line} ":
                commands[name] = line.strip()
    return commands if set(commands) == set(objects) else None


def _seed_runtime(cache, build_dir):
    """Copy cached run-time objects into a fresh build directory; their compile commands.

    The objects depend on ``Vtop.mk``, which Verilator writes later, so they are dated a day
    ahead for make to take them as they are (make notes a clock skew in the build log);
    :func:`_refresh_runtime` checks them against this build's commands and dates them back.
    """
    ahead = time.time() + 86400
    try:
        commands = json.loads((cache / _RUNTIME_COMMANDS).read_text())
        for name in commands:
            for suffix in (".o", ".d"):
                shutil.copyfile(cache / f"{name}{suffix}", build_dir / f"{name}{suffix}")
            os.utime(build_dir / f"{name}.o", (ahead, ahead))
    except (OSError, ValueError):
        return {}
    return commands


def _store_runtime(cache, build_dir, env):
    """Keep the run-time objects of a finished build for later builds (best effort)."""
    if (cache / _RUNTIME_COMMANDS).is_file():
        return
    objects = _runtime_objects(build_dir)
    commands = _compile_commands(build_dir, objects, env)
    if not commands:
        return
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f"{cache.name}.partial-", dir=cache.parent))
    except OSError:  # an unwritable cache: the next build compiles them again
        return
    try:
        for name in objects:
            for suffix in (".o", ".d"):
                shutil.copyfile(build_dir / f"{name}{suffix}", staging / f"{name}{suffix}")
        (staging / _RUNTIME_COMMANDS).write_text(json.dumps(commands, indent=1))
        staging.rename(cache)
    except OSError:
        pass
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _refresh_runtime(seeded, build_dir, env, log):
    """Rebuild seeded run-time objects whose compile command differs from this build's."""
    current = _compile_commands(build_dir, list(seeded), env) or {}
    stale = [name for name, command in seeded.items() if current.get(name) != command]
    now = time.time() - 1
    for name in seeded:
        if (build_dir / f"{name}.o").exists():
            os.utime(build_dir / f"{name}.o", (now, now))
    if not stale:
        return
    for name in stale:
        for suffix in (".o", ".d"):
            (build_dir / f"{name}{suffix}").unlink(missing_ok=True)
    with open(log, "a") as stdout:
        stdout.write(f"hwquant: recompiling run-time objects {', '.join(stale)}\n")
        stdout.flush()
        remake = subprocess.run(
            ["make", "-j", str(os.cpu_count() or 1), "-f", "Vtop.mk", *_MAKE_VARS],
            cwd=build_dir,
            env=env,
            stdout=stdout,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if remake.returncode != 0:
        raise ToolFailedError(
            f"Recompiling the Verilator run-time in {build_dir} failed; log {log}:\n{log_tail(log)}"
        )


def build(verilog_path, toplevel, *, build_root, extra_args=(), verbose=False):
    """Build a Verilator model of a design, or reuse the existing build of the same design.

    Parameters
    ----------
    verilog_path : str or pathlib.Path
        Verilog file (for instance from ``amaranth.back.verilog.convert``).
    toplevel : str
        Name of the top-level module.
    build_root : str or pathlib.Path
        Directory that holds the content-addressed build directories.
    extra_args : sequence of str
        Verilator flags after :data:`BUILD_ARGS` (part of the build key).
    verbose : bool
        Print the build log.

    Returns
    -------
    pathlib.Path
        The build directory ``build_root/<key>``; it holds the Verilator model, a copy of the
        Verilog, ``build.log`` and the stamp file ``hwquant-build.json``.

    Raises
    ------
    ValueError
        If ``toplevel`` is not an identifier.
    ToolNotFoundError
        If no suitable Verilator is installed.
    ToolFailedError
        If Verilator or the C++ build fails; the message carries the log tail.
    """
    check_toplevel(toplevel)
    text = Path(verilog_path).read_text()
    build_root = Path(build_root).resolve()
    flags = (*BUILD_ARGS, *extra_args)
    key = _build_key(text, toplevel, flags)
    build_dir = build_root / key
    if (build_dir / _STAMP).is_file():
        return build_dir

    build_root.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f"{key}.partial-", dir=build_root))
    source = partial / f"{toplevel}.v"
    source.write_text(text)
    log = partial / "build.log"
    cache = _runtime_cache_dir(build_root, flags)
    seeded = _seed_runtime(cache, partial)
    runner = make_runner(verbose)
    started = time.monotonic()
    try:
        with tool_environment():
            runner.build(
                sources=[source],
                hdl_toplevel=toplevel,
                build_args=list(flags),
                build_dir=partial,
                always=True,
                log_file=log,
            )
    except (RuntimeError, SystemExit, OSError) as error:
        if verbose:
            echo_log(log)
        raise ToolFailedError(
            f"Verilator build of '{toplevel}' from {verilog_path} failed ({error}); "
            f"log {log}:\n{log_tail(log)}"
        ) from None
    if seeded:
        _refresh_runtime(seeded, partial, runner.env, log)
    else:
        _store_runtime(cache, partial, runner.env)
    if verbose:
        echo_log(log)
    if not (partial / toplevel).is_file():
        raise ToolFailedError(
            f"Verilator build of '{toplevel}' produced no executable; log {log}:\n{log_tail(log)}"
        )
    stamp = {
        "toplevel": toplevel,
        "verilog": str(verilog_path),
        "flags": list(flags),
        "runtime_reused": sorted(seeded),
        "build_seconds": round(time.monotonic() - started, 3),
    }
    (partial / _STAMP).write_text(json.dumps(stamp, indent=1))
    try:
        partial.rename(build_dir)
    except OSError:
        # Another process finished the same build first; use theirs.
        shutil.rmtree(partial, ignore_errors=True)
        if not (build_dir / _STAMP).is_file():
            raise ToolFailedError(
                f"Cannot move the build of '{toplevel}' into {build_dir}: the directory exists "
                f"but is not a complete build; delete it and retry"
            ) from None
    return build_dir


def _encode_spec(spec, result_path):
    """Normalized spec as JSON-ready data: payloads as hex strings."""

    def hexes(streams):
        return {name: [hex(beat) for beat in beats] for name, beats in streams.items()}

    encoded = dict(spec)
    encoded["inputs"] = hexes(spec["inputs"])
    encoded["outputs"] = hexes(spec["outputs"])
    if spec["throughput"] is not None:
        encoded["throughput"] = dict(spec["throughput"], inputs=hexes(spec["throughput"]["inputs"]))
    encoded["result_path"] = str(result_path)
    return encoded


def run(
    verilog_path,
    toplevel,
    *,
    spec,
    build_root,
    test_module="hwquant.sim.tb_stream",
    timeout_s=600.0,
    verbose=False,
):
    """Simulate a design against a stream spec and return the testbench's verdict.

    Parameters
    ----------
    verilog_path : str or pathlib.Path
        Verilog file of the design.
    toplevel : str
        Name of the top-level module; it must have ports ``clk`` and (optionally) ``rst``, and
        ``<name>__payload``, ``<name>__valid``, ``<name>__ready`` for every stream in the spec.
    spec : dict
        Stream spec as described in :mod:`hwquant.sim.tb_stream`. Payloads may be hex strings
        or non-negative ints of any size; ``result_path`` is set by this function.
    build_root : str or pathlib.Path
        Directory of the content-addressed builds (see :func:`build`) and of the run
        directories (``build_root/runs``).
    test_module : str
        cocotb test module to run; it reads the spec path from ``HWQUANT_SIM_SPEC`` and
        writes the result JSON.
    timeout_s : float
        Wall-clock limit of the simulation in seconds; the simulator is killed after it.
    verbose : bool
        Print the build and simulation logs.

    Returns
    -------
    dict
        The result JSON written by the testbench (see :mod:`hwquant.sim.tb_stream`), plus
        ``"run_dir"``: the directory with ``spec.json``, ``result.json`` and ``sim.log``.

    Raises
    ------
    ValueError
        If the spec is malformed, or it does not match the design (missing port, a payload
        wider than its port).
    ToolNotFoundError
        If no suitable Verilator is installed.
    ToolFailedError
        If the build fails, the simulator crashes or exceeds ``timeout_s``, or no result file
        is written; the message carries the log tail.
    """
    parsed = parse_spec(spec)
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or timeout_s <= 0:
        raise ValueError(f"Timeout must be a positive number of seconds, not {timeout_s!r}")
    build_dir = build(verilog_path, toplevel, build_root=build_root,
                      extra_args=DRIVEN_BUILD_ARGS, verbose=verbose)
    runs = Path(build_root).resolve() / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix=f"{toplevel}-", dir=runs))
    result_path = run_dir / "result.json"
    spec_path = run_dir / "spec.json"
    spec_path.write_text(json.dumps(_encode_spec(parsed, result_path), indent=1))
    log = run_dir / "sim.log"

    extra = {SPEC_ENV: str(spec_path)}
    timeout = shutil.which("timeout")
    if timeout is not None:
        extra["SIM_CMD_PREFIX"] = f"{timeout} -s KILL {float(timeout_s):g}"
    runner = make_runner(verbose)
    failure = None
    started = time.monotonic()
    try:
        with tool_environment(extra):
            runner.test(
                test_module=test_module,
                hdl_toplevel=toplevel,
                hdl_toplevel_lang="verilog",
                build_dir=build_dir,
                test_dir=run_dir,
                results_xml=str(run_dir / "results.xml"),
                extra_env=extra,
                log_file=log,
            )
    except (RuntimeError, SystemExit, OSError) as error:
        failure = error
    elapsed = time.monotonic() - started
    if verbose:
        echo_log(log)

    if not result_path.is_file():
        raise missing_result_error(f"Simulation of '{toplevel}'", failure, elapsed, timeout_s, log)
    try:
        result = json.loads(result_path.read_text())
    except ValueError:
        raise ToolFailedError(
            f"Simulation of '{toplevel}' wrote an unreadable result {result_path}; "
            f"log {log}:\n{log_tail(log)}"
        ) from None
    if result.get("error"):
        raise ValueError(f"Simulation of '{toplevel}': {result['error']}")
    result["run_dir"] = str(run_dir)
    return result
