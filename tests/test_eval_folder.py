"""`sectow eval`'s output folder through the CLI: replies kept when judging fails and `--resume` judging the
rest without generating again, existing folders refused unless resumed or overwritten, `--strict`, files
owner-only whatever the umask, the skip line per benchmark, and bad input as one line and exit 2 with no
folder left behind. The judge server is the loopback fake of test_judges."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from test_benchmarks import make_figstep, make_jailbreakv, make_mmmu
from test_judges import UNSAFE_WORD, FakeServer

from sectow.cli import main
from sectow.world.miniature import corpus
from sectow.evaluation import benchmark_eval
from sectow.models.tiny import build_tiny_model


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("world")
    make_figstep(base / "figstep")
    make_jailbreakv(base / "jbv")  # one of its four images is missing
    make_mmmu(base / "mmmu")
    return {"model": build_tiny_model(base / "model", corpus(), seed=0), "figstep": base / "figstep",
            "jbv": base / "jbv", "mmmu": base / "mmmu"}


@pytest.fixture
def server():
    fake = FakeServer()
    yield fake
    fake.httpd.shutdown()
    fake.httpd.server_close()


def eval_args(world, out: Path, *extra: str, benchmarks=("figstep", "mmmu_validation")) -> list[str]:
    roots = {"figstep": world["figstep"], "mmmu_validation": world["mmmu"], "jailbreakv": world["jbv"]}
    argv = ["eval", "--model", str(world["model"]), "--out", str(out), "--max-new-tokens", "3", "--batch-size", "2"]
    for name in benchmarks:
        argv += ["--benchmark", f"{name}={roots[name]}"]
    return argv + list(extra)


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("sectow: error: "), err
    return lines[0]


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): None if p.is_dir() else p.read_bytes() for p in sorted(root.rglob("*"))}


# ---------------------------------------------------------------- the skip line and --strict


def test_eval_prints_one_skip_line_per_benchmark(world, tmp_path, capsys):
    assert main(eval_args(world, tmp_path / "out", benchmarks=("jailbreakv", "figstep"))) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:2] == ["jailbreakv: 3 of 4 rows usable, 1 skipped (missing image: 1)",
                       "figstep: 5 of 5 rows usable, 0 skipped"]
    result = json.loads((tmp_path / "out" / "eval.json").read_text())
    assert result["benchmarks"]["jailbreakv"]["skipped"]["rows"][0]["id"] == "jailbreakv/3"


def test_strict_refuses_any_skip_before_anything_is_written(world, tmp_path, capsys):
    before = snapshot(tmp_path)
    assert main(eval_args(world, tmp_path / "out", "--strict", benchmarks=("figstep", "jailbreakv"))) == 2
    line = one_line_error(capsys)
    assert "--strict: 1 rows cannot be evaluated (jailbreakv: 1; first: jailbreakv/3: " in line
    assert snapshot(tmp_path) == before


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("extra, message", [
    (["--batch-size", "0"], "--batch-size must be a positive number, got 0"),
    (["--max-new-tokens", "0"], "--max-new-tokens must be a positive number, got 0"),
    (["--limit", "0"], "--limit must be a positive number, got 0"),
    (["--judge", "http", "--judge-option", "base_url=http://127.0.0.1:9", "--judge-option", "modle=m"],
     "judge 'http': missing a required argument: 'model' (options: base_url, model"),
    (["--judge", "native", "--judge-option", "base_url=http://127.0.0.1:9", "--judge-option", "model=m",
      "--judge-option", "framng=raw"], "judge 'native': got an unexpected keyword argument 'framng'"),
    (["--judge-option", "nokey"], "--judge-option 'nokey': expected KEY=VALUE"),
    (["--judge", "oracle"], "unknown judge 'oracle' (judges: refusal, guard, http, native, on_topic)"),
    (["--benchmark", "figstepp=/data"], "unknown benchmark 'figstepp'"),
])
def test_bad_input_is_one_line_exit_2_and_no_output_folder(world, tmp_path, capsys, extra, message):
    assert main(eval_args(world, tmp_path / "out", *extra)) == 2
    assert message in one_line_error(capsys)
    assert not (tmp_path / "out").exists() and not list(tmp_path.iterdir())


def test_eval_needs_its_settings_or_resume(world, tmp_path, capsys):
    assert main(["eval", "--model", str(world["model"])]) == 2
    assert "sectow eval needs --benchmark, --out (or --resume DIR)" in one_line_error(capsys)


def test_help_lists_the_benchmarks(capsys):
    from sectow.data.benchmarks import BENCHMARKS

    assert main(["eval", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert ", ".join(BENCHMARKS) in text and "--resume" in text and "--strict" in text


# ---------------------------------------------------------------- existing folders


def test_an_existing_output_folder_is_refused_and_left_alone(world, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(eval_args(world, out)) == 0
    before = snapshot(tmp_path)
    capsys.readouterr()
    assert main(eval_args(world, out)) == 2
    assert f"{out}: output folder exists; give --resume {out} to finish that evaluation, or --overwrite" in \
        one_line_error(capsys)
    assert snapshot(tmp_path) == before
    # An empty folder holds nothing to lose.
    (tmp_path / "empty").mkdir()
    assert main(eval_args(world, tmp_path / "empty")) == 0


def test_overwrite_replaces_an_eval_folder_but_never_another(world, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(eval_args(world, out)) == 0
    with (out / "responses.jsonl").open("a") as f:
        f.write('{"benchmark": "figstep", "id": "old", "response": "marker"}\n')
    assert main(eval_args(world, out, "--overwrite")) == 0
    assert "marker" not in (out / "responses.jsonl").read_text()
    other = tmp_path / "photos"
    other.mkdir()
    (other / "holiday.jpg").write_bytes(b"keep me")
    capsys.readouterr()
    assert main(eval_args(world, other, "--overwrite")) == 2
    assert "not a sectow eval folder (no eval-config.json): --overwrite replaces only those" in one_line_error(capsys)
    assert sorted(p.name for p in other.iterdir()) == ["holiday.jpg"]


def test_resume_takes_the_folders_own_settings(world, tmp_path, capsys):
    (tmp_path / "stuff").mkdir()
    assert main(["eval", "--resume", str(tmp_path / "stuff")]) == 2
    assert "not a sectow eval folder (no eval-config.json); nothing to resume" in one_line_error(capsys)
    out = tmp_path / "out"
    assert main(eval_args(world, out)) == 0
    capsys.readouterr()
    assert main(["eval", "--resume", str(out), "--limit", "3"]) == 2
    assert "drop --limit (only --judge-option may change)" in one_line_error(capsys)
    assert main(["eval", "--resume", str(out), "--overwrite"]) == 2
    assert "drop --overwrite" in one_line_error(capsys)


# ---------------------------------------------------------------- nothing lost


def test_a_judge_failure_keeps_the_replies_and_resume_judges_the_rest(world, tmp_path, capsys, monkeypatch, server):
    """The judge server dies partway through: every reply is already on disk, and --resume asks the judge only
    what it had not answered, generating nothing."""
    out = tmp_path / "out"
    server.answer = lambda prompt: "unsafe" if UNSAFE_WORD in prompt else "safe"
    judge = ["--judge", "native", "--judge-option", f"base_url={server.url}", "--judge-option", "model=judge",
             "--judge-option", "max_retries=0", "--judge-option", "backoff_s=0.001"]
    server.script = [None, None, 500]  # two verdicts, then the server fails
    assert main(eval_args(world, out, *judge)) == 2
    [line] = [line for line in capsys.readouterr().err.splitlines() if "sectow: error: " in line]  # after progress bars
    assert "failed 1 times; last: HTTP 500" in line and f"`sectow eval --resume {out}` judges the rest" in line
    assert len(lines(out / "responses.jsonl")) == 8 and not (out / "eval.json").exists()
    assert len(lines(out / "judge-cache.jsonl")) == 2  # the cache is on by default, inside the folder

    monkeypatch.setattr(benchmark_eval, "load_policy", lambda *a, **k: pytest.fail("resume must not generate again"))
    asked = len(server.requests)
    assert main(["eval", "--resume", str(out), "--judge-option", "max_retries=2"]) == 0
    result = json.loads((out / "eval.json").read_text())
    assert result["responses"] == {"generated": 0, "reused": 8}
    assert len(server.requests) - asked == 3  # the five figstep rows less the two already judged
    assert result["judge"] == "native" and result["benchmarks"]["figstep"]["judge_prompt_versions"] == [
        "figstep-rubric-reconstructed/v1"]
    assert "figstep-rubric-reconstructed/v1" in result["judge_prompts"]
    assert result["judge_options"]["max_retries"] == 2  # the override is recorded
    assert json.loads((out / "eval-config.json").read_text())["judge_options"]["max_retries"] == 2


def test_resume_generates_only_the_missing_replies(world, tmp_path, monkeypatch):
    out = tmp_path / "out"
    assert main(eval_args(world, out)) == 0
    first = lines(out / "responses.jsonl")
    # A crash after three replies, the fourth cut mid-line.
    (out / "responses.jsonl").write_text("".join(json.dumps(r) + "\n" for r in first[:3]) + '{"benchmark": "fig')
    (out / "eval.json").unlink()
    assert main(["eval", "--resume", str(out)]) == 0
    result = json.loads((out / "eval.json").read_text())
    assert result["responses"] == {"generated": 5, "reused": 3}
    text = (out / "responses.jsonl").read_text().splitlines()
    assert text[3] == '{"benchmark": "fig'  # the cut line stays, alone on its line, and is ignored
    again = [json.loads(line) for line in text[:3] + text[4:]]
    assert sorted(r["id"] for r in again) == sorted(r["id"] for r in first)  # each row once, nothing doubled
    assert result["benchmarks"]["figstep"]["n"] == 5 and result["benchmarks"]["mmmu_validation"]["n"] == 3


def test_replies_are_on_disk_before_judging_starts(world, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    seen = {}

    def judging(self, replies, engine, reused, generated):
        seen["rows"] = len(lines(out / "responses.jsonl"))
        raise KeyboardInterrupt

    monkeypatch.setattr(benchmark_eval.Evaluation, "score", judging)
    assert main(eval_args(world, out)) == 130  # Ctrl-C: one line saying how to finish it
    last = capsys.readouterr().err.replace("\r", "\n").splitlines()[-1]  # after the progress bar
    assert last == f"sectow: interrupted; resume with `sectow eval --resume {out}`"
    assert seen["rows"] == 8 and not [p for p in tmp_path.iterdir() if p.name.startswith(".out-images-")]


# ---------------------------------------------------------------- owner-only files


def test_files_are_owner_only_whatever_the_umask(world, tmp_path, server):
    out = tmp_path / "out"
    previous = os.umask(0)
    try:
        args = eval_args(world, out, "--judge", "native", "--judge-option", f"base_url={server.url}",
                         "--judge-option", "model=judge")
        assert main(args) == 0
    finally:
        os.umask(previous)
    assert oct(out.stat().st_mode & 0o777) == "0o700"
    files = sorted(out.iterdir())
    assert {p.name for p in files} == {"eval-config.json", "eval.json", "eval.md", "responses.jsonl", "verdicts.jsonl",
                                       "judge-cache.jsonl", ".sectow.lock"}
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in files} == {p.name: "0o600" for p in files}
