"""`run_doctor`: one table row per check, exit 1 exactly when a row FAILs, no traceback for user mistakes."""

from __future__ import annotations

import io
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import save_file
from test_benchmarks import make_figstep, make_jailbreakv, make_mmmu

from sectow import doctor
from sectow.data.benchmarks import load_benchmark
from sectow.doctor import run_doctor


def doctor_rows(tmp_path: Path, overrides=(), **kwargs) -> tuple[int, dict[str, tuple[str, str]]]:
    out = io.StringIO()
    code = run_doctor(None, [f"output_dir={tmp_path / 'runs'}", *overrides], out=out, **kwargs)
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["check", "status", "detail"]
    # Columns are aligned: the status starts at the same place on every line.
    start = lines[0].index("status")
    rows = {line[:start].strip(): (line[start:start + 6].strip(), line[start + 8:]) for line in lines[1:]}
    return code, rows


def model_folder(path: Path, weights: bool = True) -> Path:
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"model_type": "qwen2_5_vl"}))
    (path / "processor_config.json").write_text(json.dumps({"image_processor": {"patch_size": 14}}))
    (path / "tokenizer.json").write_text("{}")
    (path / "chat_template.jinja").write_text("{{ messages }}")
    if weights:
        save_file({"w": torch.zeros(256)}, path / "model.safetensors")
    return path


def test_default_config_passes(tmp_path):
    code, rows = doctor_rows(tmp_path)
    assert code == 0
    assert list(rows) == ["python", "torch", "transformers", "trl", "peft", "datasets", "accelerate", "gpu", "vllm",
                          "config", "data", "defender model", "attacker model", "disk space", "output dir"]
    assert all(status in ("ok", "warn") for status, _ in rows.values())
    assert rows["config"] == ("ok", "defaults + 1 override(s)")
    assert "GiB free at" in rows["disk space"][1]


def test_mistyped_key_fails_naming_it(tmp_path):
    code, rows = doctor_rows(tmp_path, ["iteratons=2"])
    assert code == 1
    assert rows["config"][0] == "FAIL" and "'iteratons'" in rows["config"][1]
    assert "defender model" not in rows


def test_pin_mismatch_warns(tmp_path, monkeypatch):
    monkeypatch.setattr(doctor.metadata, "requires", lambda name: ["torch==0.0.1", 'vllm; extra == "vllm"'])
    code, rows = doctor_rows(tmp_path)
    assert code == 0 and rows["torch"][0] == "warn" and "==0.0.1" in rows["torch"][1]
    assert rows["peft"][0] == "ok"


def test_good_model_folder(tmp_path):
    folder = model_folder(tmp_path / "m")
    code, rows = doctor_rows(tmp_path, [f"defender.path={folder}", "data.allow_builtin_world=true"])
    assert code == 0 and rows["defender model"][0] == "ok" and "qwen2_5_vl" in rows["defender model"][1]
    # A model of yours on the toy world only when told: without consent the data row fails, saying how.
    code, rows = doctor_rows(tmp_path, [f"defender.path={folder}"])
    assert code == 1 and rows["data"][0] == "FAIL" and "data.allow_builtin_world=true" in rows["data"][1]


@pytest.mark.parametrize("break_it,message", [
    (lambda p: None, "model folder not found"),
    (lambda p: (model_folder(p, weights=False), (p / "pytorch_model.bin").write_bytes(b"x")),
     "no *.safetensors weights; found pytorch_model.bin"),
    (lambda p: (model_folder(p), (p / "model.safetensors").write_bytes((p / "model.safetensors").read_bytes()[:-100])),
     "truncated"),
    (lambda p: (model_folder(p), (p / "tokenizer.json").unlink()), "no tokenizer"),
])
def test_bad_model_folder_fails(tmp_path, break_it, message):
    break_it(tmp_path / "m")
    code, rows = doctor_rows(tmp_path, [f"attacker.path={tmp_path / 'm'}"])
    assert code == 1
    assert rows["attacker model"][0] == "FAIL" and message in rows["attacker model"][1]


def test_benchmark_roots(tmp_path):
    make_figstep(tmp_path / "figstep")
    code, rows = doctor_rows(tmp_path, benchmarks={"figstep": tmp_path / "figstep"})
    assert code == 0 and rows["benchmark figstep"] == ("ok", f"5 of 5 rows usable, 0 skipped under {tmp_path / 'figstep'}")
    code, rows = doctor_rows(tmp_path, benchmarks={"jailbreakv": tmp_path / "figstep"})
    assert code == 1
    assert rows["benchmark jailbreakv"][0] == "FAIL" and "JailBreakV_28K.csv" in rows["benchmark jailbreakv"][1]


def test_benchmark_rows_that_cannot_be_evaluated_are_counted_as_eval_counts_them(tmp_path):
    """A copy with images deleted or broken: doctor warns with the same counts `sectow eval` prints."""
    make_jailbreakv(tmp_path / "jbv")
    make_mmmu(tmp_path / "mmmu")
    (tmp_path / "jbv/JailBreakV_28K/figstep/figstep_1.png").write_bytes(b"not an image")
    code, rows = doctor_rows(tmp_path, benchmarks={"jailbreakv": tmp_path / "jbv", "mmmu_validation": tmp_path / "mmmu"})
    status, detail = rows["benchmark jailbreakv"]
    assert code == 0 and status == "warn"
    assert detail.startswith(f"2 of 4 rows usable, 2 skipped (missing image: 1, unreadable image: 1) under {tmp_path / 'jbv'}")
    assert "first: jailbreakv/1: " in detail
    data = load_benchmark("jailbreakv", tmp_path / "jbv")
    assert detail.startswith(data.skip_line())
    assert rows["benchmark mmmu_validation"] == ("ok", f"3 of 3 rows usable, 0 skipped under {tmp_path / 'mmmu'}")
    assert not list(tmp_path.glob("**/sectow-doctor-*"))


def test_output_dir_that_is_a_file(tmp_path):
    (tmp_path / "runs").write_text("keep me")
    code, rows = doctor_rows(tmp_path)
    assert code == 1
    assert rows["output dir"] == ("FAIL", f"{tmp_path / 'runs'}: output folder is an existing file")
    assert (tmp_path / "runs").read_text() == "keep me"


class Models(BaseHTTPRequestHandler):
    def do_GET(self):
        found = self.path == "/v1/models"
        body = json.dumps({"data": [{"id": "guard"}]}).encode()
        self.send_response(200 if found else 404)
        self.end_headers()
        self.wfile.write(body if found else b"")

    def log_message(self, *args):
        pass


def test_judge_reachable_and_not(tmp_path):
    server = HTTPServer(("127.0.0.1", 0), Models)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        code, rows = doctor_rows(tmp_path, judge_url=url)
        assert code == 0 and rows["judge"] == ("ok", f"{url}/v1/models: guard")
        assert doctor_rows(tmp_path, judge_url=url + "/v1/")[1]["judge"][0] == "ok"
    finally:
        server.shutdown()
        server.server_close()
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code, rows = doctor_rows(tmp_path, judge_url=f"http://127.0.0.1:{port}")
    assert code == 1 and rows["judge"][0] == "FAIL" and "unreachable" in rows["judge"][1]


@pytest.mark.parametrize("free_gib,model,status", [
    (0.5, False, "FAIL"), (10, False, "ok"), (10, True, "warn"), (30, True, "ok"),
])
def test_disk_space_thresholds(tmp_path, monkeypatch, free_gib, model, status):
    monkeypatch.setattr(doctor.shutil, "disk_usage", lambda path: SimpleNamespace(free=free_gib * 1024 ** 3))
    overrides = [f"defender.path={model_folder(tmp_path / 'm')}", "data.allow_builtin_world=true"] if model else []
    code, rows = doctor_rows(tmp_path, overrides)
    assert rows["disk space"][0] == status
    assert rows["disk space"][1].startswith(f"{free_gib:.1f} GiB free at {tmp_path}")
    assert code == (status == "FAIL")


def test_default_output_is_the_current_stdout(tmp_path, capsys):
    assert run_doctor(None, [f"output_dir={tmp_path / 'runs'}"]) == 0
    assert capsys.readouterr().out.startswith("check")
