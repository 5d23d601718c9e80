"""End to end on the tiny default with a micro config: the run folder, the pool, resume."""

import json
import shutil
from pathlib import Path

from conftest import EXPECTED_PHASES
from sectow.cli import main

POOL_FIELDS = {"hash", "seed_id", "category", "intent", "mode", "iteration", "form", "query", "attacker_output",
               "defender_reply", "verdict", "quality", "image"}


def test_run_folder_is_complete(micro_run: Path):
    state = json.loads((micro_run / "state.json").read_text())
    assert state["completed"] == EXPECTED_PHASES
    assert (micro_run / "config.yaml").is_file()
    for name in ("defender-cold_start", "attacker-cold_start", "attacker-1", "attacker-2"):
        assert (micro_run / "checkpoints" / name / "model.safetensors").is_file()
    metrics = [json.loads(line) for line in (micro_run / "metrics.jsonl").read_text().splitlines()]
    assert [m["phase"] for m in metrics] == EXPECTED_PHASES
    assert oct(micro_run.stat().st_mode & 0o777) == "0o700"
    assert (micro_run / "report" / "report.html").is_file()


def test_summary_schema(micro_run: Path):
    summary = json.loads((micro_run / "summary.json").read_text())
    assert set(summary["cold_start"]) >= {"asr", "orr", "accuracy"}
    assert [it["iteration"] for it in summary["iterations"]] == [1, 2]
    for it in summary["iterations"]:
        assert set(it) >= {"iteration", "asr", "orr", "accuracy", "attacker_success_rate", "pool_size"}
        for rate in (it["asr"], it["orr"], it["accuracy"], it["asr_unseen_form"]):
            assert 0 <= rate["value"] <= 1 and rate["n"] > 0
            low, high = rate["interval"]
            assert low <= rate["value"] <= high and high - low > 0  # never a zero-width interval
    assert summary["iterations"][1]["pool_size"] >= summary["iterations"][0]["pool_size"]


def test_pool_records(micro_run: Path):
    rows = [json.loads(line) for line in (micro_run / "pool" / "jailbreak_pool.jsonl").read_text().splitlines()]
    assert len({r["hash"] for r in rows}) == len(rows)
    for row in rows:
        assert set(row) >= POOL_FIELDS
        assert row["verdict"]["refused"] is False and row["mode"] in ("generate", "refine")
        assert (micro_run / "pool" / row["image"]).is_file()


def test_resume_redoes_only_unfinished_phases(micro_run: Path, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(micro_run, copy, symlinks=True)
    state = json.loads((copy / "state.json").read_text())
    state["completed"] = state["completed"][:EXPECTED_PHASES.index("pool_2")]  # killed inside pool_2
    (copy / "state.json").write_text(json.dumps(state))
    pool_before = (micro_run / "pool" / "jailbreak_pool.jsonl").read_text()
    assert main(["run", "--resume", str(copy)]) == 0
    assert json.loads((copy / "state.json").read_text())["completed"] == EXPECTED_PHASES
    assert (copy / "pool" / "jailbreak_pool.jsonl").read_text() == pool_before  # same seed: same records, once
    phases = [json.loads(line)["phase"] for line in (copy / "metrics.jsonl").read_text().splitlines()]
    assert phases == EXPECTED_PHASES
