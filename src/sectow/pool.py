"""The jailbreak pool: the attempts that beat the defender and passed quality monitoring. It takes a
round's attempts, keeps the accepted ones (success, and not a copy of another attempt of the round:
near-copies of earlier rounds were already caught by the quality monitor), writes their records and
images, and says why every other attempt went.

Each iteration's records go to pool/iteration-K.jsonl, written whole and renamed into place, so a
killed pool phase leaves nothing behind; jailbreak_pool.jsonl is their concatenation. Every record
carries a hash of its content, checked (with its image) before a resumed run trusts the file."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from sectow.atomic import write_atomic
from sectow.data.schema import Sample, save_image
from sectow.errors import UserError
from sectow.faults import crash_point
from sectow.game import Attempt
from sectow.jsonl import json_lines
from sectow.rewards import Outcome


IDENTITY = ("seed_id", "iteration", "mode", "form", "query", "attacker_output")  # the same attack, twice
# The fields the loop reads back (the hash covers the rest): name -> the types it may have.
RECORD_FIELDS = {"hash": str, "image": str, "iteration": int, "query": str, "seed_id": str,
                 "intent": (str, type(None)), "category": (str, type(None)), "form": (str, type(None))}


def record_hash(record: dict) -> str:
    """A digest of every field of a record but the hash itself and the image name (which is made from it)."""
    content = json.dumps({k: v for k, v in record.items() if k not in ("hash", "image")}, sort_keys=True)
    return hashlib.sha256(content.encode()).hexdigest()[:16]


def identity(record: dict) -> str:
    return json.dumps([record[k] for k in IDENTITY])


def check_pool_file(path: Path) -> int:
    """Raise a UserError naming `path` and the line of the first record that is not whole: not JSON (a line
    cut short), a field missing or of the wrong type, a hash that does not match its content, or an image
    that is missing or damaged. Returns the number of records."""
    from PIL import Image, UnidentifiedImageError

    try:
        lines = json_lines(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: unreadable pool file ({err})") from None
    for number, line in enumerate(lines, start=1):
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise UserError(f"{where}: not a whole JSON record ({err.msg}); the pool file is damaged") from None
        if not isinstance(record, dict):
            raise UserError(f"{where}: not a pool record (a JSON object)")
        for name, kind in RECORD_FIELDS.items():
            if not isinstance(record.get(name), kind) or (kind is int and isinstance(record[name], bool)):
                raise UserError(f"{where}: pool record field {name!r} is missing or of the wrong type")
        if record_hash(record) != record["hash"]:
            raise UserError(f"{where}: pool record {record['hash']} does not match its hash: it was changed")
        image = path.parent / record["image"]
        if record["image"] != f"images/{record['hash']}.png" or not image.is_file():
            raise UserError(f"{where}: the image of pool record {record['hash']} ({image}) is missing")
        try:
            with Image.open(image) as opened:
                opened.verify()  # checksums and structure, without decoding the pixels
        except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as err:
            raise UserError(f"{image}: damaged image of pool record {record['hash']} ({err})") from None
    return len(lines)


def pool_record(attempt: Attempt, iteration: int) -> dict:
    seed, verdict, quality = attempt.seed, attempt.verdict, attempt.quality
    parsed = attempt.parsed
    record = {"seed_id": seed.seed_id, "category": seed.category, "intent": seed.intent, "mode": seed.mode,
              "iteration": iteration, "form": attempt.composition, "picture": parsed.picture,
              "encoding": parsed.encoding, "picture_words": parsed.phrase, "words": parsed.words, "query": attempt.query,
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
                if identity(record) in kept:
                    outcome = Outcome.DUPLICATE
                else:
                    kept.add(identity(record))
                    record["image"] = None  # a text-only attempt (a text-only seed, no picture strategy)
                    if attempt.image is not None:
                        record["image"] = f"images/{record['hash']}.png"
                        save_image(attempt.image, self.folder / record["image"])
                    crash_point("pool_image_saved")
                    admission.records.append(record)
            admission.outcomes[outcome.value] += 1
        self._write_iteration(iteration, admission.records)
        crash_point("pool_written")
        return admission

    def iteration_files(self) -> list[Path]:
        found = [(p, p.stem.split("-", 1)[1]) for p in self.folder.glob("iteration-*.jsonl")]
        return [p for p, k in sorted(found, key=lambda pair: int(pair[1])) if k.isdigit()]

    def _write_iteration(self, iteration: int, records: list[dict]) -> None:
        write_atomic(self.iteration_file(iteration), "".join(json.dumps(r) + "\n" for r in records))
        # The whole pool in one file, for people; the loop reads the iteration files it was made from.
        write_atomic(self.folder / "jailbreak_pool.jsonl", "".join(f.read_text() for f in self.iteration_files()))

    def records(self, up_to_iteration: int | None = None) -> list[dict]:
        rows = [json.loads(line) for path in self.iteration_files() for line in json_lines(path.read_text(encoding="utf-8"))
                if line.strip()]
        return [r for r in rows if up_to_iteration is None or r["iteration"] <= up_to_iteration]

    def samples(self) -> list[Sample]:
        """The pool as defender training samples (jailbreaks: label harmful)."""
        return [Sample(id=r["hash"], query=r["query"], label="harmful",
                       image=str(self.folder / r["image"]) if r["image"] else None,
                       category=r["category"], intent=r["intent"], form=r["form"], seed_id=r["seed_id"])
                for r in self.records()]
