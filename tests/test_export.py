"""`sectow export`: a run's jailbreak pool, and an attack folder's successful attacks, as a datasets dataset
on disk and as parquet with an Image feature, read back with `load_from_disk` and `load_dataset("parquet")`;
provenance on every row, replies only when asked, a dataset card, owner-only files, and bad input as one
line with nothing left behind."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from datasets import load_dataset, load_from_disk
from openai_server import ModelServer
from PIL import Image

from sectow import __version__
from sectow.cli import main
from sectow.export import PARQUET


def pool_of(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "pool" / "jailbreak_pool.jsonl").read_text().splitlines()]


def parquet(out: Path, tmp_path: Path):
    return load_dataset("parquet", data_files=str(out / "data" / "*.parquet"), cache_dir=str(tmp_path / "hf-cache"))["train"]


@pytest.fixture(scope="module")
def exported(micro_run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("exports") / "pool"
    assert main(["export", str(micro_run), str(out)]) == 0
    return out


def test_the_pool_round_trips_through_disk_and_parquet(micro_run, exported, tmp_path):
    pool = pool_of(micro_run)
    on_disk, from_parquet = load_from_disk(str(exported / "dataset")), parquet(exported, tmp_path)
    assert on_disk.num_rows == from_parquet.num_rows == len(pool) > 0
    assert on_disk.features == from_parquet.features
    assert type(on_disk.features["image"]).__name__ == "Image" and "defender_reply" not in on_disk.column_names
    by_id = {r["hash"]: r for r in pool}
    config_hash = hashlib.sha256((micro_run / "config.yaml").read_bytes()).hexdigest()[:16]
    metrics = {m["phase"]: m for m in map(json.loads, (micro_run / "metrics.jsonl").read_text().splitlines())}
    for row in from_parquet:
        record = by_id[row["id"]]
        assert (row["query"], row["seed_id"], row["category"], row["strategy"], row["iteration"], row["mode"]) == \
               (record["query"], record["seed_id"], record["category"], record["form"], record["iteration"], record["mode"])
        assert row["verdict_unsafe"] == record["verdict"]["unsafe"] and row["judge"] == record["verdict"]["judge"]
        assert row["intent_similarity"] == pytest.approx(record["quality"]["intent_similarity"], abs=1e-6)
        assert row["pool_similarity"] == pytest.approx(record["quality"]["pool_similarity"], abs=1e-6)
        assert (row["run_name"], row["config_hash"], row["sectow_version"], row["source"]) == \
               (micro_run.name, config_hash, __version__, "run")
        k = record["iteration"]
        assert row["attacker"] == f"checkpoints/attacker-{k}"
        assert row["defender"] == (metrics["evaluate_cold_start"]["defender"] if k == 1
                                   else metrics[f"defender_grpo_{k - 1}"]["defender"])
        with Image.open(micro_run / "pool" / record["image"]) as original:
            assert np.array_equal(np.asarray(row["image"].convert("RGB")), np.asarray(original.convert("RGB")))
    assert on_disk[0]["id"] in by_id and on_disk[0]["image"].size == row["image"].size


def test_the_card_and_the_files(exported):
    card = (exported / "README.md").read_text()
    assert card.startswith("---\n") and "path: data/train-00000-of-00001.parquet" in card
    for text in ("What it is", "How it was made", "Handle it with care", "treat them like", "left out",
                 "load_from_disk", "placeholder"):
        assert text in card
    from huggingface_hub import DatasetCard
    data = DatasetCard.load(exported / "README.md").data  # written with, and read back by, the Hub's card classes
    assert data.configs == [{"config_name": "default", "data_files": [{"split": "train", "path": PARQUET}]}]
    assert "jailbreak" in data.tags and data.sectow["settings"] == "config.yaml"
    for path in [exported, *exported.rglob("*")]:
        assert path.stat().st_mode & 0o777 == (0o700 if path.is_dir() else 0o600), path
    assert not list(exported.parent.glob(".pool-*"))  # the staging folder was renamed into place


def test_the_runs_final_defender_carries_its_model_card(micro_run):
    from huggingface_hub import ModelCard
    final = json.loads((micro_run / "summary.json").read_text())["final_defender"]
    card = ModelCard.load(micro_run / final / "README.md")
    assert card.data.sectow["run"] == micro_run.name and card.data.sectow["refusal_markers"] == "arditi"
    assert "Held-out evaluation per iteration" in card.text and "iteration 1" in card.text


def test_iterations_and_replies(micro_run, tmp_path):
    out = tmp_path / "second"
    assert main(["export", str(micro_run), str(out), "--iterations", "2", "--with-replies"]) == 0
    rows = load_from_disk(str(out / "dataset"))
    expected = {r["hash"]: r for r in pool_of(micro_run) if r["iteration"] == 2}
    assert set(rows["iteration"]) == {2} and len(rows) == len(expected)
    assert all(row["defender_reply"] == expected[row["id"]]["defender_reply"] for row in rows)
    assert "Defender replies are included" in (out / "README.md").read_text()


def test_an_attack_folder_exports_its_successes(micro_run, tmp_path):
    server = ModelServer()  # answers every query with the placeholder compliance: every sent attempt succeeds
    try:
        attack = tmp_path / "attack"
        assert main(["attack", "--attacker", str(micro_run / "checkpoints" / "attacker-2"), "--target-url", server.url,
                     "--target-model", "placeholder", "--out", str(attack), "--limit", "4", "--baselines"]) == 0
    finally:
        server.close()
    attempts = [json.loads(line) for line in (attack / "attempts.jsonl").read_text().splitlines()]
    successes = {r["id"]: r for r in attempts if r["verdict"] and r["verdict"]["unsafe"]}
    out = tmp_path / "export"
    assert main(["export", str(attack), str(out)]) == 0
    rows = parquet(out, tmp_path)
    assert len(rows) == len(successes) > 0 and set(rows["id"]) == set(successes)
    for row in rows:
        record = successes[row["id"]]
        assert (row["source"], row["round"], row["iteration"], row["defender"]) == ("attack", 1, None, "placeholder")
        assert row["attacker"] == (record["attacker"] or "plain seed") and row["query"] == record["query"]
        assert (row["image"] is None) == (record["image"] is None)
    assert "successful attacks of a sectow attack on placeholder" in (out / "README.md").read_text()


@pytest.mark.parametrize("case, message", [
    ("not a folder", "no such folder"), ("not a sectow folder", "not a sectow run or attack folder"),
    ("output not empty", "exists and is not an empty folder"), ("bad iterations", "expected numbers"),
    ("no such iteration", "nothing to export for iterations 9"),
])
def test_bad_input_is_one_line_and_nothing_written(micro_run, tmp_path, capsys, case, message):
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("")
    source, out, extra = {"not a folder": (tmp_path / "none", tmp_path / "o", []),
                          "not a sectow folder": (full, tmp_path / "o", []),
                          "output not empty": (micro_run, full, []),
                          "bad iterations": (micro_run, tmp_path / "o", ["--iterations", "one"]),
                          "no such iteration": (micro_run, tmp_path / "o", ["--iterations", "9"])}[case]
    before = sorted(p.name for p in tmp_path.iterdir())
    capsys.readouterr()
    assert main(["export", str(source), str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before
