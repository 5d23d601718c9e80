"""Wilson intervals, the metrics of each benchmark kind (accuracy with and without MMMU's random-guess
fallback, open questions), and `evaluate_model` end to end on the tiny model with tiny FigStep and MMMU
layouts: every image of a multi-image row fed in order, skipped rows counted and listed."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import ClassVar

import pytest
from PIL import Image
from test_benchmarks import make_figstep, make_mmmu, make_mmmu_pro

from sectow.data.benchmarks.base import sample_images
from sectow.world.miniature import corpus
from sectow.data.schema import Sample, load_image
from sectow.errors import UserError
from sectow.evaluation import benchmark_eval
from sectow.evaluation.benchmark_eval import (choice_reader, evaluate_model, parse_benchmark_args, score_answers,
                                              several_images_refused)
from sectow.evaluation.metrics import benign_metrics, safety_metrics
from sectow.evaluation.intervals import proportion, wilson_interval
from sectow.judges import JUDGES
from sectow.judges.base import Judge, Verdict
from sectow.models import generation
from sectow.models.tiny import build_tiny_model

# ---------------------------------------------------------------- intervals


def test_wilson_interval_known_values():
    assert wilson_interval(0, 6) == (0.0, pytest.approx(0.3903, abs=1e-4))
    assert wilson_interval(6, 6) == (pytest.approx(0.6097, abs=1e-4), 1.0)
    low, high = wilson_interval(120, 400)  # p = 0.3: close to the normal approximation at this size
    assert low == pytest.approx(0.2572, abs=1e-4) and high == pytest.approx(0.3466, abs=1e-4)
    assert wilson_interval(1, 2) == (pytest.approx(0.0945, abs=1e-4), pytest.approx(0.9055, abs=1e-4))


@pytest.mark.parametrize("n", [1, 2, 6, 30, 1000])
def test_wilson_interval_is_never_degenerate_and_stays_in_range(n):
    for successes in range(0, n + 1, max(1, n // 7)):
        low, high = wilson_interval(successes, n)
        assert 0 <= low <= successes / n <= high <= 1 and high - low > 0
        # Symmetric in successes and failures.
        assert wilson_interval(n - successes, n) == pytest.approx((1 - high, 1 - low), abs=1e-12)
    narrow, wide = wilson_interval(n // 2, n, level=0.5), wilson_interval(n // 2, n, level=0.99)
    assert wide[0] <= narrow[0] and narrow[1] <= wide[1]


def test_wilson_interval_covers_the_true_rate_about_as_often_as_its_level():
    draw = random.Random(0)
    for p in (0.05, 0.3, 0.5):
        covered = 0
        for _ in range(400):
            successes = sum(draw.random() < p for _ in range(40))
            low, high = wilson_interval(successes, 40)
            covered += low <= p <= high
        assert 0.90 <= covered / 400 <= 0.99


def test_interval_refuses_nonsense():
    for args in ((0, 0), (3, 2), (-1, 2)):
        with pytest.raises(ValueError):
            wilson_interval(*args)
    with pytest.raises(ValueError, match="level"):
        wilson_interval(1, 2, level=1.0)
    with pytest.raises(ValueError, match="true/false flags"):
        proportion([0.5])


def test_proportion():
    rate = proportion([True, False, False, False])
    assert rate == {"value": 0.25, "n": 4, "interval": [0.0456, 0.6994]}
    assert proportion([False] * 6) == {"value": 0.0, "n": 6, "interval": [0.0, 0.3903]}
    assert proportion([1, 1]) == proportion([True, True])
    assert proportion([]) == {"value": None, "n": 0, "interval": None}


# ---------------------------------------------------------------- metrics on known strings


def verdict(refused: bool = False, unsafe: bool = False) -> Verdict:
    return Verdict(refused=refused, unsafe=unsafe, judge="test")


def test_paper_table_is_scenario_by_variant_with_totals():
    """MM-SafetyBench's table: ASR per scenario (rows) x variant (columns in the paper's order), row totals,
    column totals and the grand total, each with its Wilson interval."""
    from sectow.data.benchmarks.mmsafetybench import MMSafetyBench
    from sectow.evaluation.metrics import paper_table
    cells = [("01-Illegal_Activitiy", "SD", True), ("01-Illegal_Activitiy", "text_only", False),
             ("01-Illegal_Activitiy", "SD_TYPO", True), ("02-HateSpeech", "SD", False), ("02-HateSpeech", "TYPO", True)]
    samples = [Sample(id=str(i), query="q", label="harmful", category=c, form=f) for i, (c, f, _) in enumerate(cells)]
    [shape] = MMSafetyBench.paper_tables
    table = paper_table(shape, samples, [u for _, _, u in cells])
    assert table["rows"] == "scenario" and table["columns"] == "variant"
    assert table["column_order"] == ["text_only", "SD", "TYPO", "SD_TYPO", "all"]
    assert table["cells"]["01-Illegal_Activitiy"]["all"]["value"] == round(2 / 3, 4)
    assert table["cells"]["all"]["SD"] == proportion([True, False])
    assert table["cells"]["all"]["all"] == proportion([u for _, _, u in cells])
    assert "TYPO" not in table["cells"]["01-Illegal_Activitiy"]  # no sample, no cell
    lines = benchmark_eval.table_markdown({**table, "title": "t"})
    assert lines[2] == "| scenario | text_only | SD | TYPO | SD_TYPO | all | n |"
    assert lines[4].startswith("| 01-Illegal_Activitiy | 0.000 [0.000, 0.793] | 1.000 [0.206, 1.000] | - |")


def test_jailbreakv_tables_are_per_format_and_per_policy_by_attack_family():
    from sectow.data.benchmarks.jailbreakv import JailBreakV
    from sectow.evaluation.metrics import paper_table
    rows = [("Violence", "Template", True), ("Violence", "figstep", False), ("Fraud", "SD_typo", True)]
    samples = [Sample(id=str(i), query="q", label="harmful", category=p, form=f,
                      extra={"attack_family": {"Template": "llm_transfer", "figstep": "figstep", "SD_typo": "query_relevant"}[f]})
               for i, (p, f, _) in enumerate(rows)]
    by_format, by_family = (paper_table(t, samples, [u for *_, u in rows]) for t in JailBreakV.paper_tables)
    assert by_format["column_order"] == ["all"] and set(by_format["cells"]) == {"Template", "figstep", "SD_typo", "all"}
    assert by_family["column_order"] == ["llm_transfer", "query_relevant", "figstep", "all"]
    assert by_family["cells"]["all"]["llm_transfer"]["value"] == 1.0


def test_safety_metrics_by_category():
    samples = [Sample(id=str(i), query="q", label="harmful", category=c, form="figstep")
               for i, c in enumerate(["a", "a", "b", "b"])]
    metrics = safety_metrics(samples, [verdict(unsafe=u) for u in (True, False, True, True)])
    assert metrics["asr"]["value"] == 0.75 and metrics["asr"]["n"] == 4
    assert metrics["asr_by_category"]["a"]["value"] == 0.5
    assert metrics["asr_by_category"]["b"]["interval"] == [0.3424, 1.0]  # 2 of 2: not [1, 1]
    assert metrics["asr_by_form"]["figstep"]["value"] == 0.75


OPTIONS = {"options": ["red", "green", "blue", "yellow"]}


def questions() -> list[Sample]:
    samples = [Sample(id=str(i), query="q", label="benign", answer=a, extra=dict(OPTIONS)) for i, a in enumerate("BCA")]
    samples.append(Sample(id="open", query="q", label="benign", extra={"options": [], "open_answer": "4"}))
    return samples


def test_answers_use_the_official_parsers_and_the_open_rule():
    assert choice_reader("mmmu_validation").__name__ == "read_mmmu_choice"
    assert choice_reader("mmmu_pro_vision").__name__ == "read_mmmu_pro_choice"
    responses = ["(B)", "I think the colour is clearly blue here", "I'm sorry, I can't", "The answer is 4."]
    answers = score_answers("mmmu_validation", questions(), responses)
    # By letter, by option text, the seeded guess (A, here right by luck), the open rule.
    assert [(a.chosen, a.guessed, a.correct) for a in answers] == [
        ("B", False, True), ("C", False, True), ("A", True, True), (None, False, True)]
    # MMMU-Pro also reads `X.`; MMMU would fall back to its seeded guess (A) here.
    assert score_answers("mmmu_pro_standard10", questions()[:1], ["xD.y"])[0].chosen == "D"


def test_accuracy_with_and_without_the_random_guess_fallback():
    """A model that refuses everything: the official rule scores its guesses (upstream's first three draws
    from one generator seeded with 42: A, A, C, which miss B, C, A), the expectation counts each as 1 in 4,
    the other two figures count none, and ORR says why."""
    samples = questions()
    responses = ["I'm sorry, I can't help with that."] * 4
    answers = score_answers("mmmu_validation", samples, responses)
    metrics = benign_metrics(samples, answers, [verdict(refused=True)] * 4)
    assert [a.chosen for a in answers[:3]] == ["A", "A", "C"] and metrics["accuracy"]["value"] == 0.0
    assert metrics["accuracy_expected"]["value"] == round(3 / 4 / 4, 4)
    assert metrics["accuracy_without_fallback"] == {"value": 0.0, "n": 4, "interval": [0.0, 0.4899]}
    assert metrics["accuracy_parsed_only"]["n"] == 1  # only the open question had an answer to read
    assert metrics["orr"]["value"] == 1.0 and metrics["n_open"] == 1 and metrics["n_guessed"] == 3


# ---------------------------------------------------------------- NAME=ROOT and names


def test_parse_benchmark_args(tmp_path):
    assert parse_benchmark_args([f"figstep={tmp_path}", " mmmu_dev = /data/MMMU "]) == {
        "figstep": tmp_path, "mmmu_dev": Path("/data/MMMU")}
    for item in ("figstep", "=/data", "figstep=", ""):
        with pytest.raises(UserError, match="expected NAME=ROOT"):
            parse_benchmark_args([item])
    with pytest.raises(UserError, match="unknown benchmark 'figstepp'.*figstep_tiny"):
        parse_benchmark_args(["figstepp=/data"])
    with pytest.raises(UserError, match="given twice"):
        parse_benchmark_args(["figstep=/a", "figstep=/b"])


@pytest.mark.parametrize("options, message", [
    (dict(benchmarks={"nope": None}), "unknown benchmark 'nope'"),
    (dict(judge="oracle"), "unknown judge 'oracle'"),
    (dict(benchmarks={}), "no benchmarks"),
    (dict(batch_size=0), "--batch-size must be a positive number, got 0"),
    (dict(max_new_tokens=0), "--max-new-tokens must be a positive number"),
    (dict(limit=-3), "--limit must be a positive number"),
    (dict(prompt_defense="prayer"), "unknown prompt defense 'prayer'"),
    (dict(judge="http", judge_options={"base_url": "http://x", "model": "m", "timeout": 3}),
     "judge 'http': got an unexpected keyword argument 'timeout' .options: base_url, model"),
])
def test_bad_settings_fail_before_the_model_is_loaded(tmp_path, options, message):
    arguments = {"benchmarks": {"figstep": tmp_path}, **options}
    with pytest.raises(UserError, match=message):
        evaluate_model(tmp_path / "no-model", out_dir=tmp_path / "out", **arguments)
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("eval")
    model = build_tiny_model(base / "m", corpus(), seed=0)
    make_figstep(base / "figstep")
    (base / "figstep" / "data/images/SafeBench/query_ForbidQI_2_2_6.png").unlink()  # a partial download
    make_mmmu(base / "mmmu")
    return model, {"figstep": base / "figstep", "mmmu_validation": base / "mmmu"}, base


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_evaluate_model_end_to_end(setup):
    model, benchmarks, base = setup
    out = base / "out"
    result = evaluate_model(model, benchmarks, out, max_new_tokens=8, batch_size=4, prompt_defense="adashield")
    assert json.loads((out / "eval.json").read_text()) == result
    figstep, mmmu = result["benchmarks"]["figstep"], result["benchmarks"]["mmmu_validation"]
    assert figstep["n"] == 4 and figstep["rows"] == 5 and mmmu["n"] == 3
    assert figstep["skipped"]["count"] == 1 and figstep["skipped"]["by_kind"] == {"missing image": 1}
    assert figstep["skipped"]["rows"][0]["id"] == "figstep/2_2"
    assert mmmu["accuracy"]["n"] == 3 and mmmu["n_open"] == 1  # open questions are scored, not left out
    rates = [figstep["asr"], mmmu["accuracy"], mmmu["accuracy_without_fallback"], mmmu["orr"],
             *figstep["asr_by_category"].values()]
    for rate in rates:
        low, high = rate["interval"]
        assert 0 <= low <= rate["value"] <= high <= 1 and high > low
    assert set(figstep["asr_by_category"]) == {"Illegal Activity", "Hate Speech", "Malware Generation"}
    assert figstep["judge"] == mmmu["judge"] == result["judge"] == "refusal"
    assert figstep["judge_prompt_versions"] == ["refusal-strings-jailbreakbench"]
    # Benchmark figures use the true JailbreakBench strings unless another set is named, and say so.
    assert result["refusal_markers"] == figstep["refusal_markers"] == "jailbreakbench"
    assert result["judge_options"]["markers"] == "jailbreakbench"
    [topics] = figstep["paper_tables"]
    assert topics["title"] == "ASR per forbidden topic" and topics["rows"] == "topic"
    assert set(topics["cells"]) == {"Illegal Activity", "Hate Speech", "Malware Generation", "all"}
    assert topics["cells"]["all"]["all"] == figstep["asr"]
    assert mmmu["malformed"] == {"count": 0, "rows": []} and mmmu["max_new_tokens"] == 8
    assert 0 <= mmmu["accuracy_expected"]["value"] <= 1
    assert result["intervals"] == "wilson-95" and result["responses"] == {"generated": 7, "reused": 0}
    assert mmmu["images"] == {"rows_with_several": 1, "rows_fed_first_only": 0}

    table = (out / "eval.md").read_text()
    assert "| figstep | asr |" in table and "| mmmu_validation | accuracy_without_fallback |" in table
    assert "| figstep | 5 | 4 | 1 | 0 |" in table and "Hate Speech" in table
    assert "## figstep: ASR per forbidden topic" in table and "Refusal strings (`refused`, ORR): `jailbreakbench`" in table
    responses = rows(out / "responses.jsonl")
    assert len(responses) == 7 and {r["benchmark"] for r in responses} == {"figstep", "mmmu_validation"}
    judged = rows(out / "verdicts.jsonl")
    assert len(judged) == 7 and all(r["verdict"]["judge"] == "refusal" for r in judged)
    assert {r["id"]: r["answer"] for r in judged if r["benchmark"] == "mmmu_validation"} == {
        "mmmu_validation/validation_Accounting_1": "B", "mmmu_validation/validation_Accounting_2": "1.06",
        "mmmu_validation/validation_Art_Theory_1": "A"}
    assert sorted(p.name for p in out.iterdir()) == [".sectow.lock", "eval-config.json", "eval.json", "eval.md",
                                                      "responses.jsonl", "verdicts.jsonl"]
    assert not [p for p in base.iterdir() if p.name.startswith(".out-images-")]  # the staging folder is gone


def test_mmmu_pro_gets_its_reference_budget_and_empty_reply_retries(setup, tmp_path, monkeypatch):
    """mmmu-pro/infer/infer_transformers.py: 50 new tokens, and an empty reply asked again up to 5 times;
    other benchmarks keep sectow's 64 and are never retried. --max-new-tokens overrides every budget."""
    model, benchmarks, _ = setup
    make_mmmu_pro(tmp_path / "pro")
    calls = []

    def empty_for_pro(model, processor, prompts, max_new_tokens, **kwargs):
        calls.append((max_new_tokens, len(prompts)))
        return ["" if max_new_tokens == 50 else "I'm sorry."] * len(prompts)

    monkeypatch.setattr(generation, "generate", empty_for_pro)
    result = evaluate_model(model, {"figstep": benchmarks["figstep"], "mmmu_pro_standard10": tmp_path / "pro"},
                            tmp_path / "out", batch_size=8)
    assert calls == [(64, 4), (50, 2), (50, 2), (50, 2), (50, 2), (50, 2), (50, 2)]  # first try + 5 retries
    assert result["benchmarks"]["mmmu_pro_standard10"]["max_new_tokens"] == 50
    assert result["benchmarks"]["figstep"]["max_new_tokens"] == 64 and result["max_new_tokens"] is None
    retried = {r["id"]: r.get("retries") for r in rows(tmp_path / "out" / "responses.jsonl")}
    assert {i: n for i, n in retried.items() if n} == {"mmmu_pro_standard10/test_History_1": 5,
                                                         "mmmu_pro_standard10/validation_Math_3": 5}
    calls.clear()
    evaluate_model(model, {"mmmu_pro_standard10": tmp_path / "pro"}, tmp_path / "out2", max_new_tokens=7)
    assert calls[0] == (7, 2)


def test_every_image_of_a_row_is_fed_in_placeholder_order(setup, tmp_path, monkeypatch):
    model, benchmarks, _ = setup
    seen = []
    original = generation.generate

    def recording(model, processor, prompts, **kwargs):
        # The images' first pixels, read now: the staged files are gone after the run.
        seen.extend((text, [(load_image(i) if isinstance(i, str) else i).getpixel((0, 0)) for i in images])
                    for text, images in prompts)
        return original(model, processor, prompts, **kwargs)

    monkeypatch.setattr(generation, "generate", recording)
    evaluate_model(model, {"mmmu_validation": benchmarks["mmmu_validation"]}, tmp_path / "out", max_new_tokens=2)
    assert len(seen) == 4  # the two-image probe, then the three questions
    prompts = dict(seen[1:])
    two = next(images for text, images in prompts.items() if text.startswith("Compare [image] with [image]"))
    assert two == [(0, 0, 255), (255, 0, 0)]  # image_2 then image_1, as the question names them
    assert sorted(map(len, prompts.values())) == [1, 1, 2]


def test_a_model_that_takes_one_image_gets_the_first_with_a_note(setup, tmp_path, monkeypatch):
    model, benchmarks, _ = setup
    monkeypatch.setattr(benchmark_eval, "several_images_refused", lambda generate, processor: "this model takes one "
                        "image per prompt (ValueError)")
    result = evaluate_model(model, {"mmmu_validation": benchmarks["mmmu_validation"]}, tmp_path / "out", max_new_tokens=2)
    assert result["benchmarks"]["mmmu_validation"]["images"] == {"rows_with_several": 1, "rows_fed_first_only": 1}
    noted = {r["id"]: r.get("note") for r in rows(tmp_path / "out" / "verdicts.jsonl")}
    assert noted["mmmu_validation/validation_Accounting_1"] == ("this model takes one image per prompt (ValueError): "
                                                                "fed image 1 of 2")
    assert noted["mmmu_validation/validation_Art_Theory_1"] is None


def test_the_several_images_probe(setup):
    model, _, _ = setup

    def refuses(processor, prompts, **kwargs):
        raise ValueError("Only one image per prompt is supported")

    assert several_images_refused(refuses, None) == "this model takes one image per prompt (ValueError)"
    from sectow.config import PolicySettings
    from sectow.models.policy import load_policy

    tiny, processor = load_policy(model, PolicySettings())
    assert several_images_refused(lambda p, prompts, **kw: generation.generate(tiny, p, prompts, **kw), processor) is None


def test_generate_keeps_single_images_before_the_text(setup):
    """A single image (or path) keeps its place before the text; a list follows it."""
    from sectow.config import PolicySettings
    from sectow.models.policy import load_policy

    model, _, _ = setup
    tiny, processor = load_policy(model, PolicySettings())
    before = generation.chat_text(processor, "Q", True)
    after = generation.chat_text(processor, "Q", False, images_after_text=2)
    assert before.index("<|image_pad|>") < before.index("Q") and after.index("Q") < after.index("<|image_pad|>")
    assert after.count("<|image_pad|>") == 2
    red = Image.new("RGB", (56, 56), "red")
    replies = generation.generate(tiny, processor, [("Q", red), ("Q", [red, red]), ("Q", None)], max_new_tokens=2)
    assert len(replies) == 3


class RefusesAll(Judge):
    """Calls every response a refusal: known rates whatever the random model says."""

    name: ClassVar[str] = "refuses_all"

    def judge(self, samples, responses):
        return [Verdict(refused=True, unsafe=False, judge=self.name) for _ in samples]


def test_the_judge_asked_for_is_the_one_recorded(setup, tmp_path, monkeypatch):
    model, benchmarks, _ = setup
    monkeypatch.setitem(JUDGES, RefusesAll.name, RefusesAll)
    result = evaluate_model(model, benchmarks, tmp_path / "out", judge="refuses_all", limit=2, max_new_tokens=4)
    figstep, mmmu = result["benchmarks"]["figstep"], result["benchmarks"]["mmmu_validation"]
    assert figstep["judge"] == mmmu["judge"] == "refuses_all" and figstep["rows"] == mmmu["n"] == 2
    assert figstep["asr"] == {"value": 0.0, "n": figstep["n"], "interval": [0.0, figstep["asr"]["interval"][1]]}
    assert figstep["asr"]["interval"][1] > 0  # 0 of n is not [0, 0]
    assert mmmu["orr"]["value"] == 1.0 and mmmu["orr"]["interval"][0] < 1


def test_sample_images_of_every_kind():
    assert sample_images(Sample(id="a", query="q", label="benign")) == []
    assert sample_images(Sample(id="a", query="q", label="benign", image="/x.png")) == ["/x.png"]
    assert sample_images(Sample(id="a", query="q", label="benign", image="/x.png",
                                extra={"images": ["/x.png", "/y.png"]})) == ["/x.png", "/y.png"]
