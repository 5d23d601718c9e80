"""Settings shared by every trainer (CPU vs GPU precision, seeds, no hub, quiet logging, the config's
`trl` passthrough), the callback every trainer runs (crash points, step timing), and `train`, which runs a
trainer with its log dictionaries sent to a log file rather than the terminal."""

from __future__ import annotations

import json
import logging

import torch
from transformers import PrinterCallback, ProgressCallback, TrainerCallback

from sectow import timing, tracking
from sectow.config import TrainerSettings
from sectow.faults import crash_point
from sectow.models.processor import takes_images

# TRL's loss and reward dictionaries, one JSON line each: the run folder's train.log (run_folder.trainer_log),
# never the terminal.
trainer_log = logging.getLogger("sectow.trainer")
trainer_log.propagate = False


def trainer_kwargs(output_dir: str, seed: int, settings: TrainerSettings, bf16: bool) -> dict:
    on_gpu = torch.cuda.is_available()
    return dict(
        output_dir=output_dir,
        seed=seed,  # every trainer re-seeds: the loop passes a fresh seed per phase and iteration
        learning_rate=settings.learning_rate,
        per_device_train_batch_size=settings.batch_size,
        max_steps=settings.steps,
        use_cpu=not on_gpu,
        bf16=bf16 and on_gpu,  # TRL defaults to bf16, which CPU training refuses
        **tracking.trainer_arguments(),  # report_to=[] unless the run is tracked
        save_strategy="no",
        logging_steps=10,
        disable_tqdm=False,
        push_to_hub=False,
        dataloader_num_workers=0,
        lr_scheduler_type="constant",
        warmup_steps=0,
        **settings.trl,  # the config refused names that sectow sets itself
    )


def rows_for(processor, rows: list[dict]) -> list[dict]:
    """Training rows as the player takes them. A text-only player's rows carry no `images` key at all:
    TRL calls a dataset with one 'vision-related' (even when every list is empty) and refuses a text-only
    model on it. A vision-language player's rows all carry a list, empty for a text-only row: TRL's
    trainers take [] (not None) for a row without images, in a batch with or without image rows."""
    if takes_images(processor):
        return [{**row, "images": row.get("images") or []} for row in rows]
    return [{key: value for key, value in row.items() if key != "images"} for row in rows]


class LoopCallback(TrainerCallback):
    """After every optimizer step of any trainer, `train_step` (so fault-injection kills land mid-phase);
    around every step, a `trainer` timing span."""

    def on_step_begin(self, args, state, control, **kwargs):
        timing.begin("trainer")

    def on_step_end(self, args, state, control, **kwargs):
        timing.end("trainer")
        crash_point("train_step")


class ProgressToLog(ProgressCallback):
    """transformers' progress bar, with the dictionaries it would print under the bar sent to `trainer_log`."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            trainer_log.info(json.dumps({"step": state.global_step, **logs}, default=str))


def train(trainer) -> None:
    """`trainer.train()`, its log dictionaries in `trainer_log` instead of printed (a progress bar stays)."""
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(ProgressToLog())
    trainer.train()
