"""The attacker's GRPO phase (METHOD.md 2a): the attacker plays rounds against the frozen current defender,
on generate prompts from every harmful seed and refine prompts from existing jailbreak data."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from sectow import ranks
from sectow.attacks.strategies import Strategies
from sectow.config import RunConfig
from sectow.data.schema import Sample
from sectow.game import AttackSeed, FrozenDefender, attack_seeds
from sectow.judges.base import Judge
from sectow.models.encoder import shared_encoder
from sectow.models.policy import for_training, load_policy, merged
from sectow.monitors import AttackerQualityMonitor
from sectow.rewards import Outcome
from sectow.training.grpo import grpo_train
from sectow.training.players import AttackerReward, attacker_row


def frozen_defender(folder: Path, config: RunConfig) -> FrozenDefender:
    model, processor = load_policy(folder, config.defender)
    return FrozenDefender(model, processor, config.evaluation.max_new_tokens, config.evaluation.batch_size)


def quality_monitor(config: RunConfig, pool_queries: list[str]) -> AttackerQualityMonitor:
    return AttackerQualityMonitor(shared_encoder(), config.monitors, pool_queries)


def iteration_seeds(seeds: list[Sample], defender: FrozenDefender, strategies: Strategies, config: RunConfig,
                    seed: int, pool: list[dict]) -> list[AttackSeed]:
    """The attacker's prompts of one iteration, refining and targeting from the pool so far; the attacker
    phase and the pool phase ask the same defender the same things, so both get the same list."""
    return attack_seeds(seeds, defender, strategies, config.pool.refine_share, config.data.image_size,
                        random.Random(seed), pool)


@dataclass
class TrainedAttacker:
    model: object
    processor: object
    metrics: dict


def train_attacker(attacker_dir: Path, defender: FrozenDefender, seeds: list[AttackSeed], judge: Judge,
                   monitor: AttackerQualityMonitor, strategies: Strategies, config: RunConfig, output_dir: Path,
                   seed: int, anchor: Path) -> TrainedAttacker:
    """GRPO of the attacker in `attacker_dir`, its KL term (attacker_grpo.beta) anchored to `anchor` (its
    cold start), so that iterations that each continue the last do not drift into one narrow strategy."""
    model, processor = load_policy(attacker_dir, config.attacker)
    # Keep the LoRA wrapper: `merged` merges the adapters of a wrapped model (the bare one only holds them).
    model = for_training(model, config.attacker)
    reward = AttackerReward(defender, judge, monitor, config.rewards, strategies, config.data.image_size)
    run = grpo_train(model, processor, [attacker_row(s) for s in seeds], reward,
                     output_dir, config.attacker_grpo, max_completion_length=config.attacker.max_new_tokens,
                     seed=seed, bf16=config.attacker.bf16, reference=anchor)
    outcomes = ranks.summed(reward.outcomes)  # each process saw its own share of the prompts
    total = sum(outcomes[o.value] for o in Outcome) or 1
    return TrainedAttacker(merged(model), processor, {
        "prompts": len(seeds), "rollout_engine": run.engine, "outcomes": dict(outcomes),
        "frac_reward_zero_std": run.frac_reward_zero_std,
        "train_success_rate": round(outcomes[Outcome.SUCCESS.value] / total, 4)})
