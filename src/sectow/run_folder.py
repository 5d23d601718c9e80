"""The run folder and its record: config snapshot, state file of completed phases, metrics.jsonl,
summary.json. Everything is written under a temporary name and renamed into place."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from sectow.atomic import replacing
from sectow.errors import UserError
from sectow.faults import crash_point


def write_atomic(path: Path, text: str) -> None:
    with replacing(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
        crash_point("atomic_write")


def new_run_folder(output_dir: Path, name: str) -> Path:
    if output_dir.exists() and not output_dir.is_dir():
        raise UserError(f"{output_dir}: output folder is an existing file")
    try:
        output_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        folder = output_dir / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
        suffix = 1
        while folder.exists():
            folder = output_dir / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{suffix}"
            suffix += 1
        folder.mkdir(mode=0o700)  # jailbreak data: owner only
    except PermissionError:
        raise UserError(f"{output_dir}: output folder is not writable") from None
    latest = output_dir / "latest"
    if latest.is_symlink() or not latest.exists():
        tmp = output_dir / "latest.tmp"
        if tmp.is_symlink():
            tmp.unlink()
        tmp.symlink_to(folder.name)
        os.replace(tmp, latest)
    return folder


def _phase_of(line: str) -> str | None:
    """The phase a metrics line belongs to; None for a blank line or one cut short by a kill."""
    try:
        return json.loads(line).get("phase") if line.strip() else None
    except json.JSONDecodeError:
        return None


class RunRecord:
    """Which phases are complete (state.json), and the metrics each wrote."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.state_file = folder / "state.json"
        self.metrics_file = folder / "metrics.jsonl"
        self.completed: list[str] = []
        if self.state_file.is_file():
            self.completed = json.loads(self.state_file.read_text())["completed"]

    def drop_unfinished_metrics(self) -> None:
        """A phase killed after logging but before completing would log again on resume."""
        if not self.metrics_file.is_file():
            return
        text = self.metrics_file.read_text()
        kept = "".join(line + "\n" for line in text.splitlines() if _phase_of(line) in self.completed)
        if kept != text:  # a finished run (or one handed to `sectow ablate`) is left untouched
            write_atomic(self.metrics_file, kept)

    def done(self, phase: str) -> bool:
        return phase in self.completed

    def complete(self, phase: str, metrics: dict | None = None) -> None:
        if metrics is not None:
            with self.metrics_file.open("a", encoding="utf-8") as out:
                out.write(json.dumps({"phase": phase, "time": round(time.time(), 1), **metrics}) + "\n")
                out.flush()
                os.fsync(out.fileno())
        self.completed.append(phase)
        write_atomic(self.state_file, json.dumps({"completed": self.completed}, indent=1))

    def completed_elsewhere(self, phase: str) -> None:
        """Another process (the main one) recorded `phase`: keep this process's view in step."""
        if phase not in self.completed:
            self.completed.append(phase)

    def metrics(self) -> list[dict]:
        if not self.metrics_file.is_file():
            return []
        return [json.loads(line) for line in self.metrics_file.read_text().splitlines() if line.strip()]
