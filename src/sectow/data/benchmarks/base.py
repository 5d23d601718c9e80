"""What every benchmark loader shares: the loader interface, its result, subset selection, skipped rows,
and the readers that turn missing files, columns and bad rows into one-line UserErrors."""

from __future__ import annotations

import csv
import json
import random
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal, NamedTuple

from sectow.data.schema import Sample, load_image, resolve_inside
from sectow.errors import UserError

SKIP = "skip"  # Sample.extra key: why this row cannot be evaluated ({"kind", "reason"})
MISSING_IMAGE, UNREADABLE_IMAGE = "missing image", "unreadable image"


@dataclass
class BenchmarkData:
    """A loaded benchmark. `samples` can be evaluated; `skipped` lists the chosen rows that cannot be
    (`{"id", "kind", "reason"}`: a missing or unreadable image), so no row is dropped silently. `found`
    says what was on disk: files read, rows, `missing_images`, and family-specific parts (e.g.
    MM-SafetyBench scenarios); `available` counts usable samples before subsetting."""

    name: str
    samples: list[Sample]
    found: dict
    root: Path
    skipped: list[dict] = field(default_factory=list)

    def skip_line(self) -> str:
        """One line on what was evaluated and what was skipped, as `sectow eval` and `sectow doctor` say it."""
        rows = len(self.samples) + len(self.skipped)
        line = f"{len(self.samples)} of {rows} rows usable, {len(self.skipped)} skipped"
        if self.skipped:
            kinds = Counter(row["kind"] for row in self.skipped)
            line += " (" + ", ".join(f"{kind}: {count}" for kind, count in sorted(kinds.items())) + ")"
        return line


class PaperTable(NamedTuple):
    """A table a benchmark's paper reports: ASR per `rows` (x `columns`). Each axis is (the paper's name
    for it, where a sample holds it: `category`, `form`, or `extra:<key>`); `column_order` as the paper
    lays the columns out."""

    title: str
    rows: tuple[str, str]
    columns: tuple[str, str] | None = None
    column_order: tuple[str, ...] = ()


def axis_value(sample: Sample, where: str) -> str:
    """A sample's value on a table axis (`category`, `form`, `extra:<key>`); "none" when it has none."""
    kind, _, key = where.partition(":")
    value = sample.extra.get(key) if kind == "extra" else getattr(sample, where)
    return str(value) if value is not None else "none"


def skip(sample: Sample, kind: str, reason: str) -> Sample:
    """Mark a row as one that cannot be evaluated, and why."""
    sample.extra[SKIP] = {"kind": kind, "reason": reason}
    return sample


class BenchmarkLoader(ABC):
    """A benchmark on local disk. Subclasses declare what they are and implement `read`; options
    (e.g. `variants`, `cache_dir`) are constructor arguments."""

    name: ClassVar[str]
    kind: ClassVar[Literal["safety", "general"]]
    description: ClassVar[str]
    # The paper's table shape (safety benchmarks), and the reference inference's reply budget and retries of
    # an empty reply where the paper's figure depends on them (None, 0: sectow's own settings apply).
    paper_tables: ClassVar[tuple[PaperTable, ...]] = ()
    reference_max_new_tokens: ClassVar[int | None] = None
    empty_reply_retries: ClassVar[int] = 0

    def load(self, root: str | Path, limit: int | None = None,
             categories: Sequence[str] | str | None = None, seed: int = 0, check_images: bool = True) -> BenchmarkData:
        """The chosen rows of the benchmark under `root`. The subset is drawn from every row, usable or
        not, so it stays the same when images come or go; the chosen rows that cannot be evaluated
        (image missing, or unreadable when `check_images`) are listed in `skipped`, not dropped."""
        root = Path(root).expanduser()
        if not root.is_dir():
            raise UserError(f"{root}: no such folder (root of benchmark {self.name!r})")
        rows, found = self.read(root)
        usable = [s for s in rows if SKIP not in s.extra]
        require_samples(usable, found, f"{root}: no usable samples for benchmark {self.name!r}")
        duplicates = [id_ for id_, n in Counter(s.id for s in rows).items() if n > 1]
        if duplicates:
            raise UserError(f"{root}: benchmark {self.name!r} has sample id {duplicates[0]!r} twice")
        found["available"] = len(usable)
        chosen = self.finish(select_subset(rows, limit, categories, seed), found)
        if check_images:
            for sample in chosen:
                if SKIP not in sample.extra:
                    check_sample_images(sample)
        samples = [s for s in chosen if SKIP not in s.extra]
        require_samples(samples, found, f"{root}: no usable samples left for benchmark {self.name!r}")
        for sample in samples:
            sample.extra["benchmark"] = self.name  # judges that score by benchmark (native) read it
        skipped = [{"id": s.id, **s.extra[SKIP]} for s in chosen if SKIP in s.extra]
        return BenchmarkData(name=self.name, samples=samples, found=found, root=root, skipped=skipped)

    @abstractmethod
    def read(self, root: Path) -> tuple[list[Sample], dict]:
        """Every row under `root` as a sample (those that cannot be evaluated marked with `skip`), and
        what was found there."""

    def finish(self, samples: list[Sample], found: dict) -> list[Sample]:
        """Last step on the chosen subset only (MMMU writes its embedded images here)."""
        return samples


def sample_images(sample: Sample) -> list[str]:
    """Every image of a sample in the order the model sees them (MMMU rows can have several)."""
    return list(sample.extra.get("images") or ([sample.image] if sample.image else []))


def check_sample_images(sample: Sample) -> None:
    """Decode each image of a chosen sample as generation will; a file that cannot be read marks the row
    skipped with the reason, instead of failing the whole evaluation halfway through."""
    for path in dict.fromkeys(sample_images(sample)):
        try:
            load_image(path)
        except UserError as err:
            skip(sample, UNREADABLE_IMAGE, str(err))
            return


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
            rows = []
            for row in reader:
                if None in row.values() or None in row:  # DictReader's filling for a short or a long row
                    given = sum(v is not None for k, v in row.items() if k is not None) + len(row.get(None) or [])
                    raise UserError(f"{path}:{reader.line_num}: {given} fields where the header has "
                                    f"{len(reader.fieldnames)}")
                rows.append(row)
            return rows
    except OSError as err:
        raise UserError(f"{path}: unreadable ({err.strerror})") from None
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
    except RecursionError:
        raise UserError(f"{path}: bad JSON (nested too deeply)") from None


def existing_image(folder: Path, relative: str, where: str) -> Path | None:
    """The image's absolute path, or None when it is not on disk (partial downloads are common);
    a path that leaves `folder` is refused."""
    if not relative:
        raise UserError(f"{where}: empty image path")
    path = resolve_inside(folder, relative, where)
    return path if path.is_file() else None
