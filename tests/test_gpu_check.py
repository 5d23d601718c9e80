"""benchmarks/gpu_check.py on CPU: its --smoke mode runs the same code path (build, GRPO with timing
callbacks, figures, JSON) on the tiny architecture; its 3B architecture and padded tokenizer are checked
without building the 3.75B-parameter model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch
from transformers import Qwen2_5_VLForConditionalGeneration

from sectow.world.miniature import corpus
from sectow.models.tiny import build_tokenizer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from gpu_check import qwen25_vl_3b_config  # noqa: E402


def test_smoke_mode_runs_on_cpu_and_writes_its_figures(tmp_path):
    out = tmp_path / "gpu_check.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--smoke", "--json", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(out.read_text())
    printed = dict(line.split(" ", 1) for line in done.stdout.splitlines() if " " in line)
    assert printed["hf_step_seconds"] == str(figures["hf_step_seconds"])
    assert figures["hf_engine_used"] == "hf-generate" and "hf_error" not in figures
    assert 0 < figures["hf_generated_tokens_per_step"] <= 4 * 8  # batch 4, at most 8 tokens each
    assert figures["hf_trained_tokens_per_step"] > figures["hf_generated_tokens_per_step"]  # prompts count too
    assert figures["hf_rollout_tokens_per_s"] > 0 and figures["hf_step_seconds"] > 0 and figures["hf_mfu"] >= 0


def test_the_3b_architecture_has_the_published_size():
    with torch.device("meta"):
        model = Qwen2_5_VLForConditionalGeneration(qwen25_vl_3b_config())
    assert sum(p.numel() for p in model.parameters()) == 3_754_622_976  # "3.75B params"
    assert model.lm_head.weight is model.model.language_model.embed_tokens.weight


def test_padded_tokenizer_covers_the_vocabulary_and_encodes_as_before():
    texts = corpus()
    plain, padded = build_tokenizer(texts), build_tokenizer(texts, pad_to=151936)
    assert len(padded) == 151936
    sample = "Please describe the picture. <|im_end|>"
    assert padded(sample)["input_ids"] == plain(sample)["input_ids"]
    assert padded.decode([151935]) == "<filler151935>"
