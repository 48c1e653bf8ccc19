"""Output paths: checked before any work starts, written atomically with the user's umask.

Every command's outputs (the ``-o`` target, ``--json``, build directories) go through this
module. :func:`check_output_file` and :func:`check_output_dir` refuse, with one clear line,
what would otherwise fail after minutes of work or destroy something: a file where a
directory is wanted and vice versa, a parent that is a file, an output that is one of the
inputs, a non-empty directory that hwquant did not write. :func:`atomic_file` and
:func:`write_text` write a file next to its target and rename it into place, so an
interrupted or failed command never leaves a half-written output; files and directories get
the permissions the user's umask gives (``mkstemp``/``mkdtemp`` alone would make them private).
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .errors import HwquantError

__all__ = [
    "OutputPathError",
    "BUILD_FILES",
    "umask",
    "file_mode",
    "dir_mode",
    "check_output_file",
    "check_output_dir",
    "atomic_file",
    "write_text",
    "write_bytes",
]

#: Files of a build directory (``hwquant compile``); a report must never overwrite them.
BUILD_FILES = ("compile.json", "network.hwq", "network.v", "network_probes.v")


class OutputPathError(HwquantError, ValueError):
    """An output path cannot be written, or writing it would destroy an input."""


def umask() -> int:
    """The process's umask (read without changing it, where the system allows)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # no reader elsewhere: set and restore
    os.umask(mask)
    return mask


def file_mode() -> int:
    """Mode of a new regular file under the user's umask (what ``open(..., "w")`` gives)."""
    return 0o666 & ~umask()


def dir_mode() -> int:
    """Mode of a new directory under the user's umask (what ``mkdir`` gives)."""
    return 0o777 & ~umask()


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and a.samefile(b))
    except OSError:
        return False


def _inside(path: Path, directory: Path) -> bool:
    try:
        return path.resolve().is_relative_to(directory.resolve())
    except OSError:
        return False


def _check_parents(path: Path, what: str) -> None:
    """The nearest existing ancestor of ``path`` must be a writable directory."""
    parent = path.absolute().parent
    while not parent.exists():
        if parent.is_symlink():  # a dangling link
            raise OutputPathError(f"Cannot create {what} {path}: {parent} is a broken "
                                  f"symbolic link")
        parent = parent.parent
    if not parent.is_dir():
        raise OutputPathError(f"Cannot create {what} {path}: {parent} is a file, not a "
                              f"directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputPathError(f"Cannot create {what} {path}: directory {parent} is not "
                              f"writable")


def _inputs(inputs):
    return [Path(p) for p in inputs if p is not None]


def check_output_file(path, *, what: str = "output file", inputs=(), outputs=()) -> Path:
    """Check that ``path`` can be written as a file without destroying an input.

    Parameters
    ----------
    path : str or os.PathLike
        The file to be written (it may exist; it is replaced).
    what : str
        What the file is, for the message (``"network file"``, ``"JSON report"``).
    inputs : iterable of paths
        Files (and directories) the command reads, or writes elsewhere: ``path`` must be none
        of them, nor a file of a build directory among them.
    outputs : iterable of paths
        What the command writes besides ``path``: ``path`` must be none of them.

    Raises
    ------
    OutputPathError
        If ``path`` is a directory, its parent is a file or not writable, or it is an input or
        another output.
    """
    path = Path(path)
    if not str(path):
        raise OutputPathError(f"The {what} path is empty")
    if path.is_dir():
        raise OutputPathError(f"The {what} {path} is an existing directory; name a file")
    _check_parents(path, what)
    for other in _inputs(outputs):
        if _same(path, other):
            raise OutputPathError(f"The {what} {path} is also written as another output of "
                                  f"this command; choose another path")
    for src in _inputs(inputs):
        if _same(path, src):
            also = "an input" if str(src) == str(path) else f"the input {src}"
            raise OutputPathError(f"The {what} {path} is also {also}; writing it would "
                                  f"destroy the input; choose another path")
        if src.is_dir() and any(_same(path, src / name) for name in BUILD_FILES):
            raise OutputPathError(f"The {what} {path} would overwrite a file of the build "
                                  f"directory {src}; choose another path")
    return path


def check_output_dir(path, *, what: str = "output", marker: str | None = None, inputs=(),
                     inputs_inside_ok: bool = False) -> Path:
    """Check that ``path`` can be created (or replaced) as a directory.

    Parameters
    ----------
    path : str or os.PathLike
        The directory to be written. An existing one is replaced only when it is empty or
        holds ``marker`` (it was written by the same command).
    what : str
        What the directory holds, for the message (``"build"``, ``"compare"``).
    marker : str or None
        The file that marks a directory written by this command.
    inputs : iterable of paths
        Files the command reads: ``path`` must be none of them and, unless
        ``inputs_inside_ok`` (the inputs are read in full before anything is written), hold
        none of them.

    Raises
    ------
    OutputPathError
        If ``path`` is a file, its parent is a file or not writable, it is or holds an input,
        or it is a non-empty directory without ``marker``.
    """
    path = Path(path)
    if not str(path):
        raise OutputPathError(f"The {what} directory path is empty")
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"The {what} directory {path} is an existing file; name a "
                              f"directory")
    _check_parents(path, f"{what} directory")
    for src in _inputs(inputs):
        if _same(path, src):
            raise OutputPathError(f"The {what} directory {path} is also an input; choose "
                                  f"another path")
        if not inputs_inside_ok and path.is_dir() and _inside(src, path):
            raise OutputPathError(f"The {what} directory {path} holds the input {src}, which "
                                  f"replacing the directory would delete; choose another path")
    if path.is_dir():
        try:
            foreign = any(path.iterdir()) and not (marker and (path / marker).exists())
        except OSError as e:
            raise OutputPathError(f"Cannot read the {what} directory {path}: "
                                  f"{e.strerror}") from None
        if foreign:
            raise OutputPathError(f"Output directory {path.resolve()} exists and is not a "
                                  f"hwquant {what} directory; choose another path or remove it")
    return path


@contextmanager
def atomic_file(path, *, what: str = "output file"):
    """Yield a temporary path next to ``path`` to write; on success it is given the umask's
    file mode and renamed onto ``path``, on any exception (an interrupt too) it is removed.

    The temporary name keeps ``path``'s suffix (``.name-XXXX.tmp.pt2``), for writers that
    look at it."""
    path = Path(path)
    check_output_file(path, what=what)
    path.absolute().parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.absolute().parent, prefix=f".{path.name}-",
                               suffix=f".tmp{path.suffix}")
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path, text: str, *, what: str = "output file") -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_file`)."""
    with atomic_file(path, what=what) as tmp:
        tmp.write_text(text)


def write_bytes(path, data: bytes, *, what: str = "output file") -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_file`)."""
    with atomic_file(path, what=what) as tmp:
        tmp.write_bytes(data)

