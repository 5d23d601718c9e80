"""Named crash points for the fault-injection test. With SECTOW_CRASH_AT=<name>#<n> in the environment
the process kills itself with SIGKILL the n-th time it passes <name>, exactly as a preempted job dies;
without it (every real run) a crash point is one dictionary lookup."""

from __future__ import annotations

import os
import signal
from collections import Counter

_passed: Counter = Counter()


def crash_point(name: str) -> None:
    wanted = os.environ.get("SECTOW_CRASH_AT")
    if not wanted:
        return
    target, _, nth = wanted.partition("#")
    if target != name:
        return
    _passed[name] += 1
    if _passed[name] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)

