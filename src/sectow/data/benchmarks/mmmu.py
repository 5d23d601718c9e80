"""MMMU and MMMU-Pro from their local parquet files (shared/benchmarks.md sections 4-5), with the
official direct-answer prompts. Images are embedded in the parquet; every image of each chosen question
is written to a cache folder (never inside the dataset root, which may be read-only) and the question
carries them all, in the order MMMU-Pro's reference inference feeds them."""

from __future__ import annotations

import ast
import hashlib
import io
import os
import re
import string
import tempfile
from abc import abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from sectow.data.benchmarks.base import MISSING_IMAGE, UNREADABLE_IMAGE, BenchmarkLoader, check_columns, skip
from sectow.data.schema import Sample
from sectow.errors import UserError

MMMU_CHOICE_INSTRUCTION = "Answer with the option's letter from the given choices directly."
MMMU_OPEN_INSTRUCTION = "Answer the question using a single word or phrase."
# MMMU-Pro prompts.yaml, "direct" mode.
PRO_STANDARD_INSTRUCTION = "Answer with the option letter from the given choices directly."
PRO_VISION_INSTRUCTION = (
    "Answer with the option letter from the given choices directly. The last line of your response "
    "should be of the following format: 'Answer: $LETTER' (without quotes) where LETTER is one of options."
)
IMAGE_COLUMN = re.compile(r"image(?:_(\d+))?")  # image_1 .. image_7 (MMMU), image (MMMU-Pro vision)
IMAGE_PLACEHOLDER = re.compile(r"<image\s+(\d+)>")
IMAGE_MARKER = "[image]"
# The order MMMU's scripts evaluate subjects in (eval/data_utils.py CAT_SHORT2LONG, by short name): its
# fallback guesses draw from one seeded generator in that order, rows in dataset order within a subject.
MMMU_SUBJECT_ORDER = (
    "Accounting", "Agriculture", "Architecture_and_Engineering", "Art", "Art_Theory", "Basic_Medical_Science",
    "Biology", "Chemistry", "Clinical_Medicine", "Computer_Science", "Design", "Diagnostics_and_Laboratory_Medicine",
    "Economics", "Electronics", "Energy_and_Power", "Finance", "Geography", "History", "Literature", "Manage",
    "Marketing", "Materials", "Math", "Mechanical_Engineering", "Music", "Pharmacy", "Physics", "Psychology",
    "Public_Health", "Sociology",
)
MALFORMED = "malformed"  # Sample.extra key: why the row's gold answer cannot be right ({"kind", "reason"})
GOLD_NOT_AN_OPTION = "gold answer not among the options"


def place_images(prompt: str) -> tuple[str, list[str]]:
    """MMMU-Pro's reference transformers inference (mmmu-pro/infer/infer_transformers.py, MMMU repo at
    commit 40b550c2, `replace_images_tokens` and `origin_mmmu_doc_to_visual`): every `<image k>` in the
    prompt, question and options alike, becomes the marker `[image]`, and the images follow the text
    in the order of those placeholders (`image_k` once per mention). Returns the text and that column
    order."""
    order = [f"image_{number}" for number in IMAGE_PLACEHOLDER.findall(prompt)]
    return IMAGE_PLACEHOLDER.sub(IMAGE_MARKER, prompt), order


def mmmu_prompt(question: str, options: Sequence[str]) -> str:
    """MMMU's prompt (configs/llava1.5.yaml formats `{}\\n{}\\nAnswer with ...` and `{}\\nAnswer the
    question ...`, filled by utils/data_utils.construct_prompt with `(A) text\\n` per option): one newline
    after the question, a blank line before the instruction of a multiple-choice question."""
    if not options:
        return f"{question}\n{MMMU_OPEN_INSTRUCTION}"
    lines = "".join(f"({letter}) {option}\n" for letter, option in zip(string.ascii_uppercase, options))
    return f"{question}\n{lines}\n{MMMU_CHOICE_INSTRUCTION}"


def mmmu_pro_prompt(question: str, options: Sequence[str]) -> str:
    """MMMU-Pro's standard prompt: the question, `A. text` option lines, the direct-answer instruction."""
    lines = "\n".join(f"{letter}. {option}" for letter, option in zip(string.ascii_uppercase, options))
    return f"{question}\n{lines}\n{PRO_STANDARD_INSTRUCTION}"


def parse_options(value, where: str) -> list[str]:
    """Options are a Python-literal list in a string (MMMU) or possibly a real list (MMMU-Pro vision)."""
    try:
        options = value if isinstance(value, list) else ast.literal_eval(str(value))
    except (ValueError, SyntaxError):
        raise UserError(f"{where}: column 'options' is not a list literal: {str(value)[:60]!r}") from None
    if not isinstance(options, list):
        raise UserError(f"{where}: column 'options' is not a list: {str(value)[:60]!r}")
    return [str(option) for option in options]


def choice_answer(answer, options: list[str], where: str, extra: dict) -> str:
    """The gold letter. One that names no option (upstream's own MMMU-Pro outputs hold such a row) is kept
    as it is, so no reply can match it: upstream scores the row wrong, and so does sectow, with the reason
    in `extra[MALFORMED]` for eval.json to list."""
    letter = str(answer).strip()
    if letter not in string.ascii_uppercase[: len(options)]:
        extra[MALFORMED] = {"kind": GOLD_NOT_AN_OPTION,
                            "reason": f"{where}: answer {answer!r} is not one of the {len(options)} option letters"}
    return letter


def parquet_columns(path: Path) -> list[str]:
    try:
        return pq.read_schema(path).names
    except (pa.ArrowException, OSError) as err:
        raise UserError(f"{path}: unreadable parquet file ({str(err).splitlines()[0]})") from None


def parquet_rows(path: Path, columns: list[str]) -> list[dict]:
    try:
        return pq.read_table(path, columns=columns).to_pylist()
    except (pa.ArrowException, OSError) as err:
        raise UserError(f"{path}: unreadable parquet file ({str(err).splitlines()[0]})") from None


def image_columns(names: list[str]) -> list[str]:
    """The image columns in slot order (image_1 before image_2)."""
    columns = [n for n in names if IMAGE_COLUMN.fullmatch(n)]
    return sorted(columns, key=lambda n: int(IMAGE_COLUMN.fullmatch(n).group(1) or 0))


def write_image(cache: Path, data: bytes) -> Path | None:
    """Store image bytes under a content-hash name; None when they are not an image PIL can read."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            suffix = ".jpg" if image.format == "JPEG" else f".{image.format.lower()}"
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    path = cache / f"{hashlib.sha256(data).hexdigest()[:24]}{suffix}"
    if not path.is_file():
        temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        try:
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "wb") as out:
                out.write(data)
            temporary.replace(path)
        except OSError as err:
            raise UserError(f"{cache}: cannot write images to the cache folder ({err.strerror})") from None
    return path


class ParquetBenchmark(BenchmarkLoader):
    """Questions read from parquet without their images; images of the chosen subset only are
    written to `cache_dir` (default: a new folder under the system temp dir)."""

    kind = "general"
    required: ClassVar[tuple[str, ...]]

    def __init__(self, cache_dir: str | Path | None = None):
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else None
        self.origin: dict[str, tuple[Path, int]] = {}  # sample id -> (parquet file, row index)
        self.slots: dict[str, list[str]] = {}  # sample id -> image columns its placeholders name, in order

    @abstractmethod
    def parquet_files(self, root: Path) -> list[Path]:
        """The files of this split or setting; a UserError naming the expected path when none."""

    @abstractmethod
    def sample(self, row: dict, path: Path, where: str) -> Sample:
        """One question (no image yet) from a parquet row, its prompt with `<image k>` still in it."""

    def read(self, root: Path) -> tuple[list[Sample], dict]:
        files = self.parquet_files(root)
        samples, self.origin, self.slots = [], {}, {}
        for path in files:
            names = parquet_columns(path)
            check_columns(names, self.required, path)
            # Images are the bulk of the file: read them later, for the chosen subset only.
            rows = parquet_rows(path, [n for n in names if not IMAGE_COLUMN.fullmatch(n)])
            for index, row in enumerate(rows):
                sample = self.sample(row, path, f"{path} row {index + 1}")
                sample.query, self.slots[sample.id] = place_images(sample.query)
                self.origin[sample.id] = (path, index)
                samples.append(sample)
        return samples, {"files": [str(p) for p in files], "rows": len(samples), "missing_images": 0}

    def finish(self, samples: list[Sample], found: dict) -> list[Sample]:
        cache = self.cache_dir or Path(tempfile.mkdtemp(prefix="sectow-images-"))
        try:
            cache.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as err:
            raise UserError(f"{cache}: cannot create the image cache folder ({err.strerror})") from None
        cache = cache.resolve()  # Sample.image is an absolute path
        by_file: dict[Path, list[Sample]] = {}
        for sample in samples:
            by_file.setdefault(self.origin[sample.id][0], []).append(sample)
        for path, group in by_file.items():
            columns = image_columns(parquet_columns(path))
            rows = parquet_rows(path, columns)
            for sample in group:
                row = rows[self.origin[sample.id][1]]
                present = {c: (row[c].get("bytes") if isinstance(row[c], dict) else row[c]) for c in columns}
                present = {c: data for c, data in present.items() if data}
                # Placeholder order first (MMMU-Pro's rule); images no placeholder names follow in slot
                # order, so every image of the row reaches the model.
                order = self.slots[sample.id] + [c for c in present if c not in self.slots[sample.id]]
                where = f"{path} row {self.origin[sample.id][1] + 1}"
                self.attach_images(sample, order, present, cache, found, where)
        found["cache_dir"] = str(cache)
        return samples

    @staticmethod
    def attach_images(sample: Sample, order: list[str], present: dict[str, bytes], cache: Path, found: dict,
                      where: str) -> None:
        """Write the row's images in `order` to the cache and set `image` (the first) and
        `extra["images"]` (all); a referenced slot that is empty or unreadable marks the row skipped."""
        if not order:
            found["missing_images"] += 1
            skip(sample, MISSING_IMAGE, f"{where}: no image in any image column")
            return
        paths = []
        for column in order:
            if column not in present:
                found["missing_images"] += 1
                skip(sample, MISSING_IMAGE, f"{where}: {column} is empty but the question refers to "
                                            f"<image {column.rpartition('_')[2]}>")
                return
            image = write_image(cache, present[column])
            if image is None:
                skip(sample, UNREADABLE_IMAGE, f"{where}: {column} holds bytes that are not an image")
                return
            paths.append(str(image))
        sample.image, sample.extra["images"] = paths[0], paths
        sample.extra["n_images"] = len(paths)


class MMMU(ParquetBenchmark):
    name = "mmmu_validation"
    description = "MMMU validation: 900 college-level multimodal questions over 30 subjects"
    split = "validation"
    required = ("id", "question", "options", "answer", "question_type", "image_1")

    def parquet_files(self, root: Path) -> list[Path]:
        # `<Subject>/<split>-*.parquet` (MMMU/MMMU), `data/<split>-*.parquet` (merged mirrors), or a
        # root that is itself one subject folder.
        files = sorted(root.glob(f"{self.split}-*.parquet")) + sorted(root.glob(f"*/{self.split}-*.parquet"))
        if not files:
            raise UserError(f"{root / 'Accounting' / f'{self.split}-00000-of-00001.parquet'}: MMMU {self.split} "
                            f"file not found (expected one per subject: {root}/<Subject>/{self.split}-*.parquet)")
        return files

    def sample(self, row: dict, path: Path, where: str) -> Sample:
        subject = re.fullmatch(r"[a-z]+_(.+)_\d+", str(row["id"]))
        multiple_choice = row["question_type"] == "multiple-choice"
        options = parse_options(row["options"], where)
        category = subject.group(1) if subject else path.parent.name
        number = re.search(r"(\d+)$", str(row["id"]))
        extra = {"options": options,
                 "upstream_order": (MMMU_SUBJECT_ORDER.index(category) if category in MMMU_SUBJECT_ORDER
                                    else len(MMMU_SUBJECT_ORDER), int(number.group(1)) if number else 0)}
        if not multiple_choice:
            extra["open_answer"] = row["answer"]
        return Sample(
            id=f"{self.name}/{row['id']}", label="benign",
            query=mmmu_prompt(row["question"], options if multiple_choice else []),
            answer=choice_answer(row["answer"], options, where, extra) if multiple_choice else None,
            category=category, extra=extra,
        )


class MMMUDev(MMMU):
    name = "mmmu_dev"
    description = "MMMU dev: 150 questions (5 per subject)"
    split = "dev"


class MMMUPro(ParquetBenchmark):
    name = "mmmu_pro_standard10"
    description = "MMMU-Pro standard: 1,730 questions with up to 10 shuffled options"
    setting = "standard (10 options)"
    required = ("id", "question", "options", "answer", "subject", "image_1")
    # mmmu-pro/infer/infer_transformers.py (commit 40b550c2): max_new_tokens=50, and an empty reply is asked
    # again up to MAX_RETRY=5 times.
    reference_max_new_tokens = 50
    empty_reply_retries = 5

    def parquet_files(self, root: Path) -> list[Path]:
        files = sorted((root / self.setting).glob("test-*.parquet"))
        if not files:
            raise UserError(f"{root / self.setting / 'test-00000-of-00001.parquet'}: MMMU-Pro file not found "
                            f"(expected {root / self.setting}/test-*.parquet)")
        return files

    def sample(self, row: dict, path: Path, where: str) -> Sample:
        options = parse_options(row["options"], where)
        extra = {"options": options}  # upstream evaluates in file order, which is the loader's
        return Sample(
            id=f"{self.name}/{row['id']}", query=self.prompt(row, options), label="benign",
            answer=choice_answer(row["answer"], options, where, extra), category=row["subject"], extra=extra,
        )

    def prompt(self, row: dict, options: list[str]) -> str:
        return mmmu_pro_prompt(row["question"], options)


class MMMUPro4(MMMUPro):
    name = "mmmu_pro_standard4"
    description = "MMMU-Pro standard with 4 options"
    setting = "standard (4 options)"


class MMMUProVision(MMMUPro):
    name = "mmmu_pro_vision"
    description = "MMMU-Pro vision: question and options shown only inside a screenshot or photo"
    setting = "vision"
    required = ("id", "options", "answer", "subject", "image")

    def prompt(self, row: dict, options: list[str]) -> str:
        return PRO_VISION_INSTRUCTION  # the question and its options are in the image
