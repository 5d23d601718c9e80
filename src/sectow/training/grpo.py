"""One GRPO phase on TRL's GRPOTrainer: images in conversational prompts, rewards from our own
functions, vLLM rollouts when configured and available."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from datasets import Dataset
from trl import GRPOConfig, GRPOTrainer

from sectow.config import GrpoSettings
from sectow.models.vllm_generation import generation_engine
from sectow.training.common import LoopCallback, rows_for, train, trainer_kwargs

# A colocated vLLM engine sizes its KV cache for the model's whole context (128k tokens for Qwen2.5-VL),
# which does not fit in the 0.3 of a GPU that TRL gives it beside a 7B model; 8192 tokens hold a prompt
# with a large image plus the reply.
VLLM_MAX_MODEL_LENGTH = 8192


class GRPOTrainerForMixedRows(GRPOTrainer):
    """TRL 1.16's GRPOTrainer for batches that mix prompts with and without images (text-only seeds next to
    picture questions). Its rollout marks a prompt without images with None, which its own processor call
    for the log-probabilities then refuses (`fetch_images`: got NoneType); that call takes [] for them."""

    def _generate(self, prompts):
        *rest, images, tool_images = super()._generate(prompts)
        if images is not None:
            images = [found or [] for found in images]
        return (*rest, images, tool_images)


def rollout_engine(settings: GrpoSettings) -> str:
    """'vllm-<mode>' when asked for and possible, else 'hf-generate'. A fallback is logged."""
    engine = generation_engine(settings.use_vllm)
    return f"vllm-{settings.vllm_mode}" if engine == "vllm" else engine


def grpo_train(model, processor, rows: list[dict], reward: Callable, output_dir: Path, settings: GrpoSettings, *,
               max_completion_length: int, seed: int, bf16: bool = True, callbacks: list | None = None) -> str:
    """Train `model` in place with GRPO on prompt rows; returns the rollout engine used. `callbacks`
    (TrainerCallbacks) let benchmarks/gpu_check.py clock each step's rollout and update."""
    engine = rollout_engine(settings)
    context = getattr(model.config.get_text_config(), "max_position_embeddings", None) or VLLM_MAX_MODEL_LENGTH
    config = GRPOConfig(
        **trainer_kwargs(str(output_dir), seed, settings, bf16),
        num_generations=settings.num_generations,
        max_completion_length=max_completion_length,
        temperature=settings.temperature,
        top_k=0,
        top_p=1.0,
        beta=settings.beta,
        use_vllm=engine != "hf-generate",
        vllm_mode=settings.vllm_mode,
        vllm_max_model_length=min(VLLM_MAX_MODEL_LENGTH, context),
        log_completions=False,
    )
    trainer = GRPOTrainerForMixedRows(model=model, reward_funcs=[reward], args=config,
                                      train_dataset=Dataset.from_list(rows_for(processor, rows)),
                                      processing_class=processor, callbacks=[LoopCallback(), *(callbacks or [])])
    train(trainer)
    return engine
