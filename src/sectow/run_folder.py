"""The run folder and the one mechanism every phase of a run goes through.

A run folder holds a marker of its kind and format (`sectow-folder.json`), the config snapshot, the state
file of completed phases, metrics.jsonl and summary.json; everything is written under a temporary name
and renamed into place. `Phases.run` does for every phase what each used to hand-write: skip it when it
is recorded complete (after checking that what it made is still there), run its work on every process or
on the main one only, save its checkpoint, record it, and make every process wait for it."""

from __future__ import annotations

import errno
import hashlib
import itertools
import json
import logging
import os
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from sectow import ranks, tracking
from sectow.atomic import write_atomic
from sectow.config import RunConfig, resume_change
from sectow.errors import UserError
from sectow.faults import crash_point
from sectow.jsonl import json_lines
from sectow.models.folder import check_model_folder
from sectow.models.policy import save_policy
from sectow.paths import link_problem, lock_folder, note_holder, path_problem, release_folder
from sectow.pool import check_pool_file
from sectow.timing import Stopwatch

log = logging.getLogger("sectow")
TRAINER_LOG = "train.log"  # the trainers' own log lines (TRL's loss dictionaries), per phase

MARKER = "sectow-folder.json"
# 3: pool hashes cover every field of a record, state.json records the config its phases ran under
FORMAT = 3
# Each kind of folder and the command that continues it.
RESUME_COMMANDS = {"run": "sectow run --resume", "ablation": "sectow ablate --resume", "attack": "sectow attack --resume"}


def write_marker(folder: Path, kind: str) -> None:
    write_atomic(folder / MARKER, json.dumps({"kind": kind, "format": FORMAT}))


def folder_kind(folder: Path) -> str | None:
    """The kind its marker gives a sectow folder, or None when it has no readable marker."""
    try:
        marker = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return marker.get("kind") if isinstance(marker, dict) and isinstance(marker.get("kind"), str) else None


def check_marker(folder: Path, kind: str) -> None:
    """Refuse a folder that is not a `kind` folder of this format (for --resume), in one line that says
    what it is instead and how to continue it."""
    problem = path_problem(folder)
    if problem:
        raise UserError(f"{kind} folder: the path {problem}")
    if not folder.is_dir():
        found = "no such folder" if not folder.exists() else "not a folder"
        raise UserError(f"{folder}: {kind} folder {link_problem(folder)}" if link_problem(folder) else f"{folder}: {found}")
    try:
        marker = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except FileNotFoundError:
        older = (folder / "state.json").is_file() and (folder / "config.yaml").is_file()
        hint = (f"; folders made before format 2 cannot be resumed: start a new {kind}" if older else "")
        raise UserError(f"{folder}: not a sectow {kind} folder (no {MARKER}){hint}") from None
    except (ValueError, OSError) as err:
        raise UserError(f"{folder / MARKER}: unreadable ({err.__class__.__name__})") from None
    found = marker.get("kind") if isinstance(marker, dict) else None
    version = marker.get("format") if isinstance(marker, dict) else None
    if not isinstance(found, str) or not isinstance(version, int):
        raise UserError(f"{folder / MARKER}: not a sectow folder marker (expected {{\"kind\", \"format\"}})")
    if found != kind:
        how = f"; continue it with `{RESUME_COMMANDS[found]} {folder}`" if found in RESUME_COMMANDS else ""
        raise UserError(f"{folder}: a sectow {found} folder, not {_a(kind)} folder{how}")
    if version != FORMAT:
        raise UserError(f"{folder}: made by a sectow with folder format {version}; this one reads format {FORMAT}: "
                        f"start a new {kind}")


def check_report_folder(folder: Path) -> None:
    """Refuse, in one line, a folder `sectow report` cannot read: not a run or ablation folder of this format,
    or a run record (state.json, metrics.jsonl) that is damaged."""
    kind = folder_kind(folder) if folder.is_dir() else None
    check_marker(folder, kind if kind in RESUME_COMMANDS else "run")
    if not (folder / "claims.json").is_file():  # a multi-seed ablation's report reads only its tables
        RunRecord(folder / "sectow" if kind == "ablation" else folder)


def _a(kind: str) -> str:
    return ("an " if kind[:1] in "aeiou" else "a ") + kind


def lock(folder: Path, note_pid: bool = True) -> None:
    """One process at a time on a run or ablation folder: the main process holds the folder's lock until it
    ends (see paths.lock_folder for `note_pid`); under several processes, every rank gets the refusal."""
    refusal = None
    if ranks.is_main():
        try:
            lock_folder(folder, note_pid)
        except UserError as err:
            refusal = str(err)
    refusal = ranks.share(refusal)
    if refusal:
        raise UserError(refusal)


def new_run_folder(output_dir: Path, name: str, kind: str = "run") -> Path:
    """A new, locked `kind` folder <output_dir>/<name>-<time>[-n] (owner-only), with `latest` pointing at it.
    Safe when several processes start at once in one output folder: each gets its own folder."""
    if output_dir.exists() and not output_dir.is_dir():
        raise UserError(f"{output_dir}: output folder is an existing file")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    try:
        output_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        for suffix in itertools.count():
            folder = output_dir / (f"{name}-{stamp}" + (f"-{suffix}" if suffix else ""))
            try:
                folder.mkdir(mode=0o700)  # jailbreak data: owner only
                break
            except FileExistsError:
                continue  # another process took this name an instant earlier
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise UserError(f"{output_dir}: cannot make a run folder there ({err.strerror})") from None
    lock_folder(folder)
    try:
        write_marker(folder, kind)
        point_latest(output_dir, folder)
    except BaseException:
        release_folder(folder)
        raise
    return folder


def point_latest(output_dir: Path, folder: Path) -> None:
    """Point <output_dir>/latest at `folder` in one rename (a user's own `latest` that is no link is left
    alone). Each process renames its own uniquely named link, so concurrent starts never collide."""
    latest = output_dir / "latest"
    if os.path.lexists(latest) and not latest.is_symlink():
        return
    tmp = output_dir / f".latest-{os.getpid()}-{secrets.token_hex(4)}"
    tmp.symlink_to(folder.name)
    try:
        os.replace(tmp, latest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def input_digests(config: RunConfig) -> dict[str, str]:
    """sha256 of each data file the config names: a resume must read the same data its phases were trained on."""
    digests = {}
    for key in ("harmful_seeds", "held_out_harmful", "benign", "held_out_benign"):
        path = getattr(config.data, key)
        if path is not None and Path(path).is_file():
            digests[f"data.{key}"] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return digests


class RunRecord:
    """Which phases are complete (state.json), the metrics each wrote (metrics.jsonl), and the config and
    data they ran under. Both files are checked when read: a damaged one is a UserError naming file and line."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.state_file = folder / "state.json"
        self.metrics_file = folder / "metrics.jsonl"
        self.completed: list[str] = []
        self.config: dict | None = None  # the config the completed phases ran under (model_dump(mode="json"))
        self.inputs: dict[str, str] = {}
        if self.state_file.is_file():
            self._read_state()
        self._rows = self._read_metrics()
        for phase in self.completed:
            count = sum(row["phase"] == phase for row in self._rows)
            if count != 1:
                raise UserError(f"{self.metrics_file}: phase {phase!r} is recorded complete in state.json but has "
                                f"{count} lines here; the run record is damaged: start a new run")

    def _read_state(self) -> None:
        where = self.state_file
        try:
            state = json.loads(where.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as err:
            raise UserError(f"{where}: unreadable ({err})") from None
        except json.JSONDecodeError as err:
            raise UserError(f"{where}:{err.lineno}: not valid JSON ({err.msg}); the run's state is damaged") from None
        completed = state.get("completed") if isinstance(state, dict) else None
        if not isinstance(completed, list) or not all(isinstance(p, str) for p in completed) \
                or len(set(completed)) != len(completed):
            raise UserError(f"{where}: not a sectow state file (expected {{\"completed\": [distinct phase names]}})")
        if not isinstance(state.get("config", {}), dict) or not isinstance(state.get("inputs", {}), dict):
            raise UserError(f"{where}: 'config' and 'inputs' must be JSON objects")
        self.completed, self.config, self.inputs = completed, state.get("config"), state.get("inputs", {})

    def _read_metrics(self) -> list[dict]:
        """The metrics lines; the last one may be cut short (a kill mid-append: its phase was not recorded)."""
        if not self.metrics_file.is_file():
            return []
        try:
            lines = json_lines(self.metrics_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as err:
            raise UserError(f"{self.metrics_file}: unreadable ({err})") from None
        rows = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                if number == len(lines):
                    continue
                raise UserError(f"{self.metrics_file}:{number}: not valid JSON ({err.msg}); the run record is "
                                "damaged") from None
            if not isinstance(row, dict) or not isinstance(row.get("phase"), str):
                raise UserError(f"{self.metrics_file}:{number}: not a phase record (a JSON object with a 'phase')")
            if not isinstance(row.get("outputs", []), list) or not all(isinstance(o, str) for o in row.get("outputs", [])):
                raise UserError(f"{self.metrics_file}:{number}: 'outputs' must be a list of paths")
            rows.append(row)
        return rows

    def drop_unfinished_metrics(self) -> None:
        """A phase killed after logging but before completing would log again on resume."""
        if not self.metrics_file.is_file():
            return
        text = self.metrics_file.read_text(encoding="utf-8")
        self._rows = [row for row in self._rows if row["phase"] in self.completed]
        kept = "".join(json.dumps(row) + "\n" for row in self._rows)
        if kept != text:  # a finished run (or one handed to `sectow ablate`) is left untouched
            write_atomic(self.metrics_file, kept)

    def done(self, phase: str) -> bool:
        return phase in self.completed

    def complete(self, phase: str, metrics: dict) -> None:
        row = {"phase": phase, "time": round(time.time(), 1), **metrics}
        with self.metrics_file.open("a", encoding="utf-8") as out:
            out.write(json.dumps(row) + "\n")
            out.flush()
            os.fsync(out.fileno())
        self._rows.append(json.loads(json.dumps(row)))
        self.completed.append(phase)
        self.write_state()

    def reopen(self, phase: str) -> None:
        """Take `phase` off the completed list (its inputs changed: it must run again), with its metrics line."""
        self.completed.remove(phase)
        self._rows = [row for row in self._rows if row["phase"] != phase]
        self.write_state()
        write_atomic(self.metrics_file, "".join(json.dumps(row) + "\n" for row in self._rows))

    def write_state(self) -> None:
        state = {"completed": self.completed}
        if self.config is not None:
            state.update(config=self.config, inputs=self.inputs)
        write_atomic(self.state_file, json.dumps(state, indent=1))

    def metrics(self) -> list[dict]:
        return list(self._rows)

    def metrics_of(self, phase: str) -> dict:
        return next((m for m in self._rows if m["phase"] == phase), {})


def headline(phase: str, metrics: dict) -> str:
    """One line a person can follow for a completed phase: what it did, its key figures, its time."""
    def rate(key):
        value = metrics.get(key)
        value = value.get("value") if isinstance(value, dict) else value
        return f"{value:.3f}" if isinstance(value, (int, float)) else "-"

    parts = []
    if "steps" in metrics and "rows" in metrics:
        parts.append(f"fine-tuned {metrics['steps']} steps on {metrics['rows']} rows")
    if "train_success_rate" in metrics:
        parts.append(f"GRPO on {metrics.get('prompts', '?')} prompts, attack success in training {rate('train_success_rate')}")
    if "candidates" in metrics:
        parts.append(f"{metrics.get('outcomes', {}).get('success', 0)} of {metrics['candidates']} attacker queries "
                     f"entered the pool (now {metrics.get('pool_size')})")
    if "monitor" in metrics:
        kept = metrics.get("kept_step")
        parts.append(f"{metrics.get('pool_open', '-')} of {metrics.get('pool_size', '-')} pool records open; "
                     + (f"kept step {kept}" if kept is not None else "no checkpoint passed: rolled back")
                     + f"; defender {metrics.get('defender')}")
    if "asr" in metrics:
        parts.append(f"ASR {rate('asr')}, ORR {rate('orr')}, accuracy {rate('accuracy')}")
    if "html" in metrics:
        parts.append(f"report {metrics['html']}")
    seconds = metrics.get("timing", {}).get("wall_s")
    took = f" ({seconds:.1f} s)" if isinstance(seconds, (int, float)) else ""
    return f"{phase}: " + ("; ".join(parts) or "done") + took


class _PhaseName(logging.Filter):
    def __init__(self, phase: str):
        super().__init__()
        self.phase = phase

    def filter(self, record: logging.LogRecord) -> bool:
        record.phase = self.phase
        return True


@contextmanager
def trainer_log(path: Path, phase: str) -> Iterator[None]:
    """While a phase works, the `sectow.trainer` logger (TRL's loss dictionaries; see training/common.py)
    appends to `path`, one line each, and nothing of it reaches the terminal."""
    logger = logging.getLogger("sectow.trainer")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))  # owner-only whatever the umask
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(phase)s %(message)s", datefmt="%Y-%m-%d %H:%M:%S"))
    handler.addFilter(_PhaseName(phase))
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        handler.close()


@dataclass
class PhaseResult:
    """What a phase's work made: its metrics, the files it wrote (checked before a resume trusts the
    phase), and the player to save, if any (model, processor, folder)."""

    metrics: dict
    outputs: list[Path] = field(default_factory=list)
    checkpoint: tuple | None = None


class Phases:
    """The phases of one run folder. Opening it locks the folder (one process at a time) and checks, before
    anything changes, that the record is whole, that every completed phase's files are there and whole, and
    that the config (and data) are the ones the completed phases ran under (`config.EXTENDABLE` aside)."""

    def __init__(self, folder: Path, config: RunConfig | None = None):
        self.folder = folder
        lock(folder, note_pid=False)  # the pid is noted once the folder is accepted: a refusal changes nothing
        self.record = RunRecord(folder)
        for phase in self.record.completed:  # before anything is changed: a refused resume touches nothing
            self._verify(phase)
        if config is not None:
            self._check_config(config)
        if ranks.is_main():
            note_holder(folder)
            self.record.drop_unfinished_metrics()
            if self.record.completed:
                log.info("resuming %s: %d phases done (the last: %s)", folder, len(self.record.completed),
                         self.record.completed[-1])
        ranks.wait()

    def _check_config(self, config: RunConfig) -> None:
        inputs = input_digests(config)
        if self.record.config is not None and self.record.completed:
            change = resume_change(self.record.config, config)
            if change:
                raise UserError(f"{self.folder / 'config.yaml'}: {change}; a resumed run keeps the config its phases "
                                "ran under: restore it, or start a new run")
            for key, digest in inputs.items():
                if self.record.inputs.get(key, digest) != digest:
                    raise UserError(f"{getattr(config.data, key.split('.')[1])}: {key} has changed since the run "
                                    "began; restore it, or start a new run")
        self.record.config, self.record.inputs = config.model_dump(mode="json"), inputs

    def relative(self, path: Path) -> str:
        return str(path.relative_to(self.folder)) if path.is_relative_to(self.folder) else str(path)

    def path(self, recorded: str) -> Path:
        return self.folder / recorded if not Path(recorded).is_absolute() else Path(recorded)

    def run(self, name: str, work: Callable[[], PhaseResult], *, everywhere: bool, key=None) -> dict:
        """Run phase `name` once and return its recorded metrics. `everywhere`: the work runs on every
        process (trainers); otherwise on the main process alone while the others wait. `key` (any JSON
        value) is what the phase's result depends on beyond the phases before it: a phase recorded with
        another key runs again (the report, keyed by the configured iteration count)."""
        if self.record.done(name):
            if self.record.metrics_of(name).get("phase_key") == key:
                return self.record.metrics_of(name)
            if ranks.is_main():
                self.record.reopen(name)
            else:
                self.record.completed.remove(name)
        metrics = None
        if everywhere or ranks.is_main():
            stopwatch = Stopwatch()
            with trainer_log(self.folder / TRAINER_LOG, name) if ranks.is_main() else nullcontext():
                result = work()
            if ranks.is_main():
                outputs = list(result.outputs)
                if result.checkpoint is not None:
                    model, processor, target = result.checkpoint
                    save_policy(model, processor, target)
                    crash_point("phase_saved")
                    outputs.append(target)
                metrics = {**result.metrics, "outputs": [self.relative(p) for p in outputs],
                           "timing": stopwatch.figures(), **({"phase_key": key} if key is not None else {})}
                self.record.complete(name, metrics)
                tracking.log_phase(name, metrics)
                log.info(headline(name, metrics))
        if not ranks.is_main():
            self.record.completed.append(name)
        ranks.wait()
        return ranks.share(metrics)

    def _verify(self, name: str) -> None:
        """What a completed phase wrote must still be there and whole: a resume never silently replaces a
        missing checkpoint by an earlier player, nor trains on a damaged pool."""
        for recorded in self.record.metrics_of(name).get("outputs", []):
            path = self.path(recorded)
            try:
                if path.is_dir():
                    check_model_folder(path)
                elif not path.is_file():
                    raise UserError(f"{path}: missing")
                elif path.parent.name == "pool" and path.suffix == ".jsonl":
                    check_pool_file(path)
            except UserError as err:
                raise UserError(f"{err} (written by phase {name!r}, which is recorded complete); this run cannot "
                                "resume exactly: start a new run") from None
