"""`sectow eval`: a model folder's replies to local benchmarks, judged and scored with Wilson intervals
(ASR per category on safety benchmarks; accuracy and over-refusal on general ones).

An evaluation is prepared (every check, every benchmark loaded, nothing written), then run: replies are
appended to responses.jsonl as they are generated, judging comes after, and a folder whose judging
failed is finished with `--resume`, which generates only the replies still missing."""

from __future__ import annotations

import inspect
import json
import logging
import tempfile
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from functools import partial
from pathlib import Path

from PIL import Image
from tqdm.auto import tqdm

from sectow.atomic import write_atomic
from sectow.evaluation.prompt_defenses import PROMPT_DEFENSES, with_prompt_defense
from sectow.config import PolicySettings, judge_settings
from sectow.data.benchmarks import BENCHMARKS, BenchmarkData, load_benchmark
from sectow.data.benchmarks.base import sample_images
from sectow.data.benchmarks.mmmu import MALFORMED, MMMUPro
from sectow.data.schema import Sample
from sectow.errors import UserError
from sectow.evaluation import eval_folder
from sectow.evaluation.answer_parsing import (Choice, fallback_generator, open_answer_correct, read_mmmu_choice,
                                              read_mmmu_pro_choice)
from sectow.evaluation.intervals import rate_text
from sectow.evaluation.metrics import Answer, benign_metrics, paper_table, safety_metrics
from sectow.judges import JUDGES, build_judge
from sectow.judges.base import Judge, Verdict
from sectow.judges.native import all_prompt_versions
from sectow.judges.refusal import BENCHMARK_MARKERS, is_refusal, refusal_markers
from sectow.models import generation, vllm_generation
from sectow.models.folder import check_chat_template, check_model_folder
from sectow.models.policy import load_policy
from sectow.models.processor import load_processor
from sectow.models.vllm_generation import generation_engine
from sectow.paths import lock_folder, nearest_existing

log = logging.getLogger(__name__)
INTERVALS = "wilson-95"
DEFAULT_MAX_NEW_TOKENS = 64  # where neither --max-new-tokens nor the benchmark's reference inference sets one
# Judges whose `refused` flag is a refusal-string match (the training set): in `sectow eval` it comes from the
# benchmark refusal set instead, so ORR means the same whichever of them decides `unsafe`.
STRING_REFUSAL_JUDGES = ("guard", "http", "native")


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


# ---------------------------------------------------------------- scoring


def choice_reader(name: str) -> Callable[[str, list[str]], Choice]:
    """Each family's own official parser, so accuracies compare with published numbers."""
    return read_mmmu_pro_choice if issubclass(BENCHMARKS[name], MMMUPro) else read_mmmu_choice


def score_answers(name: str, samples: list[Sample], responses: list[str]) -> list[Answer]:
    """Multiple choice by the family's letter parser, open questions by MMMU's open-answer rule. The
    fallback guesses draw from one seeded generator in upstream's evaluation order (MMMU: subjects in its
    scripts' order, rows in dataset order, `extra["upstream_order"]`; MMMU-Pro: file order), so each guess
    is the one upstream's scripts draw for the same replies. A row whose gold letter names no option is
    read like any other (its draw still happens) and can only be wrong; one with no options is wrong
    without a draw (upstream's `random.choice([])` would stop the whole evaluation)."""
    read, rng = choice_reader(name), fallback_generator()
    answers: list[Answer | None] = [None] * len(samples)
    order = sorted(range(len(samples)), key=lambda i: tuple(samples[i].extra.get("upstream_order", ())))
    for index in order:
        sample, response = samples[index], responses[index]
        options = sample.extra.get("options") or []
        if sample.answer is None:  # open question
            answers[index] = Answer(open_answer_correct(response, sample.extra["open_answer"]), False, None)
        elif not options:
            answers[index] = Answer(False, False, None)
        else:
            choice = read(response, options, rng)
            answers[index] = Answer(choice.letter == sample.answer, choice.guessed, choice.letter, len(options))
    return answers


def malformed_summary(samples: list[Sample]) -> dict:
    """The rows scored wrong because their gold answer cannot be right, with the reason for each."""
    rows = [{"id": s.id, **s.extra[MALFORMED]} for s in samples if MALFORMED in s.extra]
    return {"count": len(rows), "rows": rows}


def judge_label(verdicts: list[Verdict]) -> str:
    return ",".join(sorted({v.judge.partition("/")[0] for v in verdicts}))


def prompt_versions(verdicts: list[Verdict], judge: Judge) -> list[str]:
    """The prompt versions that decided: native verdicts name theirs (`native/<version>`); other judges
    have one."""
    versions = sorted({v.judge.partition("/")[2] for v in verdicts if "/" in v.judge})
    return versions or [getattr(judge, "prompt_version", getattr(judge, "label", judge.name))]


# ---------------------------------------------------------------- settings


@dataclass
class EvalSettings:
    """What an evaluation is asked to do; saved in the output folder so --resume needs nothing else."""

    model: Path
    benchmarks: dict[str, Path]
    judge: str = "refusal"
    judge_options: dict = field(default_factory=dict)
    limit: int | None = None
    batch_size: int = 16
    max_new_tokens: int | None = None  # None: each benchmark's reference budget, else DEFAULT_MAX_NEW_TOKENS
    prompt_defense: str | None = None
    use_vllm: bool = False
    strict: bool = False

    def check(self) -> None:
        if not self.benchmarks:
            raise UserError("no benchmarks to evaluate (give NAME=ROOT, e.g. figstep=/data/FigStep)")
        for name in self.benchmarks:
            check_benchmark_name(name)
        for option in ("batch_size", "max_new_tokens", "limit"):
            value = getattr(self, option)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise UserError(f"--{option.replace('_', '-')} must be a positive number, got {value!r}")
        if self.prompt_defense is not None and self.prompt_defense not in PROMPT_DEFENSES:
            raise UserError(f"unknown prompt defense {self.prompt_defense!r} (defenses: {', '.join(PROMPT_DEFENSES)})")
        if self.judge not in JUDGES:
            raise UserError(f"unknown judge {self.judge!r} (judges: {', '.join(JUDGES)})")

    def to_json(self) -> dict:
        row = asdict(self)
        row["model"] = str(Path(self.model).absolute())
        row["benchmarks"] = {name: str(Path(root).absolute()) for name, root in self.benchmarks.items()}
        return row

    @classmethod
    def from_json(cls, row: dict, where: Path) -> EvalSettings:
        known = {f.name for f in fields(cls)}
        if not isinstance(row.get("benchmarks"), dict) or "model" not in row or set(row) - known:
            raise UserError(f"{where}: not the settings of a sectow eval (fields: {', '.join(sorted(known))})")
        return cls(**{**row, "model": Path(row["model"]),
                      "benchmarks": {name: Path(root) for name, root in row["benchmarks"].items()}})


# ---------------------------------------------------------------- the evaluation


def check_generator(model: Path) -> None:
    """The model folder replies are generated with: loadable, and with the chat template prompts go through."""
    check_model_folder(model)
    check_chat_template(model)



class Evaluation:
    """A prepared evaluation: settings checked, judge built, benchmarks loaded, the output folder judged
    usable, the model folder checked when replies are still to be generated. Nothing has been written
    (MMMU's images sit in a staging folder beside the output folder, removed by `run` or `close`)."""

    def __init__(self, settings: EvalSettings, out_dir: Path, resume: bool = False, overwrite: bool = False):
        settings.check()
        self.settings, self.out_dir, self.resume, self.overwrite = settings, Path(out_dir), resume, overwrite
        eval_folder.check_output(self.out_dir, resume, overwrite)
        if self.out_dir.is_dir() and (resume or overwrite):
            lock_folder(self.out_dir)  # one process at a time on an evaluation folder
        self.judge = build_judge(judge_settings(settings.judge, self.judge_options()))
        if not resume:  # before every image is decoded; a resume may need no model at all
            check_generator(Path(settings.model))
        self.staging: tempfile.TemporaryDirectory | None = None
        try:
            self.data = {name: self.load(name, Path(root)) for name, root in settings.benchmarks.items()}
            self.check_strict()
            self.earlier = eval_folder.read_responses(self.out_dir) if resume else {}
            self.missing = [(name, s) for name, bench in self.data.items() for s in bench.samples
                            if (name, s.id) not in self.earlier]
            if resume and self.missing:
                check_generator(Path(settings.model))
        except BaseException:
            self.close()
            raise

    def judge_options(self) -> dict:
        """The user's options, plus the judge cache inside the output folder for judges that keep one, and
        for the refusal judge the benchmark refusal set unless another is named."""
        options = dict(self.settings.judge_options)
        if "cache_path" in inspect.signature(JUDGES[self.settings.judge]).parameters:
            options.setdefault("cache_path", self.out_dir / eval_folder.JUDGE_CACHE)
        if self.settings.judge == "refusal":
            options.setdefault("markers", BENCHMARK_MARKERS)
        return options

    @property
    def refusal_markers(self) -> str | None:
        """The refusal set behind every `refused` flag (and ORR): the refusal judge's own; the benchmark set
        for judges that match strings; None for a judge that decides refusals another way."""
        if self.settings.judge == "refusal":
            return self.judge_options()["markers"]
        return BENCHMARK_MARKERS if self.settings.judge in STRING_REFUSAL_JUDGES else None

    def max_new_tokens(self, name: str) -> int:
        """--max-new-tokens when given; else the benchmark's reference inference budget (MMMU-Pro: 50)."""
        return (self.settings.max_new_tokens or BENCHMARKS[name].reference_max_new_tokens
                or DEFAULT_MAX_NEW_TOKENS)

    def load(self, name: str, root: Path) -> BenchmarkData:
        options = {}
        if "cache_dir" in inspect.signature(BENCHMARKS[name]).parameters:
            # MMMU's embedded images: beside the output folder (same disk, which the system temp dir may
            # not have room on), hidden, owner-only, and removed when the evaluation ends either way.
            if self.staging is None:
                self.staging = tempfile.TemporaryDirectory(prefix=f".{self.out_dir.name}-images-",
                                                           dir=nearest_existing(self.out_dir.absolute()))
            options["cache_dir"] = Path(self.staging.name) / name
        data = load_benchmark(name, root, limit=self.settings.limit, **options)
        data.found.pop("cache_dir", None)  # a staging folder that is gone after the run
        return data

    def check_strict(self) -> None:
        skipped = {name: bench.skipped for name, bench in self.data.items() if bench.skipped}
        if self.settings.strict and skipped:
            counts = ", ".join(f"{name}: {len(rows)}" for name, rows in skipped.items())
            first = next(iter(skipped.values()))[0]
            raise UserError(f"--strict: {sum(map(len, skipped.values()))} rows cannot be evaluated ({counts}; "
                            f"first: {first['id']}: {first['reason']})")

    def skip_lines(self) -> list[str]:
        """One line per benchmark: how many of its chosen rows are evaluated and how many skipped."""
        return [f"{name}: {bench.skip_line()}" for name, bench in self.data.items()]

    def close(self) -> None:
        if self.staging is not None:
            self.staging.cleanup()
            self.staging = None

    # ------------------------------------------------------------ running

    def run(self) -> dict:
        """Generate what is missing, judge, score, and write eval.json, eval.md and verdicts.jsonl."""
        try:
            eval_folder.make_output(self.out_dir, self.overwrite)
            lock_folder(self.out_dir)
            eval_folder.write_json(self.out_dir / eval_folder.CONFIG, self.settings.to_json())
            engine, generated = self.generate() if self.missing else ("none (all replies on file)", {})
            replies = {**self.earlier, **generated}
            result = self.score(replies, engine, reused=len(self.earlier), generated=len(generated))
        finally:
            self.close()
        return result

    def generate(self) -> tuple[str, dict]:
        """The missing replies, appended to responses.jsonl batch by batch (vLLM: all at once, since each
        call starts an engine) before anything is judged."""
        settings = self.settings
        engine = generation_engine(settings.use_vllm)
        model_dir = Path(settings.model)
        if engine == "vllm":  # vLLM loads the weights itself
            processor = load_processor(model_dir)
            generate = partial(vllm_generation.generate, model_dir)
        else:
            model, processor = load_policy(model_dir, PolicySettings())
            generate = partial(generation.generate, model)
        samples = [s for _, s in self.missing]
        queries = [s.query for s in (with_prompt_defense(samples, settings.prompt_defense)
                                     if settings.prompt_defense else samples)]
        several = any(len(sample_images(s)) > 1 for s in samples)
        one_image_reason = ("the vLLM engine here takes one image per prompt" if engine == "vllm" else
                            None if not several else several_images_refused(generate, processor))
        inputs = [model_input(s, q, engine, one_image_reason) for s, q in zip(samples, queries)]
        # One pass per reply budget (benchmarks whose reference inference sets its own); vLLM schedules its own
        # batches: one call per budget, so that its engine starts once per budget.
        budgets: dict[int, list[int]] = defaultdict(list)
        for index, (name, _) in enumerate(self.missing):
            budgets[self.max_new_tokens(name)].append(index)
        generated = {}
        with eval_folder.ResponseLog(self.out_dir) as responses:
            for max_new_tokens, indices in budgets.items():
                step = len(indices) if engine == "vllm" else settings.batch_size
                for start in tqdm(range(0, len(indices), step), desc="eval", leave=False):
                    chunk = indices[start:start + step]
                    ask = lambda chosen: generate(processor, [inputs[i][0] for i in chosen],  # noqa: E731
                                                  max_new_tokens=max_new_tokens, batch_size=settings.batch_size)
                    replies = dict(zip(chunk, ask(chunk), strict=True))
                    retries = self.retry_empty(replies, ask)
                    rows = [{"benchmark": self.missing[i][0], "id": self.missing[i][1].id, "response": replies[i],
                             **inputs[i][1], **({"retries": retries[i]} if i in retries else {})} for i in chunk]
                    responses.write(rows)
                    generated.update({(row["benchmark"], row["id"]): row for row in rows})
        return engine, generated

    def retry_empty(self, replies: dict[int, str], ask) -> dict[int, int]:
        """Ask again for the empty replies of benchmarks whose reference inference does (MMMU-Pro: up to 5
        times); returns how many tries each retried row took. Greedy decoding gives the same reply again, so
        this changes a figure only with an engine that is not deterministic."""
        retries: dict[int, int] = {}
        for attempt in range(1, max((BENCHMARKS[name].empty_reply_retries for name in self.data), default=0) + 1):
            empty = [i for i, reply in replies.items()
                     if not reply and BENCHMARKS[self.missing[i][0]].empty_reply_retries >= attempt]
            if not empty:
                break
            replies.update(zip(empty, ask(empty), strict=True))
            retries.update(dict.fromkeys(empty, attempt))
        return retries

    def score(self, replies: dict, engine: str, reused: int, generated: int) -> dict:
        entries, audit, used_versions = {}, [], set()
        for name, bench in self.data.items():
            samples = bench.samples
            rows = [replies[(name, s.id)] for s in samples]
            responses = [row["response"] for row in rows]
            try:
                verdicts = self.judge.judge(samples, responses)
            except UserError as err:
                raise UserError(f"{err} (judging {name}; the replies are kept in "
                                f"{self.out_dir / eval_folder.RESPONSES}: `sectow eval --resume {self.out_dir}` "
                                f"judges the rest without generating them again)") from None
            if self.settings.judge in STRING_REFUSAL_JUDGES:  # the judge decides `unsafe`, the benchmark set `refused`
                markers = refusal_markers(self.refusal_markers)
                verdicts = [replace(v, refused=is_refusal(r, markers)) for v, r in zip(verdicts, responses, strict=True)]
            kind = BENCHMARKS[name].kind
            records = [{"benchmark": name, "id": s.id, "form": s.form, "category": s.category, "verdict": asdict(v),
                        **{k: row[k] for k in ("images", "note") if k in row}}
                       for s, v, row in zip(samples, verdicts, rows, strict=True)]
            if kind == "safety":
                metrics = safety_metrics(samples, verdicts)
                unsafe = [v.unsafe for v in verdicts]
                metrics["paper_tables"] = [paper_table(table, samples, unsafe) for table in BENCHMARKS[name].paper_tables]
            else:
                answers = score_answers(name, samples, responses)
                metrics = benign_metrics(samples, answers, verdicts)
                metrics["images"] = image_counts(rows, samples)
                metrics["malformed"] = malformed_summary(samples)
                for record, sample, answer in zip(records, samples, answers):
                    record.update(answer=sample.answer or sample.extra.get("open_answer"), chosen=answer.chosen,
                                  guessed=answer.guessed, correct=answer.correct,
                                  **({"malformed": sample.extra[MALFORMED]["kind"]} if MALFORMED in sample.extra else {}))
            versions = prompt_versions(verdicts, self.judge)
            used_versions.update(versions)
            audit += records
            entries[name] = {
                "name": name, "kind": kind, "root": str(bench.root), "rows": len(samples) + len(bench.skipped),
                "n": len(samples), "skipped": skipped_summary(bench), **metrics,
                "judge": judge_label(verdicts), "judge_prompt_versions": versions,
                "refusal_markers": self.refusal_markers, "max_new_tokens": self.max_new_tokens(name),
                "found": bench.found,
            }
        known = all_prompt_versions()
        settings = self.settings
        result = {"model": str(Path(settings.model).absolute()), "judge": settings.judge,
                  "judge_options": self.judge_options(),
                  "judge_prompts": {v: known[v] for v in sorted(used_versions) if v in known},
                  "refusal_markers": self.refusal_markers,
                  "limit": settings.limit, "batch_size": settings.batch_size, "max_new_tokens": settings.max_new_tokens,
                  "prompt_defense": settings.prompt_defense, "strict": settings.strict, "intervals": INTERVALS,
                  "generation_engine": engine, "responses": {"generated": generated, "reused": reused},
                  "benchmarks": entries}
        write_atomic(self.out_dir / eval_folder.VERDICTS,
                                  "".join(json.dumps(row) + "\n" for row in audit))
        eval_folder.write_json(self.out_dir / eval_folder.RESULT, result)
        write_atomic(self.out_dir / eval_folder.TABLE, markdown(result))
        return eval_folder.read_json(self.out_dir / eval_folder.RESULT)  # exactly what eval.json holds


def several_images_refused(generate, processor) -> str | None:
    """None when the model answers a two-image prompt; otherwise why not (its processor or model takes one
    image per prompt). Tried once, on two blank images, before any benchmark row."""
    blank = Image.new("RGB", (56, 56), "white")
    try:
        generate(processor, [("Are these two images the same?", [blank, blank])], max_new_tokens=1, batch_size=1)
    except Exception as err:  # noqa: BLE001 - any failure means: not with several images
        log.warning("this model does not take two images in one prompt (%s: %s): multi-image rows get their first "
                    "image only", err.__class__.__name__, str(err).splitlines()[0] if str(err) else "")
        return f"this model takes one image per prompt ({err.__class__.__name__})"
    return None


def model_input(sample: Sample, query: str, engine: str, one_image_reason: str | None) -> tuple[tuple, dict]:
    """The (text, image) prompt for one sample and what the response row records about its images.
    Questions that carry an image list (MMMU, MMMU-Pro) give them all after the text, unless the model
    takes one image per prompt: then the first, and a note says so."""
    images = sample_images(sample)
    if "images" not in sample.extra:
        return (query, sample.image), {}
    fed = images if one_image_reason is None else images[:1]
    extra = {"images": len(fed)}
    if len(fed) < len(images):
        extra["note"] = f"{one_image_reason}: fed image 1 of {len(images)}"
    # vLLM's prompt takes one image, placed as in every other single-image prompt.
    return ((query, fed[0]) if engine == "vllm" else (query, fed)), extra


def image_counts(rows: list[dict], samples: list[Sample]) -> dict:
    """How many questions had several images, and how many of those the model saw only in part."""
    several = sum(len(sample_images(s)) > 1 for s in samples)
    return {"rows_with_several": several, "rows_fed_first_only": sum("note" in row for row in rows)}


def skipped_summary(bench: BenchmarkData) -> dict:
    return {"count": len(bench.skipped), "by_kind": dict(sorted(Counter(r["kind"] for r in bench.skipped).items())),
            "rows": bench.skipped}


# ---------------------------------------------------------------- entry points


def prepare_evaluation(model_dir: Path, benchmarks: dict[str, Path], out_dir: Path, judge: str = "refusal",
                       judge_options: dict | None = None, limit: int | None = None, batch_size: int = 16,
                       max_new_tokens: int | None = None, prompt_defense: str | None = None, use_vllm: bool = False,
                       strict: bool = False, overwrite: bool = False) -> Evaluation:
    """A new evaluation, checked and loaded; `.run()` it. `prompt_defense` (a name in
    baselines.PROMPT_DEFENSES) adds its defense text to each query as its own paragraph, so it works with
    any chat template; judges still see the original query. `use_vllm` generates with vLLM where it can
    run (else HF generate, with a logged warning). `strict` makes any skipped row an error; `overwrite`
    replaces an earlier eval folder at `out_dir`, which is otherwise refused."""
    settings = EvalSettings(model=Path(model_dir), benchmarks=dict(benchmarks), judge=judge,
                            judge_options=dict(judge_options or {}), limit=limit, batch_size=batch_size,
                            max_new_tokens=max_new_tokens, prompt_defense=prompt_defense, use_vllm=use_vllm,
                            strict=strict)
    return Evaluation(settings, Path(out_dir), overwrite=overwrite)


def prepare_resume(out_dir: Path, judge_options: dict | None = None) -> Evaluation:
    """The evaluation an eval folder was started with, to finish: its replies are reused, only missing
    ones generated. `judge_options` replace the saved ones key by key (e.g. a judge server that moved)."""
    out_dir = Path(out_dir)
    eval_folder.check_output(out_dir, resume=True, overwrite=False)
    path = out_dir / eval_folder.CONFIG
    settings = EvalSettings.from_json(eval_folder.read_json(path), path)
    settings.judge_options = {**settings.judge_options, **(judge_options or {})}
    return Evaluation(settings, out_dir, resume=True)


def evaluate_model(model_dir: Path, benchmarks: dict[str, Path], out_dir: Path, **options) -> dict:
    """Prepare and run an evaluation (options as `prepare_evaluation`); return what eval.json holds."""
    return prepare_evaluation(model_dir, benchmarks, out_dir, **options).run()


def table_markdown(table: dict, heading: str = "##") -> list[str]:
    """A paper-shaped table (metrics.paper_table) as Markdown: value and 95% interval per cell, n per row."""
    columns = table["column_order"]
    header = [table["rows"], *(columns if table["columns"] else ["asr"]), "n"]
    lines = [f"{heading} {table['title']}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row, cells in table["cells"].items():
        values = [rate_text(cells.get(c)) for c in (columns if table["columns"] else ["all"])]
        lines.append(f"| {'**all**' if row == 'all' else row} | " + " | ".join(values) + f" | {cells['all']['n']} |")
    return lines


def markdown(result: dict) -> str:
    """One row per (benchmark, metric), the rows skipped or malformed, then each safety benchmark's
    paper-shaped tables."""
    lines = [f"# Evaluation of `{result['model']}`", "",
             f"Refusal strings (`refused`, ORR): `{result.get('refusal_markers')}`. Intervals: Wilson score, 95%.", "",
             "| benchmark | metric | value [95% interval] | n | judge |", "|---|---|---|---|---|"]
    metrics = ("asr", "accuracy", "accuracy_expected", "accuracy_without_fallback", "accuracy_parsed_only", "orr")
    for name, entry in result["benchmarks"].items():
        for metric in metrics:
            if metric in entry:
                lines.append(f"| {name} | {metric} | {rate_text(entry[metric])} | {entry[metric]['n']} | {entry['judge']} |")
    lines += ["", "`accuracy` is the official rule (the random-guess fallback counts, drawn as upstream draws it); "
              "`accuracy_expected` counts each guess as 1/number of options; `accuracy_without_fallback` counts a "
              "guess as wrong; `accuracy_parsed_only` is over the replies an answer could be read from.", "",
              "| benchmark | rows | evaluated | skipped | malformed (scored wrong) |", "|---|---|---|---|---|"]
    lines += [f"| {name} | {entry['rows']} | {entry['n']} | {entry['skipped']['count']} | "
              f"{entry.get('malformed', {}).get('count', 0)} |" for name, entry in result["benchmarks"].items()]
    for name, entry in result["benchmarks"].items():
        for table in entry.get("paper_tables", []):
            lines += ["", *table_markdown({**table, "title": f"{name}: {table['title']}"})]
    return "\n".join(lines) + "\n"
