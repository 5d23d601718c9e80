"""Rates with uncertainty: Wilson score intervals, so every reported ASR, ORR and accuracy carries an
interval that is honest at the edges (0 of 6 is [0.000, 0.390], never [0.000, 0.000]) and the same on
every rerun."""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist

LEVEL = 0.95
DIGITS = 4


def wilson_interval(successes: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """The Wilson score interval of `successes` out of `n` at confidence `level`. Unlike the normal
    approximation it stays inside [0, 1] and has a positive width at 0/n and n/n."""
    if n < 1:
        raise ValueError(f"a proportion needs at least one trial, got n={n}")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be between 0 and n={n}, got {successes}")
    if not 0 < level < 1:
        raise ValueError(f"need 0 < level < 1, got {level}")
    z = NormalDist().inv_cdf(1 - (1 - level) / 2)
    p = successes / n
    denominator = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    # The bounds are exactly 0 and 1 at the edges; floating point can land a hair outside.
    low = 0.0 if successes == 0 else max(0.0, center - half)
    high = 1.0 if successes == n else min(1.0, center + half)
    return low, high


def proportion(flags: Sequence[bool | int | float]) -> dict:
    """The share of true flags, how many there were, and its 95% Wilson interval:
    `{"value", "n", "interval": [low, high]}`, with `value` and `interval` None for no flags.
    Flags are booleans (or 0/1)."""
    if not flags:
        return {"value": None, "n": 0, "interval": None}
    if any(flag not in (0, 1) for flag in flags):  # True == 1 and False == 0, so bools pass
        raise ValueError("proportion() takes true/false flags (or 0/1)")
    successes, n = int(sum(bool(flag) for flag in flags)), len(flags)
    low, high = wilson_interval(successes, n)
    return {"value": round(successes / n, DIGITS), "n": n, "interval": [round(low, DIGITS), round(high, DIGITS)]}


def expected_proportion(chances: Sequence[float]) -> dict:
    """The expected share of successes when each trial succeeds with its own chance (1 for a sure success,
    1/k for a guess among k), with a Wilson interval at that expected count: `{"value", "n", "interval"}`."""
    if not chances:
        return {"value": None, "n": 0, "interval": None}
    expected, n = float(sum(chances)), len(chances)
    low, high = wilson_interval(min(expected, n), n)
    return {"value": round(expected / n, DIGITS), "n": n, "interval": [round(low, DIGITS), round(high, DIGITS)]}


def rate_text(rate: dict | None, missing: str = "-") -> str:
    """`value [low, high]` of a proportion (three decimals), `missing` for none."""
    if not isinstance(rate, dict) or rate.get("value") is None:
        return missing
    low, high = rate["interval"]
    return f"{rate['value']:.3f} [{low:.3f}, {high:.3f}]"
