"""Which option letter a free-text response picked, exactly as the MMMU and MMMU-Pro evaluation scripts
decide it (shared/benchmarks.md sections 4-5), so accuracies compare with published numbers."""

from __future__ import annotations

import random
import string
from collections.abc import Sequence

EDGE_PUNCTUATION = (",", ".", "!", "?", ";", ":", "'")
RANDOM_SEED = 42  # MMMU seeds its fallback guess with 42


def parse_mmmu_choice(response: str, options: Sequence[str]) -> str:
    """MMMU's multiple-choice parser (eval_utils.parse_multi_choice_response).

    Options get letters A, B, ... in order. After stripping edge punctuation, the first rule that finds
    any letter wins: `(X)`, then ` X ` between spaces, then (for responses over 5 words) the option's
    text, case-insensitively. Several candidates: the one occurring last. None: a random letter from
    `random.Random(42)`, so the same inputs always give the same guess (MMMU draws from a global RNG
    seeded once, which makes its guesses depend on evaluation order)."""
    return _mmmu_rules(response, options, letter_patterns=(" {} ",))


def parse_mmmu_pro_choice(response: str, options: Sequence[str]) -> str:
    """MMMU-Pro's parser (mmmu-pro/evaluate.py): if the text after the last `Answer:` contains exactly
    one option letter, that letter; otherwise MMMU's rules, where the bare-letter rule is `X ` (a space
    after, none needed before) and then `X.`. Matching of letters is case-sensitive as upstream, so
    `Answer: C. Because` counts C and B."""
    letters = string.ascii_uppercase[: len(options)]
    marker = response.rfind("Answer:")
    if marker != -1:
        tail = response[marker + len("Answer:"):].strip()
        matches = [letter for letter in letters if letter in tail]
        if len(matches) == 1:
            return matches[0]
    return _mmmu_rules(response, options, letter_patterns=("{} ", "{}."))


def _mmmu_rules(response: str, options: Sequence[str], letter_patterns: Sequence[str]) -> str:
    if not options:
        raise ValueError("a multiple-choice question needs at least one option")
    letters = string.ascii_uppercase[: len(options)]
    for char in EDGE_PUNCTUATION:  # one character kind at a time, as upstream
        response = response.strip(char)
    text = f" {response} "  # spaces at both ends so a bare letter at the edge still matches " X "

    candidates = [letter for letter in letters if f"({letter})" in text]
    if candidates:
        return _last(candidates, lambda letter: text.rfind(f"({letter})"))
    for pattern in letter_patterns:
        candidates = [letter for letter in letters if pattern.format(letter) in text]
        if candidates:
            # Upstream ranks bare letters by " X " even where it matched them by another pattern.
            return _last(candidates, lambda letter: text.rfind(f" {letter} "))
    if len(text.split()) > 5:
        lowered = text.lower()
        candidates = [letter for letter, option in zip(letters, options) if option.lower() in lowered]
        if candidates:
            by_letter = dict(zip(letters, options))
            return _last(candidates, lambda letter: lowered.rfind(by_letter[letter].lower()))
    return random.Random(RANDOM_SEED).choice(letters)


def _last(candidates: list[str], position) -> str:
    """The candidate occurring last; ties go to the earlier letter (numpy argmax upstream)."""
    return max(candidates, key=position)
