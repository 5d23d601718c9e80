"""The jailbreak pool: attacker samples that beat the defender and passed quality monitoring.
Each iteration's records go to pool/iteration-K.jsonl, written whole and renamed into place, so a
killed pool phase leaves nothing behind; jailbreak_pool.jsonl is their concatenation. Every record
carries a content hash."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from sectow.data.schema import Sample
from sectow.run_folder import write_atomic


def record_hash(record: dict) -> str:
    content = json.dumps({k: record[k] for k in ("seed_id", "iteration", "mode", "form", "query", "attacker_output")},
                         sort_keys=True)
    return hashlib.sha256(content.encode()).hexdigest()[:16]


class JailbreakPool:
    def __init__(self, folder: Path):
        self.folder = folder
        self.images = folder / "images"
        self.images.mkdir(parents=True, exist_ok=True, mode=0o700)

    def iteration_file(self, iteration: int) -> Path:
        return self.folder / f"iteration-{iteration}.jsonl"

    def write_iteration(self, iteration: int, records: list[dict]) -> None:
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
        return [Sample(id=r["hash"], query=r["query"], label="harmful", image=str(self.folder / r["image"]),
                       category=r["category"], intent=r["intent"], form=r["form"], seed_id=r["seed_id"])
                for r in self.records()]
