"""The bad-input corpus: every mistake a user can make in a config, a data file, an image, a model folder, a
benchmark root, an output folder or a run folder to resume ends `sectow` with exit code 2 and one line on stderr
that names the file, row (file:line) or key: no traceback, no file changed, no folder made. Every command has its
cases: run, run --resume, ablate, eval, report, doctor (which reports a FAIL row and exits 1) and prepare-model.
Every case fails before any training, through `sectow.cli.main` in-process.

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

from conftest import another_holder
from sectow.atomic import write_atomic
from sectow.cli import main
from sectow.config import config_to_yaml, load_config
from sectow.models.tiny import build_tiny_model
from sectow.pool import record_hash
from sectow.preflight import DATA_LABELS, check_run_inputs
from sectow.run_folder import FORMAT, MARKER, Phases, input_digests
from sectow.world.miniature import corpus

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

    @property
    def made(self) -> Path:
        """The run folder `make_run` writes: a killed run, as `sectow run` leaves it after its pool phase."""
        return self.root / "made"

    def make_run(self) -> Path:
        """A run folder of this format that a resume accepts (test_the_made_run_folder_resumes): the config
        names the workspace's data, the cold-start defender is the tiny model, and the pool of iteration 1
        has two records with their images; state.json records the config and the data's digests."""
        folder = self.made
        config = load_config(None, self.run()[2::2] + ["iterations=1"])
        (folder / "pool" / "images").mkdir(parents=True)
        shutil.copytree(self.models["tiny"], folder / "checkpoints" / "defender-cold_start")
        records = []
        for i in range(2):
            record = {"seed_id": f"harmful_seeds-{i}", "category": None, "intent": "x", "mode": "generate",
                      "iteration": 1, "form": "roleplay", "query": f"Query {i}", "attacker_output": f"Query: {i}",
                      "defender_reply": "Sure", "verdict": {"refused": False, "unsafe": True, "judge": "refusal"},
                      "quality": {"intent_similarity": 0.5, "pool_similarity": 0.0}}
            record["hash"] = record_hash(record)
            record["image"] = f"images/{record['hash']}.png"
            (folder / "pool" / record["image"]).write_bytes(png())
            records.append(record)
        pool = "".join(json.dumps(r) + "\n" for r in records)
        (folder / "pool" / "iteration-1.jsonl").write_text(pool)
        (folder / "pool" / "jailbreak_pool.jsonl").write_text(pool)
        phases = [("cold_start_defender", {"rows": 4, "steps": 1, "outputs": ["checkpoints/defender-cold_start"]}),
                  ("pool_1", {"iteration": 1, "candidates": 2, "outputs": ["pool/iteration-1.jsonl"]})]
        (folder / "metrics.jsonl").write_text("".join(json.dumps({"phase": name, "time": 0.0, **m, "timing": {}}) + "\n"
                                                      for name, m in phases))
        (folder / "state.json").write_text(json.dumps({"completed": [name for name, _ in phases],
                                                       "config": config.model_dump(mode="json"),
                                                       "inputs": input_digests(config)}, indent=1))
        (folder / "config.yaml").write_text(config_to_yaml(config))
        (folder / MARKER).write_text(json.dumps({"kind": "run", "format": FORMAT}))
        (folder / ".sectow.lock").write_text("")  # as new_run_folder leaves it
        return folder

    def resume(self, command: str = "run") -> list[str]:
        return [command, "--resume", str(self.made)]

    def edit(self, relative: str, change: Callable[[str], str]) -> None:
        path = self.root / relative
        path.write_text(change(path.read_text()))

    def hold_lock(self, folder: Path) -> None:
        """Another process holding `folder`'s lock (as a running sectow does) until the test ends."""
        self.mounts.enter_context(another_holder(folder))

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


@dataclass
class DoctorCase(Case):
    """`sectow doctor` reports a problem as a FAIL row of its table (stdout) and exits 1."""


def doctor(*sets: str, config: str | None = None) -> Callable[[Workspace], list[str]]:
    def argv(ws: Workspace) -> list[str]:
        return ["doctor", *(["--config", str(ws.root / config)] if config else []),
                *[a for item in (f"output_dir={ws.runs}", *sets) for a in ("--set", item.format(root=ws.root))]]
    return argv


def with_data(*sets: str) -> list[str]:
    return [f"data.{key}={{root}}/data/{key}.jsonl" for key in DATA_LABELS] + list(sets)


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
    "mmsafetybench questions nested too deeply": Case(
        lambda ws: ws.eval(f"mmsafetybench={ws.root / 'mmsb'}"), "05-EconomicHarm.json: bad JSON (nested too deeply)",
        lambda ws: (make_mmsafetybench(ws.root / "mmsb"),
                    ws.write("mmsb/data/processed_questions/05-EconomicHarm.json", "[" * 100000 + "]" * 100000))),
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



def safetensors_with(header: dict, data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return len(raw).to_bytes(8, "little") + raw + data


def misfit_weights(model: Path) -> None:
    """A safetensors file whose header parses, but whose one tensor needs 4x8 bytes and is given 8."""
    (model / "model.safetensors").write_bytes(safetensors_with(
        {"w": {"dtype": "F32", "shape": [4, 8], "data_offsets": [0, 8]}}, b"\0" * 8))


def pool_line(ws: Workspace, change: Callable[[dict], object]) -> None:
    path = ws.made / "pool" / "iteration-1.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    change(records[0])
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def resume_case(needle: str, break_it: Callable[[Workspace], object], command: str = "run") -> Case:
    """`sectow <command> --resume` of the made run folder after `break_it`."""
    return Case(lambda ws: ws.resume(command), needle, lambda ws: (ws.make_run(), break_it(ws)))


def report_case(needle: str, break_it: Callable[[Workspace], object]) -> Case:
    return Case(lambda ws: ["report", str(ws.made)], needle, lambda ws: (ws.make_run(), break_it(ws)))


def ablation_folder(ws: Workspace) -> Path:
    folder = ws.root / "ablation"
    folder.mkdir()
    (folder / MARKER).write_text(json.dumps({"kind": "ablation", "format": FORMAT}))
    (folder / "config.yaml").write_text("iterations: 1\n")
    return folder


def ablate(*sets: str) -> Callable[[Workspace], list[str]]:
    return lambda ws: ["ablate", "--set", f"output_dir={ws.runs}",
                       *[a for item in sets for a in ("--set", item.format(root=ws.root))]]


def long_name(ws: Workspace) -> str:
    return str(ws.root / ("n" * 300))


QUESTION = "What colour is it?\n(A) red\n(B) green\nAnswer with the option's letter."
SAFETENSORS_HEADER_GARBAGE = (20).to_bytes(8, "little") + b"{not json at all....."

CASES.update({
    # --- config values that validate must also run ---
    "seed past 2**31": Case(lambda ws: ws.run("seed=2147483648"), "seed: Input should be less than 2147483648"),
    "negative seed": Case(lambda ws: ws.run("seed=-1"), "seed: Input should be greater than or equal to 0"),
    "seed a float": Case(lambda ws: ws.run("seed=1.5"), "seed: Input should be a valid integer"),
    "YAML error in a --set value": Case(lambda ws: ws.run("seed=[1"), "override 'seed=[1': YAML syntax error"),
    "integer given as a string": Case(lambda ws: ws.run("iterations='3'"), "iterations: Input should be a valid integer"),
    "boolean given as 1": Case(lambda ws: ws.run("cold_start=1"), "cold_start: Input should be a valid boolean"),
    "boolean given as 'yes please'": Case(lambda ws: ws.run("monitors.enabled_attacker=yes please"),
                                          "monitors.enabled_attacker: Input should be a valid boolean"),
    "number given as a boolean": Case(lambda ws: ws.run("rewards.format_bonus=true"),
                                      "rewards.format_bonus: Input should be a number, not a boolean"),
    "batch size not a multiple of generations": Case(lambda ws: ws.run("attacker_grpo.batch_size=6"),
                                                     "batch_size (6) must be a multiple of num_generations (4)"),
    "hidden size 16": Case(lambda ws: ws.run("defender.hidden_size=16"), "defender.hidden_size: must be a multiple of 64"),
    "infinite learning rate": Case(lambda ws: ws.run("attacker_sft.learning_rate=.inf"), "attacker_sft.learning_rate:"),
    "NaN learning rate": Case(lambda ws: ws.run("defender_sft.learning_rate=.nan"), "defender_sft.learning_rate:"),
    "min query length above max": Case(lambda ws: ws.run("monitors.min_query_chars=500"),
                                       "min_query_chars (500) is above max_query_chars (400)"),
    "unknown TRL field": Case(lambda ws: ws.run("defender_grpo.trl={max_grad_nrm: 1}"),
                              "'max_grad_nrm' is not a field of trl.GRPOConfig; did you mean 'max_grad_norm'?"),
    "TRL field sectow sets": Case(lambda ws: ws.run("attacker_sft.trl={seed: 3}"), "'seed' is set by sectow from 'seed'"),
    "TRL field of the wrong type": Case(lambda ws: ws.run("defender_sft.trl={max_grad_norm: big}"),
                                        "'max_grad_norm' takes a float"),
    "unknown judge": Case(lambda ws: ws.run("judge.kind=oracle"), "oracle"),
    "composite judge without parts": Case(lambda ws: ws.run("judge.kind=all"), "an 'all' judge needs at least one judge"),
    "value outside a choice": Case(lambda ws: ws.run("defender_grpo.baseline=panic"), "defender_grpo.baseline:"),
    "LoRA rank 0": Case(lambda ws: ws.run("defender.lora={rank: 0}"), "defender.lora.rank: Input should be greater than 0"),
    "name with a slash": Case(lambda ws: ws.run("name=a/b"), "name: String should match pattern"),
    "name over 255 characters": Case(lambda ws: ws.run("name=" + "n" * 300), "name: String should have at most 200"),
    "output folder name over 255 bytes": Case(lambda ws: ws.run(f"output_dir={long_name(ws)}"),
                                              "output_dir: the path has a name of 300 bytes"),
    "output folder with a NUL byte": Case(lambda ws: ws.run('output_dir="runs\\0x"'), "output_dir: the path contains a NUL"),
    "data path with a NUL byte": Case(lambda ws: ws.run('data.benign="b\\0.jsonl"'), "data.benign: the path contains a NUL"),
    "model path over 4095 bytes": Case(lambda ws: ws.run("defender.path=" + "/m" * 2100),
                                       "defender.path: the path is 4200 bytes long"),
    "empty key in --set": Case(lambda ws: ws.run("=3"), "override '=3': '' is not a key"),
    "empty part of a dotted key": Case(lambda ws: ws.run("defender..path=x"), "'defender..path' is not a key"),
    "--set into a value": Case(lambda ws: ws.run("seed=1", "seed.x=2"), "override 'seed.x=2': 'seed' is not a section"),
    "unknown section": Case(lambda ws: ws.run("attacker_ppo.steps=3"), "unknown key 'attacker_ppo'"),
    "duplicate YAML key": yaml_case("iterations: 2\nseed: 1\niterations: 3\n", "bad.yaml:3: key 'iterations' is given twice"),
    "duplicate nested YAML key": yaml_case("defender:\n  bf16: true\n  bf16: false\n", "bad.yaml:3: key 'bf16' is given twice"),
    "config that is false": yaml_case("false\n", "bad.yaml: expected a mapping of config keys at the top level, got bool"),
    "config that is []": yaml_case("[]\n", "bad.yaml: expected a mapping of config keys at the top level, got list"),
    "config that is a number": yaml_case("3\n", "got int"),
    "config not UTF-8": Case(lambda ws: ["run", "--config", str(ws.root / "latin1.yaml")], "latin1.yaml: not UTF-8 text",
                             lambda ws: ws.write("latin1.yaml", "name: caf\xe9\n".encode("latin-1"))),
    "config is a folder": Case(lambda ws: ["run", "--config", str(ws.data)], "data: not a file"),
    "YAML tab indentation": yaml_case("defender:\n\tbf16: true\n", "bad.yaml:2: YAML syntax error"),
    "YAML alias bomb": yaml_case("a0: &a0 [x, x, x, x, x, x, x, x, x]\n" + "".join(f"a{i}: &a{i} [" + ", ".join([f"*a{i-1}"] * 9) + "]\n" for i in range(1, 9)) + "iterations: *a8\n", "bad.yaml:1: YAML more than 100000 values once its aliases are expanded"),
    "YAML nested deeply": yaml_case("iterations: " + "[" * 100 + "]" * 100 + "\n", "bad.yaml:1: YAML nested more than 64 deep"),
    "YAML nested past the recursion limit": yaml_case("iterations: " + "[" * 5000 + "]" * 5000 + "\n",
                                                      "bad.yaml: YAML nested more than 64 deep"),
    "YAML key that is a list": yaml_case("? [1, 2]\n: 3\n", "bad.yaml:1: YAML syntax error (a key that is a list or a mapping)"),
    "YAML key that is a mapping": yaml_case("defender:\n  ? {a: 1}\n  : 3\n",
                                            "bad.yaml:2: YAML syntax error (a key that is a list or a mapping)"),
    "YAML merge key with a duplicate own key": yaml_case(
        "defender_sft: &sft {steps: 3}\nattacker_sft:\n  <<: *sft\n  steps: 4\n  steps: 5\n", "bad.yaml:5: key 'steps' is given twice"),
    "--judge-option nested deeply": Case(lambda ws: ["eval", "--model", str(ws.made), "--benchmark", "figstep=/nowhere", "--out",
                                                  str(ws.root / "ev"), "--judge-option", "x=" + "[" * 100 + "]" * 100],
                                      "--judge-option x: YAML nested more than 64 deep"),
    "strict integer in YAML": yaml_case("iterations: '2'\n", "iterations: Input should be a valid integer"),
    "strict boolean in YAML": yaml_case("cold_start: 0\n", "cold_start: Input should be a valid boolean"),
    "unknown command-line option": Case(lambda ws: ws.run() + ["--iterations", "2"], "unrecognized arguments: --iterations"),
    # --- output folders ---
    "output folder a dangling link": Case(lambda ws: ws.run(f"output_dir={ws.root / 'gone'}"),
                                          "gone: output folder is a dangling symbolic link",
                                          lambda ws: (ws.root / "gone").symlink_to(ws.root / "nowhere")),
    "output folder a link loop": Case(lambda ws: ws.run(f"output_dir={ws.root / 'loop'}"),
                                      "loop: output folder is a symbolic link loop",
                                      lambda ws: (ws.root / "loop").symlink_to(ws.root / "loop")),
    "output folder under a dangling link": Case(lambda ws: ws.run(f"output_dir={ws.root / 'gone' / 'runs'}"),
                                                "output folder is under", lambda ws: (ws.root / "gone").symlink_to("nowhere")),
    # --- data rows: every field type-checked ---
    "answer a number": data_case("benign", row("b1", "benign", answer=3) + "\n", "benign.jsonl:1: field 'answer' must be"),
    "answer not among the options": data_case("benign", row("b1", "benign", answer="C", query=QUESTION) + "\n",
                                              "benign.jsonl:1: answer 'C' is not among the options the query lists (A, B)"),
    "answer two letters": data_case("benign", row("b1", "benign", answer="AB", query=QUESTION) + "\n",
                                    "answer 'AB' must be one option letter (A-Z): the query lists options (A, B)"),
    "answer a lower-case letter": data_case("held_out_benign", row("b1", "benign", answer="a", query=QUESTION) + "\n",
                                            "answer 'a' must be"),
    "answer an empty alternative": data_case("benign", row("b1", "benign", answer="Seven|") + "\n",
                                             "answer 'Seven|' must be an option letter (A-Z) or a short exact answer"),
    "answer too long": data_case("benign", row("b1", "benign", answer="x" * 101) + "\n",
                                 "must be an option letter (A-Z) or a short exact answer (at most 100 characters"),
    "answer on a harmful sample": data_case("harmful_seeds", row("h1", "harmful", answer="A") + "\n",
                                            "harmful_seeds.jsonl:1: field 'answer' is for benign multiple-choice"),
    "intent a number": data_case("harmful_seeds", row("h1", "harmful", intent=5) + "\n",
                                 "harmful_seeds.jsonl:1: field 'intent' must be a string"),
    "category a list": data_case("held_out_harmful", row("h1", "harmful", category=["a"]) + "\n", "field 'category' must be"),
    "form a number": data_case("benign", row("b1", "benign", form=2) + "\n", "field 'form' must be a string"),
    "empty form": data_case("benign", row("b1", "benign", form="") + "\n", "field 'form' must not be empty"),
    "extra not an object": data_case("benign", row("b1", "benign", extra="x") + "\n", "field 'extra' must be a JSON object"),
    "seed_id a number": data_case("harmful_seeds", row("h1", "harmful", seed_id=7) + "\n", "field 'seed_id' must be"),
    "label a number": data_case("benign", row("b1", "benign").replace('"benign"', "1") + "\n", "field 'label' is missing"),
    "empty query": data_case("benign", row("b1", "benign").replace('"Query b1?"', '""') + "\n", "field 'query' is missing"),
    "image a number": data_case("benign", row("b1", "benign", image=5) + "\n", "field 'image' must be a path string"),
    "lone surrogate in a query": data_case("benign", row("b1", "benign").replace("Query", "Q\\ud800uery") + "\n",
                                           "benign.jsonl:1: text 'Q\\ud800uery b1?' cannot be written as UTF-8"),
    "lone surrogate in an intent": data_case("harmful_seeds", row("h1", "harmful", intent="X").replace('"X"', '"\\udfff"')
                                             + "\n",
                                             "harmful_seeds.jsonl:1: text"),
    "id with a slash": data_case("benign", row("../b1", "benign") + "\n", "benign.jsonl:1: id '../b1' must be"),
    "id starting with a dot": data_case("benign", row(".b1", "benign") + "\n", "id '.b1' must be at most 200"),
    "id over 200 characters": data_case("benign", row("b" * 201, "benign") + "\n", "must be at most 200 characters"),
    "row a list": data_case("benign", "[1, 2]\n", "benign.jsonl:1: expected a JSON object"),
    "row with a key given twice": data_case("benign", '{"id": "b1", "query": "q", "label": "benign", "query": "r"}\n',
                                            "benign.jsonl:1: key 'query' is given twice"),
    "row with a query of a million characters": data_case(
        "benign", json.dumps({"id": "b1", "query": "word " * 200_000, "label": "benign"}) + "\n",
        "benign.jsonl:1: query is 1000000 characters; at most 20000"),
    "row nested too deeply": data_case("benign", "[" * 100000 + "]" * 100000 + "\n", "benign.jsonl:1: bad JSON"),
    "duplicate id in a file": data_case("benign", row("b1", "benign") + "\n" + row("b2", "benign") + "\n"
                                        + row("b1", "benign") + "\n",
                                        "benign.jsonl:3: sample id 'b1' is used again (first on line 1)"),
    "id shared by training and held-out": data_case(
        "held_out_benign", row("benign-1", "benign") + "\n" + row("x", "benign") + "\n",
        "held_out_benign.jsonl: 1 sample id(s) also in data.benign"),
    "ids shared by the harmful files": data_case(
        "held_out_harmful", row("harmful_seeds-0", "harmful") + "\n" + row("harmful_seeds-1", "harmful") + "\n",
        "'harmful_seeds-0', 'harmful_seeds-1'"),
    "data file is a folder": Case(lambda ws: ws.run(f"data.benign={ws.data / 'img'}"), "img: not a file"),
    "data file a dangling link": Case(lambda ws: ws.run(f"data.benign={ws.data / 'gone.jsonl'}"),
                                      "gone.jsonl: data file is a dangling symbolic link",
                                      lambda ws: (ws.data / "gone.jsonl").symlink_to("nowhere.jsonl")),
    "image path with a NUL byte": data_case("harmful_seeds", row("h1", "harmful", "img/redNUL.png").replace("NUL", "\\u0000")
                                            + "\n",
                                            "harmful_seeds.jsonl:1: image path 'img/red\\x00.png' contains a NUL byte"),
    "image path through a link loop": Case(lambda ws: ws.run(), "harmful_seeds.jsonl:1: image path 'img/loop/x.png' cannot "
                                           "be followed", lambda ws: ((ws.data / "img/loop").symlink_to("loop"),
                                                                      ws.seeds_with_image("img/loop/x.png"))),
    "image path a folder": Case(lambda ws: ws.run(), "harmful_seeds.jsonl:1: image 'img' not found",
                                lambda ws: ws.seeds_with_image("img")),
    # --- model folders: a supported architecture, weights that match their headers ---
    "unknown model type": broken_model("defender", lambda m: (m / "config.json").write_text('{"model_type": "bert-ish"}'),
                                       "model_type 'bert-ish' is neither an image-text-to-text model nor a causal LM"),
    "config.json not JSON": broken_model("attacker", lambda m: (m / "config.json").write_text("{oops"),
                                         "config.json: not a readable JSON object"),
    "config.json a list": broken_model("attacker", lambda m: (m / "config.json").write_text("[]"),
                                       "config.json: not a readable JSON object"),
    "config.json without model_type": broken_model("defender", lambda m: (m / "config.json").write_text("{}"),
                                                   "no model_type"),
    "tensors that do not fit their bytes": broken_model("defender", misfit_weights,
                                                        "tensor 'w' is F32 [4, 8], 128 bytes, but the header gives it 8"),
    "safetensors header not JSON": broken_model(
        "attacker", lambda m: (m / "model.safetensors").write_bytes(SAFETENSORS_HEADER_GARBAGE),
        "model.safetensors: not a readable safetensors file"),
    "unknown tensor dtype": broken_model("defender", lambda m: (m / "model.safetensors").write_bytes(safetensors_with(
        {"w": {"dtype": "F128", "shape": [1], "data_offsets": [0, 16]}}, b"\0" * 16)), "unreadable dtype, shape or offsets"),
    "tensor bytes that overlap": broken_model("defender", lambda m: (m / "model.safetensors").write_bytes(safetensors_with(
        {"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
         "b": {"dtype": "U8", "shape": [4], "data_offsets": [2, 6]}}, b"\0" * 6)), "tensor bytes overlap or leave a gap"),
    "shard index not JSON": broken_model("attacker", lambda m: ((m / "model.safetensors").unlink(),
                                                                (m / "model.safetensors.index.json").write_text("{")),
                                         "model.safetensors.index.json: unreadable shard index"),
    "shard index naming a missing shard": broken_model(
        "attacker", lambda m: ((m / "model.safetensors").unlink(), (m / "model.safetensors.index.json").write_text(
            json.dumps({"weight_map": {"w": "model-00001-of-00002.safetensors"}}))),
        "model-00001-of-00002.safetensors: weight file named by the shard index is missing"),
    "vision model without image settings": broken_model("defender", lambda m: (m / "processor_config.json").unlink(),
                                                        "no image processor settings"),
    "model without a chat template": broken_model("attacker", lambda m: (m / "chat_template.jinja").unlink(),
                                                  "attacker: no chat template"),
    "model of yours on the toy world": Case(lambda ws: ws.run(f"defender.path={ws.models['tiny']}", data=False),
                                            "defender.path is a model of yours, but no data is set"),
    "model path is a file": Case(lambda ws: ws.run(f"defender.path={ws.data / 'benign.jsonl'}"), "model folder not found"),
    # --- resuming: exact or refused ---
    "resume of a missing folder": Case(lambda ws: ["run", "--resume", str(ws.root / "nowhere")], "nowhere: no such folder"),
    "resume of a file": Case(lambda ws: ["run", "--resume", str(ws.data / "benign.jsonl")], "benign.jsonl: not a folder"),
    "resume of a dangling link": Case(lambda ws: ["run", "--resume", str(ws.root / "gone")],
                                      "gone: run folder is a dangling symbolic link",
                                      lambda ws: (ws.root / "gone").symlink_to("nowhere")),
    "resume of an older run folder": Case(lambda ws: ["run", "--resume", str(ws.runs / "old-run-20240101-000000")],
                                          "not a sectow run folder (no sectow-folder.json)",
                                          lambda ws: ws.write("runs/old-run-20240101-000000/config.yaml", "seed: 0\n")),
    "resume of an ablation folder": Case(lambda ws: ["run", "--resume", str(ws.root / "ablation")],
                                         "a sectow ablation folder, not a run folder; continue it with `sectow ablate "
                                         "--resume", ablation_folder),
    "ablate --resume of a run folder": resume_case("a sectow run folder, not an ablation folder; continue it with "
                                                   "`sectow run --resume", lambda ws: None, command="ablate"),
    "resume of another format": resume_case("made by a sectow with folder format 2; this one reads format",
                                            lambda ws: (ws.made / MARKER).write_text('{"kind": "run", "format": 2}')),
    "marker of an unknown kind": resume_case("a sectow sweep folder, not a run folder",
                                             lambda ws: (ws.made / MARKER).write_text('{"kind": "sweep", "format": 3}')),
    "marker not JSON": resume_case("sectow-folder.json: unreadable", lambda ws: (ws.made / MARKER).write_text("{")),
    "marker of the wrong shape": resume_case("sectow-folder.json: not a sectow folder marker",
                                             lambda ws: (ws.made / MARKER).write_text('["run", 3]')),
    "resume with --set": Case(lambda ws: ws.resume() + ["--set", "seed=1"], "--resume continues a run with its own "
                              "config.yaml", lambda ws: ws.make_run()),
    "empty state.json": resume_case("state.json:1: not valid JSON", lambda ws: (ws.made / "state.json").write_text("")),
    "garbage state.json": resume_case("state.json:1: not valid JSON", lambda ws: (ws.made / "state.json").write_bytes(
        b"\x00\x01garbage")),
    "state.json of the wrong type": resume_case("state.json: not a sectow state file",
                                                lambda ws: (ws.made / "state.json").write_text('{"completed": "all"}')),
    "state.json listing a phase twice": resume_case("not a sectow state file", lambda ws: ws.edit(
        "made/state.json", lambda t: t.replace('"pool_1"', '"pool_1", "pool_1"'))),
    "metrics line of garbage": resume_case("metrics.jsonl:1: not valid JSON", lambda ws: ws.edit(
        "made/metrics.jsonl", lambda t: "{garbage\n" + t)),
    "metrics line not an object": resume_case("metrics.jsonl:2: not a phase record",
                                              lambda ws: ws.edit("made/metrics.jsonl", lambda t: t.splitlines()[0] + "\n[]\n"
                                                                 + t.splitlines()[1] + "\n")),
    "metrics outputs of the wrong type": resume_case("'outputs' must be a list of paths", lambda ws: ws.edit(
        "made/metrics.jsonl", lambda t: t.replace('["pool/iteration-1.jsonl"]', '"pool/iteration-1.jsonl"'))),
    "completed phase without metrics": resume_case("phase 'pool_1' is recorded complete in state.json but has 0 lines",
                                                   lambda ws: ws.edit("made/metrics.jsonl", lambda t: t.splitlines()[0] + "\n")),
    "completed checkpoint deleted": resume_case("defender-cold_start: missing (written by phase 'cold_start_defender'",
                                                lambda ws: shutil.rmtree(ws.made / "checkpoints/defender-cold_start")),
    "completed checkpoint cut short": resume_case(
        "defender-cold_start/model.safetensors: not a readable safetensors file (truncated",
        lambda ws: (ws.made / "checkpoints/defender-cold_start/model.safetensors").write_bytes(
            (ws.made / "checkpoints/defender-cold_start/model.safetensors").read_bytes()[:-512])),
    "pool file deleted": resume_case("iteration-1.jsonl: missing (written by phase 'pool_1'",
                                     lambda ws: (ws.made / "pool/iteration-1.jsonl").unlink()),
    "pool file cut mid-line": resume_case("iteration-1.jsonl:2: not a whole JSON record", lambda ws: ws.edit(
        "made/pool/iteration-1.jsonl", lambda t: t[:-40])),
    "pool record changed": resume_case("iteration-1.jsonl:1: pool record", lambda ws: pool_line(
        ws, lambda r: r.update(defender_reply="I cannot help with that."))),
    "pool record field of the wrong type": resume_case("pool record field 'iteration' is missing or of the wrong type",
                                                       lambda ws: pool_line(ws, lambda r: r.update(iteration="1"))),
    "pool image deleted": resume_case("the image of pool record", lambda ws: [p.unlink() for p in
                                                                              (ws.made / "pool/images").glob("*.png")]),
    "pool image damaged": resume_case("damaged image of pool record", lambda ws: [p.write_bytes(png()[:40]) for p in
                                                                                 (ws.made / "pool/images").glob("*.png")]),
    "config.yaml edited": resume_case("config.yaml: 'seed' changed since the run began (0 -> 7)", lambda ws: ws.edit(
        "made/config.yaml", lambda t: t.replace("seed: 0", "seed: 7"))),
    "config.yaml with fewer iterations": resume_case(
        "'iterations' changed since the run began (2 -> 1); iterations may only grow", lambda ws: (
            ws.edit("made/state.json", lambda t: t.replace('"iterations": 1', '"iterations": 2'))),),
    "config.yaml with other steps": resume_case("'defender_grpo.steps' changed since the run began (60 -> 6)", lambda ws: (
        ws.edit("made/config.yaml", lambda t: t.replace("steps: 60", "steps: 6", 1)))),
    "config.yaml not YAML": resume_case("config.yaml:3: YAML syntax error", lambda ws: (ws.made / "config.yaml").write_text(
        "seed: 0\nname: [x\n")),
    "config.yaml missing": resume_case("config.yaml: no such config file", lambda ws: (ws.made / "config.yaml").unlink()),
    "data edited since the run began": resume_case("data.benign has changed since the run began", lambda ws: ws.write(
        "data/benign.jsonl", row("benign-0", "benign") + "\n")),
    "data of a resumed run now broken": resume_case("benign.jsonl:1: bad JSON", lambda ws: ws.write(
        "data/benign.jsonl", "{\n")),
    "run folder in use": resume_case("made: in use by another sectow process (pid ", lambda ws: ws.hold_lock(ws.made)),
    # --- sectow ablate ---
    "ablate with a bad seed": Case(ablate("seed=-5"), "seed: Input should be greater than or equal to 0"),
    "ablate with a duplicate key": Case(lambda ws: ["ablate", "--config", str(ws.root / "bad.yaml")],
                                        "bad.yaml:2: key 'seed' is given twice",
                                        lambda ws: ws.write("bad.yaml", "seed: 1\nseed: 2\n")),
    "ablate output folder a dangling link": Case(ablate("output_dir={root}/gone"), "output folder is a dangling",
                                                 lambda ws: (ws.root / "gone").symlink_to("nowhere")),
    "ablate --sectow-run of an unfinished run": Case(lambda ws: ablate()(ws) + ["--sectow-run", str(ws.made)],
                                                     "made: not a finished sectow run", lambda ws: ws.make_run()),
    "lock file that is a link": resume_case("made/.sectow.lock: the lock file is a symbolic link; remove it", lambda ws: (
        ws.write("victim.txt", "not sectow's\n"), (ws.made / ".sectow.lock").unlink(missing_ok=True),
        (ws.made / ".sectow.lock").symlink_to(ws.root / "victim.txt"))),
    "report of a run in use": report_case("made: in use by another sectow process (pid ", lambda ws: ws.hold_lock(ws.made)),
    "ablate --sectow-run of a run in use": Case(lambda ws: ablate()(ws) + ["--sectow-run", str(ws.made)],
                                                "made: in use by another sectow process (pid ",
                                                lambda ws: (ws.make_run(), ws.write("made/summary.json", "{}"),
                                                            ws.hold_lock(ws.made))),
    "ablation folder in use": Case(lambda ws: ["ablate", "--resume", str(ws.root / "ablation")],
                                   "ablation: in use by another sectow process (pid ",
                                   lambda ws: (ablation_folder(ws), (ws.root / "ablation/.sectow.lock").write_text(""),
                                               ws.hold_lock(ws.root / "ablation"))),
    "ablate --resume with --sectow-run": Case(lambda ws: ["ablate", "--resume", str(ws.root / "ablation"), "--sectow-run",
                                                          str(ws.made)], "--resume continues an ablation with its own",
                                              ablation_folder),
    "ablate with an unknown key": Case(ablate("pool.size=3"), "unknown key 'pool.size'"),
    "ablate with a bad data row": Case(lambda ws: ablate()(ws) + ws.run()[3:], "benign.jsonl:1: field 'intent' must be",
                                       lambda ws: ws.write("data/benign.jsonl", row("b1", "benign", intent=[1]) + "\n")),
    "ablate --sectow-run of another experiment": Case(
        lambda ws: ablate("seed=3", *ws.run()[4::2])(ws) + ["--sectow-run", str(ws.made)],
        "its config differs from the ablation's at 'seed'", lambda ws: (
            ws.make_run(), ws.write("made/summary.json", '{"cold_start": {}, "iterations": []}'))),
    "ablate --resume of a missing folder": Case(lambda ws: ["ablate", "--resume", str(ws.root / "nowhere")],
                                                "nowhere: no such folder"),
    # --- sectow eval ---
    # --- every float finite, no secret in a URL (issue 22, item 4) ---
    "NaN through a trl passthrough": Case(lambda ws: ws.run("defender_sft.trl={weight_decay: .nan}"),
                                          "defender_sft.trl: 'weight_decay' is nan: numbers must be finite"),
    "infinity deep in a trl passthrough": Case(lambda ws: ws.run("defender_grpo.trl={optim_args: null, adam_beta1: .inf}"),
                                               "'adam_beta1' is inf: numbers must be finite"),
    "infinity in a judge option": Case(lambda ws: ws.run("judge.options={markers: [.inf]}"),
                                       "judge: option 'markers' is [inf]: numbers must be finite"),
    "credentials in a judge base_url": Case(
        lambda ws: ws.run("judge.kind=http", "judge.options={base_url: 'http://user:PASS@localhost:9/v1', model: x}"),
        "judge 'http': base_url: the URL holds credentials; give the API key in OPENAI_API_KEY instead"),
    "judge base_url with a bad IPv6 host": Case(
        lambda ws: ws.run("judge.kind=http", "judge.options={base_url: 'http://[::1:9/v1', model: x}"),
        "judge 'http': base_url: not a usable URL (Invalid IPv6 URL)"),
    "judge base_url with a port that is not a number": Case(
        lambda ws: ws.run("judge.kind=http", "judge.options={base_url: 'http://localhost:80a/v1', model: x}"),
        "judge 'http': base_url: not a usable URL"),
    "eval judge option NaN": Case(lambda ws: ws.eval() + ["--judge-option", "threshold=.nan"],
                                  "--judge-option: option 'threshold' is nan: numbers must be finite"),
    "eval judge base_url with credentials": Case(
        lambda ws: ws.eval() + ["--judge", "http", "--judge-option", "base_url=http://u:PASS@localhost:9/v1",
                                "--judge-option", "model=x"],
        "judge 'http': base_url: the URL holds credentials"),
    "eval batch size 0": Case(lambda ws: ws.eval() + ["--batch-size", "0"], "--batch-size must be a positive number, got 0"),
    "eval max new tokens 0": Case(lambda ws: ws.eval() + ["--max-new-tokens", "0"], "--max-new-tokens must be a positive"),
    "eval limit -1": Case(lambda ws: ws.eval() + ["--limit", "-1"], "--limit must be a positive number, got -1"),
    "eval limit not a number": Case(lambda ws: ws.eval() + ["--limit", "ten"], "argument --limit: invalid int value"),
    "eval mistyped judge option": Case(lambda ws: ws.eval() + ["--judge-option", "markrs=gcg"],
                                       "got an unexpected keyword argument 'markrs' (options: markers, max_chars)"),
    "eval judge option without =": Case(lambda ws: ws.eval() + ["--judge-option", "markers"],
                                        "--judge-option 'markers': expected KEY=VALUE"),
    "eval unknown judge": Case(lambda ws: ws.eval() + ["--judge", "oracle"], "unknown judge 'oracle'"),
    "eval unknown prompt defense": Case(lambda ws: ws.eval() + ["--prompt-defense", "wall"], "argument --prompt-defense"),
    "eval without --out": Case(lambda ws: ws.eval()[:3] + ["--benchmark", f"figstep={ws.root / 'figstep'}"],
                               "sectow eval needs --out"),
    "eval --resume of a non-eval folder": Case(lambda ws: ["eval", "--resume", str(ws.data)],
                                               "data: not a sectow eval folder (no eval-config.json)"),
    "eval --resume with garbage settings": Case(lambda ws: ["eval", "--resume", str(ws.root / "ev")],
                                                "eval-config.json: unreadable",
                                                lambda ws: ws.write("ev/eval-config.json", "{garbage")),
    "eval --resume with other settings": Case(lambda ws: ["eval", "--resume", str(ws.root / "ev"), "--limit", "3"],
                                              "--resume continues an evaluation with its own settings",
                                              lambda ws: ws.write("ev/eval-config.json", "{}")),
    "eval --resume and --overwrite": Case(lambda ws: ws.eval(out=ws.root / "ev") + ["--overwrite"],
                                          "not a sectow eval folder (no eval-config.json): --overwrite replaces only",
                                          lambda ws: ws.write("ev/notes.txt", "mine")),
    "eval into a folder with files": Case(lambda ws: ws.eval(out=ws.data), "data: output folder exists"),
    "eval output a dangling link": Case(lambda ws: ws.eval(out=ws.root / "gone"), "gone: output folder is a dangling",
                                        lambda ws: (ws.root / "gone").symlink_to("nowhere")),
    "eval output name over 255 bytes": Case(lambda ws: ws.eval(out=Path(long_name(ws))), "output folder has a name of 300"),
    "eval model without a chat template": Case(lambda ws: ws.eval(model=ws.root / "m"), "m: no chat template",
                                               lambda ws: (shutil.copytree(ws.models["tiny"], ws.root / "m"),
                                                           (ws.root / "m/chat_template.jinja").unlink())),
    "eval model with misfit tensors": Case(lambda ws: ws.eval(model=ws.root / "m"), "but the header gives it 8",
                                           lambda ws: misfit_weights(Path(shutil.copytree(ws.models["tiny"], ws.root / "m")))),
    "benchmark csv row too short": Case(lambda ws: ws.eval(), "safebench.csv:7: 2 fields where the header has 6",
                                        lambda ws: ws.edit("figstep/data/question/safebench.csv", lambda t: t + "\nx,1\n")),
    "benchmark csv not UTF-8": Case(lambda ws: ws.eval(), "safebench.csv: not UTF-8", lambda ws: ws.write(
        "figstep/data/question/safebench.csv", b"dataset,question\n\xff\xfe\n")),
    "benchmark root is a file": Case(lambda ws: ws.eval(f"figstep={ws.data / 'benign.jsonl'}"), "no such folder"),
    # --- sectow report ---
    "report of a missing folder": Case(lambda ws: ["report", str(ws.root / "nowhere")], "nowhere: no such folder"),
    "report of a non-run folder": Case(lambda ws: ["report", str(ws.data)], "data: not a sectow run folder"),
    "report without a summary": report_case("summary.json: missing", lambda ws: None),
    "report with a garbage summary": report_case("summary.json:1: not valid JSON",
                                                 lambda ws: ws.write("made/summary.json", "{garbage")),
    "report with a summary of the wrong shape": report_case("summary.json: not a run summary",
                                                            lambda ws: ws.write("made/summary.json", '{"iterations": 3}')),
    "report with damaged metrics": report_case("metrics.jsonl:1: not valid JSON", lambda ws: ws.edit(
        "made/metrics.jsonl", lambda t: "oops\n" + t)),
    "report with a garbage state": report_case("state.json:1: not valid JSON", lambda ws: ws.write("made/state.json", "x")),
    "report of another format": report_case("made by a sectow with folder format 1", lambda ws: ws.write(
        f"made/{MARKER}", '{"kind": "run", "format": 1}')),
    "report of an ablation with a garbage table": Case(
        lambda ws: ["report", str(ws.root / "ablation")], "comparison.json:1: not valid JSON",
        lambda ws: (ablation_folder(ws), ws.make_run(), (ws.root / "ablation/sectow").symlink_to(ws.made),
                    ws.write("made/summary.json", '{"cold_start": {}, "iterations": []}'),
                    ws.write("ablation/comparison.json", "[{"))),
    # --- sectow doctor: a FAIL row naming the problem, exit 1 ---
    "doctor config not UTF-8": DoctorCase(doctor(config="latin1.yaml"), "latin1.yaml: not UTF-8 text",
                                          lambda ws: ws.write("latin1.yaml", b"name: caf\xe9\n")),
    "doctor duplicate key": DoctorCase(doctor(config="bad.yaml"), "bad.yaml:2: key 'seed' is given twice",
                                       lambda ws: ws.write("bad.yaml", "seed: 1\nseed: 2\n")),
    "doctor strict integer": DoctorCase(doctor("iterations='2'"), "iterations: Input should be a valid integer"),
    "doctor bad data row": DoctorCase(doctor(*with_data()), "benign.jsonl:1: field 'answer' must be",
                                      lambda ws: ws.write("data/benign.jsonl", row("b1", "benign", answer=1) + "\n")),
    "doctor shared ids": DoctorCase(doctor(*with_data()), "sample id(s) also in data.benign",
                                    lambda ws: ws.write("data/held_out_benign.jsonl", row("benign-0", "benign") + "\n")),
    "doctor broken image": DoctorCase(doctor(*with_data()), "corrupt.png: unreadable image",
                                      lambda ws: ws.seeds_with_image("img/corrupt.png", b"not a png")),
    "doctor misfit tensors": DoctorCase(doctor("defender.path={root}/m"), "but the header gives it 8",
                                        lambda ws: misfit_weights(Path(shutil.copytree(ws.models["tiny"], ws.root / "m")))),
    "doctor model without a chat template": DoctorCase(doctor("attacker.path={root}/m"), "no chat template",
                                                       lambda ws: (shutil.copytree(ws.models["tiny"], ws.root / "m"),
                                                                   (ws.root / "m/chat_template.jinja").unlink())),
    "doctor output a dangling link": DoctorCase(doctor("output_dir={root}/gone"), "output folder is a dangling",
                                                lambda ws: (ws.root / "gone").symlink_to("nowhere")),
    "doctor output a link loop": DoctorCase(doctor("output_dir={root}/loop"), "output folder is a symbolic link loop",
                                            lambda ws: (ws.root / "loop").symlink_to("loop")),
    "doctor benchmark csv row too short": DoctorCase(
        lambda ws: doctor()(ws) + ["--benchmark", f"figstep={ws.root / 'figstep'}"], "2 fields where the header has 6",
        lambda ws: ws.edit("figstep/data/question/safebench.csv", lambda t: t + "\nx,1\n")),
    "doctor benchmark without a root": Case(lambda ws: ["doctor", "--benchmark", "figstep"],
                                            "benchmark 'figstep': expected NAME=ROOT"),
    # --- sectow prepare-model ---
    "prepare-model into an existing file": Case(lambda ws: ["prepare-model", "smollm2", "--out", str(ws.data / "benign.jsonl")],
                                                "benign.jsonl: already exists"),
    "prepare-model into a dangling link": Case(lambda ws: ["prepare-model", "smollm2", "--out", str(ws.root / "gone")],
                                               "gone: already exists", lambda ws: (ws.root / "gone").symlink_to("nowhere")),
    "prepare-model under a file": Case(lambda ws: ["prepare-model", "smollm2", "--out", str(ws.data / "benign.jsonl/m")],
                                       "benign.jsonl: a file, so"),
    "prepare-model name over 255 bytes": Case(lambda ws: ["prepare-model", "smollm2", "--out", long_name(ws)],
                                              "the path has a name of 300 bytes"),
    "prepare-model of an unknown model": Case(lambda ws: ["prepare-model", "llama"], "argument name: invalid choice: 'llama'"),
})

@pytest.fixture
def nothing_runs(monkeypatch):
    """A case that is not refused fails at once, rather than training or evaluating for minutes."""
    def reached(*args, **kwargs):
        raise AssertionError("the input was accepted: the command went on to its work")

    for target in ("sectow.tug_of_war.TugOfWar.run", "sectow.ablate.Ablation.run",
                   "sectow.evaluation.benchmark_eval.Evaluation.run", "sectow.models.prepare.load_smollm2"):
        monkeypatch.setattr(target, reached)


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_exit_2_and_changes_nothing(name, ws, capsys, nothing_runs):
    case = CASES[name]
    case.prepare(ws)
    argv = case.argv(ws)
    before = snapshot(ws.root)
    code = main(argv)
    after = snapshot(ws.root)
    out, err = capsys.readouterr()
    assert "Traceback" not in err + out
    if isinstance(case, DoctorCase):  # the table, with the problem as a FAIL row
        assert code == 1, (argv, err, out)
        failed = [line for line in out.splitlines() if "  FAIL  " in line]
        assert failed and any(case.needle in line for line in failed), out
    else:
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 2, (argv, err, out)
        assert len(lines) == 1 and lines[0].startswith("sectow: error: "), err
        assert case.needle in lines[0], lines[0]
    assert after == before  # no file changed, nothing new: no run folder, no eval output, no temporary file


COMMANDS = ("run", "ablate", "eval", "report", "doctor", "prepare-model")


def test_the_corpus_is_large_enough_and_covers_every_command(ws):
    assert len(CASES) >= 120
    ws.make_run()
    commands = {CASES[name].argv(ws)[0] for name in CASES}
    assert commands == set(COMMANDS)
    assert sum("--resume" in CASES[name].argv(ws) for name in CASES) >= 30


def test_the_made_run_folder_resumes(ws):
    """The run folder the resume cases break is itself accepted: each case is refused for what it breaks."""
    folder = ws.make_run()
    config = load_config(folder / "config.yaml")
    check_run_inputs(config, output_dir=False)
    phases = Phases(folder, config)
    assert phases.record.completed == ["cold_start_defender", "pool_1"]


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
