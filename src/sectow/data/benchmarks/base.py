"""What every benchmark loader shares: the loader interface, its result, subset selection, and the
readers that turn missing files, columns and bad rows into one-line UserErrors."""

from __future__ import annotations

import csv
import json
import random
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from sectow.data.schema import Sample, resolve_inside
from sectow.errors import UserError


@dataclass
class BenchmarkData:
    """A loaded benchmark. `found` says what was on disk: files read, rows, `missing_images`, and
    family-specific parts (e.g. MM-SafetyBench scenarios); `available` counts samples before subsetting."""

    name: str
    samples: list[Sample]
    found: dict
    root: Path


class BenchmarkLoader(ABC):
    """A benchmark on local disk. Subclasses declare what they are and implement `read`; options
    (e.g. `variants`, `cache_dir`) are constructor arguments."""

    name: ClassVar[str]
    kind: ClassVar[Literal["safety", "general"]]
    description: ClassVar[str]

    def load(self, root: str | Path, limit: int | None = None,
             categories: Sequence[str] | str | None = None, seed: int = 0) -> BenchmarkData:
        root = Path(root).expanduser()
        if not root.is_dir():
            raise UserError(f"{root}: no such folder (root of benchmark {self.name!r})")
        samples, found = self.read(root)
        require_samples(samples, found, f"{root}: no usable samples for benchmark {self.name!r}")
        duplicates = [id_ for id_, n in Counter(s.id for s in samples).items() if n > 1]
        if duplicates:
            raise UserError(f"{root}: benchmark {self.name!r} has sample id {duplicates[0]!r} twice")
        found["available"] = len(samples)
        chosen = self.finish(select_subset(samples, limit, categories, seed), found)
        require_samples(chosen, found, f"{root}: no usable samples left for benchmark {self.name!r}")
        return BenchmarkData(name=self.name, samples=chosen, found=found, root=root)

    @abstractmethod
    def read(self, root: Path) -> tuple[list[Sample], dict]:
        """Every usable sample under `root`, and what was found there."""

    def finish(self, samples: list[Sample], found: dict) -> list[Sample]:
        """Last step on the chosen subset only (MMMU writes its embedded images here)."""
        return samples


def require_samples(samples: list[Sample], found: dict, message: str) -> None:
    if not samples:
        missing = found.get("missing_images", 0)
        raise UserError(message + (f"; {missing} images named by the data are missing" if missing else ""))


def select_subset(samples: list[Sample], limit: int | None, categories: Sequence[str] | str | None,
                  seed: int) -> list[Sample]:
    """Keep the given categories, then a seeded random `limit` of what is left, in original order."""
    if categories:
        wanted = {categories} if isinstance(categories, str) else set(categories)
        present = {s.category for s in samples}
        unknown = sorted(wanted - present)
        if unknown:
            raise UserError(f"category {unknown[0]!r} not in this benchmark "
                            f"(present: {', '.join(sorted(str(c) for c in present))})")
        samples = [s for s in samples if s.category in wanted]
    if limit is not None and limit < 1:
        raise UserError(f"limit must be a positive number of samples, got {limit}")
    if limit is None or limit >= len(samples):
        return list(samples)
    keep = sorted(random.Random(seed).sample(range(len(samples)), limit))
    return [samples[i] for i in keep]


def expect_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise UserError(f"{path}: {what} not found (expected exactly this file)")
    return path


def check_columns(have: Sequence[str], required: Sequence[str], where: Path) -> None:
    for column in required:
        if column not in have:
            raise UserError(f"{where}: missing column {column!r} (columns: {', '.join(have)})")


def read_csv(path: Path, required: Sequence[str]) -> list[dict[str, str]]:
    """Rows of a UTF-8 CSV with a header, after checking the `required` columns exist."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            check_columns(reader.fieldnames or [], required, path)
            return list(reader)
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except csv.Error as err:
        raise UserError(f"{path}: bad CSV ({err})") from None


def read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: bad JSON ({err.msg} at line {err.lineno})") from None


def existing_image(folder: Path, relative: str, where: str) -> Path | None:
    """The image's absolute path, or None when it is not on disk (partial downloads are common);
    a path that leaves `folder` is refused."""
    if not relative:
        raise UserError(f"{where}: empty image path")
    path = resolve_inside(folder, relative, where)
    return path if path.is_file() else None
