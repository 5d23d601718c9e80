"""What a model folder must hold for `load_policy`, checked from file headers and transformers'
architecture tables alone (no weights loaded), so a run or `sectow doctor` can refuse a bad folder in
a second. A folder is a vision-language model or a text-only causal LM (`ModelKind`)."""

from __future__ import annotations

import enum
import json
from pathlib import Path

from sectow.errors import UserError

GIB = 1024 ** 3
# The names from_pretrained looks for (no variants): anything else in a folder is not loaded.
SAFETENSORS_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")


# Bytes per element of each safetensors dtype (the format's own list).
DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1, "I16": 2, "U16": 2,
               "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8, "C64": 8}


def safetensors_bytes(file: Path) -> int:
    """Tensor bytes a safetensors file declares, from its header alone; raises ValueError for a file that
    is not safetensors, is shorter than its header says (a cut-off download), or whose tensors do not fit
    the bytes the header gives them (dtype size x shape must be each tensor's span, spans back to back)."""
    with file.open("rb") as handle:
        head = handle.read(8)
        size = int.from_bytes(head, "little")
        if len(head) < 8 or size > 100 * 1024 ** 2:
            raise ValueError("no safetensors header")
        header = json.loads(handle.read(size))
    if not isinstance(header, dict):
        raise ValueError("the header is not a JSON object")
    spans = []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        dtype, shape, (begin, end) = entry["dtype"], entry["shape"], entry["data_offsets"]
        if dtype not in DTYPE_BYTES or not all(isinstance(n, int) and n >= 0 for n in shape) \
                or not isinstance(begin, int) or not isinstance(end, int):
            raise ValueError(f"tensor {name!r}: unreadable dtype, shape or offsets")
        elements = 1
        for n in shape:
            elements *= n
        if end - begin != elements * DTYPE_BYTES[dtype]:
            raise ValueError(f"tensor {name!r} is {dtype} {shape}, {elements * DTYPE_BYTES[dtype]} bytes, but the "
                             f"header gives it {end - begin}")
        spans.append((begin, end))
    position = 0
    for begin, end in sorted(spans):
        if begin != position:
            raise ValueError(f"tensor bytes overlap or leave a gap at byte {begin}")
        position = end
    if file.stat().st_size < 8 + size + position:
        raise ValueError(f"truncated: {file.stat().st_size} bytes, the header needs {8 + size + position}")
    return position


def weight_files(folder: Path, names: tuple[str, str]) -> list[Path]:
    """The weight files of one format: the single file, or the shards its index names; [] when neither."""
    single, index = (folder / name for name in names)
    if single.is_file():
        return [single]
    if not index.is_file():
        return []
    try:
        return sorted({folder / shard for shard in json.loads(index.read_text())["weight_map"].values()})
    except (ValueError, KeyError, TypeError, AttributeError, OSError) as err:
        raise UserError(f"{index}: unreadable shard index ({err})") from None


class ModelKind(enum.Enum):
    """How a player takes its input: image + text, or text alone (a prompt's image is then dropped)."""
    VISION_LANGUAGE = "vision-language"
    CAUSAL_LM = "causal LM, text only"


IMAGE_SETTINGS = ("processor_config.json", "preprocessor_config.json")


def model_kind(model_type: str, has_image_settings: bool) -> ModelKind | None:
    """The kind transformers loads `model_type` as, or None when it is neither. Some types are both (Gemma 3,
    Llama 4): with image processor settings they are a vision-language model, else a causal LM."""
    from transformers.models.auto.modeling_auto import (MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
                                                        MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES)

    vision_language = model_type in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES
    if vision_language and (has_image_settings or model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES):
        return ModelKind.VISION_LANGUAGE
    return ModelKind.CAUSAL_LM if model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES else None


def folder_kind(folder: Path) -> ModelKind:
    """The kind of a folder that `check_model_folder` accepted."""
    model_type = json.loads((folder / "config.json").read_text(encoding="utf-8"))["model_type"]
    return model_kind(model_type, any((folder / f).is_file() for f in IMAGE_SETTINGS))


def sees_images(folder: Path | None) -> bool:
    """Whether the player in `folder` (None: the tiny default, a vision-language model) takes images."""
    return folder is None or folder_kind(folder) is ModelKind.VISION_LANGUAGE


def check_model_folder(folder: Path, allow_pickle: bool = False, flag: str | None = None) -> str:
    """Raise a UserError for anything that would stop `load_policy` on `folder`, reading file headers only,
    and describe the model in a line. `flag` is the config key that allows pickle weights, for the message."""
    if not folder.is_dir():
        raise UserError(f"{folder}: model folder not found")
    try:
        model_type = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type")
    except FileNotFoundError:
        raise UserError(f"{folder}: not a model folder (no config.json)") from None
    except (ValueError, AttributeError, OSError) as err:
        raise UserError(f"{folder}/config.json: not a readable JSON object ({err})") from None
    if not model_type:
        raise UserError(f"{folder}/config.json: no model_type, transformers cannot tell the architecture")
    has_image_settings = any((folder / f).is_file() for f in IMAGE_SETTINGS)
    kind = model_kind(str(model_type), has_image_settings)
    if kind is None:
        raise UserError(f"{folder}: model_type {model_type!r} is neither an image-text-to-text model nor a causal LM "
                        "that transformers can load")
    shards, weights = weight_files(folder, SAFETENSORS_WEIGHTS), "safetensors"
    if not shards:
        shards, weights = weight_files(folder, PICKLE_WEIGHTS), "pickle"
        if not shards:
            raise UserError(f"{folder}: no model weights ({' or '.join(SAFETENSORS_WEIGHTS)})")
        if not allow_pickle:
            # Unpickling can run any code the file's author chose.
            how = f"set {flag}=true to load it, only if you trust it" if flag else "pickle checkpoints are not loaded"
            raise UserError(f"{folder}: no *.safetensors weights; found {shards[0].name}, a pickle checkpoint: {how}")
    total = 0
    for shard in shards:
        if not shard.is_file():
            raise UserError(f"{shard}: weight file named by the shard index is missing")
        try:
            total += safetensors_bytes(shard) if weights == "safetensors" else shard.stat().st_size
        except (ValueError, KeyError, TypeError, IndexError, AttributeError, OSError) as err:
            raise UserError(f"{shard}: not a readable safetensors file ({err})") from None
    # A vision-language processor needs image settings (see models/processor.py); both kinds need a tokenizer.
    if kind is ModelKind.VISION_LANGUAGE and not has_image_settings:
        raise UserError(f"{folder}: no image processor settings (processor_config.json or preprocessor_config.json)")
    if not any((folder / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json")):
        raise UserError(f"{folder}: no tokenizer (tokenizer.json or tokenizer_config.json)")
    return f"{model_type} ({kind.value}), {len(shards)} {weights} file(s), {total / GIB:.1f} GiB"


CHAT_TEMPLATE_FILES = ("chat_template.jinja", "chat_template.json")


def check_chat_template(folder: Path) -> None:
    """Raise a UserError when a model folder has no chat template: sectow prompts every player as a chat
    (`apply_chat_template`), so such a folder would fail at its first prompt, after the run folder exists."""
    if any((folder / name).is_file() for name in CHAT_TEMPLATE_FILES):
        return
    for name in ("tokenizer_config.json", "processor_config.json"):
        try:
            settings = json.loads((folder / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(settings, dict) and settings.get("chat_template"):
            return
    raise UserError(f"{folder}: no chat template ({' or '.join(CHAT_TEMPLATE_FILES)}, or a chat_template in "
                    "tokenizer_config.json); sectow prompts its players as chats: use an instruct model's folder")
