"""Benchmarks read from local files: one registry of loaders, and `load_benchmark` to use them by name."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from pathlib import Path

from sectow.data.benchmarks.base import BenchmarkData, BenchmarkLoader
from sectow.data.benchmarks.figstep import FigStep, FigStepTiny, SafeBench
from sectow.data.benchmarks.jailbreakv import JailBreakV, JailBreakVMini, RedTeam2K
from sectow.data.benchmarks.mmmu import MMMU, MMMUDev, MMMUPro, MMMUPro4, MMMUProVision
from sectow.data.benchmarks.mmsafetybench import MMSafetyBench, MMSafetyBenchTiny
from sectow.errors import UserError

BENCHMARKS: dict[str, type[BenchmarkLoader]] = {
    loader.name: loader
    for loader in (
        JailBreakV, JailBreakVMini, RedTeam2K, FigStep, FigStepTiny, SafeBench, MMSafetyBench,
        MMSafetyBenchTiny, MMMUDev, MMMU, MMMUPro, MMMUPro4, MMMUProVision,
    )
}


def load_benchmark(name: str, root: str | Path, limit: int | None = None,
                   categories: Sequence[str] | str | None = None, seed: int = 0, check_images: bool = True,
                   **options) -> BenchmarkData:
    """Load benchmark `name` from `root`, optionally only some categories and a seeded random `limit`
    of rows; chosen rows whose images are missing (or unreadable, with `check_images`) are listed in
    `skipped`. `options` go to the loader (mmsafetybench: `variants`; MMMU and MMMU-Pro: `cache_dir`)."""
    if name not in BENCHMARKS:
        raise UserError(f"unknown benchmark {name!r} (known: {', '.join(BENCHMARKS)})")
    loader = BENCHMARKS[name]
    accepted = set(inspect.signature(loader).parameters)
    unknown = sorted(set(options) - accepted)
    if unknown:
        takes = f"takes {', '.join(sorted(accepted))}" if accepted else "takes no options"
        raise UserError(f"benchmark {name!r} has no option {unknown[0]!r} ({takes})")
    return loader(**options).load(root, limit=limit, categories=categories, seed=seed, check_images=check_images)


__all__ = ["BENCHMARKS", "BenchmarkData", "BenchmarkLoader", "load_benchmark"]
