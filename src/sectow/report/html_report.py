"""The run report: plots, tables and sample jailbreaks from a run folder, as one self-contained HTML page
(inline CSS, base64 PNGs) and a Markdown twin with its PNG files, both under run_dir/report/."""

from __future__ import annotations

import base64
import functools
import html
import io
import json
import math
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image as PILImage

from sectow.atomic import replacing, write_atomic
from sectow.environment import read_environments
from sectow.errors import UserError
from sectow.evaluation.intervals import rate_text
from sectow.faults import crash_point
from sectow.jsonl import json_lines

SAMPLES = 12
THUMB_PX = 128
TEXT_LIMIT = 600
JACCARD_CAP = 300  # pairs grow quadratically; a fixed random subset keeps big pools cheap
DIVERSITY_NOTE = ("Measured on each iteration's pool records, without a model: distinct-query ratio (unique queries, "
                  "case-folded, over records), form entropy (Shannon entropy of the form mix over its maximum for the "
                  "forms the whole pool uses) and mean pairwise word-Jaccard distance between queries (on at most "
                  f"{JACCARD_CAP} records). Each is 0..1; higher is more diverse.")

DISCOVERY_NOTE = ("A composition is what a pool record's query shows: persona, framing, demand, encoding and where the "
                  "request is carried (text, or a picture strategy). The attacker's cold start sees only a few of them.")
ABLATION_NOTE = ("Every defender row is evaluated on the same held-out jailbreaks and benign samples. Baselines start "
                 "from SecTOW's cold-start defender; ablations rerun SecTOW with one part removed. Attacker rows: "
                 "share of attacker samples on held-out seeds that beat the cold-start defender and pass quality "
                 "monitoring.")


@dataclass
class Image:
    name: str  # file name next to report.md
    png: bytes
    alt: str


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str | Image]]


@dataclass
class Section:
    title: str
    blocks: list[str | Image | Table]


@dataclass
class Run:
    name: str
    summary: dict
    metrics: list[dict]
    pool: list[dict]
    pool_dir: Path
    configured_iterations: int | None
    environment: list[dict] = field(default_factory=list)  # environment.json: where each start or resume ran

    def phases(self, prefix: str) -> list[dict]:
        return [m for m in self.metrics if m.get("phase", "").startswith(prefix)]

    def evaluations(self) -> list[tuple[int, dict]]:
        """(iteration, figures) with the cold start as iteration 0, in order: each evaluation's rates as plain
        values (`<rate>_interval` beside each), with its iteration's pool figures."""
        found = [(0, m) for m in self.phases("evaluate_cold_start")]
        found += [(int(m["phase"].rsplit("_", 1)[1]), m) for m in self.phases("evaluate_iteration_")]
        pools = {m.get("iteration"): m for m in self.phases("pool_")}
        evals = []
        for k, m in sorted(found, key=lambda pair: pair[0]):
            figures = {key: _values(value) for key, value in m.items()}
            figures.update({f"{key}_interval": value.get("interval") for key, value in m.items() if _is_rate(value)})
            figures.update({key: pools.get(k, {}).get(key) for key in ("attacker_success_rate", "pool_size") if k})
            evals.append((k, figures))
        return evals


def _is_rate(value) -> bool:
    return isinstance(value, dict) and "value" in value and "n" in value


def _values(value):
    """A rate's value; a mapping of rates (per form, per category) as values; anything else as it is."""
    if _is_rate(value):
        return value["value"]
    if isinstance(value, dict) and value and all(_is_rate(v) for v in value.values()):
        return {k: v["value"] for k, v in value.items()}
    return value


# ---- reading the run folder ------------------------------------------------------------------------
def _read_json_lines(path: Path) -> list[dict]:
    """The rows of a JSONL file; a last line cut short (a run killed mid-append) is left out."""
    rows = []
    text = _read_text(path)
    lines = json_lines(text)
    for number, line in enumerate(lines, 1):
        if line.strip():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                if number == len(lines) and not text.endswith("\n"):
                    continue
                raise UserError(f"{path}:{number}: not valid JSON") from None
            if not isinstance(row, dict):
                raise UserError(f"{path}:{number}: expected a JSON object")
            rows.append(row)
    return rows


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: unreadable ({err})") from None


def _read_json(path: Path):
    try:
        return json.loads(_read_text(path))
    except json.JSONDecodeError as err:
        raise UserError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None


def load_run(run_dir: Path) -> Run:
    for required in ("summary.json", "metrics.jsonl"):
        if not (run_dir / required).is_file():
            raise UserError(f"{run_dir / required}: missing; is {run_dir} a sectow run folder?")
    summary = _read_json(run_dir / "summary.json")
    if not (isinstance(summary, dict) and isinstance(summary.get("cold_start"), dict)
            and isinstance(summary.get("iterations"), list) and all(isinstance(i, dict) for i in summary["iterations"])):
        raise UserError(f"{run_dir / 'summary.json'}: not a run summary (expected cold_start and a list of iterations)")
    pool_file = run_dir / "pool" / "jailbreak_pool.jsonl"
    config_file = run_dir / "config.yaml"
    try:
        config = yaml.safe_load(_read_text(config_file)) if config_file.is_file() else None
    except yaml.YAMLError:
        config = None  # only the configured iteration count is read from it, for a note
    metrics = _read_json_lines(run_dir / "metrics.jsonl")
    if not all(isinstance(m.get("phase"), str) for m in metrics):
        raise UserError(f"{run_dir / 'metrics.jsonl'}: a line without a phase name")
    return Run(name=run_dir.resolve().name, summary=summary, metrics=metrics, environment=read_environments(run_dir),
               pool=_read_json_lines(pool_file) if pool_file.is_file() else [], pool_dir=run_dir / "pool",
               configured_iterations=config.get("iterations") if isinstance(config, dict)
               and isinstance(config.get("iterations"), int) else None)


# ---- measures --------------------------------------------------------------------------------------
def _words(text: str) -> frozenset[str]:
    return frozenset(re.findall(r"\w+", text.lower()))


def _mean_jaccard_distance(queries: list[str]) -> float | None:
    if len(queries) < 2:
        return None
    if len(queries) > JACCARD_CAP:
        queries = random.Random(0).sample(queries, JACCARD_CAP)
    bags = [_words(q) for q in queries]
    distances = [1 - len(a & b) / len(a | b) if a | b else 0.0
                 for i, a in enumerate(bags) for b in bags[i + 1:]]
    return sum(distances) / len(distances)


def _form_entropy(forms: list[str], form_count: int) -> float:
    """Shannon entropy of the form mix, over its maximum for the forms the whole pool uses (0..1)."""
    if form_count < 2:
        return 0.0
    counts = Counter(forms).values()
    return sum(c / len(forms) * math.log(len(forms) / c) for c in counts) / math.log(form_count)


def pool_diversity(records: list[dict]) -> dict[int, dict]:
    """Per iteration: record count, distinct-query ratio, normalised form entropy, mean word-Jaccard distance."""
    form_count = len({r.get("form") for r in records})
    by_iteration: dict[int, list[dict]] = {}
    for r in records:
        by_iteration.setdefault(int(r.get("iteration", 0)), []).append(r)
    result = {}
    for k, rows in sorted(by_iteration.items()):
        queries = [str(r.get("query", "")) for r in rows]
        result[k] = {"records": len(rows), "distinct_query": len({q.strip().lower() for q in queries}) / len(rows),
                     "form_entropy": _form_entropy([r.get("form") for r in rows], form_count),
                     "jaccard": _mean_jaccard_distance(queries), "forms": Counter(r.get("form") for r in rows)}
    return result


# ---- plots -----------------------------------------------------------------------------------------
def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    return buffer.getvalue()


def _label(k: int) -> str:
    return "cold start" if k == 0 else f"iteration {k}"


def _iteration_axis(ax, ks: list[int]) -> None:
    ax.set_xticks(ks, ["cold\nstart" if k == 0 else str(k) for k in ks])
    ax.set_xlabel("iteration")
    ax.grid(alpha=0.3)


def plot_rates(evals: list[tuple[int, dict]], rolled_back: set[int] = frozenset()) -> bytes:
    """Each rate with its 95% interval as a band; an iteration whose defender phase was rolled back (the
    monitor kept no checkpoint) is shaded grey."""
    fig = Figure(figsize=(7, 3.6), layout="constrained")
    ax = fig.add_subplot()
    ks = [k for k, _ in evals]
    for k in sorted(rolled_back & set(ks)):
        ax.axvspan(k - 0.3, k + 0.3, color="0.88", zorder=0)
        ax.text(k, 0.02, "rolled\nback", ha="center", va="bottom", fontsize=7, color="0.35")
    for key, label, style in (("asr", "ASR", "o-"), ("asr_unseen_form", "ASR, held-out strategies", "o--"),
                              ("orr", "over-refusal rate", "s-"), ("orr_unseen_form", "ORR, held-out strategies", "s--"),
                              ("accuracy", "benign accuracy", "^-")):
        line, = ax.plot(ks, [math.nan if m.get(key) is None else m[key] for _, m in evals], style, label=label)
        bands = [m.get(f"{key}_interval") or (math.nan, math.nan) for _, m in evals]
        ax.fill_between(ks, [b[0] for b in bands], [b[1] for b in bands], color=line.get_color(), alpha=0.15)
    ax.set_ylim(-0.03, 1.05)
    ax.set_ylabel("rate")
    _iteration_axis(ax, ks)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))  # outside: lines often overlap
    return _png(fig)


def _grouped_bars(groups: list[str], series: list[tuple[str, dict]]) -> bytes:
    fig = Figure(figsize=(max(7, 0.8 * len(groups) + 2), 3.8), layout="constrained")
    ax = fig.add_subplot()
    width = 0.8 / len(series)
    for i, (label, values) in enumerate(series):
        ax.bar([g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))],
               [values.get(name, 0.0) for name in groups], width, label=label)
    ax.set_xticks(range(len(groups)), groups, rotation=30, ha="right", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("ASR")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def plot_by_key(evals: list[tuple[int, dict]], key: str, every_iteration: bool) -> bytes | None:
    """ASR per category or form: cold start vs final, or every evaluation."""
    chosen = evals if every_iteration or len(evals) < 2 else [evals[0], evals[-1]]
    series = [(_label(k), m.get(key) or {}) for k, m in chosen]
    groups = sorted({name for _, values in series for name in values})
    return _grouped_bars(groups, series) if groups else None


def plot_channels(run: Run) -> bytes | None:
    """Per iteration: the attacker's outputs by archive cell (its channel mix), and how many cells its pool
    records cover."""
    pools = sorted(run.phases("pool_"), key=lambda m: m.get("iteration") or 0)
    mixes = [(m.get("iteration"), m.get("attacker_cells") or {}) for m in pools if m.get("attacker_cells")]
    if not mixes:
        return None
    fig = Figure(figsize=(10, 3.6), layout="constrained")
    left, right = fig.subplots(1, 2)
    cells = sorted({c for _, mix in mixes for c in mix})
    bottom = [0.0] * len(mixes)
    for cell in cells:
        shares = [mix.get(cell, 0) / max(1, sum(mix.values())) for _, mix in mixes]
        left.bar([k for k, _ in mixes], shares, bottom=bottom, label=cell)
        bottom = [b + s for b, s in zip(bottom, shares)]
    left.set_title("attacker outputs by cell (share of pool candidates)", fontsize=9)
    left.set_ylim(0, 1.02)
    _iteration_axis(left, [k for k, _ in mixes])
    left.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    covered = [(m.get("iteration"), len(m.get("pool_cells") or {})) for m in pools]
    right.plot([k for k, _ in covered], [n for _, n in covered], "o-")
    right.set_title("archive cells the iteration's pool records cover", fontsize=9)
    right.set_ylim(bottom=0)
    _iteration_axis(right, [k for k, _ in covered])
    return _png(fig)


def plot_attacker(evals: list[tuple[int, dict]], diversity: dict[int, dict]) -> bytes | None:
    attack = [(k, m["attacker_success_rate"]) for k, m in evals if m.get("attacker_success_rate") is not None]
    if not attack and not diversity:
        return None
    fig = Figure(figsize=(10, 3.6), layout="constrained")
    left, right = fig.subplots(1, 2)
    left.plot([k for k, _ in attack], [v for _, v in attack], "o-", color="tab:red")
    left.set_title("attacker success rate (pool candidates accepted)", fontsize=9)
    left.set_ylim(-0.03, 1.05)
    _iteration_axis(left, [k for k, _ in attack])
    ks = sorted(diversity)
    for key, label in (("distinct_query", "distinct-query ratio"), ("form_entropy", "form entropy (normalised)"),
                       ("jaccard", "mean word-Jaccard distance")):
        right.plot(ks, [math.nan if diversity[k][key] is None else diversity[k][key] for k in ks], "o-", label=label)
    right.set_title("diversity of each iteration's pool records", fontsize=9)
    right.set_ylim(-0.03, 1.05)
    _iteration_axis(right, ks)
    right.legend(fontsize=8)
    return _png(fig)


# ---- tables ----------------------------------------------------------------------------------------
def _num(value, digits: int = 4) -> str:
    if value is None:
        return "–"
    return str(value) if isinstance(value, int) else f"{value:.{digits}f}"


def _counts(counts: dict) -> str:
    return ", ".join(f"{name} {n}" for name, n in sorted(counts.items(), key=lambda item: -item[1]))


def comparison_table(evals: list[tuple[int, dict]]) -> Table:
    cold_asr = evals[0][1].get("asr") if evals and evals[0][0] == 0 else None
    rows = []
    for k, m in evals:
        delta = None if cold_asr is None or m.get("asr") is None else m["asr"] - cold_asr
        rows.append([_label(k), _rate_cell(m, "asr"), "–" if k == 0 else _num(delta),
                     _rate_cell(m, "asr_unseen_form"), _rate_cell(m, "orr"), _rate_cell(m, "orr_unseen_form"),
                     _rate_cell(m, "accuracy"), _num(m.get("attacker_success_rate")), _num(m.get("pool_size"))])
    return Table(["", "ASR [95% interval]", "ASR change vs cold start", "held-out-strategy ASR", "ORR",
                  "held-out-strategy ORR", "accuracy", "attacker success", "pool size"], rows)


def _rate_cell(figures: dict, key: str) -> str:
    interval = figures.get(f"{key}_interval")
    if figures.get(key) is None or not interval:
        return _num(figures.get(key))
    return f"{figures[key]:.3f} [{interval[0]:.3f}, {interval[1]:.3f}]"


def pool_table(run: Run) -> Table:
    return Table(["iteration", "candidates", "attacker success", "pool size", "candidate outcomes"],
                 [[str(m.get("iteration")), _num(m.get("candidates")), _num(m.get("attacker_success_rate")),
                   _num(m.get("pool_size")), _counts(m.get("outcomes") or {})] for m in run.phases("pool_")])


def monitor_table(run: Run) -> Table:
    """Every two-sided check of every defender phase on the validation split, and which checkpoint was kept."""
    rows = []
    for m in run.phases("defender_grpo_"):
        for c in m.get("monitor") or []:
            verdict = "start" if c.get("step") == 0 else "kept" if c.get("step") == m.get("kept_step") else \
                "passes" if c.get("passed") else "fails"
            rows.append([str(m.get("iteration")), str(c.get("step")), _num(c.get("orr")), _num(c.get("asr")), verdict,
                         f"{m.get('pool_open', '-')} of {m.get('pool_size', '-')}", _num(m.get("frac_reward_zero_std")),
                         _counts(m.get("outcomes") or {}) if c.get("step") == 0 else ""])
    return Table(["iteration", "step", "validation ORR", "validation ASR", "checkpoint", "pool records open",
                  "frac_reward_zero_std", "reward outcomes"], rows)


def discovery_table(records: list[dict], top: int = 8) -> Table:
    """Per iteration: how many compositions its pool records show, which ones no earlier iteration's pool
    had, and the most frequent."""
    seen: set[str] = set()
    rows = []
    for k, d in pool_diversity(records).items():
        forms = d["forms"]
        new = sorted((f for f in forms if f not in seen), key=lambda f: -forms[f])
        seen |= set(forms)
        rows.append([str(k), str(len(forms)), ", ".join(f"{f} {forms[f]}" for f in new[:top]) or "–",
                     _counts(dict(forms.most_common(top)))])
    return Table(["iteration", "compositions", "new this iteration (records)", "most frequent"], rows)


def diversity_table(diversity: dict[int, dict]) -> Table:
    return Table(["iteration", "records", "distinct-query ratio", "form entropy", "word-Jaccard distance", "forms"],
                 [[str(k), str(d["records"]), _num(d["distinct_query"], 3), _num(d["form_entropy"], 3),
                   _num(d["jaccard"], 3), _counts(d["forms"])] for k, d in diversity.items()])


# ---- sample jailbreaks -----------------------------------------------------------------------------
def pick_samples(records: list[dict], n: int = SAMPLES) -> list[dict]:
    """Round-robin over iterations, most on-intent first, so late iterations are shown too."""
    queues: dict[int, list[dict]] = {}
    for r in records:
        queues.setdefault(int(r.get("iteration", 0)), []).append(r)
    for rows in queues.values():
        rows.sort(key=lambda r: -((r.get("quality") or {}).get("intent_similarity") or 0.0))
    picked = []
    while len(picked) < n and any(queues.values()):
        for k in sorted(queues):
            if queues[k] and len(picked) < n:
                picked.append(queues[k].pop(0))
    return picked


def thumbnail(pool_dir: Path, relative: str | None) -> bytes | None:
    if not relative:
        return None
    path = (pool_dir / relative).resolve()
    if not path.is_relative_to(pool_dir.resolve()):  # a record must not pull files from outside its pool
        return None
    try:
        with PILImage.open(path) as image:
            image = image.convert("RGB")
            image.thumbnail((THUMB_PX, THUMB_PX))
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
    except OSError:
        return None
    return buffer.getvalue()


def _clip(text) -> str:
    text = str(text or "")
    return text if len(text) <= TEXT_LIMIT else text[:TEXT_LIMIT] + " …"


def _verdict(verdict: dict) -> str:
    return (f"{'unsafe' if verdict.get('unsafe') else 'safe'}, {'refused' if verdict.get('refused') else 'not refused'}"
            f"\njudge: {verdict.get('judge')}")


def samples_table(run: Run) -> Table:
    rows = []
    for i, r in enumerate(pick_samples(run.pool), 1):
        png = thumbnail(run.pool_dir, r.get("image"))
        rows.append([Image(f"sample-{i:02d}.png", png, f"sample {i} image") if png else "(no image)",
                     f"iteration {r.get('iteration')}, {r.get('form')}, {r.get('mode')}\n{r.get('category')}",
                     _clip(r.get("query")), _clip(r.get("defender_reply")),
                     _verdict(r.get("verdict") or {}),
                     _num((r.get("quality") or {}).get("intent_similarity"), 3)])
    return Table(["image", "record", "query", "defender reply", "verdict", "intent similarity"], rows)


# ---- the report's content --------------------------------------------------------------------------
def _overview(run: Run, evals: list[tuple[int, dict]]) -> str:
    done = max((k for k, _ in evals), default=None)
    if done is None:
        progress = "No evaluation recorded yet."
    else:
        progress = f"Evaluated: cold start and {done} iteration(s)"
        if run.configured_iterations and done < run.configured_iterations:
            progress += f" of {run.configured_iterations} configured (partial run)"
        progress += "."
    machines = run.environment
    ran_on = "; ".join(f"{e.get('cpu_model')} ({e.get('torch_threads')} torch threads, torch "
                       f"{(e.get('versions') or {}).get('torch')}, transformers {(e.get('versions') or {}).get('transformers')}, "
                       f"TRL {(e.get('versions') or {}).get('trl')})" for e in machines if isinstance(e, dict))
    return (f"Run folder {run.name}. {progress} Final defender: {run.summary.get('final_defender') or '–'}. "
            f"Jailbreak pool: {len(run.pool)} record(s)." + (f" Ran on: {ran_on}." if ran_on else ""))


def build_sections(run: Run) -> list[Section]:
    evals = run.evaluations()
    diversity = pool_diversity(run.pool)
    rolled_back = {m.get("iteration") for m in run.phases("defender_grpo_") if not m.get("accepted")}
    plots = [("rates.png", plot_rates(evals, rolled_back) if evals else None,
              "ASR, ORR and accuracy per iteration on the test split, with 95% intervals; grey: the defender phase "
              "was rolled back"),
             ("asr_by_category.png", plot_by_key(evals, "asr_by_category", every_iteration=False),
              "ASR per category, cold start vs final"),
             ("asr_by_group.png", plot_by_key(evals, "asr_by_group", every_iteration=True),
              "ASR per group of held-out compositions (README: the held-out evaluation)"),
             ("asr_by_form.png", plot_by_key(evals, "asr_by_form", every_iteration=True), "ASR per composition"),
             ("attacker.png", plot_attacker(evals, diversity), "attacker success rate and pool diversity"),
             ("channels.png", plot_channels(run), "the attacker's channel mix and archive coverage per iteration")]
    figures = [Image(name, png, alt) for name, png, alt in plots if png]
    return [
        Section("Overview", [_overview(run, evals)]),
        Section("Cold start vs each iteration", [comparison_table(evals), refusal_note(run)] if evals else ["No evaluation yet."]),
        Section("Plots", figures or ["Nothing to plot yet."]),
        Section("Compositions the attacker found", [DISCOVERY_NOTE, discovery_table(run.pool)]),
        Section("Pool diversity", [DIVERSITY_NOTE, diversity_table(diversity)]),
        Section("Pool phases", [pool_table(run)]),
        Section("Defender monitor: two-sided checks on the validation split", [monitor_table(run)]),
        Section(f"Sample jailbreaks (up to {SAMPLES})", [samples_table(run)] if run.pool else ["The pool is empty."]),
    ]


# ---- rendering -------------------------------------------------------------------------------------
CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1150px;margin:2em auto;padding:0 1em;
color:#1d1d1f;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}
h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;margin:.8em 0;font-size:.88em;width:100%}
th,td{border:1px solid #d0d0d5;padding:.35em .55em;text-align:left;vertical-align:top;white-space:pre-wrap;
overflow-wrap:break-word}
th{background:#f2f2f5}tr:nth-child(even) td{background:#fafafc}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #eee}figcaption{font-size:.85em;color:#555}
img.thumb{width:96px;height:auto;image-rendering:pixelated}
"""


def _data_uri(image: Image) -> str:
    return "data:image/png;base64," + base64.b64encode(image.png).decode("ascii")


def _html_cell(cell: str | Image) -> str:
    if isinstance(cell, Image):
        return f'<img class="thumb" src="{_data_uri(cell)}" alt="{html.escape(cell.alt)}">'
    return html.escape(cell)


def _html_block(block: str | Image | Table) -> str:
    if isinstance(block, Image):
        return (f'<figure><img src="{_data_uri(block)}" alt="{html.escape(block.alt)}">'
                f"<figcaption>{html.escape(block.alt)}</figcaption></figure>")
    if isinstance(block, Table):
        head = "".join(f"<th>{html.escape(h)}</th>" for h in block.headers)
        body = "".join("<tr>" + "".join(f"<td>{_html_cell(c)}</td>" for c in row) + "</tr>" for row in block.rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    return f"<p>{html.escape(block)}</p>"


def render_html(title: str, sections: list[Section]) -> str:
    # The page shows attacker text: the policy forbids anything but inline styles and data: images.
    policy = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
    body = "".join(f"<h2>{html.escape(s.title)}</h2>" + "".join(_html_block(b) for b in s.blocks) for s in sections)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{policy}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head>"
            f"<body><h1>{html.escape(title)}</h1>{body}</body></html>\n")


def _md_text(text: str) -> str:
    # Markdown renders inline HTML, so user text is HTML-escaped after its Markdown escaping.
    return html.escape(re.sub(r"([\\`*_\[\]|#])", r"\\\1", text), quote=False).replace("\n", "<br>")


def _md_cell(cell: str | Image) -> str:
    return f"![{_md_text(cell.alt)}]({cell.name})" if isinstance(cell, Image) else _md_text(cell)


def _md_block(block: str | Image | Table) -> str:
    if isinstance(block, Image):
        return f"![{_md_text(block.alt)}]({block.name})\n"
    if isinstance(block, Table):
        lines = ["| " + " | ".join(_md_text(h) for h in block.headers) + " |",
                 "|" + "---|" * len(block.headers)]
        lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
        return "\n".join(lines) + "\n"
    return _md_text(block) + "\n"


def render_markdown(title: str, sections: list[Section]) -> str:
    parts = [f"# {_md_text(title)}\n"]
    for s in sections:
        parts.append(f"## {_md_text(s.title)}\n")
        parts += [_md_block(b) for b in s.blocks]
    return "\n".join(parts)


# ---- writing ---------------------------------------------------------------------------------------
def _write_bytes_atomic(path: Path, data: bytes) -> None:
    with replacing(path) as tmp:
        tmp.write_bytes(data)


def _images(sections: list[Section]) -> list[Image]:
    found = []
    for s in sections:
        for b in s.blocks:
            if isinstance(b, Image):
                found.append(b)
            elif isinstance(b, Table):
                found += [c for row in b.rows for c in row if isinstance(c, Image)]
    return found


# The comparison table of `sectow ablate`: one row per method, its final figures with their intervals.
COLUMNS = (("method", "method"), ("kind", "kind"), ("asr", "ASR"), ("asr_novel_text", "ASR novel text"),
           ("asr_split", "ASR split words"), ("asr_picture", "ASR picture"),
           ("asr_unseen_form", "ASR held-out strategies"), ("orr", "ORR"), ("orr_unseen_form", "ORR held-out strategies"),
           ("accuracy", "accuracy"), ("pool_size", "pool"),
           ("attack_success", "attack success vs cold-start defender"))


def comparison_cells(row: dict) -> list[str]:
    def cell(value) -> str:
        if isinstance(value, dict):
            return rate_text(value, "–")
        return "–" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)
    return [cell(row.get(key)) for key, _ in COLUMNS]


def comparison_markdown(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(title for _, title in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(comparison_cells(row)) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def ablation_table(rows: list[dict]) -> Table:
    return Table([title for _, title in COLUMNS], [comparison_cells(row) for row in rows])


# The table of a multi-seed ablation (`sectow ablate --seeds`): per figure, one row per method with all seeds
# pooled and then each seed, every cell with its interval; then the claims, each checked per seed.
SEED_FIGURES = (("asr", "ASR"), ("asr_novel_text", "ASR novel text"), ("asr_split", "ASR split words"),
                ("asr_picture", "ASR picture"), ("orr", "ORR"), ("orr_unseen_form", "ORR held-out strategies"),
                ("accuracy", "accuracy"), ("attack_success", "attack success vs cold-start defender"))
SEEDS_NOTE = ("All seeds pooled counts every seed's trials together (the seed mean weighted by each seed's n, the plain "
              "mean where the seeds' test splits are the same size); its interval is sampling noise only, so read "
              "it with the seeds beside it. A claim holds when the two intervals do not overlap in its direction.")


def seed_tables(rows: list[dict], claims: list[dict], seeds: list[int]) -> list[str | Table]:
    cell = functools.partial(rate_text, missing="–")
    blocks: list[str | Table] = [SEEDS_NOTE]
    headers = ["method", "all seeds pooled", *(f"seed {seed}" for seed in seeds)]
    for key, title in SEED_FIGURES:
        measured = [row for row in rows if row.get(key)]
        if measured:
            blocks += [f"{title}:", Table(headers, [[row["method"], cell(row[key]),
                                                        *(cell(row["seeds"].get(str(seed), {}).get(key)) for seed in seeds)]
                                                       for row in measured])]
    blocks += ["Claims:", Table(["claim", "metric", "higher", "lower", "holds pooled",
                                    *(f"seed {seed}" for seed in seeds)],
                                   [[c["claim"], c["metric"], cell(c["higher"]), cell(c["lower"]),
                                     "yes" if c["holds"] else "no",
                                     *("yes" if c["seeds"].get(str(seed)) else "no" for seed in seeds)]
                                    for c in claims])]
    return blocks


def seeds_markdown(rows: list[dict], claims: list[dict], seeds: list[int]) -> str:
    return "\n".join(_md_block(block) for block in seed_tables(rows, claims, seeds))


def write_report(run_dir: Path) -> tuple[Path, Path]:
    """Write run_dir/report/report.html and report.md (with its PNGs); returns both paths. For an
    ablation folder (`sectow ablate`), the report is its SecTOW run's with the comparison table first."""
    out = run_dir / "report"
    comparison, claims = run_dir / "comparison.json", run_dir / "claims.json"
    if claims.is_file():  # several seeds: the table across them; each seed's folder has its own report
        rows, found = _read_json(comparison), _read_json(claims)
        if not isinstance(rows, list) or not all(isinstance(row, dict) and isinstance(row.get("seeds"), dict)
                                                 for row in rows) or not isinstance(found, list):
            raise UserError(f"{comparison}: not a multi-seed comparison table")
        seeds = list(dict.fromkeys(int(seed) for row in rows for seed in row["seeds"]))
        sections = [Section("SecTOW, baselines and ablations on every seed", seed_tables(rows, found, seeds))]
        title = f"sectow ablation report: {run_dir.resolve().name}"
    elif comparison.is_file():
        run = load_run(run_dir / "sectow")
        rows = _read_json(comparison)
        if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
            raise UserError(f"{comparison}: not a comparison table (a JSON list of rows)")
        table = Section("SecTOW, baselines and ablations", [ABLATION_NOTE, ablation_table(rows)])
        sections, title = [table] + build_sections(run), f"sectow ablation report: {run_dir.resolve().name}"
    else:
        run = load_run(run_dir)
        sections, title = build_sections(run), f"sectow run report: {run.name}"
    try:
        return _write(out, title, sections)
    except PermissionError:
        raise UserError(f"{out}: report folder is not writable") from None


def _write(out: Path, title: str, sections: list[Section]) -> tuple[Path, Path]:
    out.mkdir(mode=0o700, exist_ok=True)  # pool thumbnails and queries are jailbreak data: owner only
    images = _images(sections)
    for image in images:
        _write_bytes_atomic(out / image.name, image.png)
    crash_point("report_images_written")
    for stale in {p.name for p in out.glob("*.png")} - {i.name for i in images}:  # from an earlier, larger report
        (out / stale).unlink()
    html_path, md_path = out / "report.html", out / "report.md"
    write_atomic(html_path, render_html(title, sections))
    write_atomic(md_path, render_markdown(title, sections))
    return html_path, md_path


# ---- the held-out table elsewhere (the model card) ---------------------------------------------------


def refusal_note(run: Run) -> str:
    """Which refusal strings the run's `refused` flags (ORR) matched, as summary.json records it."""
    markers = run.summary.get("refusal_markers")
    return f"Refusals (ORR) matched with the {markers} refusal strings." if markers else \
        "The refusal strings of this run were not recorded (a run from before they were)."


def held_out_markdown(run: Run) -> str:
    """The cold start vs each iteration table, as Markdown."""
    return _md_block(comparison_table(run.evaluations()))
