"""Quality monitoring. Attacker: a generated query counts only if it keeps the seed's intent (cosine
similarity with a sentence encoder), is well-formed, and is not a near-duplicate of the pool.
Defender: two-sided checks of its checkpoints on the validation split (over-refusal within a bound, and
no less safe than where the phase started)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np

from sectow.config import MonitorSettings
from sectow.models.encoder import DIMENSIONS, SentenceEncoder


class QualityReason(str, Enum):
    OK = "ok"
    MALFORMED = "malformed"
    OFF_INTENT = "off_intent"
    DUPLICATE = "duplicate"


@dataclass(frozen=True)
class Quality:
    intent_similarity: float
    pool_similarity: float  # highest cosine to a query already in the pool
    reason: QualityReason

    @property
    def passed(self) -> bool:
        return self.reason is QualityReason.OK


def judge_quality(well_formed: bool, intent_similarity: float, pool_similarity: float, settings: MonitorSettings) -> Quality:
    """The attacker-quality decision, pure. With monitoring off, every well-formed query passes."""
    if not well_formed:
        reason = QualityReason.MALFORMED
    elif settings.enabled_attacker and intent_similarity < settings.intent_threshold:
        reason = QualityReason.OFF_INTENT
    elif settings.enabled_attacker and pool_similarity >= settings.duplicate_threshold:
        reason = QualityReason.DUPLICATE
    else:
        reason = QualityReason.OK
    return Quality(intent_similarity, pool_similarity, reason)


class AttackerQualityMonitor:
    """Scores batches of (seed intent, query text) against each other and against the pool."""

    def __init__(self, encoder: SentenceEncoder, settings: MonitorSettings, pool_queries: list[str] = ()):
        self.encoder = encoder
        self.settings = settings
        self.pool_vectors = self.encoder.encode(list(pool_queries)) if pool_queries else np.zeros((0, DIMENSIONS), np.float32)

    def score(self, intent_B: list[str], query_B: list[str | None]) -> list[Quality]:
        intent_vectors = self.encoder.encode(intent_B)
        query_vectors = self.encoder.encode([q or "" for q in query_B])
        intent_similarity_B = np.sum(intent_vectors * query_vectors, axis=1)
        if len(self.pool_vectors):
            pool_similarity_B = (query_vectors @ self.pool_vectors.T).max(axis=1)
        else:
            pool_similarity_B = np.full(len(query_B), -1.0)
        limits = self.settings.min_query_chars, self.settings.max_query_chars
        return [judge_quality(q is not None and limits[0] <= len(q) <= limits[1], float(i), float(p), self.settings)
                for q, i, p in zip(query_B, intent_similarity_B, pool_similarity_B)]


@dataclass(frozen=True)
class DefenderCheck:
    """One two-sided check of a defender checkpoint on the validation split: at `step` of its phase (0: the
    defender the phase started from), its over-refusal rate and attack success rate, and whether it may
    be kept."""

    step: int
    orr: float
    asr: float
    passed: bool


def check_defender(step: int, orr: float, asr: float, start_asr: float, settings: MonitorSettings) -> DefenderCheck:
    """A checkpoint passes when it over-refuses within the bound AND is not less safe than the phase's
    start: a phase that unlearns refusals to get under the ORR bound is no better than one that over-refuses.
    With monitoring off every checkpoint passes."""
    passed = not settings.enabled_defender or (orr <= settings.orr_bound and asr <= start_asr)
    return DefenderCheck(step, orr, asr, passed)
