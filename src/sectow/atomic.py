"""Files are written under a temporary name and renamed into place, so a crash or a full disk never
leaves a half-written file where a good one was."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sectow.faults import crash_point


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path` to write; rename it onto `path`, owner-only whatever the umask
    (sectow's files hold jailbreak data and model replies), when the block succeeds, and remove it when
    the block fails. An OSError that names no file (a write on a full disk) gets `path`, so the one-line
    error says which file could not be written."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        yield tmp
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError) and err.filename is None:
            err.filename = str(path)
        raise


def write_atomic(path: Path, text: str) -> None:
    with replacing(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
        crash_point("atomic_write")
