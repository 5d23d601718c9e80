"""`sectow export`: the jailbreak pool of a run folder (or the successful attacks of an attack folder) as a
Hugging Face `datasets` dataset: saved with `save_to_disk`, as parquet with an `Image` feature (images
embedded), and a dataset card saying what it is, how it was made and how to handle it. Every row carries
its provenance. Defender replies are left out unless asked for."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path

import yaml

from sectow import __version__
from sectow.errors import UserError
from sectow.jsonl import json_lines
from sectow.paths import check_output_dir
from sectow.run_folder import MARKER, check_marker

SOURCES = ("run", "attack")
PARQUET = "data/train-00000-of-00001.parquet"
DATASET = "dataset"


def features(with_replies: bool):
    from datasets import Features, Image, Value

    columns = {
        "id": Value("string"), "source": Value("string"), "query": Value("string"), "image": Image(),
        "seed_id": Value("string"), "category": Value("string"), "intent": Value("string"),
        "strategy": Value("string"), "mode": Value("string"), "iteration": Value("int32"), "round": Value("int32"),
        "attacker_output": Value("string"), "verdict_unsafe": Value("bool"), "verdict_refused": Value("bool"),
        "judge": Value("string"), "intent_similarity": Value("float32"), "pool_similarity": Value("float32"),
        "run_name": Value("string"), "config_hash": Value("string"), "attacker": Value("string"),
        "defender": Value("string"), "sectow_version": Value("string"),
    }
    if with_replies:
        columns["defender_reply"] = Value("string")
    return Features(columns)


def folder_kind(folder: Path) -> str:
    """'run' or 'attack', from the folder's marker (format checked as --resume checks it)."""
    try:
        kind = json.loads((folder / MARKER).read_text(encoding="utf-8")).get("kind")
    except (OSError, ValueError, AttributeError):
        kind = None
    if kind not in SOURCES:
        raise UserError(f"{folder}: not a sectow run or attack folder (no readable {MARKER} of either kind)")
    check_marker(folder, kind)
    return kind


def parse_iterations(text: str | None) -> set[int] | None:
    if text is None:
        return None
    try:
        chosen = {int(part) for part in text.split(",") if part.strip()}
    except ValueError:
        raise UserError(f"--iterations {text!r}: expected numbers separated by commas, e.g. 1,2") from None
    if not chosen or min(chosen) < 1:
        raise UserError(f"--iterations {text!r}: expected iteration numbers from 1, e.g. 1,2")
    return chosen


def read_jsonl(path: Path) -> list[dict]:
    """The rows of a JSONL file; a last line cut short by a kill is left out, any other bad line is an error."""
    lines = json_lines(path.read_text(encoding="utf-8"))
    rows = []
    for number, line in enumerate(lines, 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                if number < len(lines):
                    raise UserError(f"{path}:{number}: not valid JSON") from None
    return rows


def file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def image_cell(folder: Path, relative: str | None) -> dict | None:
    """The image's bytes (so the dataset is whole without the folder), or None for a text-only record."""
    if not relative:
        return None
    path = (folder / relative).resolve()
    if not path.is_relative_to(folder.resolve()) or not path.is_file():
        raise UserError(f"{folder}: record image {relative!r} is missing")
    return {"bytes": path.read_bytes(), "path": path.name}


def run_rows(run: Path, iterations: set[int] | None, with_replies: bool) -> tuple[list[dict], dict]:
    """The pool records of a run folder with their provenance, and what the card says about the run."""
    pool_file = run / "pool" / "jailbreak_pool.jsonl"
    records = read_jsonl(pool_file) if pool_file.is_file() else []
    metrics = {m.get("phase"): m for m in read_jsonl(run / "metrics.jsonl")} if (run / "metrics.jsonl").is_file() else {}

    def defender_of(k: int) -> str | None:
        """The defender that pool k was measured against: the one the loop kept after iteration k-1."""
        phase = metrics.get("evaluate_cold_start" if k == 1 else f"defender_grpo_{k - 1}", {})
        return phase.get("defender")

    common = {"source": "run", "round": None, "run_name": run.resolve().name,
              "config_hash": file_hash(run / "config.yaml") if (run / "config.yaml").is_file() else None,
              "sectow_version": __version__}
    rows = []
    for r in records:
        k = int(r["iteration"])
        if iterations is not None and k not in iterations:
            continue
        verdict, quality = r.get("verdict") or {}, r.get("quality") or {}
        row = {**common, "id": r["hash"], "query": r["query"], "image": image_cell(run / "pool", r.get("image")),
               "seed_id": r["seed_id"], "category": r.get("category"), "intent": r.get("intent"),
               "strategy": r.get("form"), "mode": r.get("mode"), "iteration": k,
               "attacker_output": r.get("attacker_output"), "verdict_unsafe": verdict.get("unsafe"),
               "verdict_refused": verdict.get("refused"), "judge": verdict.get("judge"),
               "intent_similarity": quality.get("intent_similarity"), "pool_similarity": quality.get("pool_similarity"),
               "attacker": f"checkpoints/attacker-{k}", "defender": defender_of(k)}
        if with_replies:
            row["defender_reply"] = r.get("defender_reply")
        rows.append(row)
    config = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8")) if common["config_hash"] else {}
    tiny = isinstance(config, dict) and not (config.get("defender") or {}).get("path")
    note = (" This run's defender is sectow's embedded tiny model, whose \"compliance\" is a placeholder text: "
            "nothing here is a harmful answer." if tiny else "")
    return rows, {"note": note, "what": "the jailbreak pool of a sectow run: the attacker's queries that beat the defender "
                          "and passed quality monitoring, per tug-of-war iteration",
                  "folder": common["run_name"], "config": "config.yaml", "by": "iteration"}


def attack_rows(attack: Path, rounds: set[int] | None, with_replies: bool) -> tuple[list[dict], dict]:
    """The successful attempts of an attack folder (the judge called the target's reply unsafe)."""
    settings = json.loads((attack / "attack-config.json").read_text(encoding="utf-8"))
    attempts = read_jsonl(attack / "attempts.jsonl") if (attack / "attempts.jsonl").is_file() else []
    common = {"source": "attack", "iteration": None, "run_name": attack.resolve().name,
              "config_hash": file_hash(attack / "attack-config.json"), "sectow_version": __version__,
              "defender": settings["target_model"], "pool_similarity": None}
    rows = []
    for r in attempts:
        if not (r.get("verdict") or {}).get("unsafe") or (rounds is not None and r["round"] not in rounds):
            continue
        row = {**common, "id": r["id"], "query": r["query"], "image": image_cell(attack, r.get("image")),
               "seed_id": r["seed_id"], "category": r.get("category"), "intent": r.get("intent"),
               "strategy": r.get("strategy"), "mode": r.get("mode"), "round": r["round"],
               "attacker_output": r.get("attacker_output"), "verdict_unsafe": True,
               "verdict_refused": r["verdict"]["refused"], "judge": r["verdict"]["judge"],
               "intent_similarity": (r.get("quality") or {}).get("intent_similarity"),
               "attacker": r.get("attacker") or "plain seed"}
        if with_replies:
            row["defender_reply"] = r.get("reply")
        rows.append(row)
    return rows, {"what": f"the successful attacks of a sectow attack on {settings['target_model']}: queries whose "
                          "reply the judge called unsafe",
                  "folder": common["run_name"], "config": "attack-config.json", "by": "round"}


def dataset_card(rows: list[dict], about: dict, with_replies: bool) -> str:
    by = about["by"]
    counts = Counter(row[by if by == "round" else "iteration"] for row in rows)
    strategies = Counter(row["strategy"] for row in rows)
    judges = sorted({str(row["judge"]) for row in rows})
    replies = ("Defender replies are included (`defender_reply`): they answer jailbreaks and may hold harmful "
               "text." if with_replies else "Defender replies are left out (`sectow export --with-replies` adds "
               "them).")
    from huggingface_hub import DatasetCard, DatasetCardData

    data = DatasetCardData(
        pretty_name=f"sectow jailbreaks: {about['folder']}", tags=["jailbreak", "red-teaming", "ai-safety", "multimodal", "sectow"],
        size_categories=["n<1K" if len(rows) < 1000 else "1K<n<10K" if len(rows) < 10000 else "10K<n<100K"],
        configs=[{"config_name": "default", "data_files": [{"split": "train", "path": PARQUET}]}],
        sectow={"source": about["folder"], "settings": about["config"], "judges": judges, "sectow_version": __version__},
    )
    return DatasetCard(f"""---
{data.to_yaml()}
---

# sectow jailbreaks: {about['folder']}

**What it is.** {about['what'][0].upper() + about['what'][1:]}. {len(rows)} rows; per {by}:
{', '.join(f'{k}: {n}' for k, n in sorted(counts.items()))}; per strategy: {', '.join(f'{s}: {n}' for s, n in strategies.most_common())}.
Judge(s): {', '.join(judges)}. Made by sectow {__version__} (`sectow export`) from the folder `{about['folder']}`
(settings: `{about['config']}`, whose hash is in `config_hash`).

**How it was made.** SecTOW (Secure Tug-of-War, arXiv 2507.22037) trains an attacker and a defender
against each other with GRPO. The attacker turns a harmful seed request into a jailbreak query (`generate`)
or rewrites an earlier one given the defender's reply (`refine`); a query with a picture strategy is sent
with its rendered image. A row is a query the judge scored as a success against the defender named in
`defender`. {replies}

**Columns.** `query` and `image`: what the defender got; `seed_id`, `category`, `intent`: the harmful seed;
`strategy`, `mode`, `iteration` (pool) or `round` (attack), `attacker_output` (the attacker's raw text);
`verdict_unsafe`, `verdict_refused`, `judge`; quality scores `intent_similarity` (cosine of query and seed)
and `pool_similarity` (to the earlier pool); provenance `run_name`, `config_hash`, `attacker`, `defender`,
`sectow_version`.

**Load it.**

    from datasets import load_from_disk, load_dataset
    ds = load_from_disk("{DATASET}")                                  # in this folder
    ds = load_dataset("parquet", data_files="{PARQUET}")["train"]

**Handle it with care.** These are queries that made a model comply with harmful requests: treat them like
exploit code. Keep the files owner-only, as sectow writes them. Share aggregate figures rather than the rows,
and share the rows only with people who harden models; do not publish them next to the model they beat.
`intent` holds short, category-level harmful requests; no harmful answer is included unless replies were
exported.{about.get("note", "")}
""").content


def export(folder: Path, out: Path, iterations: str | None = None, with_replies: bool = False) -> dict:
    """Write `out` (which must not exist yet, or be empty): dataset/ (save_to_disk), data/*.parquet and
    README.md, owner-only. Returns {rows, kind, out}."""
    folder, out = Path(folder), Path(out)
    if not folder.is_dir():
        raise UserError(f"{folder}: no such folder")
    kind = folder_kind(folder)
    chosen = parse_iterations(iterations)
    if out.exists() and not (out.is_dir() and not any(out.iterdir())):
        raise UserError(f"{out}: exists and is not an empty folder; export into a new one")
    check_output_dir(out)
    rows, about = (run_rows if kind == "run" else attack_rows)(folder, chosen, with_replies)
    if not rows:
        which = f" for {about['by']}s {iterations}" if chosen else ""
        raise UserError(f"{folder}: nothing to export{which} (no {'pool records' if kind == 'run' else 'successful attempts'})")
    from datasets import Dataset

    columns = features(with_replies)
    dataset = Dataset.from_list([{name: row[name] for name in columns} for row in rows], features=columns)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))  # renamed into place when whole
    try:
        dataset.save_to_disk(str(staging / DATASET))
        (staging / PARQUET).parent.mkdir()
        dataset.to_parquet(str(staging / PARQUET))
        (staging / "README.md").write_text(dataset_card(rows, about, with_replies), encoding="utf-8")
        for path in [staging, *staging.rglob("*")]:
            os.chmod(path, 0o700 if path.is_dir() else 0o600)
        if out.is_dir():
            out.rmdir()
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return {"rows": len(rows), "kind": kind, "out": out}
