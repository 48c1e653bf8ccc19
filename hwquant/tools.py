"""Finding and addressing the external tools (the YoWASP Yosys and nextpnr wheels, the pack
tools), shared by :mod:`hwquant.estimate.synth` and :mod:`hwquant.fpga_flow`.

A YoWASP tool is a WebAssembly program run by a Python console script; the runtime maps the
host's ``/tmp`` to a private directory, so the tools are given paths relative to their
working directory (:func:`rel_path`).
"""

import os
import shutil
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
            return [str(candidate)]
    found = shutil.which(console_script)
    if found is not None:
        return [found]
    try:
        __import__(module)
    except ImportError:
        raise ToolNotFoundError(f"{console_script} was not found next to {sys.executable} or on "
                                f"PATH; install it with `pip install {install_hint}`") from None
    code = f"import sys, {module} as m; sys.exit(m.{function}(sys.argv[1:]))"
    return [sys.executable, "-c", code]


def rel_path(path, workdir):
    """``path`` relative to ``workdir`` (POSIX separators), as the WebAssembly tools see it."""
    return Path(os.path.relpath(path, workdir)).as_posix()
