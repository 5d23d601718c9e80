"""Experiment tracking, off unless `tracking.report_to` names a tracker. The loop starts one tracker per
run: every trainer gets `report_to` and the run's name (transformers' own integrations log their steps),
and each completed phase's figures (ASR, ORR, accuracy, attacker success, pool size, monitor decisions,
phase times) go to the same tracker under the same name, one step per iteration (the cold start is 0).
The loop's figures reach tensorboard (events in <run>/tracking/), wandb and trackio; another integration
transformers knows gets the trainers' logs only. Only the main process logs the loop's figures."""

from __future__ import annotations

import atexit
import hashlib
import logging
import re
from pathlib import Path

from sectow import ranks
from sectow.config import TrackingSettings

log = logging.getLogger(__name__)

LOOP_TRACKERS = ("tensorboard", "wandb", "trackio")
RATES = ("asr", "asr_unseen_form", "orr", "orr_unseen_form", "accuracy")


def _value(figure) -> float | None:
    """A proportion's value, a number as it is; None for anything else."""
    if isinstance(figure, dict):
        figure = figure.get("value")
    return float(figure) if isinstance(figure, (int, float)) and not isinstance(figure, bool) else None


def phase_figures(phase: str, metrics: dict) -> tuple[int, dict[str, float]]:
    """(iteration, {tag: value}) of one completed phase, from what it recorded in metrics.jsonl. Pure."""
    match = re.search(r"_(\d+)$", phase)
    step = int(metrics.get("iteration") or (match.group(1) if match else 0))
    kind = re.sub(r"_(\d+|cold_start)$", "", phase)
    figures: dict[str, float | None] = {}
    if kind in ("evaluate_iteration", "evaluate"):
        figures.update({f"evaluation/{key}": _value(metrics.get(key)) for key in RATES})
        for key in ("asr_by_form", "asr_by_category"):
            figures.update({f"evaluation/{key}/{name}": _value(v) for name, v in (metrics.get(key) or {}).items()})
    elif kind == "pool":
        figures.update({"pool/attacker_success_rate": _value(metrics.get("attacker_success_rate")),
                        "pool/size": _value(metrics.get("pool_size")), "pool/candidates": _value(metrics.get("candidates"))})
        figures.update({f"pool/outcomes/{name}": float(n) for name, n in (metrics.get("outcomes") or {}).items()})
    elif kind == "attacker_grpo":
        figures["attacker/train_success_rate"] = _value(metrics.get("train_success_rate"))
        figures.update({f"attacker/outcomes/{name}": float(n) for name, n in (metrics.get("outcomes") or {}).items()})
    elif kind == "defender_grpo":
        checks = metrics.get("monitor") or []
        figures.update({"defender/accepted": float(bool(metrics.get("accepted"))),
                        "defender/monitor_checks": float(len(checks)),
                        "defender/pool_open": _value(metrics.get("pool_open")),
                        "defender/frac_reward_zero_std": _value(metrics.get("frac_reward_zero_std"))})
        kept = [c for c in checks if c.get("step") == metrics.get("kept_step")]
        if kept:
            figures["defender/validation_orr"] = _value(kept[-1].get("orr"))
            figures["defender/validation_asr"] = _value(kept[-1].get("asr"))
    figures[f"time/{kind}_s"] = _value((metrics.get("timing") or {}).get("wall_s"))
    return step, {tag: value for tag, value in figures.items() if value is not None}


class Tracker:
    """The trackers of one run folder: the trainers' settings, and the loop's own figures."""

    def __init__(self, settings: TrackingSettings, folder: Path):
        self.names, self.project = list(settings.report_to), settings.project
        self.folder, self.run_name = Path(folder), Path(folder).resolve().name
        self.tensorboard = self.wandb = None
        if not self.names or not ranks.is_main():
            return
        others = [name for name in self.names if name not in LOOP_TRACKERS]
        if others:
            log.warning("tracking: %s get the trainers' logs; the loop's own figures go to %s only",
                        ", ".join(others), ", ".join(LOOP_TRACKERS))
        if "tensorboard" in self.names:
            from torch.utils.tensorboard import SummaryWriter

            self.tensorboard = SummaryWriter(log_dir=str(self.folder / "tracking"))
        if "wandb" in self.names:
            import wandb

            # The trainers' WandbCallback logs into the run that is already active: one run for the whole loop.
            self.wandb = wandb.init(project=self.project, name=self.run_name, dir=str(self.folder), resume="allow",
                                    id=hashlib.sha256(str(self.folder.resolve()).encode()).hexdigest()[:16])
            self.wandb.define_metric("loop/iteration")
            self.wandb.define_metric("loop/*", step_metric="loop/iteration")

    def trainer_arguments(self) -> dict:
        if not self.names:
            return {"report_to": []}
        return {"report_to": self.names, "run_name": self.run_name, "project": self.project}

    def log(self, step: int, figures: dict[str, float]) -> None:
        if self.tensorboard is not None:
            for tag, value in figures.items():
                self.tensorboard.add_scalar(f"loop/{tag}", value, step)
            self.tensorboard.flush()
        if self.wandb is not None:
            self.wandb.log({**{f"loop/{tag}": value for tag, value in figures.items()}, "loop/iteration": step})
        if "trackio" in self.names and ranks.is_main():
            import trackio

            # Each trainer's TrackioCallback finishes the run when it ends: resume it, log, finish again.
            trackio.init(project=self.project, name=self.run_name, resume="allow")
            trackio.log({**{f"loop/{tag}": value for tag, value in figures.items()}, "loop/iteration": step})
            trackio.finish()

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()
            self.tensorboard = None
        if self.wandb is not None:
            self.wandb.finish()
            self.wandb = None


_active: Tracker | None = None


def start(settings: TrackingSettings, folder: Path) -> None:
    """Track the run in `folder` from now on (closing any earlier one in this process)."""
    global _active
    finish()
    _active = Tracker(settings, folder)


def finish() -> None:
    global _active
    if _active is not None:
        _active.close()
        _active = None


atexit.register(finish)


def trainer_arguments() -> dict:
    """The TrainingArguments of the tracked run (`report_to` and its name), or `report_to=[]`: none."""
    return _active.trainer_arguments() if _active is not None else {"report_to": []}


def log_phase(phase: str, metrics: dict) -> None:
    """Send a completed phase's figures to the run's trackers."""
    if _active is not None and _active.names:
        _active.log(*phase_figures(phase, metrics))
