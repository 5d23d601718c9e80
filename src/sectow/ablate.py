"""`sectow ablate`: SecTOW, its baselines and its ablations from one base config, and one comparison
table (METHOD.md). Every variant is a run folder under the ablation folder. Variants that keep the
cold start fork SecTOW's (hard links of its checkpoints and its recorded cold-start phases), so the cold
start is trained once and every row starts from the same players. Each finished piece is recorded,
so `--resume` redoes only what is missing."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from sectow.atomic import write_atomic
from sectow.baselines.refusal_sft import train_refusal_sft
from sectow.baselines.self_instruct import attack_success
from sectow.config import RunConfig, config_to_yaml, load_config, parse_config
from sectow.errors import UserError
from sectow.evaluation.defender_eval import evaluate_defender
from sectow.evaluation.intervals import proportion
from sectow.evaluation.prompt_defenses import PROMPT_DEFENSES, with_prompt_defense
from sectow.jsonl import json_lines
from sectow.judges import build_judge
from sectow.models.folder import sees_images
from sectow.models.policy import load_policy, save_policy
from sectow.paths import lock_folder
from sectow.report.html_report import comparison_markdown, seeds_markdown
from sectow.run_folder import MARKER, lock, write_marker
from sectow.training.self_distill import benign_targets
from sectow.tug_of_war import TugOfWar
from sectow.world import load_world

log = logging.getLogger("sectow")

COLD_START_PHASES = ("cold_start_defender", "cold_start_attacker", "evaluate_cold_start")
COLD_START_CHECKPOINTS = ("defender-initial", "attacker-initial", "defender-cold_start", "attacker-cold_start")
METRICS = ("asr", "asr_unseen_form", "orr", "orr_unseen_form", "accuracy")
GROUPS = ("novel_text", "split", "picture")  # the held-out groups the comparison shows on their own


def figures(metrics: dict) -> dict:
    """The comparison's figures of one evaluation: the overall rates, and ASR of each group in GROUPS."""
    by_group = metrics.get("asr_by_group") or {}
    return {**{m: metrics.get(m) for m in METRICS}, **{f"asr_{g}": by_group.get(g) for g in GROUPS}}


def ablations(config: RunConfig) -> dict[str, dict]:
    """Each ablation as config changes. No iteration keeps the total GRPO steps and pool samples."""
    k = config.iterations
    return {
        "no_iteration": {"iterations": 1, "attacker_grpo.steps": k * config.attacker_grpo.steps,
                         "defender_grpo.steps": k * config.defender_grpo.steps,
                         "pool.samples_per_seed": k * config.pool.samples_per_seed},
        "no_defender_monitoring": {"monitors.enabled_defender": False},
        "no_attacker_monitoring": {"monitors.enabled_attacker": False},
        "no_cold_start": {"cold_start": False},
    }


def with_changes(config: RunConfig, changes: dict) -> RunConfig:
    raw = config.model_dump(mode="json")
    for key, value in changes.items():
        *sections, last = key.split(".")
        node = raw
        for section in sections:
            node = node[section]
        node[last] = value
    return parse_config(raw, "ablation")


def same_experiment(a: RunConfig, b: RunConfig) -> str | None:
    """The first key (other than where runs go) on which two configs differ, or None."""
    flat_a, flat_b = _flat(a.model_dump(mode="json")), _flat(b.model_dump(mode="json"))
    return next((key for key in flat_a if key not in ("name", "output_dir") and flat_a[key] != flat_b.get(key)), None)


def _flat(raw: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in raw.items():
        out.update(_flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return out


def _link_tree(source: Path, target: Path) -> None:
    """Hard links where the filesystem allows (checkpoints are never changed in place), copies elsewhere."""
    def link(src, dst):
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)
    shutil.copytree(source, target, copy_function=link, dirs_exist_ok=True)


def fork_cold_start(sectow_run: Path, folder: Path) -> None:
    """Start `folder` from SecTOW's recorded cold start: world, cold-start checkpoints, their record."""
    if (folder / "state.json").exists():
        return
    _link_tree(sectow_run / "world", folder / "world")
    for name in COLD_START_CHECKPOINTS:
        _link_tree(sectow_run / "checkpoints" / name, folder / "checkpoints" / name)
    lines = [line for line in json_lines((sectow_run / "metrics.jsonl").read_text(encoding="utf-8"))
             if line.strip() and json.loads(line)["phase"] in COLD_START_PHASES]
    write_marker(folder, "run")
    write_atomic(folder / "metrics.jsonl", "".join(line + "\n" for line in lines))
    write_atomic(folder / "state.json", json.dumps({"completed": list(COLD_START_PHASES)}, indent=1))


def run_variant(config: RunConfig, folder: Path) -> dict:
    folder.mkdir(mode=0o700, exist_ok=True)
    if not (folder / MARKER).exists():
        write_marker(folder, "run")
    return TugOfWar(config, folder).run()


class Ablation:
    def __init__(self, config: RunConfig, folder: Path):
        self.config, self.folder = config, folder
        lock(folder)  # one process at a time; each variant's run folder is locked as it starts
        self.sectow_run = folder / "sectow"
        self.results = folder / "results"
        self.results.mkdir(mode=0o700, exist_ok=True)

    def run(self) -> list[dict]:
        log.info("ablation: SecTOW run in %s", self.sectow_run)
        run_variant(self.config, self.sectow_run)
        for name, changes in ablations(self.config).items():
            variant = with_changes(self.config, changes)
            log.info("ablation: %s (%s)", name, ", ".join(f"{k}={v}" for k, v in changes.items()))
            if variant.cold_start:
                fork_cold_start(self.sectow_run, self.folder / name)
            run_variant(variant, self.folder / name)
        self.baselines()
        rows = self.comparison()
        write_atomic(self.folder / "comparison.json", json.dumps(rows, indent=2))
        write_atomic(self.folder / "comparison.md", comparison_markdown(rows))
        return rows

    # ---- baselines, each recorded in results/<name>.json once done -----------------------------
    def baselines(self) -> None:
        world = load_world(self.config, self.sectow_run / "world", sees_images(self.config.defender.path))
        judge = build_judge(self.config.judge)
        checkpoints = self.sectow_run / "checkpoints"
        cold = "cold_start" if self.config.cold_start else "initial"
        defender, attacker = checkpoints / f"defender-{cold}", checkpoints / f"attacker-{cold}"

        def evaluate(model_dir: Path, defense: str | None = None) -> dict:
            model, processor = load_policy(model_dir, self.config.defender)
            jailbreaks, benign = world.split("test")  # the split the SecTOW row was reported on
            if defense:
                jailbreaks, benign = with_prompt_defense(jailbreaks, defense), with_prompt_defense(benign, defense)
            return evaluate_defender(model, processor, jailbreaks, benign, judge,
                                     batch_size=self.config.evaluation.batch_size,
                                     max_new_tokens=self.config.evaluation.max_new_tokens,
                                     held_out_groups=world.strategies.held_out_groups)

        def refusal_sft() -> dict:
            targets = None  # a model of yours: the benign answers of SecTOW's cold start, not the placeholder
            if self.config.defender.path is not None:
                targets = benign_targets(self.config.defender.path, self.config.defender, world.benign_train, judge,
                                         self.sectow_run / "self_distill" / "benign_targets.jsonl",
                                         batch_size=self.config.evaluation.batch_size)
            model, processor, metrics = train_refusal_sft(defender, world, self.config, self.folder / "sft_on_refusals-work",
                                                          targets)
            save_policy(model, processor, self.folder / "sft_on_refusals")
            return {**metrics, **evaluate(self.folder / "sft_on_refusals")}

        for defense in PROMPT_DEFENSES:
            self._once(defense, lambda defense=defense: evaluate(defender, defense))
        self._once("sft_on_refusals", refusal_sft)
        # A real attacker's self-instruct baseline is the untrained instruct model asked in plain words; the
        # tiny default's is its cold-start attacker (it knows nothing before), prompted like SecTOW's.
        real = self.config.attacker.path
        self_instruct = (real, True) if real is not None else (attacker, False)
        for name, (attacker_dir, plain) in (("self_instruct_attacker", self_instruct),
                                            ("sectow_attacker", (checkpoints / "attacker-1", False))):
            self._once(name, lambda attacker_dir=attacker_dir, plain=plain: attack_success(
                attacker_dir, defender, world.harmful_held_out, world.strategies, judge, self.config,
                self_instruct=plain))

    def _once(self, name: str, compute) -> None:
        path = self.results / f"{name}.json"
        if not path.is_file():
            log.info("baseline: %s", name)
            write_atomic(path, json.dumps(compute(), indent=2))

    # ---- the table ------------------------------------------------------------------------------
    def comparison(self) -> list[dict]:
        def result(name: str) -> dict:
            return json.loads((self.results / f"{name}.json").read_text())

        def run_row(method: str, kind: str, folder: Path) -> dict:
            summary = json.loads((folder / "summary.json").read_text())
            final = summary["iterations"][-1]
            return {"method": method, "kind": kind, **figures(final), "pool_size": final["pool_size"],
                    "iterations": len(summary["iterations"])}

        summary = json.loads((self.sectow_run / "summary.json").read_text())
        rows = [{"method": "cold-start defender", "kind": "reference", **figures(summary["cold_start"])},
                run_row("SecTOW", "sectow", self.sectow_run)]
        rows += [{"method": name, "kind": "baseline", **figures(result(name))}
                 for name in (*PROMPT_DEFENSES, "sft_on_refusals")]
        rows += [run_row(name, "ablation", self.folder / name) for name in ablations(self.config)]
        rows += [{"method": f"{name} ({result(name)['attacker']})", "kind": "attacker",
                  "attack_success": result(name)["attack_success"]}
                 for name in ("self_instruct_attacker", "sectow_attacker")]
        return rows


# ---- several seeds ----------------------------------------------------------------------------------
SEEDS = "seeds.json"  # in a multi-seed ablation folder: the seeds, in order; each has its folder seed-<N>
# Each ablation's claim (METHOD.md: removing it hurts), on the metric where it should hurt.
ABLATION_METRICS = {"no_iteration": "asr", "no_defender_monitoring": "orr", "no_attacker_monitoring": "asr",
                    "no_cold_start": "asr"}
RATES = (*METRICS, *(f"asr_{g}" for g in GROUPS), "attack_success")


def seed_folder(folder: Path, seed: int) -> Path:
    return folder / f"seed-{seed}"


def read_seeds(folder: Path) -> tuple[list[int], dict[int, Path]] | None:
    """The seeds of a multi-seed ablation folder and the SecTOW runs it reuses, or None for a one-seed one."""
    path = folder / SEEDS
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
        seeds, runs = record["seeds"], {int(seed): Path(run) for seed, run in record["sectow_runs"].items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        raise UserError(f"{path}: not a record of seeds") from None
    if not isinstance(seeds, list) or not seeds or not all(type(s) is int and s >= 0 for s in seeds):
        raise UserError(f"{path}: not a record of seeds")
    return seeds, runs


def pooled(rates: list[dict | None]) -> dict | None:
    """All seeds' trials of one rate counted together (the seed mean weighted by n; the plain mean when every seed
    has the same n), with the Wilson interval of that count. It covers sampling noise only; the seeds' spread is
    shown beside it."""
    rates = [r for r in rates if isinstance(r, dict) and r.get("value") is not None]
    if not rates:
        return None
    flags = []
    for rate in rates:
        hits = round(rate["value"] * rate["n"])
        flags += [1] * hits + [0] * (rate["n"] - hits)
    return proportion(flags)


def across_seeds(rows_by_seed: dict[int, list[dict]]) -> list[dict]:
    """One row per method: its pooled rates, and each seed's row under `seeds`."""
    methods = {}
    for seed, rows in rows_by_seed.items():
        for row in rows:
            methods.setdefault(row["method"], {"method": row["method"], "kind": row["kind"], "seeds": {}})
            methods[row["method"]]["seeds"][str(seed)] = row
    for row in methods.values():
        for rate in RATES:
            if any(rate in r for r in row["seeds"].values()):
                row[rate] = pooled([r.get(rate) for r in row["seeds"].values()])
    return list(methods.values())


def claims(rows: list[dict]) -> list[dict]:
    """The paper's claims that an ablation folder can check: each ablation worse than SecTOW on its metric,
    SFT on refusals over-refusing more, the trained attacker beating self-instruct. A claim holds on a set of
    figures when the two intervals do not overlap in its direction; `seeds` says on which seeds it held."""
    by_method = {row["method"]: row for row in rows}
    attackers = {row["method"].split(" ")[0]: row for row in rows if row["kind"] == "attacker"}

    def worse(high: dict | None, low: dict | None) -> bool:
        return bool(high and low and high.get("interval") and low.get("interval")
                    and high["interval"][0] > low["interval"][1])

    def claim(text: str, metric: str, high: dict, low: dict) -> dict:
        return {"claim": text, "metric": metric, "higher": high[metric], "lower": low[metric],
                "holds": worse(high[metric], low[metric]),
                "seeds": {seed: worse(high["seeds"][seed].get(metric), low["seeds"][seed].get(metric))
                          for seed in high["seeds"] if seed in low["seeds"]}}

    sectow = by_method["SecTOW"]
    found = [claim(f"{name} worse than SecTOW", metric, by_method[name], sectow)
             for name, metric in ABLATION_METRICS.items() if name in by_method]
    if "sft_on_refusals" in by_method:
        found.append(claim("SFT on refusals over-refuses more than SecTOW", "orr", by_method["sft_on_refusals"], sectow))
    if {"sectow_attacker", "self_instruct_attacker"} <= set(attackers):
        found.append(claim("the trained attacker succeeds more than self-instruct", "attack_success",
                           attackers["sectow_attacker"], attackers["self_instruct_attacker"]))
    return found


class Seeds:
    """A multi-seed ablation: one ablation folder per seed, then the table across them."""

    def __init__(self, config: RunConfig, folder: Path, seeds: list[int], sectow_runs: dict[int, Path] | None = None):
        self.config, self.folder, self.seeds = config, folder, seeds
        self.sectow_runs = sectow_runs or {}
        lock(folder)

    def run(self) -> list[dict]:
        rows_by_seed = {}
        for seed in self.seeds:
            log.info("ablation: seed %d of %s", seed, ",".join(map(str, self.seeds)))
            config, folder = with_changes(self.config, {"seed": seed}), seed_folder(self.folder, seed)
            if not (folder / MARKER).is_file():  # the marker comes last: a folder without it is set up again
                folder.mkdir(mode=0o700, exist_ok=True)
                if (folder / "sectow").is_symlink():
                    (folder / "sectow").unlink()
                start(config, folder, self.sectow_runs.get(seed))
                write_marker(folder, "ablation")
            rows_by_seed[seed] = Ablation(config, folder).run()
        rows = across_seeds(rows_by_seed)
        found = claims(rows)
        write_atomic(self.folder / "comparison.json", json.dumps(rows, indent=2))
        write_atomic(self.folder / "claims.json", json.dumps(found, indent=2))
        write_atomic(self.folder / "comparison.md", seeds_markdown(rows, found, self.seeds))
        return rows


def match_sectow_runs(config: RunConfig, runs: list[Path], seeds: list[int]) -> dict[int, Path]:
    """Each reused SecTOW run, checked against the base config with its own seed, keyed by that seed."""
    matched = {}
    for run in runs:
        check_finished(run)
        seed = load_config(run / "config.yaml").seed
        if seed not in seeds:
            raise UserError(f"{run}: a run of seed {seed}, which is not among --seeds {','.join(map(str, seeds))}")
        if seed in matched:
            raise UserError(f"{run}: a second run of seed {seed} (the first: {matched[seed]})")
        check_reference_run(with_changes(config, {"seed": seed}), run)
        matched[seed] = run
    return matched


def check_finished(sectow_run: Path) -> None:
    if not (sectow_run / "summary.json").is_file() or not (sectow_run / "config.yaml").is_file():
        raise UserError(f"{sectow_run}: not a finished sectow run (no summary.json or config.yaml)")


def check_reference_run(config: RunConfig, sectow_run: Path) -> None:
    """A reused SecTOW run must be the same experiment as the ablation's base config."""
    check_finished(sectow_run)
    lock_folder(sectow_run, note_pid=False)  # held from here on: no resume may train in it while it is the SecTOW row
    differing = same_experiment(config, load_config(sectow_run / "config.yaml"))
    if differing:
        raise UserError(f"{sectow_run}: its config differs from the ablation's at {differing!r}; "
                        "pass the same --config/--set as that run")


def start_seeds(config: RunConfig, folder: Path, seeds: list[int], sectow_runs: dict[int, Path]) -> None:
    """A new multi-seed ablation folder: its base config, its seeds and the SecTOW runs it reuses (each seed's
    folder is made as that seed starts)."""
    # seeds.json first: a folder cut off before its config.yaml is refused on resume, never taken for one seed
    write_atomic(folder / SEEDS, json.dumps({"seeds": seeds, "sectow_runs": {
        str(seed): str(run.resolve()) for seed, run in sectow_runs.items()}}))
    write_atomic(folder / "config.yaml", config_to_yaml(config))


def start(config: RunConfig, folder: Path, sectow_run: Path | None) -> None:
    """A new ablation folder: its base config, and the reused SecTOW run if one was given (checked first)."""
    write_atomic(folder / "config.yaml", config_to_yaml(config))
    if sectow_run is not None:
        (folder / "sectow").symlink_to(sectow_run.resolve())
