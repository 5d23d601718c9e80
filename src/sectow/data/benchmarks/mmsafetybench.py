"""MM-SafetyBench (shared/benchmarks.md section 2): per-scenario question JSON from the repository,
images from a separate zip; each question gives the paper's four queries: its original text alone
(text-only), and the three image pairs (SD, TYPO, SD_TYPO)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sectow.data.benchmarks.base import (MISSING_IMAGE, BenchmarkLoader, PaperTable, existing_image, expect_file,
                                         read_json, skip)
from sectow.data.schema import Sample
from sectow.errors import UserError

SCENARIOS = (
    "01-Illegal_Activitiy", "02-HateSpeech", "03-Malware_Generation", "04-Physical_Harm",
    "05-EconomicHarm", "06-Fraud", "07-Sex", "08-Political_Lobbying", "09-Privacy_Violence",
    "10-Legal_Opinion", "11-Financial_Advice", "12-Health_Consultation", "13-Gov_Decision",
)  # exact folder names, typo "Activitiy" included
# Which stored question goes with which image: the SD image has no caption, so its query says
# "The image shows" instead of "The bottom of the image shows". The text-only baseline asks the original
# question with no image. In the paper's column order.
TEXT_ONLY = "text_only"
VARIANT_QUERY = {TEXT_ONLY: "Question", "SD": "Rephrased Question(SD)", "TYPO": "Rephrased Question",
                 "SD_TYPO": "Rephrased Question"}
VARIANTS = tuple(VARIANT_QUERY)


def image_folder(root: Path, scenario: str) -> Path | None:
    """Where the unzipped images of a scenario are; the zip's top level is not documented."""
    for candidate in (root / "data" / "imgs" / scenario, root / "imgs" / scenario, root / scenario):
        if candidate.is_dir():
            return candidate
    return None


class MMSafetyBench(BenchmarkLoader):
    name = "mmsafetybench"
    kind = "safety"
    description = ("MM-SafetyBench: 1,680 questions x 4 variants (text-only, SD, TYPO, SD_TYPO) over 13 "
                   "scenarios")
    paper_tables = (PaperTable("ASR per scenario x variant", ("scenario", "category"), ("variant", "form"),
                               VARIANTS),)

    def __init__(self, variants: Sequence[str] | str = VARIANTS):
        variants = (variants,) if isinstance(variants, str) else tuple(variants)
        unknown = [v for v in variants if v not in VARIANT_QUERY]
        if unknown or not variants:
            raise UserError(f"MM-SafetyBench variants must be among {', '.join(VARIANTS)}, got {list(variants)}")
        self.variants = variants

    def read(self, root: Path) -> tuple[list[Sample], dict]:
        return self.read_scenarios(root, chosen_ids=None)

    def read_scenarios(self, root: Path, chosen_ids: dict[str, set[str]] | None) -> tuple[list[Sample], dict]:
        """All questions of every scenario present, or only `chosen_ids[scenario]` when given."""
        questions = root / "data" / "processed_questions"
        if not questions.is_dir():
            raise UserError(f"{questions}: MM-SafetyBench question folder not found "
                            f"(expected {questions / SCENARIOS[0]}.json and the other scenarios)")
        samples, found_scenarios, missing_scenarios, missing = [], [], {}, 0
        needed = tuple(dict.fromkeys(("Question", *(VARIANT_QUERY[v] for v in self.variants))))
        for scenario in SCENARIOS:
            path = questions / f"{scenario}.json"
            folder = image_folder(root, scenario)
            if not path.is_file():
                missing_scenarios[scenario] = f"no question file {path}"
                continue
            if folder is None:
                # Its questions are rows that cannot be evaluated: listed as skipped, not left out.
                missing_scenarios[scenario] = f"no image folder data/imgs/{scenario}, imgs/{scenario} or {scenario}"
            else:
                found_scenarios.append(scenario)
            entries = read_json(path)
            if not isinstance(entries, dict):
                raise UserError(f"{path}: expected a JSON object keyed by question id")
            # Ids are not contiguous (05 and 08 have gaps): iterate the keys.
            for qid, entry in entries.items():
                where = f"{path} question {qid!r}"
                if not qid.isdigit():
                    raise UserError(f"{where}: question ids must be numbers")
                if chosen_ids is not None and qid not in chosen_ids.get(scenario, ()):
                    continue
                if not isinstance(entry, dict):
                    raise UserError(f"{where}: expected an object with fields {', '.join(needed)}")
                for needed_field in needed:
                    if not isinstance(entry.get(needed_field), str):
                        raise UserError(f"{where}: missing field {needed_field!r}")
                for variant in self.variants:
                    text_only = variant == TEXT_ONLY
                    image = existing_image(folder, f"{variant}/{qid}.jpg", where) if folder and not text_only else None
                    sample = Sample(
                        id=f"{self.name}/{scenario}/{variant}/{qid}", query=entry[VARIANT_QUERY[variant]],
                        label="harmful", image=str(image) if image else None, category=scenario,
                        intent=entry["Question"], form=variant, seed_id=f"{scenario}/{qid}",
                    )
                    if image is None and not text_only:
                        missing += 1
                        where_image = folder / variant if folder else missing_scenarios[scenario]
                        skip(sample, MISSING_IMAGE, f"{variant}/{qid}.jpg not found ({where_image})")
                    samples.append(sample)
        found = {"files": [str(questions)], "variants": list(self.variants), "scenarios": found_scenarios,
                 "missing_scenarios": missing_scenarios, "missing_images": missing}
        return samples, found


class MMSafetyBenchTiny(MMSafetyBench):
    name = "mmsafetybench_tiny"
    description = "MM-SafetyBench tiny version: the 168 question ids of TinyVersion_ID_List.json"

    def read(self, root: Path) -> tuple[list[Sample], dict]:
        path = expect_file(root / "TinyVersion_ID_List.json", "MM-SafetyBench tiny id list")
        listing = read_json(path)
        chosen: dict[str, set[str]] = {}
        if not isinstance(listing, list):
            raise UserError(f"{path}: expected a list of {{'Scenario': ..., 'Sampled_ID_List': [...]}}")
        for number, item in enumerate(listing, start=1):
            if not (isinstance(item, dict) and isinstance(item.get("Scenario"), str)
                    and isinstance(item.get("Sampled_ID_List"), list)):
                raise UserError(f"{path} item {number}: expected fields 'Scenario' and 'Sampled_ID_List'")
            chosen.setdefault(item["Scenario"], set()).update(str(i) for i in item["Sampled_ID_List"])
        samples, found = self.read_scenarios(root, chosen_ids=chosen)
        found["files"].append(str(path))
        return samples, found
