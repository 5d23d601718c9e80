"""Tracking: `tracking.report_to` is checked against transformers' integrations, reaches every trainer, and
the loop's own per-iteration figures go to the same tracker. TensorBoard works offline: the micro config
runs with it and its event files are read back. With the default, nothing is tracked anywhere."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import micro_args
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from sectow import tracking
from sectow.cli import main
from sectow.config import TrackingSettings, load_config
from sectow.errors import UserError


def scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_phase_figures_read_each_phase_kind():
    rate = lambda v, n=10: {"value": v, "n": n, "interval": [0.0, 1.0]}  # noqa: E731
    step, figures = tracking.phase_figures("evaluate_iteration_2", {
        "asr": rate(0.25), "orr": rate(0.0), "accuracy": rate(1.0), "asr_unseen_form": rate(0.5),
        "asr_by_form": {"list": rate(0.3)}, "timing": {"wall_s": 4.5}})
    assert step == 2 and figures == {"evaluation/asr": 0.25, "evaluation/orr": 0.0, "evaluation/accuracy": 1.0,
                                     "evaluation/asr_unseen_form": 0.5, "evaluation/asr_by_form/list": 0.3,
                                     "time/evaluate_iteration_s": 4.5}
    assert tracking.phase_figures("evaluate_cold_start", {"asr": rate(0.8)}) == (0, {"evaluation/asr": 0.8})
    assert tracking.phase_figures("pool_1", {"iteration": 1, "attacker_success_rate": 0.4, "pool_size": 30,
                                             "candidates": 75, "outcomes": {"success": 30, "refused": 45}}) == \
        (1, {"pool/attacker_success_rate": 0.4, "pool/size": 30.0, "pool/candidates": 75.0,
             "pool/outcomes/success": 30.0, "pool/outcomes/refused": 45.0})
    assert tracking.phase_figures("defender_grpo_3", {"iteration": 3, "accepted": True, "kept_step": 30, "pool_open": 40,
                                                      "frac_reward_zero_std": 0.25, "monitor": [
        {"step": 0, "orr": 0.0, "asr": 0.5, "passed": True}, {"step": 30, "orr": 0.05, "asr": 0.3, "passed": True},
        {"step": 60, "orr": 0.2, "asr": 0.1, "passed": False}]}) == \
        (3, {"defender/accepted": 1.0, "defender/monitor_checks": 3.0, "defender/pool_open": 40.0,
             "defender/frac_reward_zero_std": 0.25, "defender/validation_orr": 0.05, "defender/validation_asr": 0.3})
    assert tracking.phase_figures("cold_start_defender", {"rows": 100, "timing": {"wall_s": 2.0}}) == \
        (0, {"time/cold_start_defender_s": 2.0})


@pytest.mark.parametrize("value, message", [
    ("tensorbord", "did you mean 'tensorboard'"), ("all", "name the trackers"), ("[none]", "name the trackers"),
])
def test_report_to_is_checked_when_the_config_is_read(value, message):
    with pytest.raises(UserError, match=message):
        load_config(None, [f"tracking.report_to={value}"])


def test_a_tracker_that_is_not_installed_is_refused():
    from transformers.integrations.integration_utils import get_available_reporting_integrations

    missing = next((n for n in ("dvclive", "flyte", "dagshub", "swanlab") if n not in get_available_reporting_integrations()), None)
    if missing is None:
        pytest.skip("every candidate tracker is installed here")
    with pytest.raises(UserError, match=rf"tracking.report_to: '{missing}' is not installed"):
        load_config(None, [f"tracking.report_to={missing}"])


def test_trainers_report_nowhere_by_default_and_to_the_run_when_tracked(tmp_path):
    from sectow.training.common import trainer_kwargs

    config = load_config(None, [])
    assert config.tracking.report_to == [] and load_config(None, ["tracking.report_to=none"]).tracking.report_to == []
    assert trainer_kwargs("out", 0, config.defender_sft, bf16=False)["report_to"] == []
    folder = tmp_path / "my-run"
    folder.mkdir()
    tracking.start(TrackingSettings(report_to=["tensorboard"], project="p"), folder)
    try:
        kwargs = trainer_kwargs("out", 0, config.defender_sft, bf16=False)
        assert (kwargs["report_to"], kwargs["run_name"], kwargs["project"]) == (["tensorboard"], "my-run", "p")
    finally:
        tracking.finish()
    assert trainer_kwargs("out", 0, config.defender_sft, bf16=False)["report_to"] == []
    with pytest.raises(UserError, match="'run_name' is set by sectow"):
        load_config(None, ["defender_sft.trl={run_name: x}"])


def test_untracked_run_leaves_no_events(micro_run):
    assert not (micro_run / "tracking").exists()
    assert not list((micro_run / "trainer").glob("*/runs"))


def test_micro_run_with_tensorboard(tmp_path):
    """The micro config with TensorBoard: the loop's figures per iteration and every trainer's logs, offline."""
    assert main(["run", *micro_args(tmp_path, "tracking.report_to=tensorboard")]) == 0
    run = (tmp_path / "latest").resolve()
    summary = json.loads((run / "summary.json").read_text())
    loop = scalars(run / "tracking")
    evaluations = [summary["cold_start"]] + summary["iterations"]
    assert [step for step, _ in loop["loop/evaluation/asr"]] == [0, 1, 2]
    for key in ("asr", "orr", "accuracy"):
        assert [v for _, v in loop[f"loop/evaluation/{key}"]] == pytest.approx([e[key]["value"] for e in evaluations])
    assert [(s, v) for s, v in loop["loop/pool/size"]] == [(it["iteration"], it["pool_size"]) for it in summary["iterations"]]
    assert [v for _, v in loop["loop/pool/attacker_success_rate"]] == \
        pytest.approx([it["attacker_success_rate"] for it in summary["iterations"]])
    metrics = {m["phase"]: m for m in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())}
    assert loop["loop/defender/accepted"] == [(k, float(metrics[f"defender_grpo_{k}"]["accepted"])) for k in (1, 2)]
    assert [s for s, _ in loop["loop/defender/monitor_checks"]] == [1, 2]
    assert [s for s, _ in loop["loop/defender/frac_reward_zero_std"]] == [1, 2]
    assert [s for s, _ in loop["loop/attacker/train_success_rate"]] == [1, 2]
    trainers = {p.parent.parent.name: p for p in (run / "trainer").glob("*/runs/*")}
    assert set(trainers) == {"cold_start_defender", "cold_start_attacker", "attacker_grpo_1", "attacker_grpo_2",
                             "defender_grpo_1", "defender_grpo_2"}
    assert "train/loss" in scalars(trainers["cold_start_defender"])
    assert "train/train_loss" in scalars(trainers["defender_grpo_2"])
    assert tracking._active is None  # the run closed its tracker
