"""The sample every layer passes around, and the JSONL file format users bring their own data in.

A JSONL row is one object per line:
    {"id": "s1", "image": "img/s1.png", "query": "...", "label": "harmful" | "benign",
     "answer": "B" (benign questions only: an option letter, or a short exact answer such as "Paris"),
     "category": "...", "intent": "...", "form": "plain"}
`image` is a path relative to the JSONL file (or null for text-only); paths may not leave the
file's folder. Only id, query and label are required.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from sectow.atomic import replacing
from sectow.errors import UserError

Label = Literal["harmful", "benign"]
LABELS = ("harmful", "benign")
MAX_IMAGE_PIXELS = 8192 * 8192  # larger images are refused as decompression bombs
MIN_IMAGE_SIDE = 8  # smaller is a placeholder (a 1x1 pixel), not a picture
MAX_ASPECT_RATIO = 200  # Qwen2.5-VL's processor (smart_resize) refuses more


@dataclass
class Sample:
    """One model input with its label. `intent` is the plain harmful request behind a jailbreak."""

    id: str
    query: str
    label: Label
    image: str | None = None  # absolute path to an image file, or None for text-only
    answer: str | None = None  # a benign question's option letter, or its short exact answer
    category: str | None = None
    intent: str | None = None
    form: str = "plain"  # how the request is presented: plain, roleplay, list, typography, ...
    seed_id: str | None = None
    extra: dict = field(default_factory=dict)

    def to_row(self, relative_to: Path | None = None) -> dict:
        row = asdict(self)
        if relative_to is not None and self.image is not None:
            row["image"] = str(Path(self.image).resolve().relative_to(relative_to.resolve()))
        if not row["extra"]:
            row.pop("extra")
        return row


def load_image(path: str | Path) -> Image.Image:
    """Open an image as 8-bit RGB, or raise a UserError naming the file: unreadable, a decompression bomb,
    or a shape Qwen2.5-VL's processor cannot take."""
    path = Path(path)
    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # below twice its limit PIL only warns
            with Image.open(path) as img:
                width, height = img.size
                if min(width, height) < MIN_IMAGE_SIDE or max(width, height) / min(width, height) > MAX_ASPECT_RATIO:
                    raise UserError(f"{path}: image is {width}x{height} pixels; sides of at least {MIN_IMAGE_SIDE} "
                                    f"and an aspect ratio of at most {MAX_ASPECT_RATIO} are needed")
                img.load()
                return to_rgb(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise UserError(f"{path}: refused as a possible decompression bomb ({err})") from None
    except (OSError, ValueError, SyntaxError) as err:
        raise UserError(f"{path}: unreadable image ({err.__class__.__name__}: {err})") from None


def to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N"):
        # 16-bit grey (older Pillow opens it as 32-bit "I"): PIL's convert clips every value above 255 to
        # white, so scale 0..65535 down to 0..255 instead.
        wide = np.clip(np.asarray(img, dtype=np.float64), 0, 65535)
        img = Image.fromarray(np.rint(wide / 257).astype(np.uint8))
    return img.convert("RGB")  # CMYK, palette, grey and alpha images by PIL's own rules


def save_image(image: Image.Image, path: Path, image_format: str = "PNG") -> str:
    """Write an image under a temporary name, then rename it into place: a crash leaves no half file."""
    with replacing(path) as tmp:
        image.save(tmp, format=image_format)
    return str(path)


def resolve_inside(root: Path, relative: str, where: str) -> Path:
    """Join `relative` onto `root`, refusing paths that escape it (../, absolute, symlinks out)."""
    root = root.resolve()
    candidate = (root / relative).resolve()
    if Path(relative).is_absolute() or not candidate.is_relative_to(root):
        raise UserError(f"{where}: image path {relative!r} leaves the dataset folder {root}")
    return candidate


def read_samples(path: str | Path) -> list[Sample]:
    """Read a JSONL file of samples; every problem names file:line."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such data file")
    samples: list[Sample] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise UserError(f"{where}: bad JSON ({err.msg})") from None
        if not isinstance(row, dict):
            raise UserError(f"{where}: expected a JSON object")
        samples.append(sample_from_row(row, path.parent, where))
    return samples


def sample_from_row(row: dict, root: Path, where: str) -> Sample:
    known = {f for f in Sample.__dataclass_fields__}
    unknown = sorted(set(row) - known)
    if unknown:
        raise UserError(f"{where}: unknown field {unknown[0]!r} (fields: {', '.join(sorted(known))})")
    for required in ("id", "query", "label"):
        if not isinstance(row.get(required), str) or not row[required]:
            raise UserError(f"{where}: field {required!r} is missing or not a non-empty string")
    if row["label"] not in LABELS:
        raise UserError(f"{where}: label {row['label']!r} must be one of {', '.join(LABELS)}")
    image = row.get("image")
    if image is not None:
        if not isinstance(image, str):
            raise UserError(f"{where}: field 'image' must be a path string or null")
        image_path = resolve_inside(root, image, where)
        if not image_path.is_file():
            raise UserError(f"{where}: image {image!r} not found under {root}")
        row = {**row, "image": str(image_path)}
    return Sample(**row)


def write_samples(path: Path, samples: list[Sample]) -> None:
    """Write samples as JSONL atomically (temp name, then rename); image paths relative to the file."""
    with replacing(path) as tmp, tmp.open("w", encoding="utf-8") as out:
        for sample in samples:
            out.write(json.dumps(sample.to_row(relative_to=path.parent)) + "\n")
