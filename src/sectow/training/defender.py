"""The defender's GRPO phase (METHOD.md 2c): the pool records of every iteration that still beat the current
defender, balanced across channels, each beside a benign request in the same composition, plus the
cold-start alignment and benign questions; rewarded for refusing harm and answering the benign. A monitor
callback checks checkpoints on the validation split and keeps the last one that passes."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import TrainerCallback

from sectow import ranks
from sectow.attacks.strategies import Composition
from sectow.config import GrpoSettings, RunConfig
from sectow.data.schema import Sample
from sectow.game import FrozenDefender
from sectow.judges.base import Judge
from sectow.models.policy import for_training, load_policy, merged
from sectow.training.grpo import grpo_train
from sectow.training.players import DefenderReward, defender_grpo_row
from sectow.world.base import ImageWriter, composed, plain_requests

ALIGNMENT = "alignment"  # the channel of the cold start's own harmful rows (plain requests, known templates)
QUESTION_SHARE = 1 / 8  # of a phase's prompts: benign questions with answer keys, so accuracy holds


def channel(form: str | None) -> str:
    """Which way a jailbreak gets its request through: 'picture' (written in an image), its encoding
    ('split', ...), or 'text' (wrappers around a readable request)."""
    composition = Composition.of(form or "plain")
    if composition.picture != "none":
        return "picture"
    return composition.encoding if composition.encoding != "plain" else "text"


def still_open(pool: list[Sample], defender: FrozenDefender, judge: Judge) -> list[Sample]:
    """The pool records the current defender still complies with (greedy, as the pool was filtered): what
    it has left to learn. Records it already refuses would only dilute its phase."""
    if not pool:
        return []
    replies = defender.replies([(s.query, s.image) for s in pool])
    return [s for s, verdict in zip(pool, judge.judge(pool, replies), strict=True) if verdict.unsafe]


def phase_prompts(settings: GrpoSettings) -> int:
    """How many prompts a GRPO phase of `settings` sees, on every process together."""
    return settings.steps * (settings.batch_size // settings.num_generations) * ranks.state().num_processes


def defender_rows(open_pool: list[Sample], alignment: list[Sample], benign: list[Sample], prompts: int,
                  images: ImageWriter, image_size: int, rng: random.Random) -> tuple[list[dict], Counter]:
    """As many rows as the phase sees (`prompts`), so that it sees all it is given: harmful rows drawn
    equally from each channel of the still-open pool and from the cold start's alignment (a rare channel
    is not drowned by a common one), each with a benign request in the same composition (only the content
    tells refuse from comply), and benign questions (`QUESTION_SHARE`). Returns the rows and the harmful
    rows per channel."""
    by_channel: dict[str, list[Sample]] = defaultdict(list)
    for sample in open_pool:
        by_channel[channel(sample.form)].append(sample)
    by_channel[ALIGNMENT] = list(alignment)
    questions = [s for s in benign if s.answer]
    requests = plain_requests(benign)
    n_harmful = prompts - (round(prompts * QUESTION_SHARE) if questions else 0)
    n_harmful = n_harmful // 2 if requests else n_harmful  # each with its benign counterpart
    n_questions = prompts - n_harmful * (2 if requests else 1) if questions else 0
    names = sorted(by_channel)
    shares = Counter({name: n_harmful // len(names) + (i < n_harmful % len(names)) for i, name in enumerate(names)})
    harmful = [s for name in names for s in drawn(by_channel[name], shares[name], rng)]
    counterparts = [composed(rng.choice(requests), Composition.of(s.form or "plain"), images, image_size)
                    for s in harmful] if requests else []
    rows = [defender_grpo_row(s) for s in harmful + counterparts + drawn(questions, n_questions, rng)]
    rng.shuffle(rows)
    return rows, shares


def drawn(samples: list[Sample], count: int, rng: random.Random) -> list[Sample]:
    """`count` samples: every one of `samples` as often as it fits, the remainder drawn without replacement."""
    if not samples or count <= 0:
        return []
    rounds, rest = divmod(count, len(samples))
    return list(samples) * rounds + rng.sample(samples, rest)


class CheckpointMonitor(TrainerCallback):
    """Calls `check(model, step)` before the first step (step 0: the phase's start, which is not a candidate),
    every `every` steps and after the last; keeps a copy of the trainable weights of the last checkpoint
    that passed. `restore` loads it back."""

    def __init__(self, check: Callable[[object, int], bool], every: int):
        self.check, self.every = check, every
        self.kept_step: int | None = None
        self._kept: dict[str, torch.Tensor] = {}

    def _run(self, model, step: int) -> None:
        if self.check(model, step) and step > 0:
            self.kept_step = step
            self._kept = {name: p.detach().to("cpu", copy=True) for name, p in model.named_parameters() if p.requires_grad}

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self._run(model, 0)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.every == 0 or state.global_step >= state.max_steps:
            self._run(model, state.global_step)

    @torch.no_grad()
    def restore(self, model) -> None:
        parameters = dict(model.named_parameters())
        for name, value in self._kept.items():
            parameters[name].copy_(value.to(parameters[name].device))


@dataclass
class TrainedDefender:
    model: object
    processor: object
    outcomes: dict
    kept_step: int | None  # the checkpoint kept; None: none passed, roll back
    frac_reward_zero_std: float | None


def train_defender(defender_dir: Path, rows: list[dict], judge: Judge, config: RunConfig, output_dir: Path,
                   seed: int, check: Callable[[object, int], bool]) -> TrainedDefender:
    model, processor = load_policy(defender_dir, config.defender)
    model = for_training(model, config.defender)  # kept wrapped, so that `merged` merges the adapters
    reward = DefenderReward(judge, config.rewards)
    monitor = CheckpointMonitor(lambda m, step: check((m, processor), step), config.monitors.check_every)
    run = grpo_train(model, processor, rows, reward, output_dir, config.defender_grpo,
                     max_completion_length=config.defender.max_new_tokens, seed=seed, bf16=config.defender.bf16,
                     callbacks=[monitor])
    monitor.restore(model)
    return TrainedDefender(merged(model), processor, dict(ranks.summed(reward.outcomes)), monitor.kept_step,
                           run.frac_reward_zero_std)
