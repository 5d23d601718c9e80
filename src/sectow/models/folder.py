"""What a model folder must hold for `load_policy`, checked from file headers alone (no torch, nothing
loaded), so a run or `sectow doctor` can refuse a bad folder in a second."""

from __future__ import annotations

import json
from pathlib import Path

from sectow.errors import UserError

GIB = 1024 ** 3
# The names from_pretrained looks for (no variants): anything else in a folder is not loaded.
SAFETENSORS_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")


def safetensors_bytes(file: Path) -> int:
    """Tensor bytes a safetensors file declares, from its header alone; raises ValueError for a file that
    is not safetensors or is shorter than its header says (a cut-off download)."""
    with file.open("rb") as handle:
        head = handle.read(8)
        size = int.from_bytes(head, "little")
        if len(head) < 8 or size > 100 * 1024 ** 2:
            raise ValueError("no safetensors header")
        header = json.loads(handle.read(size))
    end = max((entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"), default=0)
    if file.stat().st_size < 8 + size + end:
        raise ValueError(f"truncated: {file.stat().st_size} bytes, the header needs {8 + size + end}")
    return end


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
    shards, kind = weight_files(folder, SAFETENSORS_WEIGHTS), "safetensors"
    if not shards:
        shards, kind = weight_files(folder, PICKLE_WEIGHTS), "pickle"
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
            total += safetensors_bytes(shard) if kind == "safetensors" else shard.stat().st_size
        except (ValueError, KeyError, TypeError, IndexError, AttributeError, OSError) as err:
            raise UserError(f"{shard}: not a readable safetensors file ({err})") from None
    # The VLM processor needs image settings and a tokenizer (see models/processor.py).
    if not any((folder / f).is_file() for f in ("processor_config.json", "preprocessor_config.json")):
        raise UserError(f"{folder}: no image processor settings (processor_config.json or preprocessor_config.json)")
    if not any((folder / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json")):
        raise UserError(f"{folder}: no tokenizer (tokenizer.json or tokenizer_config.json)")
    return f"{model_type}, {len(shards)} {kind} file(s), {total / GIB:.1f} GiB"
