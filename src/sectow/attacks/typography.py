"""FigStep typography (shared/benchmarks.md 1.2): the instruction, wrapped at 15 characters, followed
by an empty numbered list, black monospace bold on a white 760x760 canvas."""

from __future__ import annotations

import textwrap
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont
# FigStep's font first; DejaVu Sans Mono Bold is a close fallback; Pillow's bundled font last.
FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/freefont/FreeMonoBold.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSansMono-Bold.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf",
)


@lru_cache(maxsize=16)
def first_font(candidates: tuple[str, ...], size: int) -> ImageFont.FreeTypeFont:
    """The first installed font of `candidates`, else Pillow's bundled one."""
    for candidate in candidates:
        if Path(candidate).is_file():
            # BASIC layout: raqm fails on some byte sequences a sampled attacker can emit.
            return ImageFont.truetype(candidate, size, layout_engine=ImageFont.Layout.BASIC)
    return ImageFont.load_default(size=size)


def figstep_text(instruction: str) -> str:
    """The text FigStep draws: the instruction wrapped to 15 characters, then '1. ', '2. ', '3. '."""
    text = textwrap.fill(instruction.rstrip("\n"), width=15)
    for i in range(1, 4):
        text += f"\n{i}. "
    return text


def figstep_image(instruction: str, size: int = 760, font_size: int = 80) -> Image.Image:
    """Render an instruction the way FigStep does (size and font scale together for small images)."""
    scale = size / 760
    image = Image.new("RGB", (size, size), "#FFFFFF")
    draw = ImageDraw.Draw(image)
    draw.multiline_text(
        (round(20 * scale), round(10 * scale)),
        figstep_text(instruction),
        fill="#000000",
        font=first_font(FONT_CANDIDATES, max(6, round(font_size * scale))),
        spacing=round(11 * scale),
    )
    return image

