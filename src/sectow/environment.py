"""What a run ran on: the processor, the thread count and the versions of the ML stack. RL on a tiny model
gives different trajectories on different CPU models, so every run folder records them next to its figures."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata

PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "sectow")


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
