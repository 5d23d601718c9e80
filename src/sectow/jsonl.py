"""JSON Lines text split into its lines. Only a newline ends a line: `str.splitlines()` also splits at
U+2028, U+2029, U+0085 and other characters that JSON allows raw inside a string, so a valid row holding
one would be cut in two."""

from __future__ import annotations


def json_lines(text: str) -> list[str]:
    """The lines of JSON Lines text, without their "\\n" (or "\\r\\n"); no empty line after the last newline."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]
