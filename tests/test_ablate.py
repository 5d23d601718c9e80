"""`sectow ablate --seeds 0` on the micro config, reusing the shared micro SecTOW run: every baseline and
ablation row, forks that share the cold start, the report's comparison table, resume, a mismatched run; the
table across seeds and its claims (a second seed costs a second ablation, so pooling over two seeds is
checked on this seed's real rows counted twice)."""

import json
import os
from pathlib import Path

import pytest

from conftest import micro_args
from sectow.ablate import across_seeds, claims
from sectow.cli import main

DEFENDER_ROWS = {"cold-start defender", "SecTOW", "safety_prompt", "adashield", "sft_on_refusals", "no_iteration",
                 "no_defender_monitoring", "no_attacker_monitoring", "no_cold_start"}


def ablate_args(output_dir: Path, *extra: str) -> list[str]:
    return micro_args(output_dir, *extra)


@pytest.fixture(scope="module")
def seeds_folder(micro_run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ablations")
    assert main(["ablate", "--seeds", "0", "--sectow-run", str(micro_run), *ablate_args(out)]) == 0
    return (out / "latest").resolve()


@pytest.fixture(scope="module")
def ablation(seeds_folder) -> Path:
    """Seed 0's folder: what `sectow ablate` makes for one seed."""
    return seeds_folder / "seed-0"


def rows_of(folder: Path) -> dict[str, dict]:
    return {row["method"]: row for row in json.loads((folder / "comparison.json").read_text())}


def test_every_row_is_measured(ablation: Path):
    rows = rows_of(ablation)
    assert DEFENDER_ROWS <= set(rows)
    for name in DEFENDER_ROWS:
        for metric in ("asr", "orr", "accuracy"):
            rate = rows[name][metric]
            assert 0 <= rate["value"] <= 1 and rate["n"] > 0, (name, metric)
            assert rate["interval"][0] <= rate["value"] <= rate["interval"][1], (name, metric)
    attackers = [row for row in rows.values() if row["kind"] == "attacker"]
    assert {row["method"].split(" ")[0] for row in attackers} == {"self_instruct_attacker", "sectow_attacker"}
    for row in attackers:
        assert 0 <= row["attack_success"]["value"] <= 1 and row["attack_success"]["n"] > 0
    assert (ablation / "comparison.md").read_text().count("\n") == len(rows) + 2


def test_ablations_change_only_their_part(ablation: Path, micro_run: Path):
    def config(name):
        import yaml
        return yaml.safe_load((ablation / name / "config.yaml").read_text())

    assert config("no_iteration")["iterations"] == 1
    assert config("no_iteration")["defender_grpo"]["steps"] == 2 * 2  # same total steps as K=2
    assert config("no_defender_monitoring")["monitors"]["enabled_defender"] is False
    assert config("no_attacker_monitoring")["monitors"]["enabled_attacker"] is False
    summary = json.loads((ablation / "no_iteration" / "summary.json").read_text())
    assert len(summary["iterations"]) == 1
    completed = json.loads((ablation / "no_cold_start" / "state.json").read_text())["completed"]
    assert "cold_start_defender" not in completed and completed[-1] == "report"


def test_forks_share_the_cold_start(ablation: Path, micro_run: Path):
    cold = [line for line in (micro_run / "metrics.jsonl").read_text().splitlines() if '"cold_start' in line
            or '"evaluate_cold_start"' in line]
    for name in ("no_iteration", "no_defender_monitoring", "no_attacker_monitoring"):
        lines = (ablation / name / "metrics.jsonl").read_text().splitlines()
        assert lines[:3] == cold  # recorded once, by SecTOW, not retrained
        weights = "checkpoints/defender-cold_start/model.safetensors"
        assert os.stat(ablation / name / weights).st_ino == os.stat(micro_run / weights).st_ino


def test_report_has_the_comparison(ablation: Path):
    page = (ablation / "report" / "report.html").read_text()
    assert "SecTOW, baselines and ablations" in page
    for name in DEFENDER_ROWS:
        assert name in page


def test_resume_recomputes_nothing(seeds_folder: Path, ablation: Path):
    before = {p: p.stat().st_mtime_ns for p in (ablation / "results").iterdir()}
    assert main(["ablate", "--resume", str(seeds_folder)]) == 0
    assert {p: p.stat().st_mtime_ns for p in (ablation / "results").iterdir()} == before


def test_table_across_seeds(seeds_folder: Path, ablation: Path):
    seed_rows, rows = rows_of(ablation), rows_of(seeds_folder)
    assert set(rows) == set(seed_rows)
    for method, row in rows.items():
        assert row["seeds"] == {"0": seed_rows[method]}
        for rate in ("asr", "orr", "accuracy", "attack_success"):
            if seed_rows[method].get(rate):  # one seed pooled is that seed
                assert row[rate] == seed_rows[method][rate], (method, rate)
    found = json.loads((seeds_folder / "claims.json").read_text())
    assert {c["claim"] for c in found} >= {"no_iteration worse than SecTOW", "no_defender_monitoring worse than SecTOW",
                                           "SFT on refusals over-refuses more than SecTOW"}
    for c in found:
        assert c["holds"] == c["seeds"]["0"]  # one seed: pooled and per seed are the same figures
        assert c["holds"] == (c["higher"]["interval"][0] > c["lower"]["interval"][1])
    page = (seeds_folder / "report" / "report.html").read_text()
    assert "on every seed" in page and "seed 0" in page and "Claims" in page
    assert (ablation / "report" / "report.html").is_file()  # each seed keeps its own report


def test_pooling_counts_every_seed(ablation: Path):
    rows = json.loads((ablation / "comparison.json").read_text())
    pooled = {row["method"]: row for row in across_seeds({0: rows, 7: rows})}
    sectow = pooled["SecTOW"]
    assert set(sectow["seeds"]) == {"0", "7"}
    one = sectow["seeds"]["0"]["asr"]
    assert sectow["asr"]["n"] == 2 * one["n"] and sectow["asr"]["value"] == pytest.approx(one["value"], abs=1e-4)
    low, high = sectow["asr"]["interval"]
    assert one["interval"][0] <= low <= high <= one["interval"][1]  # twice the trials: a narrower interval
    assert all(set(c["seeds"]) == {"0", "7"} for c in claims(list(pooled.values())))


def test_bad_seeds_write_nothing(micro_run: Path, tmp_path, capsys):
    assert main(["ablate", "--seeds", "0,x", *ablate_args(tmp_path)]) == 2
    assert "--seeds '0,x'" in capsys.readouterr().err
    assert main(["ablate", "--seeds", "1,2", "--sectow-run", str(micro_run), *ablate_args(tmp_path)]) == 2
    assert "a run of seed 0, which is not among --seeds 1,2" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_reused_run_must_match(micro_run: Path, tmp_path, capsys):
    assert main(["ablate", "--sectow-run", str(micro_run), *ablate_args(tmp_path, "iterations=3")]) == 2
    assert "'iterations'" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
