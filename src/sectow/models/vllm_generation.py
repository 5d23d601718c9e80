"""Batched generation with vLLM, for sampling that trains nothing (evaluation, pool generation): the same
call as `generation.generate`, but vLLM loads the model itself from its folder. `generation_engine`
decides between the two, and is also how GRPO rollouts pick theirs."""

from __future__ import annotations

import gc
import logging
from pathlib import Path

import torch
from PIL import Image

from sectow import timing
from sectow.data.schema import load_image
from sectow.models.generation import chat_text
from sectow.models.processor import takes_images

log = logging.getLogger(__name__)


def vllm_unavailable() -> str | None:
    """Why vLLM cannot run here, or None when it can."""
    try:
        import vllm  # noqa: F401
    except ImportError:
        return "vllm is not installed"
    if not torch.cuda.is_available():
        return "no GPU is visible"
    return None


def generation_engine(use_vllm: bool) -> str:
    """'vllm' when asked for and possible, else 'hf-generate'; a fallback is logged with its reason."""
    if not use_vllm:
        return "hf-generate"
    reason = vllm_unavailable()
    if reason:
        log.warning("use_vllm is set but %s: generating with HF generate instead", reason)
        return "hf-generate"
    return "vllm"


@timing.timed("generation")
def generate(model_dir: Path, processor, prompts: list[tuple[str, str | Image.Image | None]], *, max_new_tokens: int,
             batch_size: int = 32, temperature: float = 0.0, seed: int = 0, desc: str | None = None,
             gpu_memory_utilization: float = 0.5) -> list[str]:
    """Replies to (text, image or image path or None) prompts; greedy when temperature is 0.

    `batch_size` is taken for the same call shape as HF generate's and left to vLLM, which schedules
    its own batches by free KV-cache memory. The engine lives for this call only: it holds
    `gpu_memory_utilization` of the GPU, which the training that follows pool generation needs back.
    The prompt text comes from the same chat template as HF generate's; a text-only model's images are
    dropped, as HF generate drops them."""
    from vllm import LLM, SamplingParams

    vision = takes_images(processor)
    requests = []
    for text, image in prompts:
        request = {"prompt": chat_text(processor, text, image is not None)}
        if vision and image is not None:
            request["multi_modal_data"] = {"image": image if isinstance(image, Image.Image) else load_image(image)}
        requests.append(request)
    # One engine-wide seed, not a per-request one: identical prompts (several samples per seed) must
    # still draw different replies.
    llm = LLM(model=str(model_dir), seed=seed, gpu_memory_utilization=gpu_memory_utilization,
              **({"limit_mm_per_prompt": {"image": 1}} if vision else {}))
    try:
        # HF generate keeps the folder's generation_config for what it is not told (Qwen2.5-VL-Instruct's
        # repetition_penalty of 1.05); vLLM only applies those defaults to calls without sampling params.
        defaults = llm.get_default_sampling_params()
        sampling = SamplingParams(temperature=temperature, top_p=1.0, max_tokens=max_new_tokens,
                                  repetition_penalty=defaults.repetition_penalty)
        outputs = llm.generate(requests, sampling, use_tqdm=desc is not None)
    finally:
        del llm
        gc.collect()
        torch.cuda.empty_cache()
    return [output.outputs[0].text.strip() for output in outputs]
