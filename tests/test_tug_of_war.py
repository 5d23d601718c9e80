"""End to end on the tiny default with a micro config: the run folder, the pool, resume."""

import json
import shutil
from pathlib import Path

import pytest

from conftest import EXPECTED_PHASES, micro_args
from sectow.cli import main

POOL_FIELDS = {"hash", "seed_id", "category", "intent", "mode", "iteration", "form", "picture", "encoding",
               "picture_words", "words", "query", "attacker_output",
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


def phases_of(folder: Path) -> dict[str, dict]:
    return {m["phase"]: m for m in map(json.loads, (folder / "metrics.jsonl").read_text().splitlines())}


@pytest.mark.parametrize("bound", [0.0, 1.0])
def test_defender_monitor_keeps_a_passing_checkpoint_or_rolls_back(bound, tmp_path):
    """Checked at its start, every step (check_every 1) and at the end on the validation split; a bound of 0 for
    ORR leaves a defender that refuses any validation request no checkpoint to keep."""
    assert main(["run", *micro_args(tmp_path, "iterations=1", f"monitors.orr_bound={bound}", "monitors.check_every=1")]) == 0
    folder = (tmp_path / "latest").resolve()
    phase = phases_of(folder)["defender_grpo_1"]
    checks = phase["monitor"]
    assert [c["step"] for c in checks] == [0, 1, 2]  # the start, then every step of the two
    start = checks[0]["asr"]
    for c in checks[1:]:  # the rule, on the recorded figures
        assert c["passed"] is (c["orr"] <= bound and c["asr"] <= start)
    passing = [c["step"] for c in checks[1:] if c["passed"]]
    assert phase["kept_step"] == (passing[-1] if passing else None)
    assert phase["accepted"] is bool(passing)
    kept = "checkpoints/defender-1" if phase["accepted"] else "checkpoints/defender-cold_start"
    assert phase["defender"] == kept  # the decision is recorded as data ...
    assert (folder / "checkpoints" / "defender-1").exists() is phase["accepted"]
    assert phases_of(folder)["evaluate_iteration_1"]["defender"] == kept  # ... and the next phase used it
    assert json.loads((folder / "summary.json").read_text())["final_defender"] == kept
    assert phase["prompts"] == 2 * 4 and 0 <= phase["pool_open"] <= phase["pool_size"]
    assert 0 <= phase["frac_reward_zero_std"] <= 1


def test_resume_refuses_a_missing_checkpoint(micro_run: Path, tmp_path, capsys):
    copy = tmp_path / "run"
    shutil.copytree(micro_run, copy, symlinks=True)
    state = json.loads((copy / "state.json").read_text())
    state["completed"] = state["completed"][:EXPECTED_PHASES.index("pool_2")]  # killed in iteration 2
    (copy / "state.json").write_text(json.dumps(state))
    shutil.rmtree(copy / "checkpoints" / "attacker-1")  # always made (a defender phase may roll back)
    before = (copy / "metrics.jsonl").read_text()
    assert main(["run", "--resume", str(copy)]) == 2
    err = capsys.readouterr().err
    assert "attacker-1" in err and "cannot resume exactly" in err and len(err.strip().splitlines()) == 1
    assert not (copy / "checkpoints" / "attacker-1").exists() and (copy / "metrics.jsonl").read_text() == before


def test_phases_record_their_timings(micro_run: Path):
    for phase in phases_of(micro_run).values():
        timing = phase["timing"]
        assert timing["wall_s"] >= timing["trainer_s"] + timing["generation_s"] - 1e-3
        assert timing["other_s"] == pytest.approx(timing["wall_s"] - timing["trainer_s"] - timing["generation_s"], abs=2e-3)
    grpo = phases_of(micro_run)["attacker_grpo_1"]["timing"]
    assert grpo["trainer_s"] > 0 and grpo["generation_s"] > 0  # the frozen defender answers inside the steps
