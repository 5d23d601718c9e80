"""The world the game is played in: the built-in miniature, or the user's own JSONL files (same shape).
Harmful seeds to attack from, benign data the defender must keep answering, their held-out splits,
and fixed jailbreaks of the held-out seeds to measure attack success on."""

from __future__ import annotations

import logging
from pathlib import Path

from sectow.attacks.forms import TRAINING_FORMS, UNSEEN_FORM
from sectow.config import RunConfig
from sectow.data.schema import read_samples
from sectow.world.base import ImageWriter, World, jailbreak_variants
from sectow.world.miniature import build_world


log = logging.getLogger("sectow")


def load_world(config: RunConfig, folder: Path, defender_sees_images: bool = True) -> World:
    """The built-in miniature, or the user's four files (the preflight checked all four are set). For a
    text-only defender the questions about a picture (benign samples with an image and an answer key)
    are left out: without their image they cannot be answered, and would count as wrong or teach guessing."""
    data = config.data
    if data.harmful_seeds is None:
        world = build_world(folder, seed=config.seed, questions_per_split=(data.questions, data.questions // 4),
                            image_size=data.image_size)
        return world if defender_sees_images else without_picture_questions(world)
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
    return world if defender_sees_images else without_picture_questions(world)


def without_picture_questions(world: World) -> World:
    def answerable(samples: list) -> list:
        return [s for s in samples if not (s.image and s.answer)]

    left_out = len(world.benign_train) + len(world.benign_held_out)
    world.benign_train, world.benign_held_out = answerable(world.benign_train), answerable(world.benign_held_out)
    left_out -= len(world.benign_train) + len(world.benign_held_out)
    if left_out:
        log.info("the defender is text-only: %d questions about a picture left out of its data", left_out)
    return world


__all__ = ["World", "load_world"]
