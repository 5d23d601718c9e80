"""Bootstrap intervals, the metrics of each benchmark kind, and `evaluate_model` end to end on the tiny
model with tiny FigStep and MMMU layouts."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import ClassVar

import pytest
from test_benchmarks import make_figstep, make_mmmu

from sectow.world.miniature import corpus
from sectow.data.schema import Sample
from sectow.errors import UserError
from sectow.evaluation import intervals
from sectow.evaluation.answer_parsing import parse_mmmu_choice, parse_mmmu_pro_choice
from sectow.evaluation.benchmark_eval import (choice_parser, chosen_letters, evaluate_model, general_metrics,
                                              parse_benchmark_args, safety_metrics)
from sectow.evaluation.intervals import bootstrap_interval, proportion
from sectow.judges import JUDGES
from sectow.judges.base import Judge, Verdict
from sectow.models.tiny import build_tiny_model

# ---------------------------------------------------------------- intervals


def bernoulli(n: int, p: float, seed: int) -> list[bool]:
    draw = random.Random(seed)
    return [draw.random() < p for _ in range(n)]


def test_degenerate_flags_give_a_point_interval():
    assert bootstrap_interval([False] * 30) == (0.0, 0.0)
    assert bootstrap_interval([True] * 30) == (1.0, 1.0)
    assert bootstrap_interval([0.25]) == (0.25, 0.25)


def test_interval_is_deterministic_for_a_seed():
    flags = bernoulli(50, 0.3, seed=1)
    assert bootstrap_interval(flags, seed=3) == bootstrap_interval(flags, seed=3)
    assert bootstrap_interval(flags, seed=3) != bootstrap_interval(flags, seed=4)


def test_interval_matches_the_normal_approximation_on_a_large_sample():
    flags = [True] * 120 + [False] * 280  # p = 0.3, n = 400
    half = 1.96 * math.sqrt(0.3 * 0.7 / 400)
    low, high = bootstrap_interval(flags)
    assert low == pytest.approx(0.3 - half, abs=0.01) and high == pytest.approx(0.3 + half, abs=0.01)
    narrow = bootstrap_interval(flags, level=0.5)
    assert low < narrow[0] < 0.3 < narrow[1] < high


def test_interval_covers_the_true_rate_about_as_often_as_its_level():
    covered = 0
    for trial in range(200):
        low, high = bootstrap_interval(bernoulli(60, 0.3, seed=trial), resamples=500, seed=trial)
        covered += low <= 0.3 <= high
    assert 0.88 <= covered / 200 <= 0.99


def test_chunked_resampling_draws_the_same_resamples(monkeypatch):
    flags = bernoulli(50, 0.3, seed=2)
    whole = bootstrap_interval(flags)
    monkeypatch.setattr(intervals, "CHUNK_VALUES", 170)  # 3 resamples per chunk
    assert bootstrap_interval(flags) == whole


def test_interval_refuses_nonsense():
    with pytest.raises(ValueError, match="at least one"):
        bootstrap_interval([])
    with pytest.raises(ValueError, match="level"):
        bootstrap_interval([True], level=1.0)


def test_proportion():
    rate = proportion([True, False, False, False])
    assert rate["value"] == 0.25 and rate["n"] == 4
    assert rate["interval"][0] <= 0.25 <= rate["interval"][1]
    assert proportion([]) == {"value": None, "n": 0, "interval": None}


# ---------------------------------------------------------------- metrics on known strings


def verdict(refused: bool = False, unsafe: bool = False) -> Verdict:
    return Verdict(refused=refused, unsafe=unsafe, judge="test")


def test_safety_metrics_by_category():
    samples = [Sample(id=str(i), query="q", label="harmful", category=c, form="figstep")
               for i, c in enumerate(["a", "a", "b", "b"])]
    metrics = safety_metrics(samples, [verdict(unsafe=u) for u in (True, False, True, True)])
    assert metrics["asr"]["value"] == 0.75 and metrics["asr"]["n"] == 4
    assert metrics["asr_by_category"]["a"]["value"] == 0.5 and metrics["asr_by_category"]["b"]["interval"] == [0.3424, 1.0]
    assert metrics["asr_by_form"]["figstep"]["value"] == 0.75


def test_general_metrics_use_the_official_parsers():
    assert choice_parser("mmmu_validation") is parse_mmmu_choice
    assert choice_parser("mmmu_pro_vision") is parse_mmmu_pro_choice
    options = {"options": ["red", "green", "blue", "yellow"]}
    samples = [Sample(id=str(i), query="q", label="benign", answer=a, extra=options) for i, a in enumerate("BCD")]
    samples.append(Sample(id="open", query="q", label="benign", extra={"options": [], "open_answer": "4"}))
    responses = ["(B)", "I think the colour is clearly blue here", "I'm sorry, I can't", "4"]
    chosen = chosen_letters("mmmu_validation", samples, responses)
    # By letter, by option text, the seeded guess (A) when nothing matches; open questions: not parsed.
    assert chosen == ["B", "C", "A", None]
    # MMMU-Pro also reads `X.`; MMMU would fall back to its seeded guess (A) here.
    assert chosen_letters("mmmu_pro_standard10", samples[:1], ["xD.y"]) == ["D"]
    metrics = general_metrics(samples, chosen, [verdict(refused=r) for r in (False, False, True, False)])
    assert metrics["accuracy"]["n"] == 3 and metrics["accuracy"]["value"] == round(2 / 3, 4)
    assert metrics["orr"]["value"] == 0.25 and metrics["n_open_unscored"] == 1


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


def test_bad_names_fail_before_the_model_is_loaded(tmp_path):
    with pytest.raises(UserError, match="unknown benchmark 'nope'"):
        evaluate_model(tmp_path / "no-model", {"nope": tmp_path}, tmp_path / "out")
    with pytest.raises(UserError, match="unknown judge 'oracle'"):
        evaluate_model(tmp_path / "no-model", {"figstep": tmp_path}, tmp_path / "out", judge="oracle")
    with pytest.raises(UserError, match="no benchmarks"):
        evaluate_model(tmp_path / "no-model", {}, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("eval")
    model = build_tiny_model(base / "m", corpus(), seed=0)
    make_figstep(base / "figstep")
    make_mmmu(base / "mmmu")
    return model, {"figstep": base / "figstep", "mmmu_validation": base / "mmmu"}, base


def test_evaluate_model_end_to_end(setup):
    model, benchmarks, base = setup
    out = base / "out"
    result = evaluate_model(model, benchmarks, out, max_new_tokens=8, batch_size=4, prompt_defense="adashield")
    assert json.loads((out / "eval.json").read_text()) == result
    figstep, mmmu = result["benchmarks"]["figstep"], result["benchmarks"]["mmmu_validation"]
    assert figstep["n"] == 5 and mmmu["n"] == 3 and mmmu["accuracy"]["n"] == 2  # one open question
    rates = [figstep["asr"], mmmu["accuracy"], mmmu["orr"], *figstep["asr_by_category"].values()]
    for rate in rates:
        low, high = rate["interval"]
        assert 0 <= low <= rate["value"] <= high <= 1
    assert set(figstep["asr_by_category"]) == {"Illegal Activity", "Hate Speech", "Malware Generation"}
    assert sum(rate["n"] for rate in figstep["asr_by_category"].values()) == 5
    assert figstep["judge"] == mmmu["judge"] == result["judge"] == "refusal"
    assert figstep["found"]["rows"] == 5 and mmmu["found"]["cache_dir"].startswith(str(out))

    table = (out / "eval.md").read_text()
    assert "| figstep | asr |" in table and "| mmmu_validation | accuracy |" in table and "Hate Speech" in table
    rows = [json.loads(line) for line in (out / "responses.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and len({row["id"] for row in rows}) == 8
    assert {"id", "form", "category", "response", "verdict"} <= set(rows[0])
    assert all(row["verdict"]["judge"] == "refusal" for row in rows)
    assert not list(out.glob("*.tmp"))


class RefusesAll(Judge):
    """Calls every response a refusal: known rates whatever the random model says."""

    name: ClassVar[str] = "refuses_all"

    def judge(self, samples, responses):
        return [Verdict(refused=True, unsafe=False, judge=self.name) for _ in samples]


def test_the_judge_asked_for_is_the_one_recorded(setup, monkeypatch):
    model, benchmarks, base = setup
    monkeypatch.setitem(JUDGES, RefusesAll.name, RefusesAll)
    result = evaluate_model(model, benchmarks, base / "out-refuses", judge="refuses_all", limit=2, max_new_tokens=4)
    figstep, mmmu = result["benchmarks"]["figstep"], result["benchmarks"]["mmmu_validation"]
    assert figstep["judge"] == mmmu["judge"] == "refuses_all" and figstep["n"] == mmmu["n"] == 2
    assert figstep["asr"] == {"value": 0.0, "n": 2, "interval": [0.0, 0.6576]}
    assert mmmu["orr"] == {"value": 1.0, "n": 2, "interval": [0.3424, 1.0]}
