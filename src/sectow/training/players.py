"""What each player trains on, and the reward callables TRL calls. Rows are conversational prompts
(+ completion for SFT) with an `images` column; the extra columns reach the rewards as keywords."""

from __future__ import annotations

import random
from collections import Counter

from PIL import Image

from sectow.attacks.forms import FORMS, TRAINING_FORMS
from sectow.attacks.queries import attacker_target, defender_input, parse_attacker_output
from sectow.config import RewardSettings
from sectow.data.miniature import COMPLIANCE_REPLY, REFUSAL_REPLY, answer_reply
from sectow.data.schema import Sample, load_image
from sectow.judges.base import Judge
from sectow.models.generation import generate
from sectow.monitors import AttackerQualityMonitor
from sectow.rewards import attacker_reward, defender_reward
from sectow.training.prompts import attacker_instruction, defender_row


def defender_sft_rows(harmful: list[Sample], benign: list[Sample]) -> list[dict]:
    """Refuse harmful requests; comply with benign ones; answer questions with the template."""
    rows = [defender_row(s, REFUSAL_REPLY) for s in harmful]
    rows += [defender_row(s, answer_reply(s.answer) if s.answer else COMPLIANCE_REPLY) for s in benign]
    random.Random(0).shuffle(rows)
    return rows


def attacker_prompt_row(seed: Sample, earlier_query: str | None = None, defender_reply: str | None = None) -> dict:
    return {"prompt": [{"role": "user", "content": attacker_instruction(seed.intent, earlier_query, defender_reply)}],
            "images": [load_image(seed.image)] if seed.image else [], "intent": seed.intent, "seed_id": seed.seed_id,
            "category": seed.category, "seed_image": seed.image, "mode": "refine" if earlier_query else "generate"}


def attacker_sft_rows(seeds: list[Sample], seed: int) -> list[dict]:
    """Generate: seed -> a query in some jailbreak form. Refine: a refused earlier query (plain or in
    another form) -> a query in a different form."""
    rng = random.Random(seed)
    rows = []
    for sample in seeds:
        for form_name in TRAINING_FORMS:
            target = [{"role": "assistant", "content": attacker_target(form_name, sample.intent)}]
            rows.append({**attacker_prompt_row(sample), "completion": target})
            earlier = rng.choice([f for f in ("plain",) + TRAINING_FORMS if f != form_name])
            earlier_query = FORMS[earlier].wrap(sample.intent)
            rows.append({**attacker_prompt_row(sample, earlier_query, REFUSAL_REPLY), "completion": target})
    rng.shuffle(rows)
    return [{k: row[k] for k in ("prompt", "completion", "images")} for row in rows]


def completion_text(completion) -> str:
    return completion[0]["content"] if isinstance(completion, list) else completion


class DefenderReward:
    """GRPO reward of the defender; counts the outcomes it saw."""

    __name__ = "defender_reward"

    def __init__(self, judge: Judge, coeffs: RewardSettings):
        self.judge, self.coeffs = judge, coeffs
        self.outcomes: Counter = Counter()

    def __call__(self, prompts, completions, label, answer, **_) -> list[float]:
        responses = [completion_text(c) for c in completions]
        probes = [Sample(id="", query="", label=lab) for lab in label]
        verdicts = self.judge.judge(probes, responses)
        scores = [defender_reward(lab, ans, resp, v.refused, self.coeffs)
                  for lab, ans, resp, v in zip(label, answer, responses, verdicts)]
        self.outcomes.update(s.outcome for s in scores)
        return [s.reward for s in scores]


class AttackOutcome:
    """Parse attacker outputs, run them on the frozen defender, judge and monitor them: shared by the
    attacker's GRPO reward and by pool generation, so both see the same decision."""

    def __init__(self, defender, defender_processor, judge: Judge, monitor: AttackerQualityMonitor,
                 coeffs: RewardSettings, image_size: int, max_new_tokens: int, batch_size: int):
        self.defender, self.defender_processor = defender, defender_processor
        self.judge, self.monitor, self.coeffs = judge, monitor, coeffs
        self.image_size, self.max_new_tokens, self.batch_size = image_size, max_new_tokens, batch_size

    def run(self, outputs: list[str], intents: list[str], seed_images: list[str | None]) -> list[dict]:
        parsed_B = [parse_attacker_output(o) for o in outputs]
        inputs_B: list[tuple[str, Image.Image] | None] = []
        for parsed, seed_image in zip(parsed_B, seed_images):
            if parsed is None:
                inputs_B.append(None)
                continue
            base = load_image(seed_image) if seed_image else Image.new("RGB", (self.image_size, self.image_size), "white")
            inputs_B.append(defender_input(parsed[0], parsed[1], base, self.image_size))
        live = [i for i, x in enumerate(inputs_B) if x is not None]
        replies = generate(self.defender, self.defender_processor, [inputs_B[i] for i in live],
                           max_new_tokens=self.max_new_tokens, batch_size=self.batch_size) if live else []
        reply_B: list[str | None] = [None] * len(outputs)
        for i, reply in zip(live, replies):
            reply_B[i] = reply
        probes = [Sample(id="", query="", label="harmful") for _ in live]
        verdict_by_index = dict(zip(live, self.judge.judge(probes, replies))) if live else {}
        quality_B = self.monitor.score(intents, [p[1] if p else None for p in parsed_B])
        results = []
        for i, (parsed, quality) in enumerate(zip(parsed_B, quality_B)):
            verdict = verdict_by_index.get(i)
            refused = verdict.refused if verdict else True
            scored = attacker_reward(parsed is not None, quality.passed, refused, self.coeffs)
            results.append({"parsed": parsed, "input": inputs_B[i], "reply": reply_B[i], "verdict": verdict,
                            "quality": quality, "scored": scored})
        return results


class AttackerReward:
    """GRPO reward of the attacker: the frozen current defender complied AND quality passed."""

    __name__ = "attacker_reward"

    def __init__(self, attack: AttackOutcome):
        self.attack = attack
        self.outcomes: Counter = Counter()

    def __call__(self, prompts, completions, intent, seed_image, **_) -> list[float]:
        results = self.attack.run([completion_text(c) for c in completions], intent, seed_image)
        self.outcomes.update(r["scored"].outcome for r in results)
        self.outcomes.update(f"quality_{r['quality'].reason}" for r in results)
        return [r["scored"].reward for r in results]
