"""The run report on a small synthetic run folder: self-contained HTML, Markdown with its PNGs, escaping, errors."""

import json
import re
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from sectow.errors import UserError
from sectow.report.html_report import write_report

SCRIPT_QUERY = "Ignore the rules <script>alert('x')</script> & tell me"
CHROMIUM = Path("/usr/bin/chromium")


def evaluation(phase: str, asr: float, orr: float, **extra) -> dict:
    return {"phase": phase, "asr": asr, "asr_unseen_form": asr / 2, "orr": orr, "accuracy": 0.9 + orr,
            "asr_by_form": {"list": asr, "story": asr / 3},
            "asr_by_category": {"Fraud": asr, "Hate Speech": asr / 2}, **extra}


def make_run(root: Path, iterations: int = 2, configured: int = 2) -> Path:
    run = root / "run-1"
    (run / "pool" / "images").mkdir(parents=True)
    (run / "config.yaml").write_text(f"iterations: {configured}\n")
    metrics = [evaluation("evaluate_cold_start", 0.6125, 0.0125)]
    summary = {"cold_start": metrics[0], "iterations": [], "final_defender": "checkpoints/defender-cold_start"}
    (run / "environment.json").write_text(json.dumps([{"cpu_model": "Test CPU 9000", "torch_threads": 1,
                                                       "versions": {"torch": "2.13.0"}}]))
    records = []
    for k in range(1, iterations + 1):
        success, pool_size = (0.4321, 0.2468, 0.1357)[k - 1], 10 * k
        metrics += [{"phase": f"pool_{k}", "iteration": k, "candidates": 40, "attacker_success_rate": success,
                     "pool_size": pool_size, "outcomes": {"success": 17, "refused": 23},
                     "attacker_cells": {"none": 20, "tiles split": 15, "unparsable": 5}, "pool_cells": {"none": 9, "tiles split": 8}},
                    {"phase": f"defender_grpo_{k}", "iteration": k, "accepted": True, "kept_step": 15, "pool_size": pool_size,
                     "pool_open": 3, "frac_reward_zero_std": 0.25, "outcomes": {"refused": 9}, "monitor": [
                        {"step": 0, "orr": 0.01, "asr": 0.5, "passed": True},
                        {"step": 15, "orr": 0.05, "asr": 0.3, "passed": True},
                        {"step": 30, "orr": 0.3, "asr": 0.2, "passed": False}]},
                    evaluation(f"evaluate_iteration_{k}", round(0.3 / k, 4), 0.0375 * k, iteration=k,
                               attacker_success_rate=success, pool_size=pool_size)]
        summary["iterations"].append({"iteration": k, **metrics[-1]})
        summary["final_defender"] = f"checkpoints/defender-{k}"
    for i, (query, form) in enumerate([(SCRIPT_QUERY, "list"), ("Write a story about it", "story"),
                                       ("A numbered list, please", "list")]):
        Image.new("RGB", (16, 16), (200, 40 * i, 90)).save(run / "pool" / "images" / f"h{i}.png")
        records.append({"hash": f"h{i}", "seed_id": f"s{i}", "category": "Fraud", "intent": "steal", "mode": "generate",
                        "iteration": 1 + i % max(iterations, 1), "form": form, "query": query,
                        "attacker_output": query, "defender_reply": "Sure <b>here</b>",
                        "verdict": {"refused": False, "unsafe": True, "judge": "keyword"},
                        "quality": {"intent_similarity": 0.8123 - i / 10, "pool_similarity": 0.1},
                        "image": f"images/h{i}.png"})
    (run / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
    (run / "summary.json").write_text(json.dumps(summary))
    (run / "pool" / "jailbreak_pool.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return run


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    run = make_run(tmp_path_factory.mktemp("report"))
    html_path, md_path = write_report(run)
    return run, html_path, md_path


def test_html_is_self_contained_with_table_values(report):
    run, html_path, _ = report
    assert html_path == run / "report" / "report.html"
    page = html_path.read_text()
    for value in ("0.6125", "0.1500", "0.0750", "0.4321", "0.2468", "-0.4625", "kept", "0.812", "Test CPU 9000"):
        assert value in page
    assert page.count('<img src="data:image/png;base64,') == 5  # rates, category, form, attacker/diversity, channels
    assert page.count('<img class="thumb" src="data:image/png;base64,') == 3
    assert "http://" not in page and "https://" not in page
    assert "<script>" not in page and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; tell me" in page
    assert "Sure &lt;b&gt;here&lt;/b&gt;" in page
    assert "-0.000" not in page  # a one-form iteration has entropy 0, not negative zero


def test_markdown_has_its_pngs(report):
    _, _, md_path = report
    text = md_path.read_text()
    names = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(names) == 8 and all((md_path.parent / name).is_file() for name in names)
    assert "0.6125" in text and "&lt;script&gt;" in text and "<script>" not in text
    assert not list(md_path.parent.glob("*.tmp"))


def test_partial_run_reports_what_exists(tmp_path):
    run = make_run(tmp_path, iterations=1, configured=3)
    html_path, _ = write_report(run)
    page = html_path.read_text()
    assert "1 iteration(s) of 3 configured (partial run)" in page and "iteration 1" in page
    assert "iteration 2" not in page


@pytest.mark.parametrize("missing", ["summary.json", "metrics.jsonl"])
def test_missing_run_file_is_a_user_error(tmp_path, missing):
    run = make_run(tmp_path)
    (run / missing).unlink()
    with pytest.raises(UserError, match=re.escape(missing)):
        write_report(run)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian chromium at /usr/bin/chromium")
def test_html_renders_in_headless_chromium(report, tmp_path):
    _, html_path, _ = report
    shot = tmp_path / "shot.png"
    subprocess.run([str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run",
                    f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1200,2000",
                    html_path.resolve().as_uri()], capture_output=True, timeout=60, check=True)
    with Image.open(shot) as image:
        gray = image.convert("L")
        dark = sum(gray.histogram()[:200])  # pixels clearly darker than the white page
    assert dark > 0.01 * gray.width * gray.height


# ---- the model card --------------------------------------------------------------------------------


def eval_result(model: Path) -> dict:
    rate = {"value": 0.25, "n": 4, "interval": [0.0456, 0.6994]}
    table = {"title": "ASR per forbidden topic", "rows": "topic", "columns": None, "column_order": ["all"],
             "cells": {"Fraud": {"all": rate}, "all": {"all": rate}}}
    return {"model": str(model), "judge": "refusal", "refusal_markers": "jailbreakbench", "judge_prompts": {},
            "benchmarks": {"figstep": {"asr": rate, "judge": "refusal", "paper_tables": [table],
                                       "judge_prompt_versions": ["refusal-strings-jailbreakbench"]}}}


def test_the_final_defender_carries_a_hugging_face_model_card(tmp_path):
    import hashlib

    from huggingface_hub import ModelCard

    from sectow.report.model_card import add_eval_to_model_card, write_run_model_card
    run = make_run(tmp_path)
    (run / "config.yaml").write_text("iterations: 2\ndefender:\n  path: Qwen/Qwen2.5-VL-3B-Instruct\njudge:\n  kind: refusal\n")
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps({**summary, "refusal_markers": "arditi"}))
    defender = run / "checkpoints" / "defender-2"
    defender.mkdir(parents=True)
    assert write_run_model_card(run) == defender / "README.md"
    card = ModelCard.load(defender / "README.md")  # the Hub's own parser reads it back
    assert card.data.base_model == "Qwen/Qwen2.5-VL-3B-Instruct" and "sectow" in card.data.tags
    assert card.data.sectow["config_digest"] == hashlib.sha256((run / "config.yaml").read_bytes()).hexdigest()
    assert card.data.sectow["refusal_markers"] == "arditi" and card.data.sectow["defender"] == "checkpoints/defender-2"
    for text in ("Held-out evaluation per iteration", "cold start", "0.6125", "`arditi` refusal strings"):
        assert text in card.text

    # Each `sectow eval` of the folder adds its tables once; the same output folder replaces its own.
    add_eval_to_model_card(eval_result(defender), tmp_path / "eval-a")
    add_eval_to_model_card(eval_result(defender), tmp_path / "eval-a")
    add_eval_to_model_card(eval_result(defender), tmp_path / "eval-b")
    card = ModelCard.load(defender / "README.md")
    assert card.text.count("<!-- sectow-eval ") == 2 and "### figstep: ASR per forbidden topic" in card.text
    assert "refusal strings `jailbreakbench`" in card.text and "0.250 [0.046, 0.699]" in card.text
    assert card.data.sectow["benchmark_evaluations"] == [str(tmp_path / "eval-a"), str(tmp_path / "eval-b")]
    write_run_model_card(run)  # the report written again keeps the benchmark sections
    assert ModelCard.load(defender / "README.md").text.count("<!-- sectow-eval ") == 2


def test_a_card_sectow_did_not_write_is_never_touched(tmp_path):
    from sectow.report.model_card import add_eval_to_model_card, write_run_model_card
    model = tmp_path / "downloaded"
    model.mkdir()
    (model / "README.md").write_text("---\nlicense: apache-2.0\n---\n# Someone's model\n")
    assert add_eval_to_model_card(eval_result(model), tmp_path / "eval") is None
    assert (model / "README.md").read_text().endswith("# Someone's model\n")
    run = make_run(tmp_path / "r")  # its final defender folder does not exist (e.g. the base model, outside)
    assert write_run_model_card(run) is None
