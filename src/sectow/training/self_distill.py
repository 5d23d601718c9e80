"""The defender's cold-start targets for benign samples, for a real (pretrained) model: a multiple-choice
question is answered 'Answer: X'; a sample with a reference reply (`extra.reference`) gets that; any other
gets the model's own greedy reply before training (self-distillation), so the cold start teaches refusals
without overwriting what the model already does well. A reply the judge calls a refusal, or a degenerate
one (`rewards.is_degenerate`), is no target; neither is a wrong reply to a question with a short exact
answer, whose target is then that answer. Any other sample without a target is left out of the cold start.

The replies are kept in the run folder (`self_distill/benign_targets.jsonl`) and read back from there, so a
resumed cold start trains on the same targets even where greedy decoding would now break a near-tie
differently. They are replies to benign requests only."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from sectow.atomic import write_atomic
from sectow.config import PolicySettings
from sectow.data.schema import Sample
from sectow.jsonl import json_lines
from sectow.judges.base import Judge
from sectow.models.generation import generate
from sectow.models.policy import load_policy
from sectow.rewards import gives_answer, is_degenerate, is_option_letter
from sectow.world.miniature import answer_reply

log = logging.getLogger("sectow")

# Long enough for a short helpful answer; a reply cut there is trimmed to its last whole sentence, so the
# cold start does not teach the model to stop mid-sentence.
NEW_TOKENS = 64
SENTENCE_END = re.compile(r"[.!?](?=\s|$)|\n")


def whole_sentences(reply: str) -> str:
    """`reply` up to its last sentence end (., !, ? or a line break), or all of it when it has none."""
    ends = [m.end() for m in SENTENCE_END.finditer(reply)]
    return reply[:ends[-1]].rstrip() if ends else reply


def reference(sample: Sample) -> str | None:
    """The reply the data gives for a benign sample, if any (a short exact answer is only a fallback)."""
    if sample.answer and is_option_letter(sample.answer):
        return answer_reply(sample.answer)
    given = sample.extra.get("reference") if isinstance(sample.extra, dict) else None
    return given if isinstance(given, str) and given.strip() else None


def benign_targets(model_dir: Path, settings: PolicySettings, benign: list[Sample], judge: Judge, cache: Path, *,
                   batch_size: int) -> dict[str, str]:
    """{sample id: target reply} for the benign samples the cold start trains on (see the module's doc)."""
    targets = {s.id: reply for s in benign if (reply := reference(s)) is not None}
    to_distill = [s for s in benign if s.id not in targets]
    if cache.is_file():
        rows = [json.loads(line) for line in json_lines(cache.read_text(encoding="utf-8")) if line.strip()]
    else:
        rows = distill(model_dir, settings, to_distill, judge, batch_size)
        cache.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomic(cache, "".join(json.dumps(row) + "\n" for row in rows))
    kept = {row["id"]: row["reply"] for row in rows if row["kept"]}
    answers = {s.id: s.answer.split("|")[0] for s in to_distill if s.answer and s.id not in kept}  # its first form
    dropped = len(to_distill) - len(kept) - len(answers)
    log.info("cold start: %d benign targets from the data, %d from the model's own replies, %d short answers "
             "it got wrong or refused, %d left out (refused or degenerate)", len(targets), len(kept), len(answers), dropped)
    return {**targets, **answers, **kept}


def distill(model_dir: Path, settings: PolicySettings, samples: list[Sample], judge: Judge, batch_size: int) -> list[dict]:
    """The model's greedy reply to each sample, and whether it is kept ('why' when not)."""
    if not samples:
        return []
    model, processor = load_policy(model_dir, settings)
    replies = [whole_sentences(r) for r in generate(model, processor, [(s.query, s.image) for s in samples],
                                                   max_new_tokens=NEW_TOKENS, batch_size=batch_size,
                                                   desc="self-distillation")]
    verdicts = judge.judge(samples, replies)
    rows = []
    for sample, reply, verdict in zip(samples, replies, verdicts, strict=True):
        why = ("refused" if verdict.refused else "degenerate" if is_degenerate(reply, sample.query)
               else "wrong" if sample.answer and not gives_answer(sample.answer, reply) else None)
        rows.append({"id": sample.id, "query": sample.query, "reply": reply, "kept": why is None, **({"why": why} if why else {})})
    return rows
