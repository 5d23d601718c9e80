"""Kill `sectow run` with SIGKILL at 14 points spread over every phase, resume after each, and check
the result equals an uninterrupted run with the same seed. The kills come from crash points
(SECTOW_CRASH_AT, sectow/faults.py), so each lands at a known place, every time. A second test stops the run
at moments drawn from a seeded random generator, with SIGKILL, SIGTERM or Ctrl-C (SIGINT), under umask 000,
and checks the same result, the one line each interruption prints, and that every file is owner-only."""

import json
import os
import random
import signal
import subprocess
import sys
import time
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


# The random moments: seconds after the process said which folder it works in, and the signal. Seeded, so the
# same moments every time; the signals are fixed so that each kind is sent.
RANDOM_SEED = 20261201
SIGNALS = [signal.SIGKILL, signal.SIGINT, signal.SIGKILL, signal.SIGTERM, signal.SIGKILL, signal.SIGKILL]
EXIT_CODES = {signal.SIGKILL: -9, signal.SIGINT: 130, signal.SIGTERM: 143}


def as_a_user_starts_it() -> None:
    """In the child: umask 000 (sectow must make its files owner-only anyway), and Ctrl-C delivered as in a
    terminal (a background test runner may have inherited SIGINT ignored)."""
    os.umask(0)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def interrupt_after(args: list[str], env: dict, delay: float, signum: int) -> subprocess.CompletedProcess:
    """Run `sectow <args>`, send `signum` `delay` seconds after it printed its run folder; its result (it may
    also have finished first)."""
    proc = subprocess.Popen([sys.executable, "-m", "sectow.cli", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=as_a_user_starts_it)
    try:
        first = proc.stdout.readline()
        assert first.startswith("run folder: "), (first, proc.stderr.read()[-2000:] if proc.poll() else "")
        time.sleep(delay)
        if proc.poll() is None:
            proc.send_signal(signum)
        out, err = proc.communicate(timeout=600)
    finally:
        proc.kill()
    return subprocess.CompletedProcess(args, proc.returncode, first + out, err)


def test_interrupted_at_random_moments_resumes_to_the_uninterrupted_result(micro_run: Path, tmp_path):
    rng = random.Random(RANDOM_SEED)
    runs = tmp_path / "runs"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OPENAI_API_KEY": SECRET}
    interrupted = 0
    for number, signum in enumerate(SIGNALS):
        args = ["run", *micro_args(runs)] if number == 0 else ["run", "--resume", str((runs / "latest").resolve())]
        result = interrupt_after(args, env, rng.uniform(0.5, 20.0), signum)
        output = result.stdout + result.stderr
        assert "Traceback" not in output and "{'loss'" not in output, output[-3000:]
        if result.returncode == 0:
            break  # it finished before the signal came
        assert result.returncode == EXIT_CODES[signum], (signum, result.returncode, result.stderr[-2000:])
        interrupted += 1
        if signum != signal.SIGKILL:
            folder = (runs / "latest").resolve()
            said = [line for line in result.stderr.replace("\r", "\n").splitlines() if line.startswith("sectow: ")]
            assert said == [f"sectow: interrupted; resume with `sectow run --resume {folder}`"]
    assert interrupted >= 5
    folder = (runs / "latest").resolve()
    finish = subprocess.run([sys.executable, "-m", "sectow.cli", "run", "--resume", str(folder)], env=env,
                            capture_output=True, text=True, preexec_fn=as_a_user_starts_it)
    assert finish.returncode == 0, finish.stderr[-2000:]

    assert json.loads((folder / "state.json").read_text())["completed"] == EXPECTED_PHASES
    phases = [json.loads(line)["phase"] for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert phases == EXPECTED_PHASES
    assert [r["hash"] for r in pool_rows(folder)] == [r["hash"] for r in pool_rows(micro_run)]
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["iterations"] == json.loads((micro_run / "summary.json").read_text())["iterations"]
    assert not list(folder.rglob("*.tmp")), "a temporary file was left behind"
    # Owner-only under umask 000: every folder 0700, every file 0600, in the run folder and where it was made.
    for path in [runs, *runs.rglob("*")]:
        if path.is_symlink():
            continue
        assert oct(path.stat().st_mode & 0o777) == ("0o700" if path.is_dir() else "0o600"), path
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
