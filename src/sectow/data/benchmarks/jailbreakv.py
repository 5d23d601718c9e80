"""JailBreakV-28K, its 280-row mini split, and the text-only RedTeam-2K questions behind them
(shared/benchmarks.md section 3). Image paths in the CSVs are relative to the CSV's folder."""

from __future__ import annotations

from pathlib import Path

from sectow.data.benchmarks.base import MISSING_IMAGE, BenchmarkLoader, PaperTable, existing_image, read_csv, skip
from sectow.data.schema import Sample
from sectow.errors import UserError

FOLDER = "JailBreakV_28K"  # what the HF download and the Google Drive zip both extract to
FORMATS = ("Template", "Persuade", "Logic", "figstep", "SD", "typo", "SD_typo")
# The paper's three attack families: jailbreak texts carried over from LLMs, MM-SafetyBench-style
# query-relevant images, and FigStep.
ATTACK_FAMILY = {"Template": "llm_transfer", "Persuade": "llm_transfer", "Logic": "llm_transfer",
                 "SD": "query_relevant", "typo": "query_relevant", "SD_typo": "query_relevant", "figstep": "figstep"}


def find_csv(root: Path, filename: str) -> Path:
    """`<root>/JailBreakV_28K/<file>`, or `<root>/<file>` when the user points at that folder itself."""
    for candidate in (root / FOLDER / filename, root / filename):
        if candidate.is_file():
            return candidate
    raise UserError(f"{root / FOLDER / filename}: JailBreakV-28K file not found "
                    f"(also looked for {root / filename})")


class JailBreakV(BenchmarkLoader):
    name = "jailbreakv"
    kind = "safety"
    description = "JailBreakV-28K: 28,000 image + jailbreak-text pairs over 16 policies and 7 formats"
    filename = "JailBreakV_28K.csv"
    paper_tables = (
        PaperTable("ASR per attack format", ("format", "form"), column_order=FORMATS),
        PaperTable("ASR per policy x attack family", ("policy", "category"),
                   ("attack family", "extra:attack_family"), ("llm_transfer", "query_relevant", "figstep")),
    )

    def read(self, root: Path) -> tuple[list[Sample], dict]:
        path = find_csv(root, self.filename)
        rows = read_csv(path, ("id", "jailbreak_query", "redteam_query", "format", "policy", "image_path"))
        samples, missing = [], 0
        for number, row in enumerate(rows, start=1):
            image = existing_image(path.parent, row["image_path"], f"{path} row {number}")
            sample = Sample(
                id=f"{self.name}/{row['id']}", query=row["jailbreak_query"], label="harmful",
                image=str(image) if image else None, category=row["policy"], intent=row["redteam_query"],
                form=row["format"], extra={"attack_family": ATTACK_FAMILY.get(row["format"], "other")},
            )
            if image is None:
                missing += 1
                skip(sample, MISSING_IMAGE, f"{path.parent / row['image_path']} not found (row {number})")
            samples.append(sample)
        return samples, {"files": [str(path)], "rows": len(rows), "missing_images": missing}


class JailBreakVMini(JailBreakV):
    name = "jailbreakv_mini"
    description = "mini_JailBreakV_28K: the 280-row subset of JailBreakV-28K"
    filename = "mini_JailBreakV_28K.csv"


class RedTeam2K(BenchmarkLoader):
    name = "redteam2k"
    kind = "safety"
    description = "RedTeam-2K: the 2,000 plain harmful questions JailBreakV-28K is built from (text only)"
    paper_tables = (PaperTable("ASR per policy", ("policy", "category")),)

    def read(self, root: Path) -> tuple[list[Sample], dict]:
        path = find_csv(root, "RedTeam_2K.csv")
        rows = read_csv(path, ("id", "question", "policy"))
        samples = [
            Sample(id=f"{self.name}/{row['id']}", query=row["question"], label="harmful",
                   category=row["policy"], intent=row["question"])
            for row in rows
        ]
        return samples, {"files": [str(path)], "rows": len(rows), "missing_images": 0}
