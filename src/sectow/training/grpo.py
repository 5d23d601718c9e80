"""One GRPO phase on TRL's GRPOTrainer: images in conversational prompts, rewards from our own
functions, vLLM rollouts when configured and available."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from statistics import fmean
from typing import Callable

import torch
from datasets import Dataset
from transformers import TrainerCallback
from trl import GRPOConfig, GRPOTrainer

from sectow.config import GrpoSettings
from sectow.models.vllm_generation import generation_engine
from sectow.training.common import LoopCallback, rows_for, train, trainer_kwargs

# A colocated vLLM engine sizes its KV cache for the model's whole context (128k tokens for Qwen2.5-VL),
# which does not fit in the 0.3 of a GPU that TRL gives it beside a 7B model; 8192 tokens hold a prompt
# with a large image plus the reply.
VLLM_MAX_MODEL_LENGTH = 8192


class SectowGRPOTrainer(GRPOTrainer):
    """TRL 1.16's GRPOTrainer with two changes.

    Mixed rows: its rollout marks a prompt without images with None, which its own processor call for the
    log-probabilities then refuses (`fetch_images`: got NoneType); that call takes [] for them, so batches
    may mix prompts with and without images.

    `baseline="batch"`: TRL compares each reward with its prompt's group mean, so a group whose G
    completions all agree (a defender that complies with a jailbreak in all 8 samples) has zero advantage
    and teaches nothing. With the batch baseline each completion's advantage is its reward minus the mean
    of the whole generation batch (every process's), over that batch's standard deviation (REINFORCE with a
    batch baseline, as in REINFORCE++): complying with a jailbreak scores below the batch and is pushed
    down even when every sample of its group complied."""

    def __init__(self, *args, baseline: str = "group", **kwargs):
        self.baseline = baseline
        super().__init__(*args, **kwargs)

    def _generate(self, prompts):
        *rest, images, tool_images = super()._generate(prompts)
        if images is not None:
            images = [found or [] for found in images]
        return (*rest, images, tool_images)

    def _calculate_rewards(self, *args, **kwargs):
        # every process's rewards (TRL gathers them here), kept for the batch baseline
        self._rewards_per_func = super()._calculate_rewards(*args, **kwargs)
        return self._rewards_per_func

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        if self.baseline == "batch":
            weights = self.reward_weights.to(self._rewards_per_func.device).unsqueeze(0)
            rewards = (self._rewards_per_func * weights).nansum(dim=1)
            advantages = batch_advantages(rewards, scale=self.scale_rewards != "none")
            local = len(output["advantages"])
            start = self.accelerator.process_index * local
            output["advantages"] = advantages[start:start + local].to(output["advantages"].device)
        return output


def batch_advantages(rewards: torch.Tensor, scale: bool = True) -> torch.Tensor:
    """Reward minus the batch mean, over the batch's standard deviation when `scale`."""
    advantages = rewards - rewards.mean()
    return advantages / (rewards.std() + 1e-4) if scale and rewards.numel() > 1 else advantages


class ZeroStdShare(TrainerCallback):
    """TRL's `frac_reward_zero_std` of every logged step: the share of groups whose completions all got the
    same reward (no signal under the group baseline)."""

    def __init__(self):
        self.values: list[float] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "frac_reward_zero_std" in logs:
            self.values.append(float(logs["frac_reward_zero_std"]))


@dataclass(frozen=True)
class GrpoRun:
    engine: str  # the rollout engine used
    frac_reward_zero_std: float | None  # the phase's mean over logged steps




def rollout_engine(settings: GrpoSettings) -> str:
    """'vllm-<mode>' when asked for and possible, else 'hf-generate'. A fallback is logged."""
    engine = generation_engine(settings.use_vllm)
    return f"vllm-{settings.vllm_mode}" if engine == "vllm" else engine


def grpo_train(model, processor, rows: list[dict], reward: Callable, output_dir: Path, settings: GrpoSettings, *,
               max_completion_length: int, seed: int, bf16: bool = True, callbacks: list | None = None,
               reference: Path | None = None) -> GrpoRun:
    """Train `model` in place with GRPO on prompt rows. `callbacks` (TrainerCallbacks) let the defender's
    monitor check checkpoints and benchmarks/gpu_check.py clock each step. `reference` is the model folder of
    the KL term (beta > 0; full fine-tuning): TRL loads its reference from the folder the model names, which
    is otherwise the one it was loaded from. With LoRA the reference is the model without its adapters."""
    engine = rollout_engine(settings)
    if reference is not None:
        model.config._name_or_path = str(reference)
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
    zero_std = ZeroStdShare()
    trainer = SectowGRPOTrainer(model=model, reward_funcs=[reward], args=config, baseline=settings.baseline,
                                train_dataset=Dataset.from_list(rows_for(processor, rows)), processing_class=processor,
                                callbacks=[LoopCallback(), zero_std, *(callbacks or [])])
    train(trainer)
    return GrpoRun(engine, round(fmean(zero_std.values), 4) if zero_std.values else None)
