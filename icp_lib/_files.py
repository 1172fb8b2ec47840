"""Temporary files for atomic writes that end up readable like any other."""

import os
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def make_temp_beside(path: Path, *, prefix: str, suffix: str = "") -> tuple[int, str]:
    """Create a temporary file next to ``path``, with ordinary permissions.

    ``tempfile.mkstemp`` makes files readable by their owner only; a result
    renamed into a shared reports folder should read like the HTML beside it.
    """
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=path.parent)
    os.chmod(tmp, 0o666 & ~_umask())
    return fd, tmp
