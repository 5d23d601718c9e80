"""What each player trains on, and the reward callables TRL calls. Rows are conversational prompts
(+ completion for SFT) with an `images` column (TRL inserts the image placeholder); the other columns
reach the rewards as keyword arguments, one list entry per completion."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import replace

from sectow.attacks.queries import attacker_target
from sectow.attacks.strategies import READ_QUERY, Composition, Strategies, strategy_name
from sectow.config import RewardSettings
from sectow.data.schema import Sample, load_image
from sectow.game import AttackSeed, FrozenDefender, play_round
from sectow.judges.base import Judge
from sectow.monitors import AttackerQualityMonitor
from sectow.rewards import defender_reward, is_degenerate
from sectow.world.base import ImageWriter, composed
from sectow.world.miniature import COMPLIANCE_REPLY, REFUSAL_REPLY, answer_reply

SEED_COLUMNS = ("seed_id", "category", "intent", "image", "mode", "earlier_attempt", "earlier_reply", "target")
UNTARGETED_SHARE = 0.25  # of the attacker's cold-start rows: no target named, so that it also picks its own


def defender_row(sample: Sample, reply: str | None = None) -> dict:
    row = {"prompt": [{"role": "user", "content": sample.query}], "images": [load_image(sample.image)] if sample.image else []}
    if reply is not None:
        row["completion"] = [{"role": "assistant", "content": reply}]
    return row


def defender_grpo_row(sample: Sample) -> dict:
    """The defender's prompt, with what its reward needs as columns: the plain request behind a harmful
    sample (`intent`, for a judge that checks the reply's topic) and the answer key."""
    return {**defender_row(sample), "label": sample.label, "answer": sample.answer, "intent": sample.intent or sample.query}


def attacker_row(seed: AttackSeed) -> dict:
    """The attacker's prompt for `seed`, with the seed's fields as columns for the reward (the seed image as
    `seed_image`: `image` would be taken for TRL's own column)."""
    columns = {name: getattr(seed, name) for name in SEED_COLUMNS}
    columns["seed_image"] = columns.pop("image")
    return {"prompt": [{"role": "user", "content": seed.instruction()}],
            "images": [load_image(seed.image)] if seed.image else [], **columns}


def seeds_of_columns(columns: dict[str, list]) -> list[AttackSeed]:
    """The AttackSeeds behind a batch of TRL reward keyword arguments."""
    values = {name: columns["seed_image" if name == "image" else name] for name in SEED_COLUMNS}
    return [AttackSeed(**dict(zip(SEED_COLUMNS, row))) for row in zip(*values.values())]


def defender_sft_rows(harmful: list[Sample], benign: list[Sample], benign_targets: dict[str, str] | None = None) -> list[dict]:
    """Refuse harmful requests; answer benign ones. With `benign_targets` (a real model's: its reference or
    its own replies, training/self_distill.py) each benign sample gets its target, and one without any is
    left out; the benign requests (no answer key) are repeated until they are at least as many as the
    harmful rows, since refusals learnt from requests spread to benign requests that share their words
    (over-refusal), and the model's own answers are what holds that back. Without targets, the miniature's
    replies: the answer template for questions, the placeholder compliance for requests."""
    rows = [defender_row(s, REFUSAL_REPLY) for s in harmful]
    if benign_targets is None:
        rows += [defender_row(s, answer_reply(s.answer) if s.answer else COMPLIANCE_REPLY) for s in benign]
    else:
        answered = [s for s in benign if s.id in benign_targets]
        requests = [s for s in answered if not s.answer]
        copies = max(1, -(-len(harmful) // len(requests))) if requests else 1
        rows += [defender_row(s, benign_targets[s.id]) for s in answered for _ in range(copies if not s.answer else 1)]
    random.Random(0).shuffle(rows)
    return rows


def reading_rows(requests: list[Sample], strategies: Strategies, image_size: int, seed: int) -> list[dict]:
    """Reading, which the defender's cold start teaches beside refusal as pre-training teaches a real MLLM
    to read text in images: every request (harmful and benign alike) written in one of the world's pictures,
    to be copied out as text. Reading is not refusing: what to do with a harmful request in a picture is
    left to GRPO, as alignment left it. No rows for a world without pictures."""
    pictures = [p for p in strategies.pictures if p != "none"]
    if not pictures:
        return []
    rng = random.Random(seed)
    rows = []
    for sample in requests:
        composition = Composition(picture=rng.choice(pictures))
        request = sample.intent or sample.query
        _, image = composition.render(READ_QUERY, request, load_image(sample.image) if sample.image else None, image_size)
        rows.append({"prompt": [{"role": "user", "content": READ_QUERY}], "images": [image],
                     "completion": [{"role": "assistant", "content": composition.written(request)}]})
    return rows


def aligned_harmful(seeds: list[Sample], strategies: Strategies, images: ImageWriter, image_size: int) -> list[Sample]:
    """The harmful side of the defender's cold start (its alignment): every seed plain, and in one of the
    well-known templates, taken in turn."""
    known = strategies.known
    return seeds + [composed(s, known[i % len(known)], images, image_size) for i, s in enumerate(seeds)]


def attacker_sft_rows(seeds: list[Sample], strategies: Strategies, seed: int) -> list[dict]:
    """The attacker's cold start: for each seed, compositions drawn from the strategies' mix, each taught
    twice: generated from the seed, and as the refinement of a refused attempt in a well-known template.
    The prompt names the composition's cell (its Strategy line) as the target, except in a share of rows
    (`UNTARGETED_SHARE`), so the attacker learns to write in the cell it is asked for."""
    rng = random.Random(seed)
    rows = []
    for sample in seeds:
        for _ in range(strategies.examples_per_seed):
            composition = strategies.sample(rng)
            cell = strategy_name(composition.picture, composition.encoding) if rng.random() >= UNTARGETED_SHARE else None
            base = replace(AttackSeed.of(sample), target=cell)
            target = [{"role": "assistant", "content": attacker_target(composition, base.intent)}]
            rows.append({**attacker_row(base), "completion": target})
            earlier = attacker_target(rng.choice(strategies.known), base.intent)
            refine = replace(base, mode="refine", earlier_attempt=earlier, earlier_reply=REFUSAL_REPLY)
            rows.append({**attacker_row(refine), "completion": target})
    rng.shuffle(rows)
    return [{k: row[k] for k in ("prompt", "completion", "images")} for row in rows]


def completion_text(completion) -> str:
    return completion[0]["content"] if isinstance(completion, list) else completion


def prompt_text(prompt) -> str:
    """The user's text of a conversational prompt, whether its content is a string or TRL's list of parts
    (which it makes of a vision-language player's prompts)."""
    content = prompt[-1]["content"] if isinstance(prompt, list) else prompt
    if isinstance(content, list):
        return "\n".join(part["text"] for part in content if part.get("type") == "text")
    return content


class DefenderReward:
    """GRPO reward of the defender; counts the responses it saw."""

    __name__ = "defender_reward"

    def __init__(self, judge: Judge, coeffs: RewardSettings):
        self.judge, self.coeffs = judge, coeffs
        self.outcomes: Counter = Counter()

    def __call__(self, prompts, completions, label, answer, intent, **_) -> list[float]:
        response_B = [completion_text(c) for c in completions]
        probe_B = [Sample(id="", query=prompt_text(p), label=lab, intent=i) for p, lab, i in zip(prompts, label, intent)]
        verdict_B = self.judge.judge(probe_B, response_B)
        scored_B = [defender_reward(lab, ans, resp, v.refused, self.coeffs, degenerate=is_degenerate(resp, probe.query))
                    for lab, ans, resp, v, probe in zip(label, answer, response_B, verdict_B, probe_B)]
        self.outcomes.update(s.outcome.value for s in scored_B)
        return [s.reward for s in scored_B]


class AttackerReward:
    """GRPO reward of the attacker: a round against the frozen current defender per batch of completions."""

    __name__ = "attacker_reward"

    def __init__(self, defender: FrozenDefender, judge: Judge, monitor: AttackerQualityMonitor,
                 coeffs: RewardSettings, strategies: Strategies, image_size: int):
        self.defender, self.judge, self.monitor, self.coeffs = defender, judge, monitor, coeffs
        self.strategies, self.image_size = strategies, image_size
        self.outcomes: Counter = Counter()

    def __call__(self, prompts, completions, **columns) -> list[float]:
        played = play_round([completion_text(c) for c in completions], seeds_of_columns(columns), self.defender,
                            self.judge, self.monitor, self.coeffs, self.strategies, self.image_size)
        self.outcomes.update(played.outcomes())
        self.outcomes.update(f"quality_{a.quality.reason.value}" for a in played.attempts)
        return [a.reward for a in played.attempts]
