"""Where a process's time goes, by kind of work: spans nest, and each span's own time (minus the
spans inside it) is added to its label, so the labels of one window add up to its wall time. The
loop records a snapshot difference per phase in metrics.jsonl; benchmarks read it from there."""

from __future__ import annotations

import functools
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

# The work the loop exists for; everything else a phase spends is its overhead.
USEFUL = ("trainer", "generation")

_self_seconds: dict[str, float] = defaultdict(float)
_stack: list[list] = []  # [label, start, seconds spent in child spans]


def begin(label: str) -> None:
    _stack.append([label, time.perf_counter(), 0.0])


def end(label: str) -> None:
    if not _stack or _stack[-1][0] != label:
        return  # a span cut short by an exception in a callback: drop it rather than misattribute
    _, start, children = _stack.pop()
    elapsed = time.perf_counter() - start
    _self_seconds[label] += elapsed - children
    if _stack:
        _stack[-1][2] += elapsed


@contextmanager
def span(label: str) -> Iterator[None]:
    begin(label)
    try:
        yield
    finally:
        end(label)


def snapshot() -> dict[str, float]:
    return dict(_self_seconds)


class Stopwatch:
    """Wall time of a window and its self time per label."""

    def __init__(self):
        self.start, self.before = time.perf_counter(), snapshot()

    def figures(self) -> dict:
        wall = time.perf_counter() - self.start
        after = snapshot()
        spent = {label: after[label] - self.before.get(label, 0.0) for label in after}
        useful = {label: round(spent.get(label, 0.0), 3) for label in USEFUL}
        other = {label: round(s, 3) for label, s in sorted(spent.items()) if label not in USEFUL and s > 5e-4}
        return {"wall_s": round(wall, 3), **{f"{label}_s": s for label, s in useful.items()},
                "other_s": round(wall - sum(useful.values()), 3), "other_by_kind_s": other}


def timed(label: str):
    """Decorator: every call of the function is a span of `label`."""
    def decorate(function):
        @functools.wraps(function)
        def spanned(*args, **kwargs):
            with span(label):
                return function(*args, **kwargs)
        return spanned
    return decorate
