"""Kill `sectow run` with SIGKILL at 14 points spread over every phase, resume after each, and check
the result equals an uninterrupted run with the same seed. The kills come from crash points
(SECTOW_CRASH_AT, sectow/faults.py), so each lands at a known place, every time."""

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import EXPECTED_PHASES, micro_args

SECRET = "sk-test-0123456789-do-not-write-me"

# (crash point#n-th pass in that process, the phase it interrupts). In schedule order: each resume
# starts at the first phase not recorded complete.
KILLS = [
    ("train_step#30", "cold_start_defender"),  # mid-training
    ("atomic_write#1", "cold_start_defender"),  # metrics line appended, state.json not yet renamed
    ("train_step#90", "cold_start_attacker"),  # the defender's 60 steps are redone first
    ("phase_saved#1", "cold_start_attacker"),  # checkpoint in place, phase not recorded
    ("evaluated#1", "evaluate_cold_start"),
    ("train_step#1", "attacker_grpo_1"),
    ("pool_generated#1", "pool_1"),  # attacker samples drawn, nothing filtered
    ("pool_image_saved#2", "pool_1"),  # filtering: some images written, no records
    ("pool_written#1", "pool_1"),  # records written, phase not recorded
    ("train_step#2", "defender_grpo_1"),
    ("orr_checked#1", "defender_grpo_1"),  # over-refusal monitor decided, checkpoint not saved
    ("evaluated#1", "evaluate_iteration_1"),
    ("phase_saved#1", "attacker_grpo_2"),
    ("report_images_written#1", "report"),
]


def pool_rows(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "pool" / "jailbreak_pool.jsonl").read_text().splitlines()]


def test_killed_everywhere_resumes_to_the_uninterrupted_result(micro_run: Path, tmp_path):
    runs = tmp_path / "runs"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OPENAI_API_KEY": SECRET, "HF_TOKEN": SECRET}
    fresh = ["run", *micro_args(runs)]
    interrupted = []
    for number, (point, phase) in enumerate(KILLS):
        args = fresh if number == 0 else ["run", "--resume", str((runs / "latest").resolve())]
        proc = subprocess.run([sys.executable, "-m", "sectow.cli", *args], env={**env, "SECTOW_CRASH_AT": point},
                              capture_output=True, text=True)
        assert proc.returncode == -9, f"{point} did not fire (rc {proc.returncode}):\n{proc.stderr[-2000:]}"
        state = runs / "latest" / "state.json"
        completed = json.loads(state.read_text())["completed"] if state.is_file() else []
        interrupted.append(next(p for p in EXPECTED_PHASES if p not in completed))
        assert interrupted[-1] == phase, f"{point} interrupted {interrupted[-1]}, expected {phase}"
    assert {p.rstrip("_12") for p in interrupted} >= {p.rstrip("_12") for p in EXPECTED_PHASES}  # every kind of phase
    folder = (runs / "latest").resolve()
    proc = subprocess.run([sys.executable, "-m", "sectow.cli", "run", "--resume", str(folder)], env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]

    assert json.loads((folder / "state.json").read_text())["completed"] == EXPECTED_PHASES
    phases = [json.loads(line)["phase"] for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert phases == EXPECTED_PHASES  # each phase logged once, however often it was redone
    rows = pool_rows(folder)
    assert len({r["hash"] for r in rows}) == len(rows)
    assert len(rows) == len(pool_rows(micro_run))
    assert {r["hash"] for r in rows} == {r["hash"] for r in pool_rows(micro_run)}  # same seed: the same records
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["iterations"] == json.loads((micro_run / "summary.json").read_text())["iterations"]
    assert not list(folder.rglob("*.tmp")), "a temporary file was left behind"
    # Secrets in the environment reach no file of the run folder.
    for path in folder.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
