"""The world the game is played in: the built-in miniature, or the user's own JSONL files (same shape).
Harmful seeds to attack from, benign data the defender must keep answering, their held-out splits,
and fixed jailbreaks of the held-out seeds to measure attack success on."""

from __future__ import annotations

from pathlib import Path

from sectow.attacks.forms import TRAINING_FORMS, UNSEEN_FORM
from sectow.config import RunConfig
from sectow.data.schema import read_samples
from sectow.world.base import ImageWriter, World, jailbreak_variants
from sectow.world.miniature import build_world


def load_world(config: RunConfig, folder: Path) -> World:
    """The built-in miniature, or the user's four files (the preflight checked all four are set)."""
    data = config.data
    if data.harmful_seeds is None:
        return build_world(folder, seed=config.seed, questions_per_split=(data.questions, data.questions // 4),
                           image_size=data.image_size)
    paths = {"harmful_seeds": data.harmful_seeds, "benign": data.benign, "held_out_harmful": data.held_out_harmful,
             "held_out_benign": data.held_out_benign}
    loaded = {key: read_samples(path) for key, path in paths.items()}
    for key in ("harmful_seeds", "held_out_harmful"):
        for sample in loaded[key]:
            sample.intent = sample.intent or sample.query
            sample.seed_id = sample.seed_id or sample.id
    world = World(loaded["harmful_seeds"], loaded["held_out_harmful"], loaded["benign"], loaded["held_out_benign"])
    world.jailbreaks_held_out = jailbreak_variants(world.harmful_held_out, TRAINING_FORMS + (UNSEEN_FORM,),
                                                   ImageWriter(folder), data.image_size)
    return world


__all__ = ["World", "load_world"]
