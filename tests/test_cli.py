"""Bad input: exit code 2, one line on stderr naming the problem, no traceback, nothing overwritten."""

import subprocess
import sys

import pytest

from sectow.cli import main


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sectow.cli", *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("args,message", [
    (["--set", "iteratons=2"], "unknown key 'iteratons'; did you mean 'iterations'?"),
    (["--set", "iterations=-1"], "iterations: Input should be greater than 0"),
    (["--set", "defender_grpo.learning_rate=0"], "defender_grpo.learning_rate"),
    (["--set", "seed=abc"], "seed: Input should be a valid integer"),
    (["--config", "/nonexistent/sectow.yaml"], "no such config file"),
    (["--set", "defender.path=/nonexistent/model"], "/nonexistent/model: model folder not found"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    result = run_cli("run", "--set", f"output_dir={tmp_path / 'runs'}", *args)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("sectow: error:")]
    assert len(lines) == 1 and message in lines[0]
    assert "Traceback" not in result.stderr


def test_output_folder_that_is_a_file(tmp_path, capsys):
    target = tmp_path / "runs"
    target.write_text("keep me")
    assert main(["run", "--set", f"output_dir={target}"]) == 2
    assert "output folder is an existing file" in capsys.readouterr().err
    assert target.read_text() == "keep me"


def test_resume_of_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["run", "--resume", str(tmp_path)]) == 2
    assert "not a run folder" in capsys.readouterr().err


def test_bad_data_file_names_file_and_line(tmp_path, capsys):
    data = tmp_path / "seeds.jsonl"
    data.write_text('{"id": "1", "query": "q", "label": "harmful"}\n{oops\n')
    code = main(["run", "--set", f"output_dir={tmp_path / 'runs'}", "--set", f"data.harmful_seeds={data}",
                 "--set", f"data.benign={data}", "--set", f"data.held_out_harmful={data}",
                 "--set", f"data.held_out_benign={data}"])
    assert code == 2
    assert f"{data}:2: bad JSON" in capsys.readouterr().err
