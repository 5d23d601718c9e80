"""Rank awareness for runs under `accelerate launch` or `torchrun`: trainers run on every process
(accelerate's data parallelism); the loop's own steps (world building, pool generation, evaluation,
writing the run folder) run once, on the main process, and every rank waits for them."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from functools import lru_cache

import torch


@lru_cache(maxsize=1)
def state():
    from accelerate import PartialState

    # Ranks wait at a barrier while the main process generates the pool and evaluates; with real models
    # that outlasts NCCL's 10-minute default.
    return PartialState(cpu=not torch.cuda.is_available(), timeout=timedelta(hours=6))


def is_main() -> bool:
    return state().is_main_process


def wait() -> None:
    state().wait_for_everyone()


def share(value):
    """The main process's `value`, on every process."""
    if state().num_processes == 1:
        return value
    from accelerate.utils import broadcast_object_list

    return broadcast_object_list([value])[0]


def summed(counts: Counter) -> Counter:
    """Outcome counts added up over all processes (each saw its own share of the prompts)."""
    if state().num_processes == 1:
        return counts
    from accelerate.utils import gather_object

    total: Counter = Counter()
    for part in gather_object([dict(counts)]):
        total.update(part)
    return total
