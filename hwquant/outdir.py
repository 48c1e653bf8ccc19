"""Output directories that appear whole or not at all."""

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .errors import HwquantError

__all__ = ["atomic_directory"]


@contextmanager
def atomic_directory(out_dir, *, marker: str, what: str):
    """Yield a temporary sibling of ``out_dir`` to fill; on success it replaces ``out_dir``,
    on any exception it is removed. An existing, non-empty ``out_dir`` is replaced only when
    it holds ``marker`` (it was written by the same command); otherwise nothing is touched."""
    out_dir = Path(out_dir).resolve()
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / marker).exists():
        raise HwquantError(f"Output directory {out_dir} exists and is not a hwquant {what} "
                           f"directory; choose another path or remove it")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        yield tmp
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
