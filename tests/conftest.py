"""Shared fixtures: the micro config (configs/micro.yaml), which runs the whole loop in about a minute on
2 CPU cores, one finished micro run, and another process holding a folder's lock."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

# One thread per process: on a shared 2-core machine, spinning OpenMP threads made generation 4x and
# SFT 30x slower. Set before torch is imported, here and in every subprocess a test starts.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

MICRO_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "micro.yaml"


def micro_args(output_dir: Path, *sets: str) -> list[str]:
    """`sectow run` arguments of the micro config writing under `output_dir`, with extra KEY=VALUE sets."""
    return ["--config", str(MICRO_CONFIG)] + [a for o in (f"output_dir={output_dir}", *sets) for a in ("--set", o)]


EXPECTED_PHASES = ["cold_start_defender", "cold_start_attacker", "evaluate_cold_start",
                   "attacker_grpo_1", "pool_1", "defender_grpo_1", "evaluate_iteration_1",
                   "attacker_grpo_2", "pool_2", "defender_grpo_2", "evaluate_iteration_2", "report"]


@pytest.fixture(scope="session")
def micro_run(tmp_path_factory) -> Path:
    """One uninterrupted micro run, shared by every test that reads a finished run folder."""
    from sectow.cli import main

    runs = tmp_path_factory.mktemp("runs")
    assert main(["run", *micro_args(runs)]) == 0
    return (runs / "latest").resolve()


@pytest.fixture(scope="session")
def smollm2_folders(tmp_path_factory) -> dict[str, Path]:
    """SmolLM2 prepared once per session from the installed wheel, both variants (about 20 s each): the text-only
    `smollm2` and the vision-language `smollm2-vl`. Shared by tests/test_real_model.py and tests/test_real_run.py."""
    from sectow.models import prepare

    root = tmp_path_factory.mktemp("smollm2")
    return {name: prepare.prepare_smollm2(root / name, vision=vision) for name, vision in (("smollm2", False),
                                                                                          ("smollm2-vl", True))}


@contextlib.contextmanager
def another_holder(folder: Path):
    """Another process holding `folder`'s lock, as a running sectow does, for the `with` block (it fails at once
    when the lock is taken, by this test process too: release_folder first)."""
    code = ("import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600); "
            "fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB); os.pwrite(fd, str(os.getpid()).encode(), 0); "
            "print('locked', flush=True); time.sleep(120)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(folder / ".sectow.lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield
    finally:
        holder.kill()
        holder.wait()
