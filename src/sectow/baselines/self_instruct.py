"""The attacker comparison: an attacker's samples for every held-out harmful seed (generate mode, no
refinement) against one fixed defender, judged and quality-monitored exactly as in the pool phase. The
self-instruct attacker is the attacker before any GRPO (in the miniature, the cold-start attacker)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from sectow.attacks.strategies import Strategies
from sectow.config import RunConfig
from sectow.data.schema import Sample
from sectow.evaluation.intervals import proportion
from sectow.game import AttackSeed, play_round, sample_attacker
from sectow.judges.base import Judge
from sectow.models.vllm_generation import generation_engine
from sectow.rewards import Outcome
from sectow.training.attacker import frozen_defender, quality_monitor


def attack_success(attacker_dir: Path, defender_dir: Path, seeds: list[Sample], strategies: Strategies, judge: Judge,
                   config: RunConfig) -> dict:
    defender = frozen_defender(defender_dir, config)
    attack_seeds = [AttackSeed.of(s) for s in seeds] * config.pool.samples_per_seed
    outputs = sample_attacker(attacker_dir, config.attacker, attack_seeds, engine=generation_engine(config.pool.use_vllm),
                              temperature=config.pool.temperature, batch_size=config.evaluation.batch_size,
                              seed=config.seed, desc=f"attacks of {attacker_dir.name}")
    played = play_round(outputs, attack_seeds, defender, judge, quality_monitor(config, []), config.rewards, strategies,
                        config.data.image_size)
    return {"attack_success": proportion([a.outcome is Outcome.SUCCESS for a in played.attempts]),
            "outcomes": dict(played.outcomes()), "attacker": attacker_dir.name,
            "compositions": dict(Counter(a.composition for a in played.attempts if a.outcome is Outcome.SUCCESS))}
