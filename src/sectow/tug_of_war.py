"""SecTOW's schedule (METHOD.md): cold start of both players, then for k = 1..K: attacker GRPO
against the frozen defender -> generate and filter a jailbreak pool -> defender GRPO on the pool and
general data, with over-refusal monitoring -> evaluation. Every phase is recorded in the run folder
and skipped on resume once complete. Under several processes, trainers run on all of them and the
loop's own steps on the main one (`ranks`)."""

from __future__ import annotations

import json
import logging
import random
import shutil
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch

from sectow import ranks
from sectow.attacks.forms import FORMS, TRAINING_FORMS, UNSEEN_FORM
from sectow.config import RunConfig, config_to_yaml
from sectow.data.miniature import World, build_world, corpus, jailbreak_variants, ImageWriter
from sectow.data.schema import read_samples, save_image
from sectow.evaluation.defender_eval import evaluate_defender
from sectow.faults import crash_point
from sectow.judges.refusal import RefusalJudge
from sectow.models import vllm_generation
from sectow.models.generation import generate
from sectow.models.processor import load_processor
from sectow.models.vllm_generation import generation_engine
from sectow.models.policy import load_policy, merged, save_policy, with_lora
from sectow.models.tiny import build_tiny_model
from sectow.monitors import AttackerQualityMonitor, SentenceEncoder, over_refusal_action
from sectow.pool import JailbreakPool, record_hash
from sectow.report.html_report import write_report
from sectow.run_folder import RunRecord, write_atomic
from sectow.training.cold_start import supervised_finetune
from sectow.training.grpo import grpo_train
from sectow.training.players import (AttackerReward, AttackOutcome, DefenderReward, attacker_prompt_row,
                                     attacker_sft_rows, defender_sft_rows)
from sectow.training.prompts import defender_row

log = logging.getLogger("sectow")


def load_world(config: RunConfig, folder: Path) -> World:
    """The built-in miniature, or the user's JSONL files (same shape; preflight checked all four are set)."""
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


@dataclass
class Players:
    defender: Path
    attacker: Path


class TugOfWar:
    def __init__(self, config: RunConfig, folder: Path):
        self.config, self.folder = config, folder
        self.record = RunRecord(folder)
        if ranks.is_main():
            self.record.drop_unfinished_metrics()
        ranks.wait()
        self.judge = RefusalJudge(config.evaluation.judge)
        self.checkpoints = folder / "checkpoints"
        self.checkpoints.mkdir(exist_ok=True, mode=0o700)
        self.pool = JailbreakPool(folder / "pool")
        self._encoder: SentenceEncoder | None = None
        self._attacker_rows: dict[int, list[dict]] = {}
        self.pool_engine = generation_engine(config.pool.use_vllm)  # decided (and a fallback logged) once
        if ranks.is_main() and not (folder / "config.yaml").exists():
            write_atomic(folder / "config.yaml", config_to_yaml(config))

    @property
    def encoder(self) -> SentenceEncoder:
        if self._encoder is None:
            self._encoder = SentenceEncoder("cuda" if torch.cuda.is_available() else "cpu")
        return self._encoder

    def phase_seed(self, phase: str) -> int:
        # Trainers re-seed themselves: a distinct seed per phase keeps iterations from replaying rollouts.
        return self.config.seed * 1000 + sum(ord(c) * (i + 1) for i, c in enumerate(phase)) % 997

    # ---- the schedule -------------------------------------------------------------------------
    def run(self) -> dict:
        with ranks.state().main_process_first():  # the main process writes the world's images
            world = load_world(self.config, self.folder / "world")
        players = self.cold_start(world)
        self.evaluate("cold_start", players.defender, world, extra={})
        for k in range(1, self.config.iterations + 1):
            players.attacker = self.attacker_phase(k, players, world)
            pool_stats = self.pool_phase(k, players, world)
            players.defender = self.defender_phase(k, players, world)
            self.evaluate(f"iteration_{k}", players.defender, world, extra={"iteration": k, **pool_stats})
        if ranks.is_main():
            self.write_summary()
            if not self.record.done("report"):
                html, _ = write_report(self.folder)
                self.record.complete("report", {"html": str(html.relative_to(self.folder))})
        ranks.wait()
        return json.loads((self.folder / "summary.json").read_text())

    def cold_start(self, world: World) -> Players:
        config = self.config
        base = {}
        for role, settings, seed in (("defender", config.defender, 1), ("attacker", config.attacker, 2)):
            if settings.path is not None:
                base[role] = settings.path
            else:
                base[role] = self.checkpoints / f"{role}-initial"
                if ranks.is_main() and not base[role].exists():
                    tmp = base[role].with_name(base[role].name + ".tmp")
                    shutil.rmtree(tmp, ignore_errors=True)
                    build_tiny_model(tmp, corpus(), seed=config.seed + seed, hidden_size=settings.hidden_size,
                                     layers=settings.layers)
                    tmp.rename(base[role])
        ranks.wait()
        if not config.cold_start:
            return Players(base["defender"], base["attacker"])
        players = Players(self.checkpoints / "defender-cold_start", self.checkpoints / "attacker-cold_start")
        if not self.record.done("cold_start_defender"):
            rows = defender_sft_rows(world.harmful_train, world.benign_train)
            self._sft(base["defender"], config.defender, rows, config.defender_sft, players.defender, "cold_start_defender")
        if not self.record.done("cold_start_attacker"):
            rows = attacker_sft_rows(world.harmful_train, self.phase_seed("cold_start_attacker"))
            self._sft(base["attacker"], config.attacker, rows, config.attacker_sft, players.attacker, "cold_start_attacker")
        return players

    def _sft(self, source: Path, policy, rows, settings, target: Path, phase: str) -> None:
        log.info("%s: supervised fine-tune on %d rows, %d steps", phase, len(rows), settings.steps)
        model, processor = load_policy(source, policy)
        model = with_lora(model, policy.lora)
        supervised_finetune(model, processor, rows, self.folder / "trainer" / phase, steps=settings.steps,
                            learning_rate=settings.learning_rate, batch_size=settings.batch_size,
                            seed=self.phase_seed(phase), bf16=policy.bf16)
        self._finish(phase, {"rows": len(rows), "steps": settings.steps}, merged(model), processor, target)

    def attacker_phase(self, k: int, players: Players, world: World) -> Path:
        phase, target = f"attacker_grpo_{k}", self.checkpoints / f"attacker-{k}"
        if self.record.done(phase):
            return target
        config = self.config
        defender, defender_processor = load_policy(players.defender, config.defender)
        attacker, attacker_processor = load_policy(players.attacker, config.attacker)
        reward = AttackerReward(self.attack_outcome(defender, defender_processor, k))
        rows = self._attacker_prompts(world, defender, defender_processor, k)
        log.info("%s: attacker GRPO on %d prompts against the frozen defender", phase, len(rows))
        engine = grpo_train(with_lora(attacker, config.attacker.lora), attacker_processor, rows, reward,
                            self.folder / "trainer" / phase, config.attacker_grpo,
                            max_completion_length=config.attacker.max_new_tokens, seed=self.phase_seed(phase),
                            bf16=config.attacker.bf16)
        outcomes = ranks.summed(reward.outcomes)
        total = sum(outcomes[o] for o in ("success", "refused", "low_quality", "malformed")) or 1
        self._finish(phase, {"iteration": k, "rollout_engine": engine, "outcomes": dict(outcomes),
                             "train_success_rate": round(outcomes["success"] / total, 4)},
                     merged(attacker), attacker_processor, target)
        return target

    def attack_outcome(self, defender, defender_processor, k: int) -> AttackOutcome:
        monitor = AttackerQualityMonitor(self.encoder, self.config.monitors)
        monitor.add_to_pool([r["query"] for r in self.pool.records(up_to_iteration=k - 1)])
        return AttackOutcome(defender, defender_processor, self.judge, monitor, self.config.rewards,
                             self.config.data.image_size, self.config.evaluation.max_new_tokens,
                             self.config.evaluation.batch_size)

    def _attacker_prompts(self, world: World, defender, defender_processor, k: int) -> list[dict]:
        """Generate prompts from every harmful seed, and refine prompts from existing jailbreak data
        (a templated jailbreak of a share of the seeds) with the current defender's actual reply. Made
        once per iteration: the attacker phase and the pool phase ask the same defender the same things."""
        if k in self._attacker_rows:
            return self._attacker_rows[k]
        rng = random.Random(self.phase_seed(f"attacker_prompts_{k}"))
        seeds = world.harmful_train
        refine_count = round(len(seeds) * self.config.pool.refine_share)
        earlier = [(s, FORMS[rng.choice(TRAINING_FORMS)].wrap(s.intent)) for s in rng.sample(seeds, refine_count)]
        earlier_replies = generate(defender, defender_processor, [(q, s.image) for s, q in earlier],
                                   max_new_tokens=self.config.evaluation.max_new_tokens,
                                   batch_size=self.config.evaluation.batch_size)
        rows = [attacker_prompt_row(s) for s in seeds]
        rows += [attacker_prompt_row(s, q, reply) for (s, q), reply in zip(earlier, earlier_replies)]
        rng.shuffle(rows)
        self._attacker_rows[k] = rows
        return rows

    def pool_phase(self, k: int, players: Players, world: World) -> dict:
        phase = f"pool_{k}"
        if not self.record.done(phase):
            if ranks.is_main():
                self._generate_pool(k, players, world)
            self.record.completed_elsewhere(phase)
            ranks.wait()
        return {key: value for key, value in self._metrics_of(phase).items()
                if key in ("attacker_success_rate", "pool_size")}

    def sample_attacks(self, attacker_dir: Path, attack: AttackOutcome, prompt_rows: list[dict], seed: int,
                       desc: str) -> tuple[list[str], list[dict]]:
        """Sample the attacker once per prompt row (with vLLM when configured and possible, which loads
        the folder itself) and run each output through `attack`."""
        if self.pool_engine == "vllm":
            sample, processor = partial(vllm_generation.generate, attacker_dir), load_processor(attacker_dir)
        else:
            model, processor = load_policy(attacker_dir, self.config.attacker)
            sample = partial(generate, model)
        outputs = sample(processor, [(row["prompt"][0]["content"], row["seed_image"]) for row in prompt_rows],
                         max_new_tokens=self.config.attacker.max_new_tokens, batch_size=self.config.evaluation.batch_size,
                         temperature=self.config.pool.temperature, seed=seed, desc=desc)
        crash_point("pool_generated")
        return outputs, attack.run(outputs, [r["intent"] for r in prompt_rows], [r["seed_image"] for r in prompt_rows])

    def _generate_pool(self, k: int, players: Players, world: World) -> None:
        phase = f"pool_{k}"
        config = self.config
        defender, defender_processor = load_policy(players.defender, config.defender)
        prompt_rows = self._attacker_prompts(world, defender, defender_processor, k) * config.pool.samples_per_seed
        outputs, results = self.sample_attacks(players.attacker, self.attack_outcome(defender, defender_processor, k),
                                               prompt_rows, self.phase_seed(phase), f"pool {k}")
        records, reasons = [], {}
        for row, output, result in zip(prompt_rows, outputs, results):
            outcome = result["scored"].outcome
            reasons[outcome] = reasons.get(outcome, 0) + 1
            if outcome != "success":
                continue
            form, text = result["parsed"]
            query, image = result["input"]
            record = {"seed_id": row["seed_id"], "category": row["category"], "intent": row["intent"],
                      "mode": row["mode"], "iteration": k, "form": form, "query": query, "attacker_output": output,
                      "defender_reply": result["reply"], "verdict": {"refused": result["verdict"].refused,
                      "unsafe": result["verdict"].unsafe, "judge": result["verdict"].judge},
                      "quality": {"intent_similarity": round(result["quality"].intent_similarity, 4),
                                  "pool_similarity": round(result["quality"].pool_similarity, 4)}}
            record["hash"] = record_hash(record)
            # Near-duplicates were judged against earlier rounds' pool; within a round, exact copies go.
            if any(r["hash"] == record["hash"] for r in records):
                reasons["duplicate_in_batch"] = reasons.get("duplicate_in_batch", 0) + 1
                continue
            image_name = f"images/{record['hash']}.png"
            save_image(image, self.pool.folder / image_name)
            crash_point("pool_image_saved")
            record["image"] = image_name
            records.append(record)
        self.pool.write_iteration(k, records)
        crash_point("pool_written")
        stats = {"iteration": k, "generation_engine": self.pool_engine, "candidates": len(outputs), "outcomes": reasons,
                 "attacker_success_rate": round(len(records) / max(1, len(outputs)), 4),
                 "pool_size": len(self.pool.records())}
        self.record.complete(phase, stats)

    def defender_phase(self, k: int, players: Players, world: World) -> Path:
        phase, target = f"defender_grpo_{k}", self.checkpoints / f"defender-{k}"
        if self.record.done(phase):
            return target if target.exists() else players.defender
        config = self.config
        decisions = []
        benign_weight = 1
        while True:
            defender, processor = load_policy(players.defender, config.defender)
            rows = self._defender_rows(world, k, benign_weight)
            reward = DefenderReward(self.judge, config.rewards)
            log.info("%s: defender GRPO on %d prompts (pool %d)", phase, len(rows), len(self.pool.records()))
            grpo_train(with_lora(defender, config.defender.lora), processor, rows, reward,
                       self.folder / "trainer" / phase, config.defender_grpo,
                       max_completion_length=config.defender.max_new_tokens,
                       seed=self.phase_seed(phase) + benign_weight, bf16=config.defender.bf16)
            defender = merged(defender)
            orr = None
            if ranks.is_main():
                orr = evaluate_defender(defender, processor, [], world.benign_held_out, self.judge,
                                        batch_size=config.evaluation.batch_size,
                                        max_new_tokens=config.evaluation.max_new_tokens)["orr"]
            orr = ranks.share(orr)
            crash_point("orr_checked")
            action = over_refusal_action(orr, config.monitors)
            decisions.append({"orr": orr, "action": action, "benign_weight": benign_weight,
                              "outcomes": dict(ranks.summed(reward.outcomes))})
            if action == "reweight" and benign_weight == 1:
                benign_weight = 2
                continue
            break
        accepted = action == "accept"
        self._finish(phase, {"iteration": k, "monitor": decisions, "accepted": accepted},
                     *((defender, processor, target) if accepted else (None, None, None)))
        return target if accepted else players.defender

    def _defender_rows(self, world: World, k: int, benign_weight: int) -> list[dict]:
        """The filtered pool (all iterations so far), plain harmful seeds, and general benign data."""
        rng = random.Random(self.phase_seed(f"defender_rows_{k}"))
        harmful = self.pool.samples() + rng.sample(world.harmful_train, min(len(world.harmful_train), 40))
        benign_count = min(len(world.benign_train), len(harmful) * benign_weight)
        benign = rng.sample(world.benign_train, benign_count)
        rows = [{**defender_row(s), "label": s.label, "answer": s.answer} for s in harmful + benign]
        rng.shuffle(rows)
        return rows

    def evaluate(self, phase_name: str, defender_path: Path, world: World, extra: dict) -> None:
        phase = f"evaluate_{phase_name}"
        if self.record.done(phase):
            return
        if not ranks.is_main():
            self.record.completed_elsewhere(phase)
            ranks.wait()
            return
        defender, processor = load_policy(defender_path, self.config.defender)
        metrics = evaluate_defender(defender, processor, world.jailbreaks_held_out, world.benign_held_out, self.judge,
                                    batch_size=self.config.evaluation.batch_size,
                                    max_new_tokens=self.config.evaluation.max_new_tokens)
        crash_point("evaluated")
        self.record.complete(phase, {**extra, "defender": str(defender_path.relative_to(self.folder))
                                     if defender_path.is_relative_to(self.folder) else str(defender_path), **metrics})
        self.write_summary()
        ranks.wait()

    def _finish(self, phase: str, metrics: dict, model=None, processor=None, target: Path | None = None) -> None:
        """Save the phase's checkpoint and record it complete, once; every process waits for it."""
        if ranks.is_main():
            if model is not None:
                save_policy(model, processor, target)
                crash_point("phase_saved")
            self.record.complete(phase, metrics)
        else:
            self.record.completed_elsewhere(phase)
        ranks.wait()

    def _metrics_of(self, phase: str) -> dict:
        return next((m for m in self.record.metrics() if m["phase"] == phase), {})

    def write_summary(self) -> dict:
        keys = ("asr", "asr_unseen_form", "orr", "accuracy")
        cold = self._metrics_of("evaluate_cold_start")
        iterations = []
        for k in range(1, self.config.iterations + 1):
            m = self._metrics_of(f"evaluate_iteration_{k}")
            if m:
                iterations.append({"iteration": k, **{key: m.get(key) for key in keys},
                                   "attacker_success_rate": m.get("attacker_success_rate"), "pool_size": m.get("pool_size"),
                                   "asr_by_form": m.get("asr_by_form")})
        final = self._metrics_of(f"evaluate_iteration_{iterations[-1]['iteration']}") if iterations else cold
        summary = {"cold_start": {**{key: cold.get(key) for key in keys}, "asr_by_form": cold.get("asr_by_form")},
                   "iterations": iterations, "final_defender": final.get("defender")}
        write_atomic(self.folder / "summary.json", json.dumps(summary, indent=2))
        return summary
