"""Settings shared by every trainer (CPU vs GPU precision, seeds, no hub, quiet logging, the config's
`trl` passthrough) and the callback every trainer runs (crash points, step timing)."""

from __future__ import annotations

import torch
from transformers import TrainerCallback

from sectow import timing, tracking
from sectow.config import TrainerSettings
from sectow.faults import crash_point


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


class LoopCallback(TrainerCallback):
    """After every optimizer step of any trainer, `train_step` (so fault-injection kills land mid-phase);
    around every step, a `trainer` timing span."""

    def on_step_begin(self, args, state, control, **kwargs):
        timing.begin("trainer")

    def on_step_end(self, args, state, control, **kwargs):
        timing.end("trainer")
        crash_point("train_step")
