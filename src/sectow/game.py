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

from sectow.attacks.forms import FORMS, TRAINING_FORMS
from sectow.attacks.queries import attacker_instruction, defender_input, parse_attacker_output
from sectow.config import PolicySettings, RewardSettings
from sectow.data.schema import Sample, load_image
from sectow.judges.base import Judge, Verdict
from sectow.models import vllm_generation
from sectow.models.generation import generate
from sectow.models.policy import load_policy
from sectow.models.processor import load_processor, takes_images
from sectow.monitors import AttackerQualityMonitor, Quality, QualityReason
from sectow.rewards import Outcome, attacker_reward, defender_outcome

# The quality monitor's reasons, as attack outcomes.
QUALITY_OUTCOME = {QualityReason.MALFORMED: Outcome.MALFORMED, QualityReason.OFF_INTENT: Outcome.LOW_QUALITY,
                   QualityReason.DUPLICATE: Outcome.DUPLICATE, QualityReason.OK: None}


@dataclass(frozen=True)
class AttackSeed:
    """What the attacker is asked to work on: a harmful seed to `generate` a jailbreak from, or an earlier
    jailbreak query and the defender's reply to it to `refine`."""

    seed_id: str
    category: str | None
    intent: str
    image: str | None  # the seed's image file, or None for a text-only seed
    mode: Literal["generate", "refine"] = "generate"
    earlier_query: str | None = None
    earlier_reply: str | None = None

    @staticmethod
    def of(sample: Sample) -> AttackSeed:
        return AttackSeed(sample.seed_id or sample.id, sample.category, sample.intent or sample.query, sample.image)


@dataclass(frozen=True)
class Attempt:
    """One attacker output and everything the round made of it."""

    seed: AttackSeed
    attacker_output: str
    strategy: str | None  # the jailbreak form the attacker chose; None when its output did not parse
    query: str | None  # the text the defender got
    image: Image.Image | None  # the image the defender got
    reply: str | None  # None when the defender was not asked (the output did not parse)
    verdict: Verdict | None
    quality: Quality
    outcome: Outcome
    reward: float


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

    @property
    def sees_images(self) -> bool:
        return takes_images(self.processor)

    def replies(self, inputs: list[tuple[str, Image.Image | str | None]]) -> list[str]:
        if not inputs:
            return []
        return generate(self.model, self.processor, inputs, max_new_tokens=self.max_new_tokens,
                        batch_size=self.batch_size)


def play_round(attacker_output_B: list[str], seed_B: list[AttackSeed], defender: FrozenDefender, judge: Judge,
               monitor: AttackerQualityMonitor, rewards: RewardSettings, image_size: int) -> Round:
    parsed_B = [offered(parse_attacker_output(output), defender) for output in attacker_output_B]
    input_B: list[tuple[str, Image.Image | None] | None] = []
    for parsed, seed in zip(parsed_B, seed_B, strict=True):
        if parsed is None:
            input_B.append(None)
            continue
        # A text-only seed stays text-only (a typographic strategy draws its own image).
        canvas = load_image(seed.image) if seed.image else None
        input_B.append(defender_input(parsed[0], parsed[1], canvas, image_size))
    asked = [i for i, x in enumerate(input_B) if x is not None]
    reply_B: list[str | None] = [None] * len(seed_B)
    verdict_B: list[Verdict | None] = [None] * len(seed_B)
    replies = defender.replies([input_B[i] for i in asked])
    probes = [Sample(id=seed_B[i].seed_id, query=input_B[i][0], label="harmful", intent=seed_B[i].intent)
              for i in asked]
    for i, reply, verdict in zip(asked, replies, judge.judge(probes, replies) if asked else [], strict=True):
        reply_B[i], verdict_B[i] = reply, verdict
    quality_B = monitor.score([s.intent for s in seed_B], [p[1] if p else None for p in parsed_B])
    attempts = []
    for i, (output, seed, parsed, quality) in enumerate(zip(attacker_output_B, seed_B, parsed_B, quality_B)):
        scored = attacker_reward(QUALITY_OUTCOME[quality.reason],
                                 defender_outcome(verdict_B[i], reply_B[i], input_B[i][0] if input_B[i] else None), rewards)
        attempts.append(Attempt(seed=seed, attacker_output=output, strategy=parsed[0] if parsed else None,
                                query=input_B[i][0] if input_B[i] else None, image=input_B[i][1] if input_B[i] else None,
                                reply=reply_B[i], verdict=verdict_B[i], quality=quality, outcome=scored.outcome,
                                reward=scored.reward))
    return Round(attempts)


def offered(parsed: tuple[str, str] | None, defender: FrozenDefender) -> tuple[str, str] | None:
    """A parsed attacker output, or None (malformed) when its strategy is not on offer against this
    defender: a typographic one puts the request into an image, which a text-only defender never sees
    (it would get FigStep's bare sentence, an empty attack that a judge may still call a compliance)."""
    if parsed is not None and FORMS[parsed[0]].typographic and not defender.sees_images:
        return None
    return parsed


def attack_seeds(seeds: list[Sample], defender: FrozenDefender, refine_share: float, rng: random.Random) -> list[AttackSeed]:
    """Generate from every harmful seed, and refine existing jailbreak data (a templated jailbreak of a
    share of the seeds, in a random training form) with the defender's actual reply to it."""
    earlier = [(s, FORMS[rng.choice(TRAINING_FORMS)].wrap(AttackSeed.of(s).intent))
               for s in rng.sample(seeds, round(len(seeds) * refine_share))]
    earlier_replies = defender.replies([(query, s.image) for s, query in earlier])
    chosen = [AttackSeed.of(s) for s in seeds]
    chosen += [replace(AttackSeed.of(s), mode="refine", earlier_query=query, earlier_reply=reply)
               for (s, query), reply in zip(earlier, earlier_replies)]
    rng.shuffle(chosen)
    return chosen


def sample_attacker(attacker_dir: Path, settings: PolicySettings, seeds: list[AttackSeed], *, engine: str,
                    temperature: float, batch_size: int, seed: int, desc: str) -> list[str]:
    """One attacker output per seed, sampled from the attacker's folder (with vLLM when `engine` is 'vllm':
    it loads the folder itself)."""
    prompts = [(attacker_instruction(s.intent, s.earlier_query, s.earlier_reply), s.image) for s in seeds]
    if engine == "vllm":
        return vllm_generation.generate(attacker_dir, load_processor(attacker_dir), prompts,
                                        max_new_tokens=settings.max_new_tokens, batch_size=batch_size,
                                        temperature=temperature, seed=seed, desc=desc)
    model, processor = load_policy(attacker_dir, settings)
    return generate(model, processor, prompts, max_new_tokens=settings.max_new_tokens, batch_size=batch_size,
                    temperature=temperature, seed=seed, desc=desc)
