"""One round of the game (METHOD.md): the attacker's outputs are parsed into queries, the frozen defender
answers them, the judge reads the replies, the quality monitor reads the queries, and each attempt gets
its outcome and reward. The attacker's GRPO reward, pool generation and the attacker comparisons of
`sectow ablate` all play rounds through `play_round`, so they see the same decisions.

Batch shapes are in the names: `_B` is one entry per attempt of the round."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from PIL import Image

from sectow.attacks.queries import ParsedAttack, attacker_instruction, attacker_target, defender_input, parse_attacker_output
from sectow.attacks.strategies import Strategies, describe, strategy_name
from sectow.config import PolicySettings, RewardSettings
from sectow.data.schema import Sample, load_image
from sectow.judges.base import Judge, Verdict
from sectow.models import vllm_generation
from sectow.models.generation import generate
from sectow.models.policy import load_policy
from sectow.models.processor import load_processor
from sectow.monitors import AttackerQualityMonitor, Quality, QualityReason
from sectow.rewards import Outcome, attacker_reward, defender_outcome

# The quality monitor's reasons, as attack outcomes.
QUALITY_OUTCOME = {QualityReason.MALFORMED: Outcome.MALFORMED, QualityReason.OFF_INTENT: Outcome.LOW_QUALITY,
                   QualityReason.DUPLICATE: Outcome.DUPLICATE, QualityReason.OK: None}


@dataclass(frozen=True)
class AttackSeed:
    """What the attacker is asked to work on: a harmful seed to `generate` a jailbreak from, or an earlier
    attempt (an attacker output) and the defender's reply to it to `refine`."""

    seed_id: str
    category: str | None
    intent: str
    image: str | None  # the seed's image file, or None for a text-only seed
    mode: Literal["generate", "refine"] = "generate"
    earlier_attempt: str | None = None
    earlier_reply: str | None = None
    target: str | None = None  # the archive cell the attacker is asked to write in (None: its own choice)

    def instruction(self) -> str:
        return attacker_instruction(self.intent, self.earlier_attempt, self.earlier_reply, self.target)

    @staticmethod
    def of(sample: Sample) -> AttackSeed:
        return AttackSeed(sample.seed_id or sample.id, sample.category, sample.intent or sample.query, sample.image)


@dataclass(frozen=True)
class Attempt:
    """One attacker output and everything the round made of it."""

    seed: AttackSeed
    attacker_output: str
    parsed: ParsedAttack | None  # None when the output did not parse
    query: str | None  # the text the defender got
    image: Image.Image | None  # the image the defender got
    reply: str | None  # None when the defender was not asked (the output did not parse)
    verdict: Verdict | None
    quality: Quality
    outcome: Outcome
    reward: float

    @property
    def composition(self) -> str | None:
        """The parts the attempt shows (persona, framing, demand, encoding, picture), e.g. 'actor+story+tiles'."""
        if self.parsed is None:
            return None
        return describe(self.parsed.query, self.parsed.picture, self.parsed.encoding).name


@dataclass(frozen=True)
class Round:
    attempts: list[Attempt]

    def outcomes(self) -> Counter:
        return Counter(a.outcome.value for a in self.attempts)


@dataclass(frozen=True)
class FrozenDefender:
    """The current defender, answering greedily and training nothing."""

    model: object
    processor: object
    max_new_tokens: int
    batch_size: int

    def replies(self, inputs: list[tuple[str, Image.Image | str | None]]) -> list[str]:
        if not inputs:
            return []
        return generate(self.model, self.processor, inputs, max_new_tokens=self.max_new_tokens,
                        batch_size=self.batch_size)


def play_round(attacker_output_B: list[str], seed_B: list[AttackSeed], defender: FrozenDefender, judge: Judge,
               monitor: AttackerQualityMonitor, rewards: RewardSettings, strategies: Strategies, image_size: int) -> Round:
    parsed_B = [parse_attacker_output(output, strategies) for output in attacker_output_B]
    input_B: list[tuple[str, Image.Image | None] | None] = []
    for parsed, seed in zip(parsed_B, seed_B, strict=True):
        if parsed is None:
            input_B.append(None)
            continue
        # A text-only seed stays text-only unless the attacker chose a picture.
        canvas = load_image(seed.image) if seed.image else None
        input_B.append(defender_input(parsed, canvas, image_size))
    asked = [i for i, x in enumerate(input_B) if x is not None]
    reply_B: list[str | None] = [None] * len(seed_B)
    verdict_B: list[Verdict | None] = [None] * len(seed_B)
    replies = defender.replies([input_B[i] for i in asked])
    probes = [Sample(id=seed_B[i].seed_id, query=input_B[i][0], label="harmful", intent=seed_B[i].intent)
              for i in asked]
    for i, reply, verdict in zip(asked, replies, judge.judge(probes, replies) if asked else [], strict=True):
        reply_B[i], verdict_B[i] = reply, verdict
    quality_B = monitor.score([s.intent for s in seed_B], [p.words if p else None for p in parsed_B])
    attempts = []
    for i, (output, seed, parsed, quality) in enumerate(zip(attacker_output_B, seed_B, parsed_B, quality_B)):
        scored = attacker_reward(QUALITY_OUTCOME[quality.reason],
                                 defender_outcome(verdict_B[i], reply_B[i], input_B[i][0] if input_B[i] else None), rewards)
        attempts.append(Attempt(seed=seed, attacker_output=output, parsed=parsed,
                                query=input_B[i][0] if input_B[i] else None, image=input_B[i][1] if input_B[i] else None,
                                reply=reply_B[i], verdict=verdict_B[i], quality=quality, outcome=scored.outcome,
                                reward=scored.reward))
    return Round(attempts)


def attack_seeds(seeds: list[Sample], defender: FrozenDefender, strategies: Strategies, refine_share: float,
                 image_size: int, rng: random.Random, pool: list[dict] = ()) -> list[AttackSeed]:
    """Generate from every harmful seed, and refine existing jailbreak data (a share of the seeds: one of the
    pool's records of that seed when it has any, else one of the well-known templates) with the defender's
    actual reply to it. Each prompt names a target cell of the archive (`target_cells`)."""
    earlier_by_seed: dict[str, list[str]] = {}
    for record in pool:
        earlier_by_seed.setdefault(record["seed_id"], []).append(record["attacker_output"])

    def earlier_attempt(s: Sample) -> str:
        found = earlier_by_seed.get(AttackSeed.of(s).seed_id)
        return rng.choice(found) if found else attacker_target(rng.choice(strategies.known), AttackSeed.of(s).intent)

    earlier = [(s, earlier_attempt(s)) for s in rng.sample(seeds, round(len(seeds) * refine_share))]
    shown = []
    for s, attempt in earlier:
        canvas = load_image(s.image) if s.image else None
        shown.append(defender_input(parse_attacker_output(attempt, strategies), canvas, image_size))
    earlier_replies = defender.replies(shown)
    chosen = [AttackSeed.of(s) for s in seeds]
    chosen += [replace(AttackSeed.of(s), mode="refine", earlier_attempt=attempt, earlier_reply=reply)
               for (s, attempt), reply in zip(earlier, earlier_replies)]
    targets = target_cells(strategies, pool_cells(pool), len(chosen), rng)
    chosen = [replace(seed, target=target) for seed, target in zip(chosen, targets)]
    rng.shuffle(chosen)
    return chosen


def pool_cells(records: list[dict]) -> Counter:
    """How many pool records fill each archive cell (where the request goes x its encoding)."""
    return Counter(strategy_name(r["picture"], r["encoding"]) for r in records)


def target_cells(strategies: Strategies, covered: Counter, count: int, rng: random.Random) -> list[str]:
    """`count` archive cells to ask the attacker for, each drawn with weight 1 / (1 + its pool records so far):
    every cell stays asked for, the under-covered most (a quality-diversity archive over the attack
    space's coarse cells, as Rainbow Teaming's over its descriptors), so that the attacker cannot settle into
    the one channel that pays best."""
    cells = strategies.cells()
    return rng.choices(cells, weights=[1 / (1 + covered[c]) for c in cells], k=count)


def sample_attacker(attacker_dir: Path, settings: PolicySettings, seeds: list[AttackSeed], *, engine: str,
                    temperature: float, batch_size: int, seed: int, desc: str) -> list[str]:
    """One attacker output per seed, sampled from the attacker's folder (with vLLM when `engine` is 'vllm':
    it loads the folder itself)."""
    prompts = [(s.instruction(), s.image) for s in seeds]
    if engine == "vllm":
        return vllm_generation.generate(attacker_dir, load_processor(attacker_dir), prompts,
                                        max_new_tokens=settings.max_new_tokens, batch_size=batch_size,
                                        temperature=temperature, seed=seed, desc=desc)
    model, processor = load_policy(attacker_dir, settings)
    return generate(model, processor, prompts, max_new_tokens=settings.max_new_tokens, batch_size=batch_size,
                    temperature=temperature, seed=seed, desc=desc)
