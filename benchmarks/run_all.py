"""Every performance figure of sectow in one command (issue 4): prints `name value` lines on stdout,
a breakdown of the tug-of-war loop's overhead on stderr, and writes the figures with the machine's
facts to benchmarks/results/run_all.json (run_all_quick.json under --quick).

    python benchmarks/run_all.py [--quick] [--threads N]

- eval_batched_speedup: sequences/s of `evaluate_defender` at the configured eval batch size over
  batch size 1, same tiny model, same held-out samples, same process.
- loop_overhead_ratio: wall time of the last SecTOW iteration (attacker GRPO, pool, defender GRPO,
  evaluation) over the time spent inside trainer steps and generation. Everything else counts as
  loop overhead: trainer construction, train() set-up, datasets, model loading and saving, LoRA
  merges, sentence encoding, image loading and rendering, judging, bookkeeping. The breakdown also
  tallies repeated work: greedy replies the same weights already gave, sentences already encoded.
- default_run_seconds, default_run_peak_rss_mb: one `sectow run` as `make run` starts it (--quick:
  the micro config of the tests, marked `"config": "micro"`).
- grpo_step_seconds_small / _large with params_small / _large: median seconds of a GRPO step (trainer
  construction and the first step excluded) on the tiny model at two sizes.

The machine is shared and noisy: compare ratios within one run, not seconds across runs; the JSON
records the load average at start and end."""

from __future__ import annotations

import argparse
import ast
import contextlib
import datetime
import functools
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
# Time inside these spans is the work the loop exists for; every other span is overhead.
USEFUL = ("trainer_step", "grpo_rollout", "generate")


def micro_overrides() -> list[str]:
    """The tests' micro config (tests/conftest.py), read without importing pytest."""
    tree = ast.parse((REPO / "tests" / "conftest.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "MICRO_OVERRIDES" for t in node.targets):
            return ast.literal_eval(node.value)
    raise RuntimeError("tests/conftest.py: MICRO_OVERRIDES not found")


# ---- a span profiler: self time per (phase, label, caller) -------------------------------------
class Profile:
    """Nested spans; each span's time minus its children's is credited to its label (and the label
    of the span that called it) under the current loop phase, so the self times of one window add
    up to its wall time. `count` keeps plain tallies (sentences encoded, repeated prompts, ...)."""

    def __init__(self):
        self.phase = "setup"
        self.self_seconds: dict[tuple[str, str, str], float] = defaultdict(float)
        self.calls: dict[tuple[str, str, str], int] = defaultdict(int)
        self.counts: dict[tuple[str, str], float] = defaultdict(float)
        self._stack: list[list] = []  # [label, start, children's seconds]

    def push(self, label: str) -> None:
        self._stack.append([label, time.perf_counter(), 0.0])

    def pop(self, label: str) -> float:
        top, start, children = self._stack.pop()
        assert top == label, f"span {label!r} closed while {top!r} was open"
        elapsed = time.perf_counter() - start
        key = (self.phase, label, self._stack[-1][0] if self._stack else "-")
        self.self_seconds[key] += elapsed - children
        self.calls[key] += 1
        if self._stack:
            self._stack[-1][2] += elapsed
        return elapsed

    def count(self, name: str, amount: float) -> None:
        self.counts[(self.phase, name)] += amount

    def wrap(self, owner, name: str, label: str, tally=None) -> None:
        """Replace owner.name (a module function or a class's method) by a timed version. `tally`,
        if given, is called as tally(seconds, *args, **kwargs) after each call, outside the span."""
        original = getattr(owner, name, None)
        if original is None:
            print(f"run_all: {getattr(owner, '__name__', owner)}.{name} not found, not timed", file=sys.stderr)
            return

        @functools.wraps(original)
        def timed(*args, **kwargs):
            self.push(label)
            try:
                return original(*args, **kwargs)
            finally:
                seconds = self.pop(label)
                if tally is not None:
                    self.push("profiler")
                    tally(seconds, *args, **kwargs)
                    self.pop("profiler")

        setattr(owner, name, timed)

    def snapshot(self) -> tuple:
        return dict(self.self_seconds), dict(self.calls), dict(self.counts)


class RepeatTally:
    """How much of a call's work repeats work already done in this run: greedy generation of a
    prompt the same weights already answered, or a sentence the encoder already embedded. Its cost is
    estimated as the call's seconds times the repeated share of its inputs."""

    def __init__(self, profile: Profile, name: str):
        self.profile, self.name, self.seen = profile, name, set()

    def __call__(self, seconds: float, keys: list) -> None:
        repeated = 0
        for key in keys:
            repeated += key in self.seen
            self.seen.add(key)
        self.profile.count(f"{self.name}_items", len(keys))
        self.profile.count(f"{self.name}_repeated_items", repeated)
        self.profile.count(f"{self.name}_repeated_seconds", seconds * repeated / max(1, len(keys)))


def weights_fingerprint(model) -> float:
    return float(sum(p.detach().float().sum() for p in model.parameters()))


def image_key(image):
    import hashlib

    if image is None or isinstance(image, (str, Path)):
        return str(image)
    return hashlib.sha1(image.tobytes()).hexdigest()


def generation_tally(profile: Profile):
    repeats = RepeatTally(profile, "generate")

    def tally(seconds, model, processor, prompts, *_, **kwargs):
        if kwargs.get("temperature", 0.0) > 0:  # sampled: a repeat is new work
            profile.count("generate_items", len(prompts))
            return
        fingerprint = weights_fingerprint(model)
        repeats(seconds, [(fingerprint, text, image_key(image), kwargs.get("max_new_tokens")) for text, image in prompts])

    return tally


def encoder_tally(profile: Profile):
    repeats = RepeatTally(profile, "encode")

    def tally(seconds, encoder, texts):
        repeats(seconds, list(texts))
        profile.count("encode_empty_items", sum(not t for t in texts))

    return tally


def step_timer(on_step):
    """A TrainerCallback calling on_step("begin"/"end") around each optimizer step."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            on_step("begin")

        def on_step_end(self, args, state, control, **kwargs):
            on_step("end")

    return StepTimer()


def instrument(profile: Profile) -> None:
    """Time the names the loop calls, where the loop looks them up (module globals, class methods)."""
    import datasets
    import transformers
    import trl
    import trl.trainer.grpo_trainer as grpo_trainer_module

    import sectow.tug_of_war as tow
    from sectow.judges.refusal import RefusalJudge
    from sectow.models import generation, policy
    from sectow.monitors import AttackerQualityMonitor, SentenceEncoder
    from sectow.pool import JailbreakPool
    from sectow.run_folder import RunRecord
    from sectow.training import players, prompts

    for name, label in (("load_policy", "load_policy"), ("with_lora", "lora_wrap"), ("merged", "lora_merge"),
                        ("save_policy", "save_checkpoint"), ("grpo_train", "grpo_train"),
                        ("supervised_finetune", "supervised_finetune"), ("evaluate_defender", "evaluate_defender"),
                        ("save_image", "image_save"), ("load_world", "load_world"),
                        ("build_tiny_model", "build_tiny_model")):
        profile.wrap(tow, name, label)
    generated = generation_tally(profile)
    # generate as the loop, evaluation (reply_to_samples) and the attacker's reward (the frozen defender) call it
    for module in (tow, generation, players):
        profile.wrap(module, "generate", "generate", generated)
    profile.wrap(policy, "load_processor", "load_processor")
    profile.wrap(generation, "load_image", "image_load")
    profile.wrap(players, "defender_input", "image_render")
    profile.wrap(players, "load_image", "image_load")
    profile.wrap(prompts, "load_image", "image_load")
    profile.wrap(RefusalJudge, "judge", "judge")
    profile.wrap(SentenceEncoder, "__init__", "encoder_load")
    profile.wrap(SentenceEncoder, "encode", "encoder_encode", encoder_tally(profile))
    profile.wrap(AttackerQualityMonitor, "add_to_pool", "quality_pool_vectors")
    profile.wrap(AttackerQualityMonitor, "score", "quality_score")
    profile.wrap(players.AttackOutcome, "run", "attack_outcome")  # parse, render, ask the defender, judge, monitor
    for name in ("records", "samples", "write_iteration"):
        profile.wrap(JailbreakPool, name, "pool_io")
    for name in ("complete", "metrics"):
        profile.wrap(RunRecord, name, "record_io")
    profile.wrap(tow.TugOfWar, "write_summary", "record_io")
    profile.wrap(tow.TugOfWar, "_attacker_prompts", "attacker_prompts")
    profile.wrap(tow.TugOfWar, "_defender_rows", "defender_rows")
    profile.wrap(datasets.Dataset, "from_list", "dataset_build")
    profile.wrap(grpo_trainer_module, "create_model_from_path", "ref_model_load")
    profile.wrap(trl.GRPOTrainer, "_generate", "grpo_rollout")
    profile.wrap(trl.GRPOTrainer, "_calculate_rewards", "grpo_reward")
    profile.wrap(transformers.Trainer, "train", "trainer_train")
    profile.wrap(transformers.Trainer, "get_batch_samples", "trainer_data")

    def on_step(event: str) -> None:
        (profile.push if event == "begin" else profile.pop)("trainer_step")

    for trainer_class in (trl.GRPOTrainer, trl.SFTTrainer):
        original_init = trainer_class.__init__

        def init(self, *args, _original=original_init, **kwargs):
            profile.push("trainer_init")
            try:
                _original(self, *args, **kwargs)
            finally:
                profile.pop("trainer_init")
            self.add_callback(step_timer(on_step))

        trainer_class.__init__ = init


def phase_wrappers(profile: Profile, windows: dict) -> None:
    """Name the current phase for the profile, and mark where each iteration starts and ends."""
    import sectow.tug_of_war as tow

    def phased(method_name: str, phase_of):
        original = getattr(tow.TugOfWar, method_name)

        @functools.wraps(original)
        def run_phase(self, *args, **kwargs):
            phase, iteration, edge = phase_of(*args)
            if edge == "start":
                windows[iteration] = {"start": time.perf_counter(), "before": profile.snapshot()}
            outer, profile.phase = profile.phase, phase
            profile.push("loop_self")
            try:
                return original(self, *args, **kwargs)
            finally:
                profile.pop("loop_self")
                profile.phase = outer
                if edge == "end":
                    windows[iteration].update(end=time.perf_counter(), after=profile.snapshot())

        setattr(tow.TugOfWar, method_name, run_phase)

    phased("cold_start", lambda world: ("cold_start", None, None))
    phased("attacker_phase", lambda k, *_: (f"attacker_grpo_{k}", k, "start"))
    phased("pool_phase", lambda k, *_: (f"pool_{k}", k, None))
    phased("defender_phase", lambda k, *_: (f"defender_grpo_{k}", k, None))
    phased("evaluate", lambda name, *_: (f"evaluate_{name}", int(name.split("_")[1]) if name.startswith("iteration_")
                                         else None, "end" if name.startswith("iteration_") else None))


def window_breakdown(window: dict) -> dict:
    """Wall, useful and overhead seconds of one iteration; overhead per label, per phase and per caller;
    the profiler's own tallies are taken off the wall time."""
    (before, calls_before, counts_before), (after, calls_after, counts_after) = window["before"], window["after"]
    spent = {key: after[key] - before.get(key, 0.0) for key in after if after[key] - before.get(key, 0.0) > 1e-9}
    calls = {key: calls_after[key] - calls_before.get(key, 0) for key in spent}
    profiler = sum(s for (_, label, _), s in spent.items() if label == "profiler")
    wall = window["end"] - window["start"] - profiler
    useful = sum(s for (_, label, _), s in spent.items() if label in USEFUL)
    by_label, by_phase, by_caller = defaultdict(float), defaultdict(lambda: defaultdict(float)), defaultdict(float)
    for (phase, label, caller), seconds in spent.items():
        if label == "profiler":
            continue
        by_label[label] += seconds
        by_phase[phase][label] += seconds
        by_caller[f"{phase}/{label}<-{caller}"] += seconds
    by_label["unattributed"] = wall - sum(by_label.values())
    counts = defaultdict(float)
    for (phase, name), value in counts_after.items():
        counts[name] += value - counts_before.get((phase, name), 0.0)
    descending = lambda d: {k: round(v, 3) for k, v in sorted(d.items(), key=lambda kv: -kv[1])}
    return {"wall_seconds": round(wall, 2), "useful_seconds": round(useful, 2),
            "overhead_seconds": round(wall - useful, 2), "ratio": round(wall / useful, 3),
            "profiler_seconds": round(profiler, 2),
            "useful": {label: round(by_label[label], 3) for label in USEFUL},
            "overhead_by_label": descending({k: v for k, v in by_label.items() if k not in USEFUL}),
            "by_phase": {phase: descending(labels) for phase, labels in by_phase.items()},
            "by_caller": descending(by_caller),
            "tallies": {name: round(value, 3) for name, value in sorted(counts.items())},
            "calls": {f"{phase}/{label}<-{caller}": n for (phase, label, caller), n in sorted(calls.items())}}


def loop_overhead(overrides: list[str]) -> dict:
    from sectow.config import load_config
    from sectow.run_folder import new_run_folder
    from sectow.tug_of_war import TugOfWar

    profile, windows = Profile(), {}
    instrument(profile)
    phase_wrappers(profile, windows)
    with tempfile.TemporaryDirectory() as runs:
        config = load_config(None, overrides + [f"output_dir={runs}"])
        start = time.perf_counter()
        TugOfWar(config, new_run_folder(config.output_dir, config.name)).run()
        run_seconds = time.perf_counter() - start
    iterations = {k: window_breakdown(w) for k, w in sorted(windows.items())}
    last = max(iterations)
    return {"loop_overhead_ratio": iterations[last]["ratio"], "loop_iteration": last,
            "loop_run_seconds": round(run_seconds, 1), "overrides": overrides, "iterations": iterations}


def print_breakdown(loop: dict) -> None:
    for k, it in loop["iterations"].items():
        print(f"\n== iteration {k}: wall {it['wall_seconds']} s, trainer steps + generation {it['useful_seconds']} s, "
              f"overhead {it['overhead_seconds']} s, ratio {it['ratio']}", file=sys.stderr)
        print("   useful: " + ", ".join(f"{label} {s} s" for label, s in it["useful"].items()), file=sys.stderr)
        print("   overhead by kind:", file=sys.stderr)
        for label, seconds in list(it["overhead_by_label"].items())[:12]:
            print(f"     {label:<22}{seconds:>9.2f} s  {seconds / it['wall_seconds']:6.1%} of wall", file=sys.stderr)
        print("   per phase (self seconds):", file=sys.stderr)
        for phase, labels in it["by_phase"].items():
            top = ", ".join(f"{label} {s:.2f}" for label, s in list(labels.items())[:8])
            print(f"     {phase:<22}{top}", file=sys.stderr)
        print("   generation and encoding by caller:", file=sys.stderr)
        for key, seconds in it["by_caller"].items():
            if ("/generate<-" in key or "/encoder_encode<-" in key) and seconds >= 0.05:
                print(f"     {key:<58}{seconds:>8.2f} s", file=sys.stderr)
        print("   repeated work: " + ", ".join(f"{k} {v}" for k, v in it["tallies"].items()), file=sys.stderr)


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
    judge = RefusalJudge(settings.judge)

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
    import transformers

    from sectow.training.grpo import grpo_train

    durations, begun = [], []

    def on_step(event: str) -> None:
        if event == "begin":
            begun.append(time.perf_counter())
        else:
            durations.append(time.perf_counter() - begun.pop())

    original_init = transformers.Trainer.__init__

    def init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        self.add_callback(step_timer(on_step))

    transformers.Trainer.__init__ = init
    try:
        grpo_train(model, processor, rows, length_reward, output_dir, settings,
                   max_completion_length=max_completion_length, seed=0, bf16=False)
    finally:
        transformers.Trainer.__init__ = original_init
    return durations


def grpo_step_seconds(world, work: Path, steps: int, sizes: dict) -> dict:
    from sectow.config import load_config
    from sectow.training.prompts import defender_row

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
    micro = micro_overrides()
    started, load_at_start = time.perf_counter(), os.getloadavg()
    figures, details = {}, {}

    # The default run first and in a child process: its peak RSS must not include this process.
    default_run = measure_default_run(micro if args.quick else [])
    figures.update({k: default_run[k] for k in ("default_run_seconds", "default_run_peak_rss_mb")})
    details["default_run"] = {**default_run, "overrides": micro if args.quick else []}

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

    # Last: it patches sectow's and TRL's names in this process for the rest of its life.
    details["loop"] = loop_overhead(micro if args.quick else ["iterations=2"])
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
