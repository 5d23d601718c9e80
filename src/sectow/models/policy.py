"""Load a policy (defender or attacker) from a local folder, safely, and save it back.
Any image-text-to-text model of transformers works; LoRA adapters are added per training phase and
merged back when the phase ends, so every checkpoint is a plain model folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from transformers import AutoModelForImageTextToText

from sectow import timing
from sectow.config import LoraSettings, PolicySettings
from sectow.errors import UserError
from sectow.models.folder import check_model_folder
from sectow.models.processor import load_processor


@timing.timed("model_io")
def load_policy(folder: Path, settings: PolicySettings):
    """(model, processor) from a model folder; safetensors unless `settings.allow_pickle`, no remote code."""
    folder = Path(folder)
    check_model_folder(folder, settings.allow_pickle)
    dtype = torch.bfloat16 if settings.bf16 and torch.cuda.is_available() else torch.float32
    use_safetensors = None if settings.allow_pickle else True  # None: safetensors if present, else pickle
    try:
        model = AutoModelForImageTextToText.from_pretrained(folder, dtype=dtype, use_safetensors=use_safetensors,
                                                            trust_remote_code=False)
    except ValueError as err:
        raise UserError(f"{folder}: cannot load as an image-text-to-text model ({str(err).splitlines()[0]})") from None
    if torch.cuda.is_available():
        model.to("cuda")
    if settings.gradient_checkpointing:
        model.activation_checkpointing_enable()  # non-reentrant by default
    return model, load_processor(folder)


def with_lora(model, lora: LoraSettings | None):
    """Wrap in fresh LoRA adapters (restricted to the language model by the regex), or return as is."""
    if lora is None:
        return model
    from peft import LoraConfig, get_peft_model

    return get_peft_model(model, LoraConfig(r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                                            target_modules=lora.target_modules, task_type="CAUSAL_LM"))


def merged(model):
    """The plain model behind a LoRA wrapper, adapters merged in."""
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model


@timing.timed("model_io")
def save_policy(model, processor, folder: Path) -> None:
    """Write a complete model folder under a temporary name, then rename it into place."""
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    processor.save_pretrained(tmp)
    # A folder already there was left by a phase killed before it was recorded complete: redo it.
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
