"""The verdict cache judges that ask a model share: one JSONL row per verdict, appended and flushed as it
arrives, written owner-only (it holds judge replies about model replies to jailbreaks)."""

from __future__ import annotations

import hashlib
import json
import os
from sectow.jsonl import json_lines
from pathlib import Path


class VerdictCache:
    """Verdicts by key in a JSONL file: every verdict is appended and flushed as it arrives, so a rerun
    or a resumed crash asks nothing twice. The file is read on first use (not when the judge is built)
    and written owner-only: it holds judge replies about model replies to jailbreaks. Without a path it
    keeps nothing."""

    def __init__(self, path: str | Path | None):
        self.path = Path(path) if path is not None else None
        self.rows: dict[str, dict] | None = None
        self.out = None

    @staticmethod
    def key(*parts) -> str:
        return hashlib.sha256(json.dumps(list(parts), sort_keys=True).encode()).hexdigest()

    def __enter__(self) -> VerdictCache:
        if self.rows is None:
            self.rows = self._read()
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.out = open_private(self.path, append=True)
            if not ends_with_newline(self.path):
                self.out.write("\n")  # never glue a new row onto a line cut short by a crash
        return self

    def __exit__(self, *exc) -> None:
        if self.out is not None:
            self.out.close()
            self.out = None

    def get(self, key: str) -> dict | None:
        return self.rows.get(key)

    def put(self, row: dict) -> None:
        self.rows[row["key"]] = row
        if self.out is not None:
            self.out.write(json.dumps(row) + "\n")
            self.out.flush()

    def _read(self) -> dict[str, dict]:
        if self.path is None or not self.path.is_file():
            return {}
        rows = {}
        for line in json_lines(self.path.read_text(encoding="utf-8")):
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a crash: that verdict is simply asked again
            if isinstance(row, dict) and isinstance(row.get("key"), str) and isinstance(row.get("unsafe"), bool):
                rows[row["key"]] = row
        return rows


def open_private(path: Path, append: bool = False):
    """A text file opened for writing that only its owner can read, whatever the umask."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    descriptor = os.open(path, flags, 0o600)
    os.fchmod(descriptor, 0o600)  # an existing file keeps its mode otherwise
    return os.fdopen(descriptor, "a" if append else "w", encoding="utf-8")


def ends_with_newline(path: Path) -> bool:
    """True for an empty file or one whose last byte is a newline."""
    with path.open("rb") as f:
        if f.seek(0, os.SEEK_END) == 0:
            return True
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"
