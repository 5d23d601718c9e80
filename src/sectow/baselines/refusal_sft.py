"""The white-box baseline: supervised fine-tuning on refusals (VLGuard-style), with as many training
prompts as SecTOW's defender phases saw."""

from __future__ import annotations

import math
import random
from pathlib import Path

from sectow.config import RunConfig
from sectow.training.cold_start import cold_start
from sectow.training.players import defender_sft_rows
from sectow.world.base import ImageWriter, World, composed


def defender_prompt_budget(config: RunConfig) -> int:
    """Training prompts SecTOW's defender sees over all iterations (completions / generations per prompt)."""
    grpo = config.defender_grpo
    return config.iterations * grpo.steps * max(1, grpo.batch_size // grpo.num_generations)


def refusal_sft_rows(world: World, config: RunConfig, images: ImageWriter, seed: int,
                     benign_targets: dict[str, str] | None = None) -> list[dict]:
    """Half safety data (the training seeds plain and in compositions drawn from the attack space's mix,
    pictures included, answered with a refusal), half general data (the benign training samples), as
    VLGuard mixes them. A real model's benign samples are answered with its cold start's `benign_targets`
    (training/self_distill.py)."""
    rng = random.Random(seed)
    budget = defender_prompt_budget(config)
    size = config.data.image_size
    harmful = [rng.choice(world.harmful_train) for _ in range(budget // 2)]
    harmful = [composed(s, world.strategies.sample(rng), images, size) for s in harmful]
    benign = [rng.choice(world.benign_train) for _ in range(budget - budget // 2)]
    return defender_sft_rows(harmful, benign, benign_targets)


def train_refusal_sft(defender_dir: Path, world: World, config: RunConfig, work: Path,
                      benign_targets: dict[str, str] | None = None):
    """(model, processor, metrics): the defender fine-tuned on refusals, on the defender's cold-start settings
    with as many steps as the budget needs."""
    rows = refusal_sft_rows(world, config, ImageWriter(work / "data"), config.seed, benign_targets)
    steps = math.ceil(defender_prompt_budget(config) / config.defender_sft.batch_size)
    model, processor = cold_start(defender_dir, config.defender.model_copy(update={"lora": None}), rows,
                                  config.defender_sft.model_copy(update={"steps": steps}), work / "trainer", config.seed)
    return model, processor, {"rows": len(rows), "steps": steps}
