"""Cold start: a short supervised fine-tune so that RL starts with non-sparse rewards
(the defender learns to refuse harm and answer questions; the attacker learns the query format)."""

from __future__ import annotations

from pathlib import Path

from datasets import Dataset
from trl import SFTConfig, SFTTrainer

from sectow.config import PolicySettings, SftSettings
from sectow.models.policy import for_training, load_policy, merged
from sectow.training.common import LoopCallback, rows_for, train, trainer_kwargs


def supervised_finetune(model, processor, rows: list[dict], output_dir: Path, settings: SftSettings, *, seed: int,
                        bf16: bool = True) -> None:
    """Fine-tune `model` in place on prompt/completion rows (loss on the completion only)."""
    config = SFTConfig(**trainer_kwargs(str(output_dir), seed, settings, bf16), max_length=None,
                       completion_only_loss=True)
    trainer = SFTTrainer(model=model, args=config, train_dataset=Dataset.from_list(rows_for(processor, rows)),
                         processing_class=processor,
                         callbacks=[LoopCallback()])
    train(trainer)


def cold_start(source: Path, policy: PolicySettings, rows: list[dict], settings: SftSettings, output_dir: Path,
               seed: int):
    """(model, processor): the player in `source` after its cold-start fine-tune (LoRA merged in)."""
    model, processor = load_policy(source, policy)
    model = for_training(model, policy)
    supervised_finetune(model, processor, rows, output_dir, settings, seed=seed, bf16=policy.bf16)
    return merged(model), processor
