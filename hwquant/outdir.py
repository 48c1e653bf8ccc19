"""Output directories that appear whole or not at all."""

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .paths import check_output_dir, dir_mode

__all__ = ["atomic_directory"]


@contextmanager
def atomic_directory(out_dir, *, marker: str, what: str):
    """Yield a temporary sibling of ``out_dir`` to fill; on success it replaces ``out_dir``,
    on any exception (an interrupt too) it is removed. An existing, non-empty ``out_dir`` is
    replaced only when it holds ``marker`` (it was written by the same command); otherwise
    nothing is touched (:func:`hwquant.paths.check_output_dir`). The directory gets the mode
    the user's umask gives."""
    out_dir = check_output_dir(out_dir, what=what, marker=marker).resolve()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        os.chmod(tmp, dir_mode())
        yield tmp
        check_output_dir(out_dir, what=what, marker=marker)  # nothing appeared meanwhile
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
