"""Settings shared by every trainer: CPU vs GPU precision, seeds, no hub, quiet logging."""

from __future__ import annotations

import torch
from transformers import TrainerCallback

from sectow.faults import crash_point


def trainer_kwargs(output_dir: str, seed: int, learning_rate: float, batch_size: int, bf16: bool) -> dict:
    on_gpu = torch.cuda.is_available()
    return dict(
        output_dir=output_dir,
        seed=seed,  # every trainer re-seeds: the loop passes a fresh seed per phase and iteration
        learning_rate=learning_rate,
        per_device_train_batch_size=batch_size,
        use_cpu=not on_gpu,
        bf16=bf16 and on_gpu,  # TRL defaults to bf16, which CPU training refuses
        report_to=[],
        save_strategy="no",
        logging_steps=10,
        disable_tqdm=False,
        push_to_hub=False,
        dataloader_num_workers=0,
        lr_scheduler_type="constant",
        warmup_steps=0,
    )


class CrashPointCallback(TrainerCallback):
    """`train_step` after every optimizer step of any trainer, so fault-injection kills land mid-phase."""

    def on_step_end(self, args, state, control, **kwargs):
        crash_point("train_step")
