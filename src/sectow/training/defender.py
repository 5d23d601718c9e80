"""The defender's GRPO phase (METHOD.md 2c): the filtered pool of every iteration so far, plain harmful
seeds and general benign data, rewarded for refusing harm and answering the benign."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from sectow import ranks
from sectow.config import RunConfig
from sectow.data.schema import Sample
from sectow.judges.base import Judge
from sectow.models.policy import load_policy, merged, with_lora
from sectow.training.grpo import grpo_train
from sectow.training.players import DefenderReward, defender_grpo_row

PLAIN_SEEDS = 40  # plain harmful seeds per phase, beside the pool, so the refusal of plain harm stays


def defender_rows(pool: list[Sample], harmful_seeds: list[Sample], benign: list[Sample], benign_weight: int,
                  rng: random.Random) -> list[dict]:
    """The pool, a sample of plain harmful seeds, and `benign_weight` benign samples per harmful one."""
    harmful = pool + rng.sample(harmful_seeds, min(len(harmful_seeds), PLAIN_SEEDS))
    chosen_benign = rng.sample(benign, min(len(benign), len(harmful) * benign_weight))
    rows = [defender_grpo_row(s) for s in harmful + chosen_benign]
    rng.shuffle(rows)
    return rows


@dataclass
class TrainedDefender:
    model: object
    processor: object
    outcomes: dict


def train_defender(defender_dir: Path, rows: list[dict], judge: Judge, config: RunConfig, output_dir: Path,
                   seed: int) -> TrainedDefender:
    model, processor = load_policy(defender_dir, config.defender)
    model = with_lora(model, config.defender.lora)  # kept wrapped, so that `merged` merges the adapters
    reward = DefenderReward(judge, config.rewards)
    grpo_train(model, processor, rows, reward, output_dir, config.defender_grpo,
               max_completion_length=config.defender.max_new_tokens, seed=seed, bf16=config.defender.bf16)
    return TrainedDefender(merged(model), processor, dict(ranks.summed(reward.outcomes)))
