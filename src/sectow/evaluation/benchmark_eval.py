"""`sectow eval`: a model folder's replies to local benchmarks, judged and scored with bootstrap intervals
(ASR per category on safety benchmarks; accuracy and over-refusal on general ones)."""

from __future__ import annotations

import inspect
import json
from collections import defaultdict
from dataclasses import asdict
from functools import partial
from itertools import islice
from pathlib import Path

from sectow.evaluation.prompt_defenses import PROMPT_DEFENSES, with_prompt_defense
from sectow.config import JudgeSettings, PolicySettings
from sectow.data.benchmarks import BENCHMARKS, BenchmarkData, load_benchmark
from sectow.data.benchmarks.mmmu import MMMUPro
from sectow.data.schema import Sample
from sectow.errors import UserError
from sectow.evaluation.answer_parsing import parse_mmmu_choice, parse_mmmu_pro_choice
from sectow.evaluation.intervals import proportion
from sectow.judges import build_judge
from sectow.judges.base import Verdict
from sectow.models import generation, vllm_generation
from sectow.models.folder import check_model_folder
from sectow.models.policy import load_policy
from sectow.models.processor import load_processor
from sectow.models.vllm_generation import generation_engine
from sectow.paths import check_output_dir
from sectow.atomic import write_atomic


def check_benchmark_name(name: str) -> None:
    if name not in BENCHMARKS:
        raise UserError(f"unknown benchmark {name!r} (known: {', '.join(BENCHMARKS)})")


def parse_benchmark_args(items: list[str]) -> dict[str, Path]:
    """`["figstep=/data/FigStep", ...]` as {name: root}; malformed items, unknown names and repeats are
    UserErrors."""
    benchmarks: dict[str, Path] = {}
    for item in items:
        name, sep, root = (part.strip() for part in item.partition("="))
        if not sep or not name or not root:
            raise UserError(f"benchmark {item!r}: expected NAME=ROOT, e.g. figstep=/data/FigStep")
        check_benchmark_name(name)
        if name in benchmarks:
            raise UserError(f"benchmark {name!r} given twice")
        benchmarks[name] = Path(root).expanduser()
    return benchmarks


def choice_parser(name: str):
    """Each family's own official parser, so accuracies compare with published numbers."""
    return parse_mmmu_pro_choice if issubclass(BENCHMARKS[name], MMMUPro) else parse_mmmu_choice


def judge_label(verdicts: list[Verdict]) -> str:
    return ",".join(sorted({v.judge for v in verdicts}))


def safety_metrics(samples: list[Sample], verdicts: list[Verdict]) -> dict:
    """ASR overall, per category and per form (JailBreakV and MM-SafetyBench report by format)."""
    by_category, by_form = defaultdict(list), defaultdict(list)
    for sample, verdict in zip(samples, verdicts, strict=True):
        by_category[sample.category or "none"].append(verdict.unsafe)
        by_form[sample.form].append(verdict.unsafe)
    return {"asr": proportion([v.unsafe for v in verdicts]),
            "asr_by_category": {k: proportion(v) for k, v in sorted(by_category.items())},
            "asr_by_form": {k: proportion(v) for k, v in sorted(by_form.items())}}


def chosen_letters(name: str, samples: list[Sample], responses: list[str]) -> list[str | None]:
    """The option letter each response picked; None for open questions (no official parser here)."""
    parse = choice_parser(name)
    return [parse(r, s.extra["options"]) if s.answer else None for s, r in zip(samples, responses, strict=True)]


def general_metrics(samples: list[Sample], chosen: list[str | None], verdicts: list[Verdict]) -> dict:
    """Accuracy on the multiple-choice questions and the over-refusal rate on all of them."""
    correct = [letter == s.answer for s, letter in zip(samples, chosen, strict=True) if s.answer]
    return {"accuracy": proportion(correct), "orr": proportion([v.refused for v in verdicts]),
            "n_open_unscored": sum(s.answer is None for s in samples)}


def load(name: str, root: Path, limit: int | None, out_dir: Path) -> BenchmarkData:
    # MMMU's embedded images go with the evaluation, not into a temp folder nobody cleans.
    takes_cache = "cache_dir" in inspect.signature(BENCHMARKS[name]).parameters
    return load_benchmark(name, root, limit=limit, **({"cache_dir": out_dir / "image-cache"} if takes_cache else {}))


def evaluate_model(model_dir: Path, benchmarks: dict[str, Path], out_dir: Path, judge: str = "refusal",
                   judge_options: dict | None = None, limit: int | None = None, batch_size: int = 16,
                   max_new_tokens: int = 64, prompt_defense: str | None = None, use_vllm: bool = False) -> dict:
    """Generate, judge and score every benchmark; write eval.json, eval.md and responses.jsonl to
    `out_dir` and return what eval.json holds. `prompt_defense` (a name in baselines.PROMPT_DEFENSES)
    adds its defense text to each query as its own paragraph, so it works with any chat template;
    judges still see the original query. `use_vllm`
    generates with vLLM where it can run (else HF generate, with a logged warning)."""
    if not benchmarks:
        raise UserError("no benchmarks to evaluate (give NAME=ROOT, e.g. figstep=/data/FigStep)")
    for name in benchmarks:
        check_benchmark_name(name)
    if prompt_defense is not None and prompt_defense not in PROMPT_DEFENSES:
        raise UserError(f"unknown prompt defense {prompt_defense!r} (defenses: {', '.join(PROMPT_DEFENSES)})")
    # Judge, model folder, output folder and data are all checked before the first (long) generation,
    # and before anything is written.
    judge_impl = build_judge(JudgeSettings(kind=judge, options=judge_options or {}))
    check_model_folder(Path(model_dir))
    check_output_dir(out_dir)
    data = {name: load(name, Path(root), limit, out_dir) for name, root in benchmarks.items()}
    out_dir.mkdir(parents=True, exist_ok=True)
    engine = generation_engine(use_vllm)
    if engine == "vllm":  # vLLM loads the weights itself
        processor = load_processor(Path(model_dir))
        generate = partial(vllm_generation.generate, Path(model_dir))
    else:
        model, processor = load_policy(Path(model_dir), PolicySettings())
        generate = partial(generation.generate, model)
    # One call for every benchmark: a vLLM engine starts once, and batches span benchmarks.
    samples = [s for bench in data.values() for s in bench.samples]
    prompts = [(s.query, s.image) for s in (with_prompt_defense(samples, prompt_defense) if prompt_defense else samples)]
    replies = iter(generate(processor, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size, desc="eval"))

    entries, audit = {}, []
    for name, bench in data.items():
        samples = bench.samples
        responses = list(islice(replies, len(samples)))
        verdicts = judge_impl.judge(samples, responses)
        kind = BENCHMARKS[name].kind
        rows = [{"benchmark": name, "id": s.id, "form": s.form, "category": s.category, "response": r,
                 "verdict": asdict(v)} for s, r, v in zip(samples, responses, verdicts, strict=True)]
        if kind == "safety":
            metrics = safety_metrics(samples, verdicts)
        else:
            chosen = chosen_letters(name, samples, responses)
            metrics = general_metrics(samples, chosen, verdicts)
            for row, sample, letter in zip(rows, samples, chosen):
                row.update(answer=sample.answer, chosen=letter)
        audit += rows
        entries[name] = {"name": name, "kind": kind, "root": str(bench.root), "n": len(samples), **metrics,
                         "judge": judge_label(verdicts), "found": bench.found}

    result = {"model": str(model_dir), "judge": judge, "limit": limit, "max_new_tokens": max_new_tokens,
              "prompt_defense": prompt_defense, "generation_engine": engine, "benchmarks": entries}
    write_atomic(out_dir / "responses.jsonl", "".join(json.dumps(row) + "\n" for row in audit))
    write_atomic(out_dir / "eval.json", json.dumps(result, indent=1, default=str))
    write_atomic(out_dir / "eval.md", markdown(result))
    return result


def markdown(result: dict) -> str:
    """One row per (benchmark, metric), then ASR by category for each safety benchmark."""
    def cell(rate: dict) -> str:
        if rate["value"] is None:
            return "- | - | 0"
        low, high = rate["interval"]
        return f"{rate['value']:.3f} | [{low:.3f}, {high:.3f}] | {rate['n']}"

    lines = [f"# Evaluation of `{result['model']}`", "", "| benchmark | metric | value | 95% interval | n | judge |",
             "|---|---|---|---|---|---|"]
    for name, entry in result["benchmarks"].items():
        for metric in ("asr", "accuracy", "orr"):
            if metric in entry:
                lines.append(f"| {name} | {metric} | {cell(entry[metric])} | {entry['judge']} |")
    for name, entry in result["benchmarks"].items():
        if "asr_by_category" in entry:
            lines += ["", f"## {name}: ASR by category", "", "| category | asr | 95% interval | n |",
                      "|---|---|---|---|"]
            lines += [f"| {category} | {cell(rate)} |" for category, rate in entry["asr_by_category"].items()]
    return "\n".join(lines) + "\n"
