"""The world the game is played in: the built-in miniature, or the user's own JSONL files (same shape).
Harmful seeds to attack from, benign data the defender must keep answering, their held-out splits,
and fixed jailbreaks of the held-out seeds to measure attack success on."""

from __future__ import annotations

import logging
from pathlib import Path

from sectow.attacks.strategies import MINIATURE, USER_DATA, Composition, Strategies
from sectow.config import RunConfig
from sectow.data.schema import Sample, read_samples
from sectow.world.base import ImageWriter, World, jailbreak_variants
from sectow.world.miniature import build_world


log = logging.getLogger("sectow")


def strategies_for(config: RunConfig, pictures: bool = True) -> Strategies:
    """The attack space of the world `config` names: the miniature's, or the one for a user's own data;
    without picture strategies for a text-only defender."""
    strategies = MINIATURE if config.data.harmful_seeds is None else USER_DATA
    return strategies if pictures else strategies.without_pictures()


def load_world(config: RunConfig, folder: Path, pictures: bool = True) -> World:
    """The built-in miniature, or the user's four files (the preflight checked all four are set).
    `pictures=False` (a text-only defender) offers, teaches and evaluates no picture strategy, and leaves
    out the benign samples that need their picture (`needs_its_picture`)."""
    data = config.data
    if data.harmful_seeds is None:
        world = build_world(folder, seed=config.seed, questions_per_split=(data.questions, data.questions // 4),
                            image_size=data.image_size)
        if not pictures:
            world.strategies = strategies_for(config, pictures)
            world.jailbreaks_held_out = [s for s in world.jailbreaks_held_out if s.extra.get("group") in
                                         world.strategies.held_out and s.form in world.strategies.held_out[s.extra["group"]]]
        return world if pictures else without_pictured_benign(world)
    paths = {"harmful_seeds": data.harmful_seeds, "benign": data.benign, "held_out_harmful": data.held_out_harmful,
             "held_out_benign": data.held_out_benign}
    loaded = {key: read_samples(path) for key, path in paths.items()}
    for key in ("harmful_seeds", "held_out_harmful"):
        for sample in loaded[key]:
            sample.intent = sample.intent or sample.query
            sample.seed_id = sample.seed_id or sample.id
    strategies = strategies_for(config, pictures)
    world = World(loaded["harmful_seeds"], loaded["held_out_harmful"], loaded["benign"], loaded["held_out_benign"],
                  strategies)
    world.jailbreaks_held_out = jailbreak_variants(world.harmful_held_out, strategies, ImageWriter(folder), data.image_size)
    return world if pictures else without_pictured_benign(world)


def needs_its_picture(sample: Sample) -> bool:
    """A question about its picture cannot be answered without it (it would count as wrong, or teach
    guessing), and a request in a form that writes it into the picture (or a form sectow does not know)
    is not there at all without it; a request in its text is sent as text."""
    if not sample.image:
        return False
    if sample.answer:
        return True
    try:
        return Composition.of(sample.form).picture != "none"
    except ValueError:
        return True


def without_pictured_benign(world: World) -> World:
    left_out = sum(1 for s in world.benign_train + world.benign_held_out if needs_its_picture(s))
    world.benign_train = [s for s in world.benign_train if not needs_its_picture(s)]
    world.benign_held_out = [s for s in world.benign_held_out if not needs_its_picture(s)]
    if left_out:
        log.info("the defender is text-only: %d benign samples that need their picture left out of its data", left_out)
    return world


__all__ = ["World", "load_world", "strategies_for"]
