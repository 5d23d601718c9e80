"""What a run ran on: the processor, the thread count and the versions of the ML stack. RL on a tiny model
gives different trajectories on different CPU models, so every run folder records them next to its figures."""

from __future__ import annotations

import json
import os
import platform
import sys
from importlib import metadata
from pathlib import Path

from sectow.atomic import write_atomic

PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "sectow")
# One entry per start or resume of a run: kept apart from summary.json, whose figures a resumed run
# reproduces exactly.
ENVIRONMENT = "environment.json"


def cpu_model() -> str:
    """The processor's model name as /proc/cpuinfo gives it (what `lscpu` shows), else platform's word."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict:
    import torch

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {"cpu_model": cpu_model(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "python": sys.version.split()[0], "platform": platform.platform(), "versions": versions}


def read_environments(folder: Path) -> list[dict]:
    """The entries of a run folder's environment.json; none when it is missing or damaged (it informs, and
    is written anew)."""
    try:
        found = json.loads((folder / ENVIRONMENT).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [e for e in found if isinstance(e, dict)] if isinstance(found, list) else []


def record_environment(folder: Path) -> None:
    """Add this process's environment to the run folder's environment.json."""
    write_atomic(folder / ENVIRONMENT, json.dumps(read_environments(folder) + [environment()], indent=2))
