"""Every performance figure of sectow in one command: prints `name value` lines on stdout, a breakdown of
the tug-of-war loop's time on stderr, and writes the figures with the machine's facts to
benchmarks/results/run_all.json (run_all_quick.json under --quick).

    python benchmarks/run_all.py [--quick] [--threads N]

- eval_batched_speedup: sequences/s of `evaluate_defender` at the configured eval batch size over
  batch size 1, same tiny model, same held-out samples, same process.
- loop_overhead_ratio: wall time of the last SecTOW iteration (attacker GRPO, pool, defender GRPO,
  evaluation) over the time spent inside trainer steps and generation, as the loop itself records
  them per phase in metrics.jsonl (`timing`: trainer, generation, and everything else by kind:
  model loading and saving, sentence encoding, ...). Nothing is patched: this is what every run logs.
- default_run_seconds, default_run_peak_rss_mb: one `sectow run` as `make run` starts it (--quick:
  configs/micro.yaml, marked `"config": "micro"`).
- grpo_step_seconds_small / _large with params_small / _large: median seconds of a GRPO step (trainer
  construction and the first step excluded) on the tiny model at two sizes.

The machine is shared and noisy: compare ratios within one run, not seconds across runs; the JSON
records the load average at start and end."""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, str(Path(__file__).parent))
from default_run import RESULTS, measure_default_run

REPO = Path(__file__).resolve().parent.parent
MICRO = REPO / "configs" / "micro.yaml"


# ---- the loop's own timings ---------------------------------------------------------------------
def iteration_breakdown(metrics: list[dict], k: int) -> dict:
    """Wall, useful (trainer steps + generation) and other seconds of iteration k's phases, from the
    `timing` each phase recorded, with the other seconds by kind and by phase."""
    phases = [m for m in metrics if m["phase"] in (f"attacker_grpo_{k}", f"pool_{k}", f"defender_grpo_{k}",
                                                   f"evaluate_iteration_{k}")]
    wall = sum(m["timing"]["wall_s"] for m in phases)
    useful = sum(m["timing"]["trainer_s"] + m["timing"]["generation_s"] for m in phases)
    by_kind: dict[str, float] = defaultdict(float)
    for m in phases:
        for kind, seconds in m["timing"]["other_by_kind_s"].items():
            by_kind[kind] += seconds
    by_kind["unlabelled"] = wall - useful - sum(by_kind.values())
    return {"wall_seconds": round(wall, 2), "useful_seconds": round(useful, 2), "overhead_seconds": round(wall - useful, 2),
            "ratio": round(wall / useful, 3),
            "trainer_seconds": round(sum(m["timing"]["trainer_s"] for m in phases), 2),
            "generation_seconds": round(sum(m["timing"]["generation_s"] for m in phases), 2),
            "overhead_by_kind": {kind: round(v, 2) for kind, v in sorted(by_kind.items(), key=lambda kv: -kv[1])},
            "by_phase": {m["phase"]: m["timing"] for m in phases}}


def loop_overhead(config: Path | None, overrides: list[str]) -> dict:
    from sectow.config import load_config
    from sectow.run_folder import new_run_folder
    from sectow.tug_of_war import TugOfWar

    with tempfile.TemporaryDirectory() as runs:
        config_ = load_config(config, overrides + [f"output_dir={runs}"])
        folder = new_run_folder(config_.output_dir, config_.name)
        start = time.perf_counter()
        TugOfWar(config_, folder).run()
        run_seconds = time.perf_counter() - start
        metrics = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    iterations = {k: iteration_breakdown(metrics, k) for k in range(1, config_.iterations + 1)}
    last = max(iterations)
    return {"loop_overhead_ratio": iterations[last]["ratio"], "loop_iteration": last,
            "loop_run_seconds": round(run_seconds, 1), "config": str(config) if config else "default",
            "overrides": overrides, "iterations": iterations}


def print_breakdown(loop: dict) -> None:
    for k, it in loop["iterations"].items():
        print(f"\n== iteration {k}: wall {it['wall_seconds']} s, trainer steps {it['trainer_seconds']} s + "
              f"generation {it['generation_seconds']} s, overhead {it['overhead_seconds']} s, ratio {it['ratio']}",
              file=sys.stderr)
        for kind, seconds in it["overhead_by_kind"].items():
            print(f"     {kind:<22}{seconds:>9.2f} s  {seconds / it['wall_seconds']:6.1%} of wall", file=sys.stderr)
        for phase, timing in it["by_phase"].items():
            print(f"     {phase:<22}wall {timing['wall_s']:.2f} s, trainer {timing['trainer_s']:.2f}, "
                  f"generation {timing['generation_s']:.2f}, other {timing['other_s']:.2f}", file=sys.stderr)


# ---- batched vs one-at-a-time evaluation --------------------------------------------------------
def tiny_policy(folder: Path, hidden_size: int = 128, layers: int = 2):
    from sectow.config import PolicySettings
    from sectow.world.miniature import corpus
    from sectow.models.policy import load_policy
    from sectow.models.tiny import build_tiny_model

    build_tiny_model(folder, corpus(), seed=1, hidden_size=hidden_size, layers=layers)
    return load_policy(folder, PolicySettings(hidden_size=hidden_size, layers=layers))


def eval_speedup(world, work: Path, samples_per_label: int) -> dict:
    from sectow.config import load_config
    from sectow.evaluation.defender_eval import evaluate_defender
    from sectow.judges.refusal import RefusalJudge

    settings = load_config(None).evaluation
    model, processor = tiny_policy(work / "tiny")
    jailbreaks = world.jailbreaks_held_out[:samples_per_label]
    benign = world.benign_held_out[:samples_per_label]
    judge = RefusalJudge()

    def timed(batch_size: int, jailbreaks, benign) -> tuple[float, dict]:
        start = time.perf_counter()
        metrics = evaluate_defender(model, processor, jailbreaks, benign, judge, batch_size=batch_size,
                                    max_new_tokens=settings.max_new_tokens)
        return time.perf_counter() - start, metrics

    timed(settings.batch_size, jailbreaks[:4], benign[:4])  # warm up both paths
    timed(1, jailbreaks[:2], benign[:2])
    # batched, one at a time, batched again: the shared machine's load drifts; take the faster batched run
    batched_1, batched_metrics = timed(settings.batch_size, jailbreaks, benign)
    single, single_metrics = timed(1, jailbreaks, benign)
    batched_2, _ = timed(settings.batch_size, jailbreaks, benign)
    n = len(jailbreaks) + len(benign)
    batched = min(batched_1, batched_2)
    return {"eval_batched_speedup": round(single / batched, 2), "sequences": n, "batch_size": settings.batch_size,
            "max_new_tokens": settings.max_new_tokens, "batched_seq_per_s": round(n / batched, 2),
            "single_seq_per_s": round(n / single, 2), "batched_seconds": [round(batched_1, 2), round(batched_2, 2)],
            "single_seconds": round(single, 2),
            "same_metrics": {k: batched_metrics[k] == single_metrics[k] for k in ("asr", "orr", "accuracy")}}


# ---- GRPO step time at two model sizes ---------------------------------------------------------
def length_reward(completions, **_) -> list[float]:
    """A real but trivial reward: closeness of the reply's length to 40 characters."""
    texts = [c[0]["content"] if isinstance(c, list) else c for c in completions]
    return [1.0 - min(1.0, abs(len(t) - 40) / 40) for t in texts]


def timed_grpo_steps(model, processor, rows: list[dict], settings, max_completion_length: int, output_dir: Path) -> list[float]:
    """Seconds of each optimizer step of one `grpo_train` (callback to callback: no construction)."""
    from transformers import TrainerCallback

    from sectow.training.grpo import grpo_train

    durations, begun = [], []

    class StepTimer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            begun.append(time.perf_counter())

        def on_step_end(self, args, state, control, **kwargs):
            durations.append(time.perf_counter() - begun.pop())

    grpo_train(model, processor, rows, length_reward, output_dir, settings,
               max_completion_length=max_completion_length, seed=0, bf16=False, callbacks=[StepTimer()])
    return durations


def grpo_step_seconds(world, work: Path, steps: int, sizes: dict) -> dict:
    from sectow.config import load_config
    from sectow.training.players import defender_row

    config = load_config(None)
    settings = config.attacker_grpo.model_copy(update={"steps": steps})
    rows = [defender_row(s) for s in (world.harmful_train[:24] + world.benign_train[:24])]
    result = {}
    for name, (hidden_size, layers) in sizes.items():
        model, processor = tiny_policy(work / f"grpo-{name}", hidden_size, layers)
        durations = timed_grpo_steps(model, processor, rows, settings, config.defender.max_new_tokens,
                                     work / f"trainer-{name}")
        result[f"grpo_step_seconds_{name}"] = round(statistics.median(durations[1:]), 3)  # the first step warms up
        result[f"params_{name}"] = sum(p.numel() for p in model.parameters())
        result[f"step_seconds_{name}_all"] = [round(d, 3) for d in durations]
        result[f"shape_{name}"] = {"hidden_size": hidden_size, "layers": layers}
    result["grpo_settings"] = {"steps": steps, "batch_size": settings.batch_size,
                               "num_generations": settings.num_generations,
                               "max_completion_length": config.defender.max_new_tokens}
    return result


# ---- all together -------------------------------------------------------------------------------
def machine(load_at_start: tuple) -> dict:
    import torch
    import transformers
    import trl

    import sectow

    return {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "transformers": transformers.__version__, "trl": trl.__version__, "python": platform.python_version(),
            "platform": platform.platform(), "cuda": torch.cuda.is_available(),
            # other work on a shared machine slows small-model generation by large factors: judge by these
            "load_average_1_5_15_at_start": [round(x, 2) for x in load_at_start],
            "load_average_1_5_15_at_end": [round(x, 2) for x in os.getloadavg()],
            "sectow_source": str(Path(sectow.__file__).parent)}


def main() -> None:
    # The trainers and progress bars write to stdout (some through handles taken at import): send file
    # descriptor 1 to stderr while measuring, so stdout holds the `name value` lines alone.
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            figures = measure()
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
    for name, value in figures.items():
        print(name, value)


def measure() -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short version (micro config, fewer samples and steps)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads here and in the default run's process (0: torch's own choice). "
                             "On a 2-core machine with one other busy process, 2 threads made tiny-model "
                             "generation 20-40x slower and 1 thread not at all")
    args = parser.parse_args()
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # read by torch at import, here and in the child
        import torch

        torch.set_num_threads(args.threads)
    started, load_at_start = time.perf_counter(), os.getloadavg()
    figures, details = {}, {}

    # The default run first and in a child process: its peak RSS must not include this process.
    default_run = measure_default_run(config=MICRO if args.quick else None)
    figures.update({k: default_run[k] for k in ("default_run_seconds", "default_run_peak_rss_mb")})
    details["default_run"] = {**default_run, "config": "micro" if args.quick else "default"}

    from sectow.config import load_config
    from sectow.world.miniature import build_world

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = load_config(None).data
        world = build_world(work / "world", seed=0, questions_per_split=(data.questions, data.questions // 4),
                            image_size=data.image_size)
        details["eval"] = eval_speedup(world, work, samples_per_label=32 if args.quick else 96)
        figures["eval_batched_speedup"] = details["eval"]["eval_batched_speedup"]
        details["grpo"] = grpo_step_seconds(world, work, steps=3 if args.quick else 6,
                                            sizes={"small": (128, 2), "large": (256, 4)})
        for key in ("grpo_step_seconds_small", "grpo_step_seconds_large", "params_small", "params_large"):
            figures[key] = details["grpo"][key]

    details["loop"] = loop_overhead(MICRO if args.quick else None, [] if args.quick else ["iterations=2"])
    figures["loop_overhead_ratio"] = details["loop"]["loop_overhead_ratio"]
    print_breakdown(details["loop"])

    order = ("eval_batched_speedup", "loop_overhead_ratio", "default_run_seconds", "default_run_peak_rss_mb",
             "grpo_step_seconds_small", "grpo_step_seconds_large", "params_small", "params_large")
    report = {**{name: figures[name] for name in order},
              "config": "micro" if args.quick else "default", "quick": args.quick,
              "date": datetime.datetime.now().isoformat(timespec="seconds"),
              "total_seconds": round(time.perf_counter() - started, 1), "machine": machine(load_at_start), "details": details}
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / ("run_all_quick.json" if args.quick else "run_all.json")
    out.write_text(json.dumps(report, indent=2))
    print(f"results: {out.relative_to(REPO)}", file=sys.stderr)
    return {name: figures[name] for name in order}


if __name__ == "__main__":
    main()
