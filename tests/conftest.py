"""Shared fixtures: a micro config that runs the whole loop in about a minute on 2 CPU cores."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

MICRO_OVERRIDES = [
    "iterations=2", "data.questions=40", "defender_sft.steps=60", "attacker_sft.steps=60",
    "attacker_grpo.steps=2", "defender_grpo.steps=2", "pool.samples_per_seed=1",
    "monitors.orr_bound=1.0", "monitors.intent_threshold=-1.0",
]


@pytest.fixture
def micro_overrides(tmp_path):
    return MICRO_OVERRIDES + [f"output_dir={tmp_path / 'runs'}"]
