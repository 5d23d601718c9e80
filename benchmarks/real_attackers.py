"""The SecTOW attacker against the self-instruct one, on a finished run (METHOD.md: the paper's SecTOW
attacker was about 3x as successful): each attacker writes queries for every held-out harmful seed (generate
mode), the run's cold-start defender answers, and the run's judge and quality monitor score them as in the
pool phase (`sectow.baselines.self_instruct.attack_success`, which `sectow ablate` uses too). The
self-instruct attacker is the untrained instruct model of `attacker.path` asked in plain words.

    python benchmarks/real_attackers.py RUN_DIR [--threads N]

Prints `name value` lines (self_instruct_attack_success, attacker_K_attack_success for every trained
attacker, sectow_over_self_instruct for the last) and writes them, with the outcome counts, to
benchmarks/results/real_attackers.json. No query or reply is written anywhere but the run folder."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, str(Path(__file__).parent))
from default_run import RESULTS  # noqa: E402


def compare(run: Path) -> dict:
    from sectow.baselines.self_instruct import attack_success
    from sectow.config import load_config
    from sectow.judges import build_judge
    from sectow.models.folder import sees_images
    from sectow.world import load_world

    config = load_config(run / "config.yaml")
    if config.attacker.path is None:
        raise SystemExit("real_attackers: the run's attacker is the tiny default; `sectow ablate` compares those")
    world = load_world(config, run / "world", sees_images(config.defender.path))
    judge, defender = build_judge(config.judge), run / "checkpoints" / "defender-cold_start"
    results = {"self_instruct": attack_success(config.attacker.path, defender, world.harmful_held_out, world.strategies,
                                               judge, config, self_instruct=True)}
    for k in range(1, config.iterations + 1):
        results[f"attacker_{k}"] = attack_success(run / "checkpoints" / f"attacker-{k}", defender, world.harmful_held_out,
                                                  world.strategies, judge, config)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a finished run folder whose attacker is a model of yours")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's own choice)")
    args = parser.parse_args()
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
        import torch

        torch.set_num_threads(args.threads)
    results = compare(args.run)
    figures = {f"{name}_attack_success": round(r["attack_success"]["value"], 4) for name, r in results.items()}
    last = results[max((n for n in results if n.startswith("attacker_")), key=lambda n: int(n.split("_")[1]))]
    base = results["self_instruct"]["attack_success"]["value"]
    figures["sectow_over_self_instruct"] = round(last["attack_success"]["value"] / base, 2) if base else None
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "real_attackers.json").write_text(json.dumps({**figures, "run": str(args.run), "details": results}, indent=2))
    for name, value in figures.items():
        print(name, value)


if __name__ == "__main__":
    main()
