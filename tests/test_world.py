"""The miniature's design (README, "The embedded default"), checked on the world it builds."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from sectow.attacks.strategies import KNOWN, MINIATURE, Composition
from sectow.attacks.tiles import CANVAS
from sectow.data.schema import load_image
from sectow.training.defender import benign_counterparts
from sectow.training.players import aligned_harmful
from sectow.world.base import ImageWriter
from sectow.world.miniature import build_world, corpus


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("world"), seed=0, questions_per_split=(40, 10))


def test_held_out_jailbreaks_are_every_held_out_seed_in_the_fixed_compositions(world):
    fixed = {name for names in MINIATURE.held_out.values() for name in names}
    assert len(world.jailbreaks_held_out) == len(world.harmful_held_out) * len(fixed) == 80 * 14
    by_seed = Counter(s.seed_id for s in world.jailbreaks_held_out)
    assert set(by_seed) == {s.id for s in world.harmful_held_out} and set(by_seed.values()) == {14}
    groups = Counter(s.extra["group"] for s in world.jailbreaks_held_out)
    assert groups == {g: 80 * len(n) for g, n in MINIATURE.held_out.items()}
    assert not {s.seed_id for s in world.jailbreaks_held_out} & {s.id for s in world.harmful_train}


def test_pictures_carry_the_request_and_the_text_does_not(world):
    for sample in world.jailbreaks_held_out:
        composition = Composition.of(sample.form)
        if composition.picture == "none":
            continue
        assert sample.intent not in sample.query
        assert load_image(sample.image).size == (CANVAS, CANVAS)


def test_benign_data_comes_in_the_same_surface_forms(world):
    benign_forms = {Composition.of(s.form) for s in world.benign_train if s.answer is None}
    assert {c.picture for c in benign_forms} >= {"tiles", "tiles_photo"}
    assert {c.encoding for c in benign_forms} >= {"split"} and "leet" not in {c.encoding for c in benign_forms}
    assert set(KNOWN) <= benign_forms
    held_out_benign = Counter(s.extra.get("group") for s in world.benign_held_out if s.answer is None)
    assert held_out_benign == {g: 40 * len(n) for g, n in MINIATURE.held_out.items()}


def test_the_defenders_alignment_covers_the_known_templates_only(world, tmp_path):
    harmful = aligned_harmful(world.harmful_train, MINIATURE, ImageWriter(tmp_path), 56)
    forms = Counter(s.form for s in harmful)
    assert forms == {"plain": 240, "dan": 80, "hypothetical": 80, "list": 80}


def test_the_tokenizer_never_saw_the_held_out_encoding():
    text = " ".join(corpus())
    assert "Expl ain" in text and "H0w" not in text and "h0w" not in text and "3xpl41n" not in text


def test_benign_counterparts_match_the_pools_compositions(world, tmp_path):
    pool = [s for s in world.jailbreaks_held_out if s.form in ("split", "dan+tiles", "hypothetical")][:30]
    counterparts = benign_counterparts(pool, world.benign_train, ImageWriter(tmp_path), 56, random.Random(0))
    assert [c.form for c in counterparts] == [s.form for s in pool]
    assert all(c.label == "benign" and c.answer is None for c in counterparts)
