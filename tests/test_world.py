"""The miniature's design (README, "The embedded default"), checked on the world it builds."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from sectow.attacks.strategies import KNOWN, MINIATURE, Composition
from sectow.attacks.tiles import CANVAS
from sectow.data.schema import load_image
from sectow.training.defender import ALIGNMENT, channel, defender_rows
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


def test_defender_rows_balance_channels_and_pair_each_harmful_row_with_its_benign_composition(world, tmp_path):
    # a pool dominated by one channel: 60 text records, 6 split, 2 pictures
    text = [s for s in world.jailbreaks_held_out if s.form == "actor+story"][:60]
    split = [s for s in world.jailbreaks_held_out if s.form == "split"][:6]
    picture = [s for s in world.jailbreaks_held_out if s.form == "dan+tiles"][:2]
    alignment = world.harmful_train[:20]
    rows, harmful_by_channel = defender_rows(text + split + picture, alignment, world.benign_train, 240,
                                             ImageWriter(tmp_path), 56, random.Random(0))
    assert len(rows) == 240  # exactly what the phase sees
    assert dict(harmful_by_channel) == {ALIGNMENT: 27, "text": 26, "split": 26, "picture": 26}
    harmful = [r for r in rows if r["label"] == "harmful"]
    benign = [r for r in rows if r["label"] == "benign"]
    assert len(harmful) == 105 and sum(bool(r["answer"]) for r in benign) == 30
    # the rare channels are repeated to their share: every picture record 13 times
    assert Counter(r["intent"] for r in harmful if r["images"] and r["prompt"][0]["content"].endswith("ask.")).most_common(1)
    # each harmful row's composition comes once more as a benign request
    harmful_texts = Counter(r["prompt"][0]["content"].replace(r["intent"], "<request>") for r in harmful
                            if r["intent"] in r["prompt"][0]["content"])
    assert harmful_texts  # wrappers around a readable request
    counterparts = [r for r in benign if not r["answer"]]
    assert len(counterparts) == len(harmful)
    assert all(r["label"] == "benign" for r in counterparts)


def test_channels_name_where_the_request_gets_through():
    assert [channel(f) for f in ("plain", None, "actor+story", "split", "research+split", "tiles", "dan+tiles_photo+split")] \
        == ["text", "text", "text", "split", "split", "picture", "picture"]


def test_the_held_out_data_splits_into_validation_and_test_by_seed(world):
    validation, test = world.split("validation"), world.split("test")
    for v, t, everything in ((validation[0], test[0], world.jailbreaks_held_out), (validation[1], test[1], world.benign_held_out)):
        assert v and t and not {s.id for s in v} & {s.id for s in t}
        assert {s.id for s in v} | {s.id for s in t} == {s.id for s in everything}
    # a seed's compositions go one way, and the forms no player trains on are test only
    assert not {s.seed_id for s in validation[0]} & {s.seed_id for s in test[0] if s.extra["group"] not in MINIATURE.held_out_groups}
    assert not {s.extra.get("group") for s in validation[0] + validation[1]} & set(MINIATURE.held_out_groups)
    assert len({s.seed_id for s in validation[0]}) == len(world.harmful_held_out) // 2
    # the split depends on the seeds' ids alone: the same world built again splits the same way
    again = build_world(world_folder(world), seed=0, questions_per_split=(40, 10))
    assert [s.id for s in again.split("validation")[0]] == [s.id for s in validation[0]]


def world_folder(world):
    from pathlib import Path
    return Path(world.harmful_train[0].image).parent
