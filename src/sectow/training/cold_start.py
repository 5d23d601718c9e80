"""Cold start: a short supervised fine-tune so that RL starts with non-sparse rewards
(the defender learns to refuse harm and answer questions; the attacker learns the query format)."""

from __future__ import annotations

from pathlib import Path

from datasets import Dataset
from trl import SFTConfig, SFTTrainer

from sectow.training.common import CrashPointCallback, trainer_kwargs


def supervised_finetune(model, processor, rows: list[dict], output_dir: Path, *, steps: int, learning_rate: float,
                        batch_size: int, seed: int, bf16: bool = True) -> None:
    """Fine-tune `model` in place on prompt/completion rows (loss on the completion only)."""
    config = SFTConfig(**trainer_kwargs(str(output_dir), seed, learning_rate, batch_size, bf16),
                       max_steps=steps, max_length=None, completion_only_loss=True)
    trainer = SFTTrainer(model=model, args=config, train_dataset=Dataset.from_list(rows), processing_class=processor,
                         callbacks=[CrashPointCallback()])
    trainer.train()
