"""The hardened defender's model card: README.md in its checkpoint folder, in the Hugging Face format
(huggingface_hub's ModelCard and ModelCardData), so the folder can be shared as it is. The run writes it
with its base model, config digest, judge, refusal strings and held-out table per iteration; each
`sectow eval` of that folder adds its benchmark tables, with their judges and refusal strings named."""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path

import yaml
from huggingface_hub import ModelCard, ModelCardData

from sectow import __version__
from sectow.atomic import write_atomic
from sectow.evaluation.benchmark_eval import table_markdown
from sectow.evaluation.intervals import rate_text
from sectow.report.html_report import held_out_markdown, load_run

log = logging.getLogger(__name__)
CARD = "README.md"
HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")  # owner/name, as base_model expects
EVAL_BLOCK = re.compile(r"<!-- sectow-eval (?P<folder>.+?) -->\n.*?<!-- /sectow-eval -->\n", re.S)
HEADLINE = ("asr", "accuracy", "accuracy_expected", "accuracy_without_fallback", "orr")


def write_run_model_card(run_dir: Path) -> Path | None:
    """The final defender's card, in its checkpoint folder; None when that defender is not a folder of this
    run (no cold start and no iteration accepted: the base model, which sectow never writes into). A card
    there from an earlier report keeps its benchmark sections."""
    run = load_run(run_dir)
    final = run.summary.get("final_defender")
    folder = (run_dir / final).resolve() if final else None
    if folder is None or not folder.is_relative_to(run_dir.resolve()) or not folder.is_dir():
        return None
    config = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8")) or {}
    base = (config.get("defender") or {}).get("path")
    judge = config.get("judge") or {}
    markers = run.summary.get("refusal_markers")
    data = ModelCardData(
        base_model=base if base and HUB_ID.fullmatch(str(base)) and not Path(base).exists() else None,
        library_name="transformers", pipeline_tag="image-text-to-text",
        tags=["sectow", "ai-safety", "jailbreak-defense", "grpo", "vision-language"],
        sectow={"run": run.name, "config_digest": hashlib.sha256((run_dir / "config.yaml").read_bytes()).hexdigest(),
                "defender": final, "base_model": str(base) if base else "sectow's tiny default (built locally)",
                "judge": judge, "refusal_markers": markers, "iterations": config.get("iterations"),
                "sectow_version": __version__},
    )
    body = f"""
# {run.name}: a SecTOW-hardened defender

This folder is the defender that sectow's run `{run.name}` kept (`{final}`): SecTOW (Secure Tug-of-War,
arXiv 2507.22037) trained it against an attacker with GRPO for {config.get('iterations')} iteration(s), from
`{data.sectow['base_model']}`. The run's settings are its `config.yaml`, sha256 `{data.sectow['config_digest']}`.

## Held-out evaluation per iteration

The run's own held-out data (held-out seeds in the strategies training uses; benign questions and
requests), judged by the run's judge `{judge.get('kind', 'refusal')}`{f" with the `{markers}` refusal strings" if markers else ""}.
These are not benchmark figures; see the sections below for those. Intervals: Wilson score, 95%.

{held_out_markdown(run)}"""
    earlier = _sectow_card(folder)
    if earlier is not None:  # a report run again: the benchmark sections of earlier evaluations stay
        body += "".join("\n" + m.group(0) for m in EVAL_BLOCK.finditer(earlier.text))
        data.sectow["benchmark_evaluations"] = earlier.data.sectow.get("benchmark_evaluations", [])
    return _save(folder, data, body)


def add_eval_to_model_card(result: dict, eval_dir: Path) -> Path | None:
    """Add (or replace) the benchmark section of `sectow eval`'s results in the evaluated folder's card;
    only a card sectow wrote is touched (a downloaded model's own card never is). None when none was."""
    folder = Path(result["model"])
    card = _sectow_card(folder)
    if card is None:
        return None
    eval_dir = Path(eval_dir).absolute()
    lines = [f"<!-- sectow-eval {eval_dir} -->", f"## Benchmarks: `sectow eval` into `{eval_dir}`", "",
             f"Judge `{result['judge']}` (its prompt version per row below); refusal strings "
             f"`{result.get('refusal_markers')}`; Wilson 95% intervals.", "",
             "| benchmark | metric | value [95% interval] | n | judge | judge prompt |", "|---|---|---|---|---|---|"]
    for name, entry in result["benchmarks"].items():
        for metric in HEADLINE:
            if metric in entry:
                lines.append(f"| {name} | {metric} | {rate_text(entry[metric])} | {entry[metric]['n']} | "
                             f"{entry['judge']} | {', '.join(entry['judge_prompt_versions'])} |")
        for table in entry.get("paper_tables", []):
            lines += ["", *table_markdown({**table, "title": f"{name}: {table['title']}"}, heading="###")]
    block = "\n".join(lines) + "\n<!-- /sectow-eval -->\n"
    text = card.text
    kept = [m.group(0) for m in EVAL_BLOCK.finditer(text) if m.group("folder") != str(eval_dir)]
    text = EVAL_BLOCK.sub("", text).rstrip() + "\n\n" + "\n".join([*kept, block])
    data = card.data
    data.sectow = {**data.sectow, "benchmark_evaluations": sorted({*data.sectow.get("benchmark_evaluations", []),
                                                                   str(eval_dir)})}
    return _save(folder, data, text)


def _sectow_card(folder: Path) -> ModelCard | None:
    """The folder's card when sectow wrote it (its metadata has a `sectow` section), else None."""
    path = folder / CARD
    card = ModelCard.load(path) if path.is_file() else None
    return card if card is not None and isinstance(card.data.to_dict().get("sectow"), dict) else None


def _save(folder: Path, data: ModelCardData, body: str) -> Path | None:
    """The card written atomically; a folder that cannot be written is a warning, not a failed run."""
    card = ModelCard(f"---\n{data.to_yaml()}\n---\n{body.lstrip()}")
    try:
        write_atomic(folder / CARD, card.content)
    except OSError as err:
        log.warning("could not write the model card in %s (%s)", folder, err.strerror)
        return None
    return folder / CARD
