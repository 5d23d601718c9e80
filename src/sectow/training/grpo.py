"""One GRPO phase on TRL's GRPOTrainer: images in conversational prompts, rewards from our own
functions, vLLM rollouts when configured and available."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import torch
from datasets import Dataset
from trl import GRPOConfig, GRPOTrainer

from sectow.config import GrpoSettings
from sectow.training.common import trainer_kwargs

log = logging.getLogger(__name__)


def rollout_engine(settings: GrpoSettings) -> str:
    """'vllm-<mode>' when asked for and possible, else 'hf-generate'. The choice is logged."""
    if settings.use_vllm:
        try:
            import vllm  # noqa: F401
        except ImportError:
            log.warning("use_vllm is set but vllm is not installed: rolling out with HF generate")
            return "hf-generate"
        if not torch.cuda.is_available():
            log.warning("use_vllm is set but no GPU is visible: rolling out with HF generate")
            return "hf-generate"
        return f"vllm-{settings.vllm_mode}"
    return "hf-generate"


def grpo_train(model, processor, rows: list[dict], reward: Callable, output_dir: Path, settings: GrpoSettings, *,
               max_completion_length: int, seed: int, bf16: bool = True) -> str:
    """Train `model` in place with GRPO on prompt rows; returns the rollout engine used."""
    engine = rollout_engine(settings)
    config = GRPOConfig(
        **trainer_kwargs(str(output_dir), seed, settings.learning_rate, settings.batch_size, bf16),
        max_steps=settings.steps,
        num_generations=settings.num_generations,
        max_completion_length=max_completion_length,
        temperature=settings.temperature,
        top_k=0,
        top_p=1.0,
        beta=settings.beta,
        use_vllm=engine != "hf-generate",
        vllm_mode=settings.vllm_mode,
        log_completions=False,
    )
    trainer = GRPOTrainer(model=model, reward_funcs=[reward], args=config, train_dataset=Dataset.from_list(rows),
                          processing_class=processor)
    trainer.train()
    return engine
