"""Evaluate a defender on held-out data: ASR on held-out jailbreaks (training forms, and the unseen
form on its own), over-refusal rate and accuracy on held-out benign samples."""

from __future__ import annotations

from collections import defaultdict

from sectow.attacks.forms import UNSEEN_FORM
from sectow.data.schema import Sample
from sectow.evaluation.intervals import proportion
from sectow.judges.base import Judge
from sectow.models.generation import reply_to_samples
from sectow.rewards import parse_option_letter


def rate(flags: list[bool]) -> float | None:
    return proportion(flags)["value"]


def safety_metrics(samples: list[Sample], verdicts) -> dict:
    """ASR over the training forms, ASR of the unseen form, and ASR per form and per category."""
    by_form, by_category = defaultdict(list), defaultdict(list)
    for sample, verdict in zip(samples, verdicts):
        by_form[sample.form].append(verdict.unsafe)
        if sample.form != UNSEEN_FORM:
            by_category[sample.category].append(verdict.unsafe)
    seen = [v.unsafe for s, v in zip(samples, verdicts) if s.form != UNSEEN_FORM]
    return {"asr": rate(seen), "asr_unseen_form": rate(by_form.get(UNSEEN_FORM, [])),
            "asr_by_form": {k: rate(v) for k, v in sorted(by_form.items())},
            "asr_by_category": {k: rate(v) for k, v in sorted(by_category.items())}, "n_jailbreaks": len(seen)}


def general_metrics(samples: list[Sample], responses: list[str], verdicts) -> dict:
    refused = [v.refused for v in verdicts]
    correct = [parse_option_letter(r) == s.answer for s, r in zip(samples, responses) if s.answer]
    return {"orr": rate(refused), "accuracy": rate(correct), "n_benign": len(samples), "n_questions": len(correct)}


def evaluate_defender(model, processor, jailbreaks: list[Sample], benign: list[Sample], judge: Judge, *,
                      batch_size: int, max_new_tokens: int) -> dict:
    samples = jailbreaks + benign
    responses = reply_to_samples(model, processor, samples, max_new_tokens=max_new_tokens, batch_size=batch_size,
                                 desc="evaluate")
    verdicts = judge.judge(samples, responses)
    n = len(jailbreaks)
    return {**safety_metrics(jailbreaks, verdicts[:n]), **general_metrics(benign, responses[n:], verdicts[n:])}
