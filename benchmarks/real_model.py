"""The real pretrained model's costs on this machine (SmolLM2-135M-Instruct, text-only folder): prints
`name value` lines on stdout like run_all.py and writes them with the machine's facts to
benchmarks/results/real_model.json.

    python benchmarks/real_model.py [--model DIR] [--threads N] [--run RUN_DIR]

- gen_tokens_per_s_batched / _sequential, gen_batched_speedup: reply tokens (up to EOS) per second of
  greedy `sectow.models.generation.generate`, 64 new tokens, 16 prompts in one batch vs 4 prompts one
  at a time.
- sft_step_seconds: an SFT step (TRL SFTTrainer, LoRA r=16, batch 8 x about 96 tokens, loss on the
  completion), median of the steps after the first.
- grpo_step_seconds: a GRPO step (TRL GRPOTrainer, 4 prompts x 4 completions x 48 tokens, LoRA r=16,
  beta 0, rollouts with HF generate), median of the steps after the first.
- peak_rss_mb: this process's peak resident memory, GRPO included.
- loop_overhead_ratio: wall time of the last iteration of a run of configs/smollm2-cpu.yaml over its time in
  trainer steps and generation, from the `timing` every phase records in metrics.jsonl (as run_all.py
  reads it); with loop_trainer_s, loop_generation_s, loop_other_s. By default from a short run (`short_form`:
  a few rows, one or two steps per phase, where fixed costs weigh the most), or `--run DIR` reads a
  finished run folder instead (e.g. the README's measured run).

The trainers are TRL's, set up as sectow's are on CPU (fp32, constant learning rate), so the figures are
the model's cost, not the loop's. `--model` defaults to models/smollm2 (`make real-model`); when it is
missing the model is prepared into a temporary folder first. The machine is shared: compare ratios
within one run, not seconds across runs; the JSON records the load average at start and end."""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, str(Path(__file__).parent))
from default_run import RESULTS  # noqa: E402
from run_all import iteration_breakdown, machine  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
NEW_TOKENS = 64
# Benign requests with long answers, so that most replies run to NEW_TOKENS.
PROMPTS = [f"Explain in detail how {thing} works." for thing in (
    "a bicycle gear", "a refrigerator", "photosynthesis", "a rainbow", "a compass", "a battery", "a microwave oven",
    "a sailboat", "a thermometer", "a camera lens", "a water filter", "a wind turbine", "a telescope",
    "a piano", "a solar panel", "an elevator")]


def step_timer(durations: list[float]):
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            self.begun = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            durations.append(time.perf_counter() - self.begun)

    return StepTimer()


def trainer_settings(output_dir: Path, steps: int, batch_size: int) -> dict:
    return dict(output_dir=str(output_dir), max_steps=steps, per_device_train_batch_size=batch_size, use_cpu=True,
                bf16=False, report_to=[], save_strategy="no", learning_rate=2e-4, lr_scheduler_type="constant",
                warmup_steps=0, logging_steps=1, disable_tqdm=True, dataloader_num_workers=0, seed=0)


def generation_figures(model, tokenizer) -> dict:
    from sectow.models.generation import generate

    def tokens_per_second(prompts: list[str], batch_size: int) -> tuple[float, int, float]:
        started = time.perf_counter()
        replies = generate(model, tokenizer, [(p, None) for p in prompts], max_new_tokens=NEW_TOKENS, batch_size=batch_size)
        seconds = time.perf_counter() - started
        tokens = sum(len(tokenizer(r, add_special_tokens=False)["input_ids"]) for r in replies)
        return tokens / seconds, tokens, seconds

    generate(model, tokenizer, [(PROMPTS[0], None)], max_new_tokens=4)  # warm-up
    batched, batched_tokens, batched_seconds = tokens_per_second(PROMPTS, batch_size=16)
    sequential, sequential_tokens, sequential_seconds = tokens_per_second(PROMPTS[:4], batch_size=1)
    return {"gen_tokens_per_s_batched": round(batched, 1), "gen_tokens_per_s_sequential": round(sequential, 1),
            "gen_batched_speedup": round(batched / sequential, 2),
            "details": {"batched": {"prompts": 16, "tokens": batched_tokens, "seconds": round(batched_seconds, 2)},
                        "sequential": {"prompts": 4, "tokens": sequential_tokens, "seconds": round(sequential_seconds, 2)},
                        "max_new_tokens": NEW_TOKENS}}


def sft_figures(folder: Path, work: Path, steps: int) -> dict:
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from sectow.config import LoraSettings, PolicySettings
    from sectow.models.policy import load_policy, with_lora

    model, tokenizer = load_policy(folder, PolicySettings())
    answer = ("It turns a force into motion through a chain of simple parts, each passing energy on to the next "
              "one, and losing a little of it as heat on the way, until the last part does the work that was asked "
              "of it, and then the whole cycle begins again.")
    rows = [{"prompt": [{"role": "user", "content": prompt}], "completion": [{"role": "assistant", "content": answer}]}
            for prompt in PROMPTS]
    durations: list[float] = []
    trainer = SFTTrainer(model=with_lora(model, LoraSettings(rank=16, alpha=32)),
                         args=SFTConfig(**trainer_settings(work / "sft", steps, 8), completion_only_loss=True,
                                        max_length=None),
                         train_dataset=Dataset.from_list(rows), processing_class=tokenizer, callbacks=[step_timer(durations)])
    tokens = statistics.mean(len(row["input_ids"]) for row in trainer.train_dataset)
    trainer.train()
    return {"sft_step_seconds": round(statistics.median(durations[1:]), 2),
            "details": {"steps_seconds": [round(d, 2) for d in durations], "batch_size": 8,
                        "mean_tokens_per_row": round(tokens, 1), "lora_rank": 16}}


def grpo_figures(folder: Path, work: Path, steps: int) -> dict:
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from sectow.config import LoraSettings, PolicySettings
    from sectow.models.policy import load_policy, with_lora

    def length_reward(completions, **_) -> list[float]:
        """A real but trivial reward: closeness of the reply's length to 120 characters."""
        return [1.0 - min(1.0, abs(len(c[0]["content"]) - 120) / 120) for c in completions]

    model, tokenizer = load_policy(folder, PolicySettings())
    durations: list[float] = []
    config = GRPOConfig(**trainer_settings(work / "grpo", steps, 16), num_generations=4, max_completion_length=48,
                        temperature=1.0, top_k=0, top_p=1.0, beta=0.0, log_completions=False)
    trainer = GRPOTrainer(model=with_lora(model, LoraSettings(rank=16, alpha=32)), reward_funcs=[length_reward], args=config,
                          train_dataset=Dataset.from_list([{"prompt": [{"role": "user", "content": p}]} for p in PROMPTS]),
                          processing_class=tokenizer, callbacks=[step_timer(durations)])
    trainer.train()
    return {"grpo_step_seconds": round(statistics.median(durations[1:]), 2),
            "details": {"steps_seconds": [round(d, 2) for d in durations], "prompts": 4, "num_generations": 4,
                        "max_completion_length": 48, "lora_rank": 16, "beta": 0.0}}


REAL_CONFIG = REPO / "configs" / "smollm2-cpu.yaml"
SHORT_DATA = {"harmful_seeds": {"h": 4}, "held_out_harmful": {"h": 2}, "benign": {"q": 2, "p": 2, "r": 2},
              "held_out_benign": {"q": 1, "p": 1, "r": 2}}  # rows kept per id prefix (question, picture, request)
SHORT_STEPS = ["iterations=1", "defender_sft.steps=2", "attacker_sft.steps=2", "defender_sft.batch_size=4",
               "attacker_sft.batch_size=4", "attacker_grpo.steps=1", "attacker_grpo.batch_size=4",
               "attacker_grpo.num_generations=2", "defender_grpo.steps=1", "defender_grpo.batch_size=4",
               "defender_grpo.num_generations=2", "attacker.max_new_tokens=24", "defender.max_new_tokens=16",
               "evaluation.max_new_tokens=16", "monitors.orr_bound=1.0"]


def short_form(data_dir: Path, defender: Path, attacker: Path) -> list[str]:
    """`--set` overrides that run configs/smollm2-cpu.yaml in a short form through every phase: a few rows
    of each shipped data file (written to `data_dir`, pictures copied), one or two steps per phase."""
    import shutil

    source = REPO / "configs" / "data" / "smollm2"
    (data_dir / "images").mkdir(parents=True, exist_ok=True)
    overrides = [f"defender.path={defender}", f"attacker.path={attacker}"]
    for key, per_prefix in SHORT_DATA.items():
        rows = [json.loads(line) for line in (source / f"{key}.jsonl").read_text(encoding="utf-8").splitlines()]
        kept = [row for prefix, count in per_prefix.items() for row in [r for r in rows if r["id"].startswith(prefix)][:count]]
        for row in kept:
            if row.get("image"):
                shutil.copy(source / row["image"], data_dir / row["image"])
        (data_dir / f"{key}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in kept), encoding="utf-8")
        overrides.append(f"data.{key}={data_dir / f'{key}.jsonl'}")
    return overrides + SHORT_STEPS


def loop_figures(run: Path) -> dict:
    """The last iteration's overhead ratio and its parts, from a run folder's metrics.jsonl."""
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    last = max(int(m["phase"].rsplit("_", 1)[1]) for m in metrics if m["phase"].startswith("evaluate_iteration_"))
    it = iteration_breakdown(metrics, last)
    return {"loop_overhead_ratio": it["ratio"], "loop_trainer_s": it["trainer_seconds"],
            "loop_generation_s": it["generation_seconds"], "loop_other_s": it["overhead_seconds"],
            "details": {"run": str(run), "iteration": last, **it}}


def short_run_loop_figures(folder: Path, work: Path) -> dict:
    from sectow.config import load_config
    from sectow.run_folder import new_run_folder
    from sectow.tug_of_war import TugOfWar

    vision = REPO / "models" / "smollm2-vl"
    if not vision.is_dir():
        from sectow.models.prepare import prepare_smollm2

        vision = prepare_smollm2(work / "smollm2-vl", vision=True)
    config = load_config(REAL_CONFIG, short_form(work / "data", vision, vision) + [f"output_dir={work / 'runs'}"])
    run = new_run_folder(config.output_dir, config.name)
    TugOfWar(config, run).run()
    return loop_figures(run)


def measure() -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=REPO / "models" / "smollm2", help="a text-only SmolLM2 folder")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's own choice); on a busy "
                        "2-core machine 2 threads were 4-5x slower than 1")
    parser.add_argument("--sft-steps", type=int, default=4)
    parser.add_argument("--grpo-steps", type=int, default=3)
    parser.add_argument("--run", type=Path, help="a finished run folder of configs/smollm2-cpu.yaml to read the loop's "
                        "overhead from, instead of a short run")
    args = parser.parse_args()
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # read by torch at import
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    started, load_at_start = time.perf_counter(), os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        folder = args.model
        if not folder.is_dir():
            from sectow.models.prepare import prepare_smollm2

            print(f"real_model: {folder} missing, preparing SmolLM2 in a temporary folder", file=sys.stderr)
            folder = prepare_smollm2(work / "smollm2")
        from sectow.config import PolicySettings
        from sectow.models.policy import load_policy

        details = {"generation": generation_figures(*load_policy(folder, PolicySettings()))}
        details["sft"] = sft_figures(folder, work, args.sft_steps)
        details["grpo"] = grpo_figures(folder, work, args.grpo_steps)
        details["loop"] = loop_figures(args.run) if args.run else short_run_loop_figures(folder, work)
    figures = {name: value for part in details.values() for name, value in part.items() if name != "details"}
    figures["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    report = {**figures, "model": str(args.model), "date": datetime.datetime.now().isoformat(timespec="seconds"),
              "total_seconds": round(time.perf_counter() - started, 1), "machine": machine(load_at_start),
              "details": {name: part["details"] for name, part in details.items()}}
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "real_model.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"results: {out.relative_to(REPO)}", file=sys.stderr)
    return figures


def main() -> None:
    # Trainers and progress bars write to stdout: send file descriptor 1 to stderr while measuring, so
    # stdout holds the `name value` lines alone.
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


if __name__ == "__main__":
    main()
