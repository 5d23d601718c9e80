"""Rates with uncertainty: a seeded percentile bootstrap of the mean, so every reported ASR, ORR and
accuracy carries an interval that is the same on every rerun."""

from __future__ import annotations

import math

import numpy as np

CHUNK_VALUES = 4_000_000  # resampled values held at once: bounds memory on 28k-sample benchmarks


def bootstrap_interval(flags: list[bool | float], resamples: int = 1000, seed: int = 0,
                       level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `flags` at confidence `level`."""
    if not flags:
        raise ValueError("a bootstrap interval needs at least one value")
    if resamples < 1 or not 0 < level < 1:
        raise ValueError(f"need resamples >= 1 and 0 < level < 1, got {resamples} and {level}")
    values = np.asarray(flags, dtype=float)
    rng = np.random.default_rng(seed)
    per_chunk = max(1, CHUNK_VALUES // len(values))
    means = np.concatenate([
        values[rng.integers(0, len(values), size=(min(per_chunk, resamples - start), len(values)))].mean(axis=1)
        for start in range(0, resamples, per_chunk)
    ])
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval of a proportion (95% at the default z): never zero-width at 0/n or n/n."""
    if n < 1 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n >= 1, got {successes} of {n}")
    share = successes / n
    centre = (share + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def proportion(flags: list[bool]) -> dict:
    """The share of true flags, how many there were, and its 95% Wilson interval (None for no flags)."""
    if not flags:
        return {"value": None, "n": 0, "interval": None}
    low, high = wilson_interval(sum(bool(f) for f in flags), len(flags))
    return {"value": round(sum(bool(f) for f in flags) / len(flags), 4), "n": len(flags),
            "interval": [round(low, 4), round(high, 4)]}
