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
import re
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from sectow.atomic import replacing
from sectow.errors import UserError
from sectow.jsonl import DuplicateKey, json_lines, load_json
from sectow.paths import missing

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
    form: str = "plain"  # how the request is presented: plain, or a composition ("dan+story", "split", "figstep", ...)
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
    """Join `relative` onto `root`, refusing paths that escape it (../, absolute, symlinks out), that hold a
    NUL byte, or that run into a symbolic link loop."""
    if "\0" in relative:
        raise UserError(f"{where}: image path {relative!r} contains a NUL byte")
    try:
        root = root.resolve()
        candidate = (root / relative).resolve()
    except (RuntimeError, OSError) as err:  # RuntimeError: a symlink loop, before Python 3.13
        raise UserError(f"{where}: image path {relative!r} cannot be followed ({err})") from None
    if Path(relative).is_absolute() or not candidate.is_relative_to(root):
        raise UserError(f"{where}: image path {relative!r} leaves the dataset folder {root}")
    return candidate


def read_samples(path: str | Path) -> list[Sample]:
    """Read a JSONL file of samples; every problem names file:line. Ids are unique within the file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(missing(path, "data file") if not path.exists() else f"{path}: not a file")
    samples: list[Sample] = []
    try:
        lines = json_lines(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except OSError as err:
        raise UserError(f"{path}: unreadable ({err.strerror})") from None
    first_line: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = load_json(line)
        except DuplicateKey as err:
            raise UserError(f"{where}: {err}") from None
        except (json.JSONDecodeError, RecursionError) as err:
            raise UserError(f"{where}: bad JSON ({getattr(err, 'msg', 'nested too deeply')})") from None
        if not isinstance(row, dict):
            raise UserError(f"{where}: expected a JSON object")
        sample = sample_from_row(row, path.parent, where)
        if sample.id in first_line:
            raise UserError(f"{where}: sample id {sample.id!r} is used again (first on line {first_line[sample.id]}); "
                            "ids must be unique")
        first_line[sample.id] = number
        samples.append(sample)
    return samples


# The type each optional field must have (None is allowed for all of them), and what it means for the message.
OPTIONAL_FIELDS = {"image": (str, "a path string"), "answer": (str, "an option letter"),
                   "category": (str, "a string"), "intent": (str, "a string"), "form": (str, "a string"),
                   "seed_id": (str, "a string"), "extra": (dict, "a JSON object")}
MAX_ANSWER_CHARS = 100
WORD = re.compile(r"\w")
OPTION_LINE = re.compile(r"^\s*\(?([A-Z])[).:]\s", re.MULTILINE)  # "(A) red", "A. red", "A) red", "A: red"
MAX_QUERY_CHARS = 20_000  # about 5,000 tokens: longer rows crashed training after the run folder was made
MAX_ID_CHARS = 200  # ids name files (a held-out jailbreak's image is <id>-<form>.png)


def _unencodable(value) -> str | None:
    """The first text inside `value` that UTF-8 cannot encode (a lone surrogate from a \\ud800 escape)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value
        return None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = _unencodable(key) if isinstance(key, str) else None
        found = found or _unencodable(item)
        if found is not None:
            return found
    return None


def sample_from_row(row: dict, root: Path, where: str) -> Sample:
    """A Sample from a JSONL row, every field checked for its type and meaning; `where` is file:line."""
    known = {f for f in Sample.__dataclass_fields__}
    unknown = sorted(set(row) - known)
    if unknown:
        raise UserError(f"{where}: unknown field {unknown[0]!r} (fields: {', '.join(sorted(known))})")
    for required in ("id", "query", "label"):
        if not isinstance(row.get(required), str) or not row[required]:
            raise UserError(f"{where}: field {required!r} is missing or not a non-empty string")
    for name, (kind, what) in OPTIONAL_FIELDS.items():
        if row.get(name) is not None and not isinstance(row[name], kind):
            raise UserError(f"{where}: field {name!r} must be {what} or null, got {row[name]!r:.40}")
    text = _unencodable(row)
    if text is not None:
        raise UserError(f"{where}: text {text!r:.40} cannot be written as UTF-8 (a lone surrogate escape?)")
    if row["label"] not in LABELS:
        raise UserError(f"{where}: label {row['label']!r} must be one of {', '.join(LABELS)}")
    if len(row["query"]) > MAX_QUERY_CHARS:
        raise UserError(f"{where}: query is {len(row['query'])} characters; at most {MAX_QUERY_CHARS}")
    sample_id = row["id"]
    if len(sample_id) > MAX_ID_CHARS or any(c in sample_id for c in "/\\\0") or sample_id.startswith("."):
        raise UserError(f"{where}: id {sample_id!r:.60} must be at most {MAX_ID_CHARS} characters, without / \\ "
                        "or NUL, and not start with a dot (ids name image files)")
    if row.get("form") == "":
        raise UserError(f"{where}: field 'form' must not be empty (plain, or a jailbreak form)")
    answer = row.get("answer")
    if answer is not None:
        if row["label"] != "benign":
            raise UserError(f"{where}: field 'answer' is for benign multiple-choice questions, not {row['label']} samples")
        # A multiple-choice question (its query lists options) takes an option letter; any other question a
        # short exact answer, alternatives split by '|', each with a word in it (a reply is matched on words).
        options = OPTION_LINE.findall(row["query"])
        letter = len(answer) == 1 and "A" <= answer <= "Z"
        if options and not letter:
            raise UserError(f"{where}: answer {answer!r} must be one option letter (A-Z): the query lists options "
                            f"({', '.join(options)})")
        if options and answer not in options:
            raise UserError(f"{where}: answer {answer!r} is not among the options the query lists ({', '.join(options)})")
        if not letter and (len(answer) > MAX_ANSWER_CHARS or not all(WORD.search(a) for a in answer.split("|"))):
            raise UserError(f"{where}: answer {answer!r:.60} must be an option letter (A-Z) or a short exact answer "
                            f"(at most {MAX_ANSWER_CHARS} characters; alternatives split by '|', none empty)")
    image = row.get("image")
    if image is not None:
        image_path = resolve_inside(root, image, where)
        if not image_path.is_file():
            raise UserError(f"{where}: image {image!r} not found under {root}")
        row = {**row, "image": str(image_path)}
    return Sample(**{key: value for key, value in row.items() if value is not None})


def write_samples(path: Path, samples: list[Sample]) -> None:
    """Write samples as JSONL atomically (temp name, then rename); image paths relative to the file."""
    with replacing(path) as tmp, tmp.open("w", encoding="utf-8") as out:
        for sample in samples:
            out.write(json.dumps(sample.to_row(relative_to=path.parent)) + "\n")
