"""Atomic writes: a file appears complete under its name, or not at all."""

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def replace_atomically(path: Path, write: Callable[[Path], None]) -> Path:
    """Write ``path`` by calling ``write`` on a temporary file, then renaming it.

    The temporary file sits beside ``path`` (same disk, so the rename is
    atomic) and gets ordinary permissions: ``tempfile.mkstemp`` makes files
    readable by their owner only, and a result renamed into a shared reports
    folder should read like the HTML beside it. On any error the temporary
    file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: Path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically (see replace_atomically)."""
    return replace_atomically(
        path, lambda tmp: tmp.write_text(text, encoding="utf-8", newline="")
    )
