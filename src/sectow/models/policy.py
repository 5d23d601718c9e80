"""Load a policy (defender or attacker) from a local folder, safely, and save it back.
Any image-text-to-text model of transformers works, and so does any causal LM (a text-only player;
`takes_images(processor)` tells which). LoRA adapters are added per training phase and merged back when
the phase ends, so every checkpoint is a plain model folder."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

from sectow import timing
from sectow.config import LoraSettings, PolicySettings
from sectow.errors import UserError
from sectow.models.folder import ModelKind, check_model_folder, folder_kind
from sectow.models.processor import load_processor

AUTO_CLASSES = {ModelKind.VISION_LANGUAGE: (AutoModelForImageTextToText, "an image-text-to-text model"),
                ModelKind.CAUSAL_LM: (AutoModelForCausalLM, "a causal LM")}
# The config's default target regex keeps adapters in a VLM's language model, out of its vision tower. A
# causal LM is all language model and has no module named so: for it the default means the same
# projections wherever they are.
VISION_LANGUAGE_PREFIX = ".*language_model"


@timing.timed("model_io")
def load_policy(folder: Path, settings: PolicySettings):
    """(model, processor) from a model folder; safetensors unless `settings.allow_pickle`, no remote code.
    A vision-language folder gives an image-text-to-text model and its processor, a causal-LM folder a
    causal LM and its tokenizer (see `takes_images`)."""
    folder = Path(folder)
    check_model_folder(folder, settings.allow_pickle)
    auto_class, what = AUTO_CLASSES[folder_kind(folder)]
    dtype = torch.bfloat16 if settings.bf16 and torch.cuda.is_available() else torch.float32
    use_safetensors = None if settings.allow_pickle else True  # None: safetensors if present, else pickle
    try:
        model = auto_class.from_pretrained(folder, dtype=dtype, use_safetensors=use_safetensors, trust_remote_code=False)
    except ValueError as err:
        raise UserError(f"{folder}: cannot load as {what} ({str(err).splitlines()[0]})") from None
    if torch.cuda.is_available():
        model.to("cuda")
    if settings.gradient_checkpointing:
        model.activation_checkpointing_enable()  # non-reentrant by default
    return model, load_processor(folder)


def lora_target_modules(model, lora: LoraSettings) -> str:
    """The regex of the modules that get adapters: `lora.target_modules`, except that the default's
    language-model restriction is dropped for a causal LM (see VISION_LANGUAGE_PREFIX)."""
    default = LoraSettings.model_fields["target_modules"].default
    has_vision_tower = getattr(model.config, "vision_config", None) is not None
    if lora.target_modules == default and not has_vision_tower:
        return default.removeprefix(VISION_LANGUAGE_PREFIX)
    return lora.target_modules


def with_lora(model, lora: LoraSettings | None):
    """Wrap in fresh LoRA adapters (in the language model only, by the regex), or return as is."""
    if lora is None:
        return model
    from peft import LoraConfig, get_peft_model

    target_modules = lora_target_modules(model, lora)
    try:
        return get_peft_model(model, LoraConfig(r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                                                target_modules=target_modules, task_type="CAUSAL_LM"))
    except ValueError as err:
        if "not found in the base model" not in str(err):
            raise
        raise UserError(f"lora.target_modules {target_modules!r} matches no module of this "
                        f"{model.config.model_type} model") from None


# The vision tower and projector of the families sectow runs (Qwen2.5-VL's `visual`, LLaVA's `vision_tower` and
# `multi_modal_projector`, Idefics3's `vision_model` and `connector`).
VISION_MODULES = re.compile(r"(^|\.)(visual|vision_tower|vision_model|multi_modal_projector|connector)\.")


def for_training(model, policy: PolicySettings):
    """The model as a training phase takes it: the vision tower and projector frozen unless
    `policy.train_vision` (full fine-tuning at a language model's learning rate erases what a vision tower
    encodes), then wrapped in LoRA adapters when configured."""
    if not policy.train_vision:
        for name, parameter in model.named_parameters():
            if VISION_MODULES.search(name):
                parameter.requires_grad_(False)
    return with_lora(model, policy.lora)


def merged(model):
    """The plain model behind a LoRA wrapper, adapters merged in."""
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model


@timing.timed("model_io")
def save_policy(model, processor, folder: Path) -> None:
    """Write a complete model folder under a temporary name, then rename it into place. A model with a NaN or
    infinite weight is refused: its phase fails instead of being recorded with figures of a broken model."""
    broken = next((name for name, weight in model.state_dict().items()
                   if weight.is_floating_point() and not bool(torch.isfinite(weight).all())), None)
    if broken is not None:
        raise UserError(f"{folder.name}: the trained model has non-finite weights (first: {broken}); lower the "
                        "learning rate, or check the trl: settings")
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    processor.save_pretrained(tmp)
    # A folder already there was left by a phase killed before it was recorded complete: redo it.
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
