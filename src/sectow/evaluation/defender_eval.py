"""Evaluate a defender on held-out data: ASR on held-out jailbreaks (over the strategies training uses, and
over the held-out ones on their own, and by group), over-refusal rate and accuracy on held-out benign
samples."""

from __future__ import annotations

from sectow.data.schema import Sample
from sectow.evaluation.metrics import Answer, benign_metrics, by_key, safety_metrics
from sectow.judges import refusal_set_of
from sectow.judges.base import Judge
from sectow.models.generation import generate
from sectow.rewards import gives_answer, is_option_letter, parse_option_letter


def evaluate_defender(model, processor, jailbreaks: list[Sample], benign: list[Sample], judge: Judge, *,
                      batch_size: int, max_new_tokens: int, held_out_groups: tuple[str, ...] = ()) -> dict:
    samples = jailbreaks + benign
    responses = generate(model, processor, [(s.query, s.image) for s in samples], max_new_tokens=max_new_tokens,
                         batch_size=batch_size, desc="evaluate")
    verdicts = judge.judge(samples, responses)
    n = len(jailbreaks)
    # Multiple choice takes one answer form, "Answer: X": no letter read from anything else. A short exact
    # answer counts when the reply holds it.
    answers = [Answer(gives_answer(s.answer, r), False, parse_option_letter(r) if is_option_letter(s.answer) else None)
               for s, r in zip(benign, responses[n:]) if s.answer]
    metrics = benign_metrics(benign, answers, verdicts[n:], held_out_groups)
    if jailbreaks:
        metrics.update(safety_metrics(jailbreaks, verdicts[:n], held_out_groups))
    metrics["orr_by_group"] = by_key(benign, [v.refused for v in verdicts[n:]], lambda s: s.extra.get("group") or s.form)
    metrics["refusal_markers"] = refusal_set_of(judge)  # which refusal strings `refused` (ORR) matched
    return metrics
