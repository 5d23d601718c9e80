"""The run folder and the one mechanism every phase of a run goes through.

A run folder holds a marker of its kind and format (`sectow-folder.json`), the config snapshot, the state
file of completed phases, metrics.jsonl and summary.json; everything is written under a temporary name
and renamed into place. `Phases.run` does for every phase what each used to hand-write: skip it when it
is recorded complete (after checking that what it made is still there), run its work on every process or
on the main one only, save its checkpoint, record it, and make every process wait for it."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sectow import ranks, tracking
from sectow.atomic import write_atomic
from sectow.errors import UserError
from sectow.faults import crash_point
from sectow.models.folder import check_model_folder
from sectow.models.policy import save_policy
from sectow.timing import Stopwatch

MARKER = "sectow-folder.json"
FORMAT = 2  # 2: typed outcomes, proportions with intervals, the judge section, recorded player paths
KINDS = ("run", "ablation", "attack")


def write_marker(folder: Path, kind: str) -> None:
    write_atomic(folder / MARKER, json.dumps({"kind": kind, "format": FORMAT}))


def check_marker(folder: Path, kind: str) -> None:
    """Refuse a folder that is not a `kind` folder of this format (for --resume)."""
    if not folder.is_dir():
        raise UserError(f"{folder}: no such folder")
    try:
        marker = json.loads((folder / MARKER).read_text(encoding="utf-8"))
        found, version = marker["kind"], marker["format"]
    except FileNotFoundError:
        raise UserError(f"{folder}: not a sectow {kind} folder (no {MARKER}; folders made before format "
                        f"{FORMAT} cannot be resumed: start a new {kind})") from None
    except (ValueError, KeyError, TypeError, OSError) as err:
        raise UserError(f"{folder / MARKER}: unreadable ({err.__class__.__name__})") from None
    if found != kind:
        raise UserError(f"{folder}: a sectow {found} folder, not a {kind} folder")
    if version != FORMAT:
        raise UserError(f"{folder}: made by a sectow with folder format {version}; this one reads format {FORMAT}: "
                        f"start a new {kind}")


def new_run_folder(output_dir: Path, name: str, kind: str = "run") -> Path:
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
    write_marker(folder, kind)
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

    def complete(self, phase: str, metrics: dict) -> None:
        with self.metrics_file.open("a", encoding="utf-8") as out:
            out.write(json.dumps({"phase": phase, "time": round(time.time(), 1), **metrics}) + "\n")
            out.flush()
            os.fsync(out.fileno())
        self.completed.append(phase)
        write_atomic(self.state_file, json.dumps({"completed": self.completed}, indent=1))

    def metrics(self) -> list[dict]:
        if not self.metrics_file.is_file():
            return []
        return [json.loads(line) for line in self.metrics_file.read_text().splitlines() if line.strip()]

    def metrics_of(self, phase: str) -> dict:
        return next((m for m in self.metrics() if m["phase"] == phase), {})


@dataclass
class PhaseResult:
    """What a phase's work made: its metrics, the files it wrote (checked before a resume trusts the
    phase), and the player to save, if any (model, processor, folder)."""

    metrics: dict
    outputs: list[Path] = field(default_factory=list)
    checkpoint: tuple | None = None


class Phases:
    def __init__(self, folder: Path):
        self.folder = folder
        self.record = RunRecord(folder)
        for phase in self.record.completed:  # before anything is changed: a refused resume touches nothing
            self._verify(phase)
        if ranks.is_main():
            self.record.drop_unfinished_metrics()
        ranks.wait()

    def relative(self, path: Path) -> str:
        return str(path.relative_to(self.folder)) if path.is_relative_to(self.folder) else str(path)

    def path(self, recorded: str) -> Path:
        return self.folder / recorded if not Path(recorded).is_absolute() else Path(recorded)

    def run(self, name: str, work: Callable[[], PhaseResult], *, everywhere: bool) -> dict:
        """Run phase `name` once and return its recorded metrics. `everywhere`: the work runs on every
        process (trainers); otherwise on the main process alone while the others wait."""
        if self.record.done(name):
            return self.record.metrics_of(name)
        metrics = None
        if everywhere or ranks.is_main():
            stopwatch = Stopwatch()
            result = work()
            if ranks.is_main():
                outputs = list(result.outputs)
                if result.checkpoint is not None:
                    model, processor, target = result.checkpoint
                    save_policy(model, processor, target)
                    crash_point("phase_saved")
                    outputs.append(target)
                metrics = {**result.metrics, "outputs": [self.relative(p) for p in outputs],
                           "timing": stopwatch.figures()}
                self.record.complete(name, metrics)
                tracking.log_phase(name, metrics)
        if not ranks.is_main():
            self.record.completed.append(name)
        ranks.wait()
        return ranks.share(metrics)

    def _verify(self, name: str) -> None:
        """What a completed phase wrote must still be there: a resume never silently replaces a missing
        checkpoint by an earlier player."""
        for recorded in self.record.metrics_of(name).get("outputs", []):
            path = self.path(recorded)
            try:
                if path.is_dir():
                    check_model_folder(path)
                elif not path.is_file():
                    raise UserError("missing")
            except UserError as err:
                raise UserError(f"{path}: written by phase {name!r}, which is recorded complete, but it is "
                                f"missing or damaged ({err}); this run cannot resume exactly: start a new run") from None
