"""The output folder of `sectow eval`: which files it holds, who may read them (owner only: they hold model
replies to jailbreaks), when an existing one may be reused, and the response log that generation appends
to as it goes, so that no reply is lost when judging fails or the process dies."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from sectow.atomic import write_atomic
from sectow.errors import UserError
from sectow.jsonl import json_lines
from sectow.judges.cache import ends_with_newline, open_private
from sectow.paths import check_output_dir

CONFIG = "eval-config.json"  # the settings, so that --resume needs nothing else
RESPONSES = "responses.jsonl"  # one generated reply per line, appended as generated
JUDGE_CACHE = "judge-cache.jsonl"  # judges that ask a model keep their verdicts here
VERDICTS = "verdicts.jsonl"  # one judged and scored row per line, written at the end
RESULT = "eval.json"
TABLE = "eval.md"
OWN_FILES = (CONFIG, RESPONSES, JUDGE_CACHE, VERDICTS, RESULT, TABLE)


def check_output(out_dir: Path, resume: bool, overwrite: bool) -> None:
    """Refuse, before anything is written, an output folder that would lose earlier results: an existing
    folder with files needs --resume (which needs an eval folder) or --overwrite (which only replaces an
    eval folder, never an arbitrary one)."""
    if resume and overwrite:
        raise UserError("--resume and --overwrite exclude each other: --resume keeps the responses, --overwrite "
                        "deletes them")
    check_output_dir(out_dir)  # first: a name the system refuses, or a broken link, is one line here
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir}: output folder is an existing file")
    has_files = out_dir.is_dir() and any(out_dir.iterdir())
    is_eval = (out_dir / CONFIG).is_file()
    if resume:
        if not is_eval:
            raise UserError(f"{out_dir}: not a sectow eval folder (no {CONFIG}); nothing to resume")
        return
    if has_files and not overwrite:
        raise UserError(f"{out_dir}: output folder exists; give --resume {out_dir} to finish that evaluation, "
                        f"or --overwrite to replace it")
    if has_files and not is_eval:
        raise UserError(f"{out_dir}: not a sectow eval folder (no {CONFIG}): --overwrite replaces only those")


def make_output(out_dir: Path, overwrite: bool) -> None:
    """Create the folder owner-only (whatever the umask), or empty an eval folder of sectow's own files
    for --overwrite."""
    out_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(out_dir, 0o700)
    if overwrite:
        for name in OWN_FILES:
            (out_dir / name).unlink(missing_ok=True)
        shutil.rmtree(out_dir / "image-cache", ignore_errors=True)  # where earlier versions kept MMMU images


def write_json(path: Path, value) -> None:
    write_atomic(path, json.dumps(value, indent=1, default=str))


def read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"{path}: unreadable ({err})") from None
    if not isinstance(value, dict):
        raise UserError(f"{path}: expected a JSON object")
    return value


def read_responses(out_dir: Path) -> dict[tuple[str, str], dict]:
    """The replies generated so far, by (benchmark, id). A line cut short by a crash is ignored: that reply
    is generated again."""
    path = out_dir / RESPONSES
    rows: dict[tuple[str, str], dict] = {}
    if not path.is_file():
        return rows
    for line in json_lines(path.read_text(encoding="utf-8")):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and isinstance(row.get("response"), str) and {"benchmark", "id"} <= set(row):
            rows[(row["benchmark"], row["id"])] = row
    return rows


class ResponseLog:
    """responses.jsonl opened for appending: `write` adds rows and flushes them to disk at once."""

    def __init__(self, out_dir: Path):
        self.path = out_dir / RESPONSES

    def __enter__(self) -> ResponseLog:
        needs_newline = self.path.is_file() and not ends_with_newline(self.path)
        self.out = open_private(self.path, append=True)
        if needs_newline:
            self.out.write("\n")  # never glue a row onto a line cut short by a crash
        return self

    def write(self, rows: Iterable[dict]) -> None:
        self.out.write("".join(json.dumps(row) + "\n" for row in rows))
        self.out.flush()
        os.fsync(self.out.fileno())

    def __exit__(self, *exc) -> None:
        self.out.close()
