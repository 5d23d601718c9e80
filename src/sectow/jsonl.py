"""JSON Lines text split into its lines. Only a newline ends a line: `str.splitlines()` also splits at
U+2028, U+2029, U+0085 and other characters that JSON allows raw inside a string, so a valid row holding
one would be cut in two."""

from __future__ import annotations

import json


def json_lines(text: str) -> list[str]:
    """The lines of JSON Lines text, without their "\\n" (or "\\r\\n"); no empty line after the last newline."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


class DuplicateKey(ValueError):
    """A JSON object with a key given twice (json.loads keeps the last one silently)."""


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    row = {}
    for key, value in pairs:
        if key in row:
            raise DuplicateKey(f"key {key!r} is given twice")
        row[key] = value
    return row


def load_json(text: str):
    """JSON text as Python values, a key given twice in one object refused (DuplicateKey). Too deep a nesting
    raises RecursionError, as json.loads does: callers name the file."""
    return json.loads(text, object_pairs_hook=_unique_keys)
