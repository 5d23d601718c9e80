"""Checks on the folders sectow writes into, made before anything is written."""

from __future__ import annotations

import tempfile
from pathlib import Path

from sectow.errors import UserError


def nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists():
        path = path.parent
    return path


def check_output_dir(output_dir: Path) -> Path:
    """Raise a UserError when run folders cannot be made under `output_dir` (it, or its nearest existing
    parent, is a file or is not writable); return that nearest existing folder."""
    where = nearest_existing(output_dir)
    if not where.is_dir():
        what = "output folder" if where == output_dir.absolute() else f"{where}, a parent of the output folder,"
        raise UserError(f"{output_dir}: {what} is an existing file")
    try:
        # A real file, not os.access: that says yes to root even on read-only mounts.
        with tempfile.TemporaryFile(dir=where):
            pass
    except OSError as err:
        raise UserError(f"{where}: not writable ({err.strerror})") from None
    return where
