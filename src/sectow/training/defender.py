"""The defender's GRPO phase (METHOD.md 2c): the filtered pool of every iteration so far, plain harmful
seeds and general benign data, rewarded for refusing harm and answering the benign."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from sectow import ranks
from sectow.attacks.strategies import Composition
from sectow.config import RunConfig
from sectow.data.schema import Sample
from sectow.judges.base import Judge
from sectow.models.policy import load_policy, merged, with_lora
from sectow.training.grpo import grpo_train
from sectow.training.players import DefenderReward, defender_grpo_row
from sectow.world.base import ImageWriter, composed

PLAIN_SEEDS = 40  # plain harmful seeds per phase, beside the pool, so the refusal of plain harm stays


def defender_rows(pool: list[Sample], harmful_seeds: list[Sample], benign: list[Sample], benign_weight: int,
                  rng: random.Random, counterparts: list[Sample] = ()) -> list[dict]:
    """The pool, a sample of plain harmful seeds, and `benign_weight` benign samples per harmful one: the
    `counterparts` first, the rest drawn from `benign`."""
    harmful = pool + rng.sample(harmful_seeds, min(len(harmful_seeds), PLAIN_SEEDS))
    wanted = max(0, len(harmful) * benign_weight - len(counterparts))
    chosen_benign = list(counterparts) + rng.sample(benign, min(len(benign), wanted))
    rows = [defender_grpo_row(s) for s in harmful + chosen_benign]
    rng.shuffle(rows)
    return rows


def benign_counterparts(pool: list[Sample], benign: list[Sample], images: ImageWriter, image_size: int,
                        rng: random.Random) -> list[Sample]:
    """For every pool sample, a benign request in the same composition: the benign side of each surface form
    the pool teaches the defender to refuse, so that only the content tells them apart."""
    requests = [s for s in benign if s.form == "plain" and s.answer is None]
    return [composed(rng.choice(requests), Composition.of(s.form), images, image_size) for s in pool if s.form]


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
