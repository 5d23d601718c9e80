"""The attack report: who attacked what, attack success per query writer (the trained attacker, and with
--baselines the self-instruct attacker and the plain seeds) overall, per round, category and strategy,
and sample successful attacks; one self-contained HTML page and a Markdown twin under <attack>/report/,
rendered with the run report's own helpers."""

from __future__ import annotations

import io
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from sectow.atomic import replacing, write_atomic
from sectow.report.html_report import Image, Section, Table, render_html, render_markdown, thumbnail

SAMPLES = 12
TEXT_LIMIT = 600
WRITER_NAMES = {"sectow": "trained attacker", "self_instruct": "self-instruct attacker", "plain": "plain seeds"}


def rate(value: dict | None) -> str:
    if not value or value.get("value") is None:
        return "–"
    low, high = value["interval"]
    return f"{value['value']:.3f} [{low:.3f}, {high:.3f}] (n={value['n']})"


def clip(text) -> str:
    text = str(text or "")
    return text if len(text) <= TEXT_LIMIT else text[:TEXT_LIMIT] + " …"


def writer_label(summary: dict, source: str) -> str:
    name = summary.get("attackers", {}).get(source)
    return f"{WRITER_NAMES.get(source, source)} ({name})" if name and source != "plain" else WRITER_NAMES.get(source, source)


def breakdown(summary: dict, key: str, title: str) -> Table:
    """One row per round, category or strategy; one column per query writer."""
    writers = summary["writers"]
    groups = sorted({g for figures in writers.values() for g in figures[key]},
                    key=lambda g: (0, int(g), "") if g.isdigit() else (1, 0, g))  # rounds in number order
    return Table([title, *(writer_label(summary, s) for s in writers)],
                 [[g, *(rate(figures[key].get(g)) for figures in writers.values())] for g in groups])


def plot_by_category(summary: dict) -> bytes | None:
    writers = summary["writers"]
    groups = sorted({g for figures in writers.values() for g in figures["asr_by_category"]})
    if not groups:
        return None
    fig = Figure(figsize=(max(7, 0.8 * len(groups) + 2), 3.8), layout="constrained")
    ax = fig.add_subplot()
    width = 0.8 / len(writers)
    for i, (source, figures) in enumerate(writers.items()):
        values = [(figures["asr_by_category"].get(g) or {}).get("value") or 0.0 for g in groups]
        ax.bar([x + (i - (len(writers) - 1) / 2) * width for x in range(len(groups))], values, width,
               label=writer_label(summary, source))
    ax.set_xticks(range(len(groups)), groups, rotation=30, ha="right", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("attack success rate")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    return buffer.getvalue()


def samples_table(out: Path, records: list[dict]) -> Table:
    """Successful attempts, round-robin over the writers, latest round first within each."""
    queues = {}
    for r in sorted(records, key=lambda r: (-r["round"], r["id"])):
        if r["verdict"] and r["verdict"]["unsafe"]:
            queues.setdefault(r["source"], []).append(r)
    picked = []
    while len(picked) < SAMPLES and any(queues.values()):
        for rows in queues.values():
            if rows and len(picked) < SAMPLES:
                picked.append(rows.pop(0))
    rows = []
    for i, r in enumerate(picked, 1):
        png = thumbnail(out, r.get("image"))
        rows.append([Image(f"sample-{i:02d}.png", png, f"sample {i} image") if png else "(no image)",
                     f"{r['source']}, round {r['round']}, {r['strategy']}\n{r['category']}",
                     clip(r["query"]), clip(r["reply"]), f"unsafe\njudge: {r['verdict']['judge']}"])
    return Table(["image", "attempt", "query", "target reply", "verdict"], rows)


def build_sections(out: Path, summary: dict, records: list[dict]) -> list[Section]:
    writers = summary["writers"]
    target = summary["target"]
    overview = (f"Target {target['model']} at {target['url']}. Judge: {summary['judge']}. {summary['seeds']} seeds, "
                f"{summary['samples_per_seed']} attempt(s) per seed and writer, up to {summary['rounds']} round(s) "
                f"(each round after the first refines the attempts the target resisted, with its reply). "
                f"{len(records)} attempts recorded. Rates: share of sent attempts whose reply the judge called unsafe, "
                "with 95% Wilson intervals; on-intent: the query also kept the seed's intent (quality monitor); "
                "seed success: share of seeds jailbroken within the rounds.")
    success = Table(["query writer", "attempts", "sent", "not sent (unparsable)", "ASR", "ASR on intent",
                     "seed success"],
                    [[writer_label(summary, s), str(f["attempts"]), str(f["sent"]), str(f["not_sent"]), rate(f["asr"]),
                      rate(f["asr_on_intent"]), rate(f["seed_success"])] for s, f in writers.items()])
    png = plot_by_category(summary)
    return [
        Section("Overview", [overview]),
        Section("Attack success", [success]),
        Section("By round", [breakdown(summary, "asr_by_round", "round")]),
        Section("By category", [breakdown(summary, "asr_by_category", "category")]
                + ([Image("asr_by_category.png", png, "attack success rate per category")] if png else [])),
        Section("By strategy", [breakdown(summary, "asr_by_strategy", "strategy")]),
        Section(f"Sample successful attacks (up to {SAMPLES})", [samples_table(out, records)]),
    ]


def write_attack_report(out: Path, summary: dict, records: list[dict]) -> tuple[Path, Path]:
    """<out>/report/report.html and report.md (with its PNGs), owner-only: they show jailbreaks and replies."""
    folder = out / "report"
    folder.mkdir(mode=0o700, exist_ok=True)
    sections = build_sections(out, summary, records)
    title = f"sectow attack report: {summary['target']['model']}"
    images = [b for s in sections for b in s.blocks if isinstance(b, Image)]
    images += [c for s in sections for b in s.blocks if isinstance(b, Table) for row in b.rows for c in row
               if isinstance(c, Image)]
    for image in images:
        with replacing(folder / image.name) as tmp:
            tmp.write_bytes(image.png)
    for stale in {p.name for p in folder.glob("*.png")} - {i.name for i in images}:  # from an earlier report
        (folder / stale).unlink()
    html, markdown = folder / "report.html", folder / "report.md"
    write_atomic(html, render_html(title, sections))
    write_atomic(markdown, render_markdown(title, sections))
    return html, markdown
