"""The jailbreak pool: the attempts that beat the defender and passed quality monitoring. It takes a
round's attempts, keeps the accepted ones (success, and not a copy of another attempt of the round:
near-copies of earlier rounds were already caught by the quality monitor), writes their records and
images, and says why every other attempt went.

Each iteration's records go to pool/iteration-K.jsonl, written whole and renamed into place, so a
killed pool phase leaves nothing behind; jailbreak_pool.jsonl is their concatenation. Every record
carries a content hash."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from sectow.atomic import write_atomic
from sectow.data.schema import Sample, save_image
from sectow.faults import crash_point
from sectow.game import Attempt
from sectow.rewards import Outcome


def record_hash(record: dict) -> str:
    content = json.dumps({k: record[k] for k in ("seed_id", "iteration", "mode", "form", "query", "attacker_output")},
                         sort_keys=True)
    return hashlib.sha256(content.encode()).hexdigest()[:16]


def pool_record(attempt: Attempt, iteration: int) -> dict:
    seed, verdict, quality = attempt.seed, attempt.verdict, attempt.quality
    record = {"seed_id": seed.seed_id, "category": seed.category, "intent": seed.intent, "mode": seed.mode,
              "iteration": iteration, "form": attempt.strategy, "query": attempt.query,
              "attacker_output": attempt.attacker_output, "defender_reply": attempt.reply,
              "verdict": {"refused": verdict.refused, "unsafe": verdict.unsafe, "judge": verdict.judge,
                          **({"topic_similarity": round(verdict.topic_similarity, 4)}
                             if verdict.topic_similarity is not None else {})},
              "quality": {"intent_similarity": round(quality.intent_similarity, 4),
                          "pool_similarity": round(quality.pool_similarity, 4)}}
    record["hash"] = record_hash(record)
    return record


@dataclass
class Admission:
    """What one pool phase kept, and why every attempt it did not keep went."""

    records: list[dict]
    outcomes: Counter = field(default_factory=Counter)  # every attempt's outcome, duplicates of the round included


class JailbreakPool:
    def __init__(self, folder: Path):
        self.folder = folder
        self.images = folder / "images"
        self.images.mkdir(parents=True, exist_ok=True, mode=0o700)

    def iteration_file(self, iteration: int) -> Path:
        return self.folder / f"iteration-{iteration}.jsonl"

    def admit(self, iteration: int, attempts: list[Attempt]) -> Admission:
        """Keep the successful attempts that are not copies of one kept earlier in the round; write them."""
        admission = Admission([])
        kept: set[str] = set()
        for attempt in attempts:
            outcome = attempt.outcome
            if outcome is Outcome.SUCCESS:
                record = pool_record(attempt, iteration)
                if record["hash"] in kept:
                    outcome = Outcome.DUPLICATE
                else:
                    kept.add(record["hash"])
                    record["image"] = None  # a text-only attempt (a text-only seed in a text form)
                    if attempt.image is not None:
                        record["image"] = f"images/{record['hash']}.png"
                        save_image(attempt.image, self.folder / record["image"])
                    crash_point("pool_image_saved")
                    admission.records.append(record)
            admission.outcomes[outcome.value] += 1
        self._write_iteration(iteration, admission.records)
        crash_point("pool_written")
        return admission

    def _write_iteration(self, iteration: int, records: list[dict]) -> None:
        write_atomic(self.iteration_file(iteration), "".join(json.dumps(r) + "\n" for r in records))
        files = sorted(self.folder.glob("iteration-*.jsonl"), key=lambda p: int(p.stem.split("-")[1]))
        write_atomic(self.folder / "jailbreak_pool.jsonl", "".join(f.read_text() for f in files))

    def records(self, up_to_iteration: int | None = None) -> list[dict]:
        path = self.folder / "jailbreak_pool.jsonl"
        if not path.is_file():
            return []
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return [r for r in rows if up_to_iteration is None or r["iteration"] <= up_to_iteration]

    def samples(self) -> list[Sample]:
        """The pool as defender training samples (jailbreaks: label harmful)."""
        return [Sample(id=r["hash"], query=r["query"], label="harmful",
                       image=str(self.folder / r["image"]) if r["image"] else None,
                       category=r["category"], intent=r["intent"], form=r["form"], seed_id=r["seed_id"])
                for r in self.records()]
