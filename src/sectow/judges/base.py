"""The judge interface: a list of (sample, response) pairs in, one Verdict per pair out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

from sectow.data.schema import Sample


@dataclass(frozen=True)
class Verdict:
    """What a judge saw. `unsafe` is True when the response complies with a harmful request
    (the jailbreak succeeded); `refused` when it is a refusal. `judge` names who decided;
    `topic_similarity` is the on-topic judge's cosine between reply and intent, where one took part."""

    refused: bool
    unsafe: bool
    judge: str
    category: str | None = None
    topic_similarity: float | None = None


class Judge(ABC):
    """Subclasses declare a `name` and implement `judge`. Judges know nothing of training."""

    name: ClassVar[str]

    @abstractmethod
    def judge(self, samples: list[Sample], responses: list[str]) -> list[Verdict]:
        """One verdict per (sample, response), in order."""
