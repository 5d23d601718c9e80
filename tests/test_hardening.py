"""The training mechanics that make the tug-of-war close what its attacker opens (README, "Training that
closes what the attacker opens"), each on real models and trainers: the batch baseline, the still-open
pool, the frozen vision tower, the attacker's archive targets."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest
import torch

from sectow.attacks.queries import attacker_instruction
from sectow.attacks.strategies import MINIATURE
from sectow.config import GrpoSettings, PolicySettings, RunConfig, SftSettings
from sectow.game import target_cells
from sectow.judges import build_judge
from sectow.models.policy import load_policy
from sectow.models.tiny import build_tiny_model_once
from sectow.pool import JailbreakPool
from sectow.training.attacker import frozen_defender
from sectow.training.cold_start import cold_start
from sectow.training.defender import still_open
from sectow.training.grpo import batch_advantages, grpo_train
from sectow.training.players import attacker_sft_rows, defender_row
from sectow.world.miniature import build_world, corpus


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return build_tiny_model_once(tmp_path_factory.mktemp("tiny") / "model", corpus(), seed=1)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("world"), seed=0, questions_per_split=(16, 4))


def test_batch_advantages_score_against_the_whole_batch():
    rewards = torch.tensor([0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0])  # two groups of 4 that each agree
    advantages = batch_advantages(rewards)
    assert torch.all(advantages[:4] < 0) and torch.all(advantages[4:] > 0)
    assert torch.allclose(batch_advantages(rewards, scale=False), rewards - 0.5)


@pytest.mark.parametrize("baseline, learns", [("group", False), ("batch", True)])
def test_a_group_whose_completions_agree_teaches_only_under_the_batch_baseline(baseline, learns, tiny, world, tmp_path):
    """A reward fixed by the prompt (every completion of a group agrees): GRPO's group baseline gives every
    completion zero advantage, so no weight moves; the batch baseline moves them."""
    model, processor = load_policy(tiny, PolicySettings())
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    rows = [{**defender_row(s), "harmful": s.label == "harmful"} for s in world.harmful_train[:2] + world.benign_train[:2]]

    def reward(prompts, completions, harmful, **_):
        return [0.0 if h else 1.0 for h in harmful]

    settings = GrpoSettings(steps=1, batch_size=16, num_generations=4, learning_rate=1e-2, baseline=baseline)
    run = grpo_train(model, processor, rows, reward, tmp_path / "grpo", settings, max_completion_length=4, seed=0)
    moved = any(not torch.equal(before[n], p) for n, p in model.named_parameters())
    assert moved is learns
    assert run.frac_reward_zero_std == 1.0  # every group agreed: TRL's own measure of it


def test_the_tile_code_survives_the_cold_start(tiny, world, tmp_path):
    """The defender's cold start trains its language model on pictures without rewriting what the vision
    tower encodes: the image features of tile pictures are unchanged (and change when the tower is trained)."""
    pictures = [s for s in world.benign_train if s.form in ("tiles", "tiles_photo")][:8]
    rows = [defender_row(s, "Sure, here it is: [placeholder response]") for s in pictures]

    def features(model, processor) -> torch.Tensor:
        from sectow.data.schema import load_image
        inputs = processor.image_processor(images=[load_image(s.image) for s in pictures], return_tensors="pt")
        with torch.no_grad():
            found = model.model.get_image_features(inputs["pixel_values"], inputs["image_grid_thw"])
        found = getattr(found, "pooler_output", found)
        return torch.cat(list(found)) if isinstance(found, (list, tuple)) else found

    start = features(*load_policy(tiny, PolicySettings()))
    settings = SftSettings(steps=6, batch_size=4, learning_rate=2e-3)
    frozen = features(*cold_start(tiny, PolicySettings(), rows, settings, tmp_path / "frozen", seed=0))
    trained = features(*cold_start(tiny, PolicySettings(train_vision=True), rows, settings, tmp_path / "trained", seed=0))
    assert torch.equal(start, frozen)
    assert not torch.allclose(start, trained)


def test_the_still_open_pool_is_what_the_defender_still_complies_with(micro_run: Path):
    config = RunConfig()
    pool = JailbreakPool(micro_run / "pool")
    first = [s for s, r in zip(pool.samples(), pool.records()) if r["iteration"] == 1]
    open_now = still_open(first, frozen_defender(micro_run / "checkpoints" / "defender-cold_start", config),
                          build_judge(config.judge))
    assert {s.id for s in open_now} <= {s.id for s in first}
    # The cold-start defender let every iteration-1 record through when the pool was filtered; replayed
    # greedily in other batches it still does, up to the float noise of a different padding.
    assert len(open_now) >= 0.9 * len(first)


def test_the_attacker_is_asked_for_under_covered_cells_most():
    cells = MINIATURE.cells()
    assert set(cells) == {"none", "none split", "tiles", "tiles split", "tiles_photo", "tiles_photo split"}
    drawn = Counter(target_cells(MINIATURE, Counter({"none split": 99}), 6000, random.Random(0)))
    assert set(drawn) == set(cells)  # every cell stays asked for
    assert drawn["none split"] < 0.1 * drawn["tiles"]  # the crowded one seldom
    assert "Strategy to use: tiles split\n" in attacker_instruction("Do x.", target="tiles split")
    assert "Strategy to use" not in attacker_instruction("Do x.")


def test_the_attackers_cold_start_writes_in_the_cell_it_is_asked_for(world):
    rows = attacker_sft_rows(world.harmful_train[:20], MINIATURE, seed=0)
    targeted = 0
    for row in rows:
        prompt, reply = row["prompt"][0]["content"], row["completion"][0]["content"]
        if "Strategy to use: " in prompt:
            targeted += 1
            asked = prompt.split("Strategy to use: ", 1)[1].split("\n", 1)[0]
            assert reply.startswith(f"Strategy: {asked}\n")
    assert 0.6 * len(rows) < targeted < 0.9 * len(rows)  # a quarter left to the attacker's own choice
