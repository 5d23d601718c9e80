"""Shared fixtures: a micro config that runs the whole loop in about a minute on 2 CPU cores."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

MICRO_OVERRIDES = [
    "iterations=2", "data.questions=40", "defender_sft.steps=60", "attacker_sft.steps=60",
    "attacker_grpo.steps=2", "defender_grpo.steps=2", "defender_grpo.batch_size=16", "defender_grpo.num_generations=4",
    "pool.samples_per_seed=1",
    "monitors.orr_bound=1.0", "monitors.intent_threshold=-1.0",
]


@pytest.fixture
def micro_overrides(tmp_path):
    return MICRO_OVERRIDES + [f"output_dir={tmp_path / 'runs'}"]


EXPECTED_PHASES = ["cold_start_defender", "cold_start_attacker", "evaluate_cold_start",
                   "attacker_grpo_1", "pool_1", "defender_grpo_1", "evaluate_iteration_1",
                   "attacker_grpo_2", "pool_2", "defender_grpo_2", "evaluate_iteration_2", "report"]


@pytest.fixture(scope="session")
def micro_run(tmp_path_factory) -> Path:
    """One uninterrupted micro run, shared by every test that reads a finished run folder."""
    from sectow.cli import main

    runs = tmp_path_factory.mktemp("runs")
    args = ["run"] + [a for o in MICRO_OVERRIDES + [f"output_dir={runs}"] for a in ("--set", o)]
    assert main(args) == 0
    return (runs / "latest").resolve()
