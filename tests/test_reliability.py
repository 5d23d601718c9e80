"""What a run folder guarantees beyond a single run: one process at a time on a folder (a second resume is
refused, naming the first), race-free folder creation, a resume that is exact or refused (a config edited
since the run began is refused; `iterations` may grow and the report is rendered again), SIGTERM ending in one
line that says how to resume, strict config types, secrets kept out of the judge cache, the one readable
line per phase with TRL's dictionaries in train.log, and help written for users."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydantic import BaseModel
from pydantic.types import Strict

from conftest import EXPECTED_PHASES
from sectow.cli import main
from sectow.config import RunConfig, Section, load_config, resume_change
from sectow.paths import LOCK
from sectow.run_folder import new_run_folder  # imported once here: the forked workers below inherit it

SECTOW = [sys.executable, "-m", "sectow.cli"]


def sections(model: type[BaseModel] = RunConfig) -> set[type[BaseModel]]:
    found = {model}
    for field in model.model_fields.values():
        for kind in getattr(field.annotation, "__args__", (field.annotation,)):
            if isinstance(kind, type) and issubclass(kind, Section) and kind not in found:
                found |= sections(kind)
    return found


def test_every_integer_and_boolean_key_is_strict():
    """A new key gets strict types too: `iterations: "3"` or `cold_start: 1` would otherwise be read as 3 and true."""
    lax = [f"{section.__name__}.{name}" for section in sections() for name, field in section.model_fields.items()
           if field.annotation in (int, bool) and not any(isinstance(m, Strict) for m in field.metadata)]
    assert not lax


def test_only_a_growing_iteration_count_may_change_on_resume():
    before = load_config(None, ["iterations=2"]).model_dump(mode="json")
    assert resume_change(before, load_config(None, ["iterations=3"])) is None
    assert resume_change(before, load_config(None, ["iterations=2", "name=other", "output_dir=elsewhere"])) is None
    assert "iterations may only grow" in resume_change(before, load_config(None, ["iterations=1"]))
    assert resume_change(before, load_config(None, ["iterations=2", "pool.temperature=0.5"])).startswith(
        "'pool.temperature' changed since the run began (1.0 -> 0.5)")
    assert "'judge.kind' changed" in resume_change(before, load_config(None, ["iterations=2", "judge={kind: all, "
                                                                                           "parts: [{kind: refusal}]}"]))


def _make_folders(output_dir: Path, barrier, results) -> None:
    barrier.wait()
    try:
        results.put(str(new_run_folder(output_dir, "race")))
    except BaseException as err:  # noqa: BLE001 - any failure is what the test looks for
        results.put(f"ERROR {err!r}")


def test_concurrent_starts_get_their_own_folders(tmp_path):
    """Six processes making run folders in one output folder at the same instant, 15 times: no error, every
    folder distinct and marked, `latest` a link to one of them."""
    context = multiprocessing.get_context("fork")
    made = []
    for _ in range(15):
        barrier, results = context.Barrier(6), context.Queue()
        workers = [context.Process(target=_make_folders, args=(tmp_path, barrier, results)) for _ in range(6)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(60)
        made += [results.get(timeout=10) for _ in workers]
    assert not [m for m in made if m.startswith("ERROR")], made
    assert len(set(made)) == len(made) == 90
    assert all((Path(m) / "sectow-folder.json").is_file() for m in made)
    assert (tmp_path / "latest").is_symlink() and str((tmp_path / "latest").resolve()) in made
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".latest")]


def wait_for_lock_holder(folder: Path, proc: subprocess.Popen, timeout: float = 300) -> None:
    """Until `proc` has accepted `folder` and noted itself as the lock's holder."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if (folder / LOCK).is_file() and (folder / LOCK).read_text().strip() == str(proc.pid):
            return
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        time.sleep(0.2)
    raise AssertionError("the first resume never took the lock")


def test_a_second_resume_is_refused_and_sigterm_leaves_the_run_resumable(micro_run: Path, tmp_path):
    """Two resumes of one folder at once: the second is refused in one line naming the first's pid. SIGTERM
    then stops the first with one line and exit 143, and a third resume finishes the run as an uninterrupted
    one would have."""
    copy = tmp_path / "run"
    shutil.copytree(micro_run, copy, symlinks=True)
    state = json.loads((copy / "state.json").read_text())
    state["completed"] = state["completed"][:EXPECTED_PHASES.index("attacker_grpo_2")]
    (copy / "state.json").write_text(json.dumps(state))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    first = subprocess.Popen([*SECTOW, "run", "--resume", str(copy)], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        wait_for_lock_holder(copy, first)
        first.send_signal(signal.SIGSTOP)  # it holds the folder, and cannot finish while the second tries
        second = subprocess.run([*SECTOW, "run", "--resume", str(copy)], env=env, capture_output=True, text=True,
                                timeout=300)
        first.send_signal(signal.SIGCONT)
        assert second.returncode == 2
        assert second.stderr.splitlines() == [f"sectow: error: {copy}: in use by another sectow process (pid "
                                              f"{first.pid}); wait for it to end, or stop it first"]
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=300)
    finally:
        first.kill()
    assert first.returncode == 143, err[-2000:]
    said = [line for line in err.replace("\r", "\n").splitlines() if line.startswith("sectow: ")]
    assert said == [f"sectow: interrupted; resume with `sectow run --resume {copy}`"]
    assert "Traceback" not in err
    assert main(["run", "--resume", str(copy)]) == 0
    assert json.loads((copy / "state.json").read_text())["completed"] == EXPECTED_PHASES
    assert (copy / "summary.json").read_text() == (micro_run / "summary.json").read_text()
    assert (copy / "pool" / "jailbreak_pool.jsonl").read_text() == (micro_run / "pool" / "jailbreak_pool.jsonl").read_text()


def test_more_iterations_continue_the_run_and_render_the_report_again(micro_run: Path, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(micro_run, copy, symlinks=True)
    config = copy / "config.yaml"
    config.write_text(config.read_text().replace("iterations: 2", "iterations: 3"))
    assert main(["run", "--resume", str(copy)]) == 0
    metrics = [json.loads(line) for line in (copy / "metrics.jsonl").read_text().splitlines()]
    phases = [m["phase"] for m in metrics]
    assert phases == EXPECTED_PHASES[:-1] + ["attacker_grpo_3", "pool_3", "defender_grpo_3", "evaluate_iteration_3",
                                             "report"]
    assert metrics[-1]["phase_key"] == 3  # the report of three iterations, once
    assert [it["iteration"] for it in json.loads((copy / "summary.json").read_text())["iterations"]] == [1, 2, 3]
    assert "iteration 3" in (copy / "report" / "report.md").read_text()
    assert json.loads((copy / "state.json").read_text())["config"]["iterations"] == 3


def test_fewer_iterations_are_refused(micro_run: Path, tmp_path, capsys):
    copy = tmp_path / "run"
    shutil.copytree(micro_run, copy, symlinks=True)
    (copy / "config.yaml").write_text((copy / "config.yaml").read_text().replace("iterations: 2", "iterations: 1"))
    before = (copy / "metrics.jsonl").read_text()
    assert main(["run", "--resume", str(copy)]) == 2
    assert "'iterations' changed since the run began (2 -> 1); iterations may only grow" in capsys.readouterr().err
    assert (copy / "metrics.jsonl").read_text() == before


def test_each_phase_ends_with_one_readable_line_and_trl_logs_go_to_train_log(micro_run: Path):
    lines = (micro_run / "train.log").read_text().splitlines()
    logged = {line.split()[2] for line in lines}
    assert logged == {"cold_start_defender", "cold_start_attacker", "attacker_grpo_1", "defender_grpo_1",
                      "attacker_grpo_2", "defender_grpo_2"}
    assert all(json.loads(line.split(" ", 3)[3])["step"] >= 0 for line in lines)
    assert any("loss" in json.loads(line.split(" ", 3)[3]) for line in lines)
    assert oct((micro_run / "train.log").stat().st_mode & 0o777) == "0o600"


def test_phase_headlines():
    from sectow.run_folder import headline

    assert headline("cold_start_defender", {"rows": 760, "steps": 60, "timing": {"wall_s": 10.77}}) == \
        "cold_start_defender: fine-tuned 60 steps on 760 rows (10.8 s)"
    assert headline("pool_1", {"candidates": 360, "outcomes": {"success": 199}, "pool_size": 199,
                               "timing": {"wall_s": 9}}) == \
        "pool_1: 199 of 360 attacker queries entered the pool (now 199) (9.0 s)"
    evaluated = {"asr": {"value": 0.4917}, "orr": {"value": 0.0}, "accuracy": {"value": 1.0}, "timing": {"wall_s": 2}}
    assert headline("evaluate_cold_start", evaluated) == \
        "evaluate_cold_start: ASR 0.492, ORR 0.000, accuracy 1.000 (2.0 s)"


def test_an_echoed_api_key_is_redacted_from_the_judge_cache(tmp_path, monkeypatch):
    """A judge server that echoes the Authorization header into its reply: the verdict stands, the key is
    written nowhere."""
    from test_judges import PAIRS, FakeServer, http_judge

    key = "sk-sectow-echo-7d2e9b14"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    server = FakeServer()
    try:
        server.answer = lambda prompt: f"safe\nyou sent Authorization: Bearer {key}"
        judge = http_judge(server, cache_path=tmp_path / "judge-cache.jsonl")
        verdicts = judge.judge(*PAIRS)
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
    assert [v.unsafe for v in verdicts] == [False, False]
    cache = (tmp_path / "judge-cache.jsonl").read_text()
    assert key not in cache and "Bearer ***" in cache


def test_lock_is_reentrant_in_one_process_and_refused_in_another(tmp_path):
    from sectow.paths import lock_folder

    lock_folder(tmp_path)
    lock_folder(tmp_path)  # the same process: a no-op
    code = ("import sys; from sectow.paths import lock_folder; from sectow.errors import UserError\n"
            "try:\n    lock_folder(__import__('pathlib').Path(sys.argv[1]))\nexcept UserError as err:\n    print(err)")
    refused = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert refused.stdout.strip() == f"{tmp_path}: in use by another sectow process (pid {os.getpid()}); wait for it " \
                                     "to end, or stop it first"


def test_help_is_written_for_users(capsys):
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    for command in ("run", "ablate", "eval", "report", "doctor", "prepare-model"):
        assert f"    {command}" in text
    assert "sectow run --resume runs/latest" in text
    for command in ("run", "ablate", "eval", "report", "doctor", "prepare-model"):
        assert main([command, "--help"]) == 0
        assert len(capsys.readouterr().out.split("\n\n")[1]) > 80  # a paragraph on what the command does


def test_a_command_line_mistake_is_one_line(capsys):
    assert main(["run", "--iterations", "3"]) == 2
    assert capsys.readouterr().err == "sectow: error: unrecognized arguments: --iterations 3 (see `sectow --help`)\n"


@pytest.mark.parametrize("signum,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupt_before_the_folder_exists_is_one_line(signum, code, tmp_path, monkeypatch, capsys):
    def interrupted(config, output_dir=True):
        if signum == signal.SIGINT:
            raise KeyboardInterrupt  # what Python makes of Ctrl-C
        os.kill(os.getpid(), signum)
        time.sleep(5)  # the handler raises before this ends

    monkeypatch.setattr("sectow.preflight.check_run_inputs", interrupted)
    before = signal.getsignal(signal.SIGTERM)
    assert main(["run", "--set", f"output_dir={tmp_path / 'runs'}"]) == code
    assert capsys.readouterr().err == "sectow: interrupted before anything was written\n"
    assert not (tmp_path / "runs").exists()
    assert signal.getsignal(signal.SIGTERM) is before  # main puts the handler it found back
