"""The bad-input corpus: every mistake a user can make in a config, a data file, an image, a model folder, a
benchmark root or an output folder ends `sectow` with exit code 2 and one line on stderr that names the
file, row (file:line) or key: no traceback, no file changed, no run folder made. Every case fails before any
training, through `sectow.cli.main` in-process.

16-bit and CMYK images are not in the corpus: they are valid input, converted to the right 8-bit RGB
(test_schema.py checks the pixels; test_valid_inputs_pass_the_preflight runs them through the preflight).
A full disk is simulated on a 1 MiB tmpfs where this machine lets us mount one, else skipped."""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from test_benchmarks import JAILBREAKV_HEADER, make_figstep, make_jailbreakv, make_mmsafetybench, write_csv

from sectow.cli import main
from sectow.config import load_config
from sectow.world.miniature import corpus
from sectow.models.tiny import build_tiny_model
from sectow.preflight import DATA_LABELS, check_run_inputs
from sectow.atomic import write_atomic

@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """The tiny model, and a copy whose weights are a pickle checkpoint (pytorch_model.bin)."""
    root = tmp_path_factory.mktemp("models")
    tiny = build_tiny_model(root / "tiny", corpus(), seed=0)
    pickled = root / "pickled"
    shutil.copytree(tiny, pickled)
    torch.save(load_file(pickled / "model.safetensors"), pickled / "pytorch_model.bin")
    (pickled / "model.safetensors").unlink()
    return {"tiny": tiny, "pickled": pickled}


def png(size=(16, 16), mode="RGB", noise=False) -> bytes:
    image = Image.new(mode, size, "red")
    if noise:  # incompressible, so a cut-off file is cut inside the pixel data
        image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def row(id_: str, label: str, image: str | None = "img/red.png", **fields) -> str:
    return json.dumps({"id": id_, "query": f"Query {id_}?", "label": label, "image": image, **fields})


@dataclass
class Workspace:
    """A test's folder: a pre-made runs/ with an earlier run in it, four good data files with an image,
    a FigStep copy, and the module's models."""

    root: Path
    models: dict[str, Path]
    mounts: contextlib.ExitStack  # tmpfs mounts, undone when the test ends

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def data(self) -> Path:
        return self.root / "data"

    def run(self, *sets: str, data: bool = True) -> list[str]:
        """`sectow run` argv: output under runs/, the four data files (unless data=False), then `sets`."""
        argv = ["run", "--set", f"output_dir={self.runs}"]
        if data:
            for key in DATA_LABELS:
                argv += ["--set", f"data.{key}={self.data / (key + '.jsonl')}"]
        for item in sets:
            argv += ["--set", item]
        return argv

    def eval(self, *benchmark: str, model: Path | None = None, out: Path | None = None) -> list[str]:
        argv = ["eval", "--model", str(model or self.models["tiny"]), "--out", str(out or self.root / "out")]
        for item in benchmark or (f"figstep={self.root / 'figstep'}",):
            argv += ["--benchmark", item]
        return argv

    def write(self, relative: str, content: str | bytes) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path

    def seeds_with_image(self, image: str, content: bytes | None = None) -> None:
        """harmful_seeds.jsonl's first row names `image`, written (relative to data/) when content is given."""
        if content is not None:
            self.write(f"data/{image}", content)
        self.write("data/harmful_seeds.jsonl", row("h1", "harmful", image) + "\n" + row("h2", "harmful") + "\n")

@pytest.fixture
def ws(tmp_path, models, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a relative default (runs/) lands in the test's folder, never the repo's
    with contextlib.ExitStack() as mounts:
        space = Workspace(tmp_path, models, mounts)
        space.write("runs/old-run-20240101-000000/state.json", '{"completed": ["cold_start"]}')
        space.write("data/img/red.png", png())
        space.write("outside.png", png())
        for key, label in DATA_LABELS.items():
            space.write(f"data/{key}.jsonl", "".join(row(f"{key}-{i}", label) + "\n" for i in range(2)))
        make_figstep(tmp_path / "figstep")
        yield space


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under `root` with its bytes (None for a folder, the target for a link)."""
    found: dict[str, bytes | None] = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        found[key] = os.readlink(path).encode() if path.is_symlink() else None if path.is_dir() else path.read_bytes()
    return found


@contextlib.contextmanager
def tmpfs(folder: Path, options: str):
    """A tmpfs mounted on `folder` for the block; skips the test where mounting is not allowed."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True,
                             check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.decode().strip() or 'mount failed'})")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def read_only_folder(ws: Workspace) -> None:
    """As root, permission bits do not stop a write: a read-only mount does."""
    target = ws.root / "readonly"
    if os.geteuid() == 0:
        ws.mounts.enter_context(tmpfs(target, "ro,size=64k"))
    else:
        target.mkdir()
        target.chmod(0o500)


@dataclass
class Case:
    argv: Callable[[Workspace], list[str]]  # the command line
    needle: str  # what the one error line must contain: the file, row or key
    prepare: Callable[[Workspace], object] = lambda ws: None  # how to break the good workspace first


def image_case(name: str, content: bytes | None, needle: str) -> Case:
    """The first harmful seed names data/img/<name>, written with `content` (None: not written)."""
    return Case(lambda ws: ws.run(), needle, lambda ws: ws.seeds_with_image(f"img/{name}", content))


def data_case(key: str, content: str | bytes, needle: str) -> Case:
    return Case(lambda ws: ws.run(), needle, lambda ws: ws.write(f"data/{key}.jsonl", content))


def broken_model(role: str, break_it: Callable[[Path], object], needle: str) -> Case:
    """A copy of the tiny model in <role>/, broken by `break_it`, as the role's model path."""
    return Case(lambda ws: ws.run(f"{role}.path={ws.root / role}"), needle,
                lambda ws: break_it(Path(shutil.copytree(ws.models["tiny"], ws.root / role))))


def yaml_case(text: str, needle: str) -> Case:
    return Case(lambda ws: ["run", "--config", str(ws.root / "bad.yaml")], needle, lambda ws: ws.write("bad.yaml", text))


def rename(path: Path, new_name: str) -> None:
    path.rename(path.with_name(new_name))


def jailbreakv_escape(ws: Workspace) -> None:
    write_csv(ws.root / "jbv/JailBreakV_28K/JailBreakV_28K.csv", JAILBREAKV_HEADER,
              [[0, "q", "i", "figstep", "Violence", "../../outside.png", "x", "True", "False"]])


CASES = {
    # --- config ---
    "yaml syntax error": yaml_case("iterations: 2\nseed: [1, 2\n", "bad.yaml:3: YAML syntax error"),
    "yaml not a mapping": yaml_case("- iterations\n", "bad.yaml: expected a mapping"),
    "unknown key in yaml": yaml_case("iteratons: 2\n", "bad.yaml: unknown key 'iteratons'; did you mean 'iterations'?"),
    "unknown nested key": Case(lambda ws: ws.run("defender.lora_rank=8"), "unknown key 'defender.lora_rank'"),
    "wrong type": Case(lambda ws: ws.run("seed=abc"), "seed: Input should be a valid integer"),
    "wrong type of section": Case(lambda ws: ws.run("defender=7"), "defender:"),
    "negative K": Case(lambda ws: ws.run("iterations=-1"), "iterations: Input should be greater than 0"),
    "learning rate 0": Case(lambda ws: ws.run("defender_grpo.learning_rate=0"), "defender_grpo.learning_rate:"),
    "bound out of range": Case(lambda ws: ws.run("monitors.orr_bound=1.5"), "monitors.orr_bound:"),
    "missing config file": Case(lambda ws: ["run", "--config", str(ws.root / "nowhere.yaml")], "nowhere.yaml: no such"),
    "override without =": Case(lambda ws: ws.run("iterations"), "override 'iterations': expected key=value"),
    "resume of a non-run folder": Case(lambda ws: ["run", "--resume", str(ws.data)], "data: not a sectow run folder"),
    # --- model folders ---
    "missing model folder": Case(lambda ws: ws.run(f"defender.path={ws.root / 'nomodel'}"),
                                 "nomodel: model folder not found"),
    "model folder without weights": broken_model("attacker", lambda m: (m / "model.safetensors").unlink(),
                                                 "attacker: no model weights"),
    "model folder without config.json": broken_model("defender", lambda m: (m / "config.json").unlink(),
                                                     "defender: not a model folder (no config.json)"),
    "truncated weights": broken_model(
        "defender", lambda m: (m / "model.safetensors").write_bytes((m / "model.safetensors").read_bytes()[:-1000]),
        "model.safetensors: not a readable safetensors file (truncated"),
    "model folder without tokenizer": broken_model(
        "attacker", lambda m: [(m / name).unlink() for name in ("tokenizer.json", "tokenizer_config.json")],
        "attacker: no tokenizer"),
    "pickle checkpoint without the flag": Case(lambda ws: ws.run(f"defender.path={ws.models['pickled']}"),
                                               "pickled: no *.safetensors weights; found pytorch_model.bin, a pickle "
                                               "checkpoint: set defender.allow_pickle=true"),
    "eval of a missing model folder": Case(lambda ws: ws.eval(model=ws.root / "nomodel"), "nomodel: model folder not found"),
    "eval of a pickle checkpoint": Case(lambda ws: ws.eval(model=ws.models["pickled"]),
                                        "pytorch_model.bin, a pickle checkpoint: pickle checkpoints are not loaded"),
    # --- images ---
    "corrupt image": image_case("corrupt.png", b"\x89PNG\r\n\x1a\nnot really", "corrupt.png: unreadable image"),
    "empty image": image_case("empty.png", b"", "empty.png: unreadable image"),
    "truncated image": image_case("cut.png", png((64, 64), noise=True)[:3000], "cut.png: unreadable image"),
    "1x1 image": image_case("dot.png", png((1, 1)), "dot.png: image is 1x1 pixels"),
    "extreme aspect ratio": image_case("strip.png", png((2010, 10)), "strip.png: image is 2010x10 pixels"),
    "decompression bomb": image_case("bomb.png", png((8193, 8193), mode="1"),
                                     "bomb.png: refused as a possible decompression bomb"),
    "missing image": image_case("gone.png", None, "harmful_seeds.jsonl:1: image 'img/gone.png' not found"),
    # --- JSONL data ---
    "bad JSON": data_case("benign", row("b1", "benign") + "\n{oops\n", "benign.jsonl:2: bad JSON"),
    "missing field": data_case("held_out_benign", '{"id": "b1", "label": "benign"}\n',
                               "held_out_benign.jsonl:1: field 'query' is missing"),
    "unknown field": data_case("benign", row("b1", "benign", colour="red") + "\n", "benign.jsonl:1: unknown field 'colour'"),
    "label outside the set": data_case("held_out_harmful", row("h1", "evil") + "\n",
                                       "held_out_harmful.jsonl:1: label 'evil' must be one of harmful, benign"),
    "label of the other file": data_case("harmful_seeds", row("b1", "benign") + "\n",
                                         "harmful_seeds.jsonl: sample 'b1' is labelled 'benign'"),
    "non-UTF-8 bytes": data_case("benign", b'{"id": "\xff\xfe"}\n', "benign.jsonl: not UTF-8"),
    "empty data file": data_case("benign", "\n", "benign.jsonl: no samples (data.benign)"),
    "missing data file": Case(lambda ws: ws.run(), "benign.jsonl: no such data file",
                              lambda ws: (ws.data / "benign.jsonl").unlink()),
    "three of four data files": Case(lambda ws: ws.run(data=False) + ["--set", f"data.benign={ws.data / 'benign.jsonl'}"],
                                     "data.harmful_seeds is required"),
    # --- image paths that leave the dataset folder ---
    "image path with ../": Case(lambda ws: ws.run(), "harmful_seeds.jsonl:1: image path '../outside.png' leaves",
                                lambda ws: ws.seeds_with_image("../outside.png")),
    "absolute image path": Case(lambda ws: ws.run(), "harmful_seeds.jsonl:1: image path '/",
                                lambda ws: ws.seeds_with_image(str(ws.root / "outside.png"))),
    "symlink out of the dataset": Case(lambda ws: ws.run(), "harmful_seeds.jsonl:1: image path 'img/link.png' leaves",
                                       lambda ws: ((ws.data / "img/link.png").symlink_to(ws.root / "outside.png"),
                                                   ws.seeds_with_image("img/link.png"))),
    # --- benchmark roots ---
    "missing benchmark root": Case(lambda ws: ws.eval(f"figstep={ws.root / 'nobench'}"), "nobench: no such folder"),
    "renamed benchmark csv": Case(lambda ws: ws.eval(), "data/question/safebench.csv: ",
                                  lambda ws: rename(ws.root / "figstep/data/question/safebench.csv", "SafeBench.csv")),
    "benchmark images folder renamed": Case(
        lambda ws: ws.eval(), "no usable samples for benchmark 'figstep'; 5 images named by the data are missing",
        lambda ws: rename(ws.root / "figstep/data/images/SafeBench", "safebench")),
    "jailbreakv csv missing": Case(
        lambda ws: ws.eval(f"jailbreakv_mini={ws.root / 'jbv'}"), "mini_JailBreakV_28K.csv",
        lambda ws: (make_jailbreakv(ws.root / "jbv"), (ws.root / "jbv/JailBreakV_28K/mini_JailBreakV_28K.csv").unlink())),
    "mmsafetybench questions missing": Case(
        lambda ws: ws.eval(f"mmsafetybench={ws.root / 'mmsb'}"), "mmsb/data/processed_questions",
        lambda ws: (make_mmsafetybench(ws.root / "mmsb"), shutil.rmtree(ws.root / "mmsb/data/processed_questions"))),
    "benchmark image path with ../": Case(lambda ws: ws.eval(f"jailbreakv={ws.root / 'jbv'}"),
                                          "image path '../../outside.png' leaves", jailbreakv_escape),
    "benchmark without a root": Case(lambda ws: ws.eval("figstep"), "benchmark 'figstep': expected NAME=ROOT"),
    "unknown benchmark": Case(lambda ws: ws.eval(f"figstepp={ws.root / 'figstep'}"), "unknown benchmark 'figstepp'"),
    # --- output folders ---
    "run output folder is a file": Case(lambda ws: ws.run(f"output_dir={ws.root / 'runs-file'}"),
                                        "runs-file: output folder is an existing file",
                                        lambda ws: ws.write("runs-file", "keep me")),
    "run output folder under a file": Case(lambda ws: ws.run(f"output_dir={ws.root / 'plain' / 'runs'}"),
                                           "plain, a parent of the output folder, is an existing file",
                                           lambda ws: ws.write("plain", "keep me")),
    "run output folder not writable": Case(lambda ws: ws.run(f"output_dir={ws.root / 'readonly' / 'runs'}"),
                                           "readonly: not writable", read_only_folder),
    "eval output folder is a file": Case(lambda ws: ws.eval(out=ws.root / "eval-out"),
                                         "eval-out: output folder is an existing file",
                                         lambda ws: ws.write("eval-out", "keep me")),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_exit_2_and_changes_nothing(name, ws, capsys):
    case = CASES[name]
    case.prepare(ws)
    argv = case.argv(ws)
    before = snapshot(ws.root)
    code = main(argv)
    after = snapshot(ws.root)
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, (argv, err, out)
    assert len(lines) == 1 and lines[0].startswith("sectow: error: "), err
    assert case.needle in lines[0] and "Traceback" not in err
    assert after == before  # no file changed, nothing new: no run folder, no eval output, no temporary file


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 30


def test_valid_inputs_pass_the_preflight(ws):
    """The good workspace the corpus breaks, with a 16-bit and a CMYK image, a pickle checkpoint that is
    allowed, and the tiny model: all accepted."""
    levels = (np.arange(256, dtype=np.uint16).reshape(16, 16) * 257).astype("<u2")
    Image.frombytes("I;16", (16, 16), levels.tobytes()).save(ws.data / "img/grey16.png")
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(ws.data / "img/cmyk.jpg")
    ws.write("data/benign.jsonl", row("b1", "benign", "img/grey16.png") + "\n" + row("b2", "benign", "img/cmyk.jpg") + "\n")
    argv = ws.run(f"defender.path={ws.models['pickled']}", "defender.allow_pickle=true",
                  f"attacker.path={ws.models['tiny']}")
    config = load_config(None, argv[2::2])
    check_run_inputs(config)


def test_one_line_on_the_real_stderr(ws):
    """The same contract in a fresh process, where warnings and logging would reach the real stderr."""
    ws.seeds_with_image("img/dot.png", png((1, 1)))
    result = subprocess.run([sys.executable, "-m", "sectow.cli", *ws.run()], capture_output=True, text=True,
                            check=False, timeout=300, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert result.returncode == 2
    message = "image is 1x1 pixels; sides of at least 8 and an aspect ratio of at most 200 are needed"
    assert result.stderr.splitlines() == [f"sectow: error: {ws.data / 'img/dot.png'}: {message}"]


# --- a full disk -------------------------------------------------------------------------------------


def fill(folder: Path) -> None:
    with (folder / "filler").open("wb", buffering=0) as out, contextlib.suppress(OSError):
        while True:
            out.write(b"\0" * 4096)


def test_disk_full_run_is_one_line_and_keeps_files(ws, capsys):
    with tmpfs(ws.root / "disk", "size=1m") as disk:
        (disk / "keep.txt").write_text("keep me")
        write_atomic(disk / "state.json", '{"completed": []}')
        fill(disk)
        with pytest.raises(OSError) as full:  # a failed rewrite leaves the old file and no temporary one
            write_atomic(disk / "state.json", "x" * 100_000)
        assert full.value.errno == errno.ENOSPC and full.value.filename == str(disk / "state.json")
        assert (disk / "state.json").read_text() == '{"completed": []}'
        code = main(ws.run(f"output_dir={disk / 'runs'}", data=False))
        err = capsys.readouterr().err
        assert code == 2
        assert len(err.splitlines()) == 1 and err.startswith(f"sectow: error: {disk / 'runs'}")
        assert err.rstrip().endswith(": no space left on device")
        assert (disk / "keep.txt").read_text() == "keep me" and not list(disk.rglob("*.tmp"))


def test_out_of_space_anywhere_is_one_line(ws, capsys, monkeypatch):
    """Without a tmpfs too: a full disk (or quota) wherever a file is written ends in one line naming it."""
    def no_space(output_dir, name):
        raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT), str(output_dir / "x" / "config.yaml"))

    monkeypatch.setattr("sectow.run_folder.new_run_folder", no_space)
    assert main(ws.run(data=False)) == 2
    assert capsys.readouterr().err == f"sectow: error: {ws.runs / 'x' / 'config.yaml'}: no space left on device\n"


def test_failed_atomic_write_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "summary.json"
    target.write_text("old")

    def half_then_full(self, text, encoding=None):
        with open(self, "w", encoding=encoding) as out:
            out.write(text[:3])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "write_text", half_then_full)
    with pytest.raises(OSError) as err:
        write_atomic(target, "new and longer")
    assert err.value.filename == str(target)
    assert target.read_text() == "old" and not (tmp_path / "summary.json.tmp").exists()


@pytest.mark.parametrize("variable,value", [("ACCELERATE_USE_FSDP", "true"), ("ACCELERATE_DEEPSPEED_ZERO_STAGE", "3")])
def test_sharded_launch_is_refused_before_anything_is_written(tmp_path, monkeypatch, capsys, variable, value):
    """ZeRO-3 and FSDP would save empty players: refused up front, until the loop gathers weights."""
    monkeypatch.setenv(variable, value)
    assert main(["run", "--set", f"output_dir={tmp_path / 'runs'}"]) == 2
    assert "ZeRO-3 and FSDP" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_sharded_launch_is_refused_on_resume_too(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    (tmp_path / "config.yaml").write_text("iterations: 1\n")
    (tmp_path / "state.json").write_text('{"completed": []}')
    assert main(["run", "--resume", str(tmp_path)]) == 2
    assert "ZeRO-3 and FSDP" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml", "state.json"]
