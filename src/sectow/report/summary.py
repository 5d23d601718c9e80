"""summary.json from a run's metrics: the cold start and every iteration evaluated so far, the final
defender, and the refusal-string set its refusals were matched with. The evaluation figures are
proportions ({"value", "n", "interval"})."""

from __future__ import annotations

EVALUATED = ("asr", "asr_unseen_form", "orr", "orr_unseen_form", "accuracy", "asr_by_group", "asr_by_form", "orr_by_group")


def summarize(metrics: list[dict]) -> dict:
    by_phase = {m["phase"]: m for m in metrics}
    cold = by_phase.get("evaluate_cold_start", {})
    iterations = []
    for phase, evaluated in by_phase.items():
        if phase.startswith("evaluate_iteration_"):
            k = int(phase.rsplit("_", 1)[1])
            pool = by_phase.get(f"pool_{k}", {})
            iterations.append({"iteration": k, **{key: evaluated.get(key) for key in EVALUATED},
                               "attacker_success_rate": pool.get("attacker_success_rate"),
                               "pool_size": pool.get("pool_size")})
    iterations.sort(key=lambda it: it["iteration"])
    final = by_phase.get(f"evaluate_iteration_{iterations[-1]['iteration']}") if iterations else cold
    return {"cold_start": {key: cold.get(key) for key in EVALUATED}, "iterations": iterations,
            "final_defender": final.get("defender"), "refusal_markers": final.get("refusal_markers")}
