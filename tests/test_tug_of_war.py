"""End to end on the tiny default with a micro config: the run folder, the pool, resume."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sectow.cli import main

EXPECTED_PHASES = ["cold_start_defender", "cold_start_attacker", "evaluate_cold_start",
                   "attacker_grpo_1", "pool_1", "defender_grpo_1", "evaluate_iteration_1",
                   "attacker_grpo_2", "pool_2", "defender_grpo_2", "evaluate_iteration_2"]
POOL_FIELDS = {"hash", "seed_id", "category", "intent", "mode", "iteration", "form", "query", "attacker_output",
               "defender_reply", "verdict", "quality", "image"}


@pytest.fixture(scope="module")
def micro_run(tmp_path_factory):
    from conftest import MICRO_OVERRIDES

    runs = tmp_path_factory.mktemp("runs")
    args = ["run"] + [a for o in MICRO_OVERRIDES + [f"output_dir={runs}"] for a in ("--set", o)]
    assert main(args) == 0
    return (runs / "latest").resolve()


def test_run_folder_is_complete(micro_run: Path):
    state = json.loads((micro_run / "state.json").read_text())
    assert state["completed"] == EXPECTED_PHASES
    assert (micro_run / "config.yaml").is_file()
    for name in ("defender-cold_start", "attacker-cold_start", "attacker-1", "attacker-2"):
        assert (micro_run / "checkpoints" / name / "model.safetensors").is_file()
    metrics = [json.loads(line) for line in (micro_run / "metrics.jsonl").read_text().splitlines()]
    assert [m["phase"] for m in metrics] == EXPECTED_PHASES
    assert oct(micro_run.stat().st_mode & 0o777) == "0o700"


def test_summary_schema(micro_run: Path):
    summary = json.loads((micro_run / "summary.json").read_text())
    assert set(summary["cold_start"]) >= {"asr", "orr", "accuracy"}
    assert [it["iteration"] for it in summary["iterations"]] == [1, 2]
    for it in summary["iterations"]:
        assert set(it) >= {"iteration", "asr", "orr", "accuracy", "attacker_success_rate", "pool_size"}
        assert 0 <= it["asr"] <= 1 and 0 <= it["orr"] <= 1
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


def test_killed_run_resumes(micro_overrides, tmp_path):
    """SIGKILL during the first GRPO phase, then --resume: the run completes."""
    args = [sys.executable, "-m", "sectow.cli", "run"] + [a for o in micro_overrides for a in ("--set", o)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    runs = tmp_path / "runs"
    deadline = time.time() + 300
    while time.time() < deadline:
        state = runs / "latest" / "state.json"
        if state.is_file() and "evaluate_cold_start" in state.read_text():
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    folder = (runs / "latest").resolve()
    assert main(["run", "--resume", str(folder)]) == 0
    assert json.loads((folder / "state.json").read_text())["completed"] == EXPECTED_PHASES
