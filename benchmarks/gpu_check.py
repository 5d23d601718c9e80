"""GPU check: a few GRPO steps of sectow's own `grpo_train` on a randomly initialised model with
Qwen2.5-VL-3B-Instruct's exact architecture (3.75B parameters), rolled out with HF generate and, where
vLLM imports, with vLLM in colocate mode. Nothing is downloaded: the architecture is written out below
and the tokenizer is built locally.

    python benchmarks/gpu_check.py            # one GPU; sized to finish within 8 minutes on an H200
    python benchmarks/gpu_check.py --smoke    # the tiny default architecture, 1 step: runs on CPU

Prints `name value` lines, per engine (`hf_...`, `vllm_...`):
- rollout_tokens_per_s: completion tokens generated / time from step start to the reward call.
- step_seconds: mean wall time of an optimizer step (rollout + reward + forward/backward + update),
  the first step left out as warm-up when there are several.
- peak_gpu_memory_gib: torch.cuda.max_memory_allocated over the engine's run (vLLM colocate allocates
  through torch in-process, so its weights and KV cache are counted).
- mfu: achieved share of the GPU's bf16 dense peak (--peak-tflops, 989 for an H200). FLOPs are
  estimated as 6 * P * trained tokens (prompt + completion) + 2 * P * generated tokens per step, P the
  language model's parameters (embeddings included, vision tower left out); gradient checkpointing's
  recompute and attention's quadratic term are not counted, so the true utilisation is somewhat higher.
Writes the same figures to benchmarks/results/gpu_check.json (or --json)."""

from __future__ import annotations

import argparse
import gc
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from transformers import Qwen2_5_VLConfig, TrainerCallback  # noqa: E402

from sectow.config import GrpoSettings, PolicySettings, RewardSettings  # noqa: E402
from sectow.world.miniature import build_world, corpus  # noqa: E402
from sectow.judges.refusal import RefusalJudge  # noqa: E402
from sectow.models.policy import load_policy  # noqa: E402
from sectow.models.tiny import build_tiny_model, tiny_config  # noqa: E402
from sectow.models.vllm_generation import vllm_unavailable  # noqa: E402
from sectow.training.grpo import grpo_train  # noqa: E402
from sectow.training.players import DefenderReward  # noqa: E402
from sectow.training.players import defender_grpo_row  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "gpu_check.json"
H200_BF16_DENSE_TFLOPS = 989.0


def qwen25_vl_3b_config() -> Qwen2_5_VLConfig:
    """The architecture of Qwen/Qwen2.5-VL-3B-Instruct, from its public config.json. Its special-token
    ids are replaced by the local tokenizer's (build_tiny_model); its vocab_size (151936) is kept, and the
    local tokenizer is padded to it, so the embedding and LM head have their real size."""
    return Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=151936, hidden_size=2048, intermediate_size=11008, num_hidden_layers=36,
            num_attention_heads=16, num_key_value_heads=2, hidden_act="silu", max_position_embeddings=128000,
            rms_norm_eps=1e-6, use_sliding_window=False, sliding_window=32768, max_window_layers=70,
            tie_word_embeddings=True, attention_dropout=0.0, bos_token_id=None, eos_token_id=None,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
        ),
        vision_config=dict(
            depth=32, hidden_size=1280, hidden_act="silu", intermediate_size=3420, num_heads=16, in_channels=3,
            patch_size=14, spatial_merge_size=2, temporal_patch_size=2, tokens_per_second=2, window_size=112,
            out_hidden_size=2048, fullatt_block_indexes=[7, 15, 23, 31],
        ),
        tie_word_embeddings=True,
    )


class StepClock(TrainerCallback):
    """Per optimizer step: wall time, rollout time (until the reward is called) and token counts."""

    def __init__(self):
        self.steps: list[dict] = []

    def sync(self) -> float:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter()

    def on_step_begin(self, args, state, control, **kwargs):
        self.steps.append({"begin": self.sync(), "tokens_before": state.num_input_tokens_seen})

    def rollout_done(self, generated_tokens: int) -> None:
        self.steps[-1].update(rollout_seconds=self.sync() - self.steps[-1]["begin"], generated=generated_tokens)

    def on_step_end(self, args, state, control, **kwargs):
        step = self.steps[-1]
        step.update(seconds=self.sync() - step["begin"], trained=state.num_input_tokens_seen - step["tokens_before"])


class ClockedReward:
    """The defender's real reward, telling the clock when the rollout it scores has finished."""

    __name__ = "defender_reward"

    def __init__(self, reward, clock: StepClock):
        self.reward, self.clock = reward, clock

    def __call__(self, prompts, completions, completion_ids, **kwargs):
        self.clock.rollout_done(sum(len(ids) for ids in completion_ids))
        return self.reward(prompts=prompts, completions=completions, **kwargs)


def build_model(folder: Path, smoke: bool) -> None:
    """Random weights, built where they will run: bf16 on the GPU (3.75B parameters initialise in seconds
    there, and config.json then records bfloat16 for vLLM), fp32 on CPU."""
    on_gpu = torch.cuda.is_available()
    config = tiny_config(vocab_size=4096) if smoke else qwen25_vl_3b_config()
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16 if on_gpu else torch.float32)
    try:
        with torch.device("cuda" if on_gpu else "cpu"):
            # 448x448 images cost 256 tokens each, a typical share of a real multimodal prompt.
            max_pixels = 112 * 112 if smoke else 448 * 448
            build_tiny_model(folder, corpus(), seed=0, config=config, image_max_pixels=max_pixels)
    finally:
        torch.set_default_dtype(previous)
    gc.collect()
    if on_gpu:
        torch.cuda.empty_cache()


def run_engine(engine: str, folder: Path, rows: list[dict], settings: GrpoSettings, max_completion_length: int,
               work: Path, peak_tflops: float) -> dict:
    on_gpu = torch.cuda.is_available()
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
    model, processor = load_policy(folder, PolicySettings(bf16=True, gradient_checkpointing=True))
    params = sum(p.numel() for p in model.model.language_model.parameters())
    clock = StepClock()
    reward = ClockedReward(DefenderReward(RefusalJudge(), RewardSettings()), clock)
    used = grpo_train(model, processor, rows, reward, work / f"trainer-{engine}",
                      settings.model_copy(update={"use_vllm": engine != "hf-generate"}),
                      max_completion_length=max_completion_length, seed=0, bf16=True, callbacks=[clock]).engine
    measured = clock.steps[1:] if len(clock.steps) > 1 else clock.steps
    total = {key: sum(s[key] for s in measured) for key in ("seconds", "rollout_seconds", "trained", "generated")}
    flops = 6 * params * total["trained"] + 2 * params * total["generated"]
    figures = {
        "engine_used": used,
        "rollout_tokens_per_s": round(total["generated"] / total["rollout_seconds"], 1),
        "step_seconds": round(total["seconds"] / len(measured), 3),
        "trained_tokens_per_step": round(total["trained"] / len(measured)),
        "generated_tokens_per_step": round(total["generated"] / len(measured)),
        "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if on_gpu else None,
        "mfu": round(flops / total["seconds"] / (peak_tflops * 1e12), 4),
    }
    del model, processor
    gc.collect()
    if on_gpu:
        torch.cuda.empty_cache()
    return figures


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny architecture, 1 step, CPU is fine")
    parser.add_argument("--steps", type=int, default=None, help="GRPO steps per engine (default 4; smoke 1)")
    parser.add_argument("--peak-tflops", type=float, default=H200_BF16_DENSE_TFLOPS, help="the GPU's bf16 dense peak")
    parser.add_argument("--json", type=Path, default=RESULTS, help="where the figures go")
    args = parser.parse_args(argv)
    smoke = args.smoke
    steps = args.steps or (1 if smoke else 4)
    # Full check: 8 prompts x 8 completions of 256 tokens per step; smoke: 2 x 2 of 8 tokens.
    settings = GrpoSettings(steps=steps, learning_rate=1e-6, batch_size=4 if smoke else 64,
                            num_generations=2 if smoke else 8, beta=0.0, vllm_mode="colocate")
    max_completion_length = 8 if smoke else 256
    engines = ["hf-generate"] + ([] if smoke or vllm_unavailable() else ["vllm-colocate"])

    start = time.perf_counter()
    figures: dict = {"device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
                     "architecture": "tiny default" if smoke else "Qwen2.5-VL-3B-Instruct (random init)",
                     "steps": steps, "batch_size": settings.batch_size, "num_generations": settings.num_generations,
                     "max_completion_length": max_completion_length, "peak_tflops": args.peak_tflops}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        build_model(work / "model", smoke)
        world = build_world(work / "world", seed=0, questions_per_split=(16, 4), image_size=56 if smoke else 448)
        samples = world.harmful_train[:32] + world.benign_train[:32]
        rows = [defender_grpo_row(s) for s in samples]
        figures["build_seconds"] = round(time.perf_counter() - start, 1)
        for engine in engines:
            prefix = "hf" if engine == "hf-generate" else "vllm"
            try:
                result = run_engine(engine, work / "model", rows, settings, max_completion_length, work,
                                    args.peak_tflops)
            except Exception as err:  # noqa: BLE001 - one engine failing must not hide the other's figures
                result = {"error": f"{type(err).__name__}: {err}"}
            figures.update({f"{prefix}_{key}": value for key, value in result.items()})
    figures["total_seconds"] = round(time.perf_counter() - start, 1)
    for name, value in figures.items():
        print(name, value)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    main()
