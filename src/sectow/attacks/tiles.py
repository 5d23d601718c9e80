"""The miniature's script: every word is a tile of 2x2 patches, each patch two coloured halves (top, bottom),
so the tiny vision tower (14-pixel patches, merged 2x2 into one image token) sees one tile as one token
and 6^8 codes keep words apart. Pictures hold up to 16 words on a
112-pixel canvas: in rows (`tiles`), under a photo (`tiles_photo`, 8 words), or in columns
(`tiles_column`, the held-out layout). Any text can be written: a word's code comes from a hash, so
the attacker's own words render too."""

from __future__ import annotations

import hashlib
import re

from PIL import Image

PATCH = 14  # the tiny Qwen2.5-VL's patch size
TILE = 2 * PATCH
CANVAS = 4 * TILE  # 112 pixels: 4 x 4 tiles, 16 image tokens
PALETTE = ((230, 40, 40), (40, 170, 60), (40, 70, 230), (240, 200, 30), (30, 200, 210), (200, 50, 200))
BLANK = (255, 255, 255)
CANVAS_WORDS, PHOTO_WORDS = 16, 8  # tiles a picture holds: a whole canvas, or the two rows under a photo


# The script writes no function words, like a telegram: a request of up to 16 (8 under a photo) content
# words fits in one picture.
FUNCTION_WORDS = frozenset("a an the to of for in on at and or i me my you your can please need how that this "
                           "it is be with from by".split())


def words(text: str) -> list[str]:
    """The words a picture writes of `text`: its content words, in order."""
    return [w for w in re.findall(r"[a-z0-9']+", text.lower()) if w not in FUNCTION_WORDS]


def word_code(word: str) -> tuple[tuple[int, int, int], ...]:
    """The eight half-patch colours of `word`: for each patch (top-left, top-right, bottom-left,
    bottom-right), its top half then its bottom half."""
    digest = hashlib.sha256(word.encode()).digest()
    return tuple(PALETTE[b % len(PALETTE)] for b in digest[:8])


def _draw_tile(image: Image.Image, word: str, left: int, top: int) -> None:
    half = PATCH // 2
    for index, colour in enumerate(word_code(word)):
        patch, lower = divmod(index, 2)
        x, y = left + (patch % 2) * PATCH, top + (patch // 2) * PATCH + lower * half
        image.paste(colour, (x, y, x + PATCH, y + half))


def tile_picture(text: str, layout: str = "rows", photo: Image.Image | None = None) -> Image.Image:
    """`text` written in tiles. `rows`: left to right, top to bottom; `columns`: top to bottom, left to right;
    with a `photo`, the photo fills the top half and the words the two rows below it."""
    image = Image.new("RGB", (CANVAS, CANVAS), BLANK)
    slots = [(col, row) for row in range(4) for col in range(4)]
    if layout == "columns":
        slots = [(col, row) for col in range(4) for row in range(4)]
    if photo is not None:
        image.paste(photo.convert("RGB").resize((CANVAS, CANVAS // 2)), (0, 0))
        slots = [(col, row) for row in (2, 3) for col in range(4)]
    for word, (col, row) in zip(words(text), slots):
        _draw_tile(image, word, col * TILE, row * TILE)
    return image
