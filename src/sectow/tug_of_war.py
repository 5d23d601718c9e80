"""SecTOW's schedule (METHOD.md): cold start of both players, then for k = 1..K: attacker GRPO against
the frozen defender -> generate and filter a jailbreak pool -> defender GRPO on the pool and general
data, with over-refusal monitoring -> evaluation. Each phase goes through `Phases.run` (skipped on
resume once complete, trainers on every process, the loop's own steps on the main one)."""

from __future__ import annotations

import json
import logging
import random
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from sectow import ranks, tracking
from sectow.atomic import write_atomic
from sectow.config import RunConfig, config_to_yaml
from sectow.data.schema import Sample
from sectow.environment import record_environment
from sectow.evaluation.defender_eval import evaluate_defender
from sectow.faults import crash_point
from sectow.game import play_round, pool_cells, sample_attacker
from sectow.judges import build_judge
from sectow.models.folder import sees_images
from sectow.models.policy import load_policy
from sectow.models.tiny import build_tiny_model_once
from sectow.models.vllm_generation import generation_engine
from sectow.monitors import DefenderCheck, check_defender
from sectow.pool import JailbreakPool
from sectow.report.html_report import write_report
from sectow.report.model_card import write_run_model_card
from sectow.report.summary import summarize
from sectow.run_folder import PhaseResult, Phases
from sectow.training.attacker import frozen_defender, iteration_seeds, quality_monitor, train_attacker
from sectow.training.cold_start import cold_start
from sectow.training.defender import channel, defender_rows, phase_prompts, still_open, train_defender
from sectow.training.players import aligned_harmful, attacker_sft_rows, defender_sft_rows, reading_rows
from sectow.training.self_distill import benign_targets
from sectow.world import World, load_world
from sectow.world.base import ImageWriter, plain_requests
from sectow.world.miniature import corpus

log = logging.getLogger("sectow")
UNPARSABLE = "unparsable"


def phase_seed(seed: int, phase: str) -> int:
    """A distinct seed per phase (trainers re-seed themselves, so iterations would replay their rollouts),
    within numpy's range for any accepted master seed."""
    return (seed * 1000 + sum(ord(c) * (i + 1) for i, c in enumerate(phase)) % 997) % 2 ** 32


@dataclass
class Players:
    defender: Path
    attacker: Path
    anchor: Path  # the attacker's cold start: the reference of its KL term in every iteration


class TugOfWar:
    def __init__(self, config: RunConfig, folder: Path):
        self.config, self.folder = config, folder
        self.phases = Phases(folder, config)
        self.judge = build_judge(config.judge)
        self.checkpoints = folder / "checkpoints"
        self.checkpoints.mkdir(exist_ok=True, mode=0o700)
        self.pool = JailbreakPool(folder / "pool")
        self.pool_engine = generation_engine(config.pool.use_vllm)  # decided (and a fallback logged) once
        self._seeds: dict[int, list] = {}
        if ranks.is_main() and not (folder / "config.yaml").exists():
            write_atomic(folder / "config.yaml", config_to_yaml(config))
        if ranks.is_main():  # a resume, maybe on another machine, adds its own entry
            record_environment(folder)

    def seed(self, phase: str) -> int:
        return phase_seed(self.config.seed, phase)

    # ---- the schedule -------------------------------------------------------------------------
    def run(self) -> dict:
        tracking.start(self.config.tracking, self.folder)
        with ranks.state().main_process_first():  # the main process writes the world's images
            world = load_world(self.config, self.folder / "world", sees_images(self.config.defender.path))
        players = self.cold_start(world)
        self.evaluate("cold_start", players.defender, world)
        for k in range(1, self.config.iterations + 1):
            players.attacker = self.attacker_phase(k, players, world)
            self.pool_phase(k, players, world)
            players.defender = self.defender_phase(k, players, world)
            self.evaluate(f"iteration_{k}", players.defender, world)
        # Keyed by K: a resumed run whose `iterations` grew renders its report again.
        self.phases.run("report", self.report, everywhere=False, key=self.config.iterations)
        tracking.finish()
        return json.loads((self.folder / "summary.json").read_text())

    def cold_start(self, world: World) -> Players:
        """The players' starting folders, after the cold-start SFT of both (METHOD.md 1)."""
        config = self.config
        with ranks.state().main_process_first():  # the main process builds the tiny defaults
            base = {role: getattr(config, role).path or self.tiny_default(role) for role in ("defender", "attacker")}
        if not config.cold_start:
            return Players(base["defender"], base["attacker"], base["attacker"])
        requests = world.harmful_train + plain_requests(world.benign_train)
        rows = {"defender": lambda: defender_sft_rows(self.alignment(world), world.benign_train,
                                                      self.benign_targets(base["defender"], world))
                + reading_rows(requests, world.strategies, config.data.image_size, self.seed("reading")),
                "attacker": lambda: attacker_sft_rows(world.harmful_train, world.strategies, self.seed("cold_start_attacker"))}
        for role in ("defender", "attacker"):
            phase, target = f"cold_start_{role}", self.checkpoints / f"{role}-cold_start"

            def work(role=role, phase=phase, target=target) -> PhaseResult:
                role_rows = rows[role]()
                log.info("%s: supervised fine-tune on %d rows", phase, len(role_rows))
                settings = getattr(config, f"{role}_sft")
                model, processor = cold_start(base[role], getattr(config, role), role_rows, settings,
                                              self.folder / "trainer" / phase, self.seed(phase))
                return PhaseResult({"rows": len(role_rows), "steps": settings.steps}, checkpoint=(model, processor, target))

            self.phases.run(phase, work, everywhere=True)
        return Players(self.checkpoints / "defender-cold_start", self.checkpoints / "attacker-cold_start",
                       self.checkpoints / "attacker-cold_start")

    def alignment(self, world: World) -> list[Sample]:
        """The harmful side of the defender's cold start: plain requests and the well-known templates."""
        return aligned_harmful(world.harmful_train, world.strategies, ImageWriter(self.folder / "world"),
                               self.config.data.image_size)

    def benign_targets(self, defender_dir: Path, world: World) -> dict[str, str] | None:
        """A real defender's cold-start replies to benign samples (training/self_distill.py), worked out by
        the main process and kept in the run folder; None for the tiny default, which learns the
        miniature's own replies."""
        if self.config.defender.path is None:
            return None
        with ranks.state().main_process_first():
            return benign_targets(defender_dir, self.config.defender, world.benign_train, self.judge,
                                  self.folder / "self_distill" / "benign_targets.jsonl",
                                  batch_size=self.config.evaluation.batch_size)

    def tiny_default(self, role: str) -> Path:
        settings = getattr(self.config, role)
        return build_tiny_model_once(self.checkpoints / f"{role}-initial", corpus(),
                                     seed=self.config.seed + (1 if role == "defender" else 2),
                                     hidden_size=settings.hidden_size, layers=settings.layers)

    def attack_seeds(self, k: int, defender, world: World) -> list:
        if k not in self._seeds:
            self._seeds[k] = iteration_seeds(world.harmful_train, defender, world.strategies, self.config,
                                             self.seed(f"attacker_prompts_{k}"), self.pool.records(up_to_iteration=k - 1))
        return self._seeds[k]

    def attacker_phase(self, k: int, players: Players, world: World) -> Path:
        """METHOD.md 2a: GRPO of the attacker against the frozen current defender."""
        phase, target = f"attacker_grpo_{k}", self.checkpoints / f"attacker-{k}"

        def work() -> PhaseResult:
            defender = frozen_defender(players.defender, self.config)
            seeds = self.attack_seeds(k, defender, world)
            log.info("%s: attacker GRPO on %d prompts against the frozen defender", phase, len(seeds))
            monitor = quality_monitor(self.config, [r["words"] for r in self.pool.records(up_to_iteration=k - 1)])
            trained = train_attacker(players.attacker, defender, seeds, self.judge, monitor, world.strategies,
                                     self.config, self.folder / "trainer" / phase, self.seed(phase), players.anchor)
            return PhaseResult({"iteration": k, **trained.metrics}, checkpoint=(trained.model, trained.processor, target))

        self.phases.run(phase, work, everywhere=True)
        return target

    def pool_phase(self, k: int, players: Players, world: World) -> None:
        """METHOD.md 2b: the attacker writes jailbreaks for every training seed; the pool keeps those that
        beat the defender and pass quality monitoring."""
        phase = f"pool_{k}"

        def work() -> PhaseResult:
            defender = frozen_defender(players.defender, self.config)
            seeds = self.attack_seeds(k, defender, world) * self.config.pool.samples_per_seed
            outputs = sample_attacker(players.attacker, self.config.attacker, seeds, engine=self.pool_engine,
                                      temperature=self.config.pool.temperature,
                                      batch_size=self.config.evaluation.batch_size, seed=self.seed(phase), desc=f"pool {k}")
            crash_point("pool_generated")
            monitor = quality_monitor(self.config, [r["words"] for r in self.pool.records(up_to_iteration=k - 1)])
            played = play_round(outputs, seeds, defender, self.judge, monitor, self.config.rewards, world.strategies,
                                self.config.data.image_size)
            admitted = self.pool.admit(k, played.attempts)
            return PhaseResult({"iteration": k, "generation_engine": self.pool_engine, "candidates": len(outputs),
                                "outcomes": dict(admitted.outcomes),
                                # the attacker's channel mix (every output) and the archive cells its pool records fill
                                "attacker_cells": dict(Counter(a.parsed.cell if a.parsed else UNPARSABLE
                                                               for a in played.attempts)),
                                "pool_cells": dict(pool_cells(admitted.records)),
                                "attacker_success_rate": round(len(admitted.records) / max(1, len(outputs)), 4),
                                "pool_size": len(self.pool.records())}, outputs=[self.pool.iteration_file(k)])

        self.phases.run(phase, work, everywhere=False)

    def defender_phase(self, k: int, players: Players, world: World) -> Path:
        """METHOD.md 2c: GRPO of the defender on the pool records it still fails on and on general data,
        with two-sided monitoring: every `monitors.check_every` steps its checkpoint is checked on the
        validation split, and the last one that over-refuses within `monitors.orr_bound` and is no less
        safe than the phase's start is kept; when none is, the phase is rolled back (the last good
        defender stays). Every check is recorded in metrics.jsonl."""
        phase, target = f"defender_grpo_{k}", self.checkpoints / f"defender-{k}"
        validation = world.split("validation")
        checks: list[DefenderCheck] = []  # this phase's, in order; step 0 is its start

        def check(policy, step: int) -> bool:
            figures = None
            if ranks.is_main():
                measured = evaluate_defender(*policy, *validation, self.judge, batch_size=self.config.evaluation.batch_size,
                                             max_new_tokens=self.config.evaluation.max_new_tokens)
                figures = ((measured["orr"]["value"] or 0.0), (measured.get("asr", {}).get("value") or 0.0))
            orr, asr = ranks.share(figures)
            checks.append(check_defender(step, orr, asr, checks[0].asr if checks else asr, self.config.monitors))
            log.info("%s: step %d: validation ORR %.3f, ASR %.3f: %s", phase, step, orr, asr,
                     "start" if step == 0 else "passes" if checks[-1].passed else "fails")
            return checks[-1].passed

        def work() -> PhaseResult:
            checks.clear()
            pool = self.pool.samples()
            open_ids = None
            if ranks.is_main():
                open_ids = [s.id for s in still_open(pool, frozen_defender(players.defender, self.config), self.judge)]
            open_ids = set(ranks.share(open_ids))
            open_pool = [s for s in pool if s.id in open_ids]
            with ranks.state().main_process_first():  # the main process writes the counterparts' images
                rows, harmful_by_channel = defender_rows(
                    open_pool, self.alignment(world), world.benign_train, phase_prompts(self.config.defender_grpo),
                    ImageWriter(self.folder / "world"), self.config.data.image_size,
                    random.Random(self.seed(f"defender_rows_{k}")))
            log.info("%s: defender GRPO on %d prompts (%d of %d pool records still open)", phase, len(rows),
                     len(open_pool), len(pool))
            trained = train_defender(players.defender, rows, self.judge, self.config, self.folder / "trainer" / phase,
                                     self.seed(phase), check)
            crash_point("orr_checked")
            accepted = trained.kept_step is not None
            kept = target if accepted else players.defender
            return PhaseResult({"iteration": k, "pool_size": len(pool), "pool_open": len(open_pool),
                                "open_by_channel": dict(Counter(channel(s.form) for s in open_pool)),
                                "harmful_rows_by_channel": dict(harmful_by_channel), "prompts": len(rows),
                                "monitor": [asdict(c) for c in checks], "kept_step": trained.kept_step,
                                "accepted": accepted, "outcomes": trained.outcomes,
                                "frac_reward_zero_std": trained.frac_reward_zero_std,
                                "defender": self.phases.relative(kept)},
                               checkpoint=(trained.model, trained.processor, target) if accepted else None)

        return self.phases.path(self.phases.run(phase, work, everywhere=True)["defender"])

    def evaluate(self, name: str, defender_dir: Path, world: World) -> None:
        """METHOD.md 3: the defender on the test split of the held-out jailbreaks and benign data, which
        nothing else in the run looks at."""
        phase = f"evaluate_{name}"

        def work() -> PhaseResult:
            model, processor = load_policy(defender_dir, self.config.defender)
            metrics = evaluate_defender(model, processor, *world.split("test"), self.judge,
                                        batch_size=self.config.evaluation.batch_size,
                                        max_new_tokens=self.config.evaluation.max_new_tokens,
                                        held_out_groups=world.strategies.held_out_groups)
            crash_point("evaluated")
            return PhaseResult({"defender": self.phases.relative(defender_dir), **metrics})

        self.phases.run(phase, work, everywhere=False)
        if ranks.is_main():
            self.write_summary()
        ranks.wait()

    def report(self) -> PhaseResult:
        self.write_summary()
        html, _ = write_report(self.folder)
        write_run_model_card(self.folder)
        return PhaseResult({"html": self.phases.relative(html)})

    def write_summary(self) -> None:
        write_atomic(self.folder / "summary.json", json.dumps(summarize(self.phases.record.metrics()), indent=2))
