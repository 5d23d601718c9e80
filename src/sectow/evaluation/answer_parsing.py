"""What a free-text response answered, exactly as the MMMU and MMMU-Pro evaluation scripts decide it
(shared/benchmarks.md sections 4-5), so accuracies compare with published numbers: the option letter of a
multiple-choice question (and whether it was only the random-guess fallback), and MMMU's open-answer
rule. Upstream: MMMU-Benchmark/MMMU `eval/eval_utils.py` (commit 44b45b50) and `mmmu-pro/evaluate.py`
(commit 56eede82)."""

from __future__ import annotations

import ast
import random
import re
import string
from collections.abc import Sequence
from typing import NamedTuple

EDGE_PUNCTUATION = (",", ".", "!", "?", ";", ":", "'")
# eval_utils.py runs `random.seed(42)` once, at import, and every fallback draws `random.choice` from that
# one generator, in evaluation order. MMMU-Pro's evaluate.py seeds nothing: sectow seeds it the same way.
RANDOM_SEED = 42


def fallback_generator() -> random.Random:
    """The generator upstream's fallback guesses draw from, freshly seeded: pass one instance to every
    read in upstream's evaluation order and the guesses are upstream's, draw for draw."""
    return random.Random(RANDOM_SEED)


class Choice(NamedTuple):
    """The letter a response picked; `guessed` when no rule found one and the letter is the seeded random
    fallback (so a model that refuses everything still scores about 1/len(options))."""

    letter: str
    guessed: bool


def read_mmmu_choice(response: str, options: Sequence[str], rng: random.Random | None = None) -> Choice:
    """MMMU's multiple-choice parser (eval_utils.parse_multi_choice_response).

    Options get letters A, B, ... in order. After stripping edge punctuation, the first rule that finds
    any letter wins: `(X)`, then ` X ` between spaces, then (for responses over 5 words) the option's
    text, case-insensitively. Several candidates: the one occurring last. None: `rng.choice` of the
    letters, where `rng` is the run's one `fallback_generator()` (None: a fresh one, as if this were
    upstream's first guess)."""
    return _mmmu_rules(response, options, (" {} ",), rng)


def read_mmmu_pro_choice(response: str, options: Sequence[str], rng: random.Random | None = None) -> Choice:
    """MMMU-Pro's parser (mmmu-pro/evaluate.py): if the text after the last `Answer:` contains exactly
    one option letter, that letter; otherwise MMMU's rules, where the bare-letter rule is `X ` (a space
    after, none needed before) and then `X.`. Matching of letters is case-sensitive as upstream, so
    `Answer: C. Because` counts C and B. The fallback draws from `rng` as in `read_mmmu_choice`."""
    letters = string.ascii_uppercase[: len(options)]
    marker = response.rfind("Answer:")
    if marker != -1:
        tail = response[marker + len("Answer:"):].strip()
        matches = [letter for letter in letters if letter in tail]
        if len(matches) == 1:
            return Choice(matches[0], guessed=False)
    return _mmmu_rules(response, options, ("{} ", "{}."), rng)


def parse_mmmu_choice(response: str, options: Sequence[str]) -> str:
    """The letter MMMU's parser reads, guesses included (the official rule)."""
    return read_mmmu_choice(response, options).letter


def parse_mmmu_pro_choice(response: str, options: Sequence[str]) -> str:
    """The letter MMMU-Pro's parser reads, guesses included (the official rule)."""
    return read_mmmu_pro_choice(response, options).letter


def _mmmu_rules(response: str, options: Sequence[str], letter_patterns: Sequence[str],
                rng: random.Random | None) -> Choice:
    if not options:
        raise ValueError("a multiple-choice question needs at least one option")
    letters = string.ascii_uppercase[: len(options)]
    for char in EDGE_PUNCTUATION:  # one character kind at a time, as upstream
        response = response.strip(char)
    text = f" {response} "  # spaces at both ends so a bare letter at the edge still matches " X "

    candidates = [letter for letter in letters if f"({letter})" in text]
    if candidates:
        return Choice(_last(candidates, lambda letter: text.rfind(f"({letter})")), guessed=False)
    for pattern in letter_patterns:
        candidates = [letter for letter in letters if pattern.format(letter) in text]
        if candidates:
            # Upstream ranks bare letters by " X " even where it matched them by another pattern.
            return Choice(_last(candidates, lambda letter: text.rfind(f" {letter} ")), guessed=False)
    if len(text.split()) > 5:
        lowered = text.lower()
        candidates = [letter for letter, option in zip(letters, options) if option.lower() in lowered]
        if candidates:
            by_letter = dict(zip(letters, options))
            return Choice(_last(candidates, lambda letter: lowered.rfind(by_letter[letter].lower())), guessed=False)
    return Choice((rng or fallback_generator()).choice(letters), guessed=True)


def _last(candidates: list[str], position) -> str:
    """The candidate occurring last; ties go to the earlier letter (numpy argmax upstream)."""
    return max(candidates, key=position)


# ---------------------------------------------------------------- open questions (MMMU eval_utils)

KEY_INDICATORS = ("could be ", "so ", "is ", "thus ", "therefore ", "final ", "answer ", "result ")
TRIVIAL = (":", ",", ".", "!", "?", ";", "'")
NUMBER_WITH_COMMAS = re.compile(r"-?\b\d{1,3}(?:,\d{3})+\b")
NUMBER_SCIENTIFIC = re.compile(r"-?\d+(?:\.\d+)?[eE][+-]?\d+")
NUMBER_SIMPLE = re.compile(r"-?(?:\d+\.\d+|\.\d+|\d+\b)(?![eE][+-]?\d+)(?![,\d])")


def is_number(text: str) -> bool:
    """eval_utils.check_is_number: `float()` accepts it once commas are dropped."""
    try:
        float(text.replace(",", ""))
    except ValueError:
        return False
    return True


def normalize_answer(text: str) -> list[str | float]:
    """eval_utils.normalize_str: a number becomes a float rounded to 2 places; other text is lower-cased,
    and a single character is padded with a space on either side so it cannot match inside a word."""
    text = text.strip()
    if is_number(text):
        return [round(float(text.replace(",", "")), 2)]
    text = text.lower()
    return [" " + text, text + " "] if len(text) == 1 else [text]


def extract_numbers(text: str) -> list[str]:
    """eval_utils.extract_numbers: numbers with thousands commas, then scientific, then plain ones."""
    return NUMBER_WITH_COMMAS.findall(text) + NUMBER_SCIENTIFIC.findall(text) + NUMBER_SIMPLE.findall(text)


def parse_open_response(response: str) -> list[str | float]:
    """eval_utils.parse_open_response: the tail after the last key phrase ("so ", "is ", "answer ", ...;
    also "=" in the last sentence) of each sentence or line, the numbers in those tails, all normalised."""
    response = response.strip().strip(".").lower()
    sentences = re.split(r"\.\s(?=[A-Z])|\n", response)
    key_responses = []
    indicators = list(KEY_INDICATORS)
    for index, sentence in enumerate(sentences):
        if index == len(sentences) - 1:
            indicators.append("=")  # the last sentence may be just an equation
        shortest = None
        for indicator in indicators:
            if indicator in sentence:
                tail = sentence.split(indicator)[-1].strip()
                # Upstream tests `not shortest`: an empty tail counts as none found yet, so any later tail
                # replaces it ("... so \n" keeps looking).
                if not shortest or len(tail) < len(shortest):
                    shortest = tail
        if shortest and shortest.strip() not in TRIVIAL:
            key_responses.append(shortest)
    if not key_responses:
        key_responses = [response]
    predictions = list(key_responses)
    for key_response in key_responses:
        predictions += extract_numbers(key_response)
    normalized = [value for prediction in predictions for value in normalize_answer(prediction)]
    return list(dict.fromkeys(normalized))  # upstream dedupes with set(); order does not change the verdict


def open_gold(answer: str) -> list[str]:
    """The accepted answers of an open question: MMMU stores several as a list literal (`"['24/7', '3.429']"`)."""
    text = str(answer).strip()
    if text.startswith("["):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = None
        if isinstance(value, list):
            return [str(item) for item in value]
    return [text]


def open_answer_correct(response: str, answer: str) -> bool:
    """eval_utils.eval_open on parse_open_response: a number must equal a gold number (both rounded to 2
    places); a text prediction is right when a gold text occurs inside it."""
    gold = [value for item in open_gold(answer) for value in normalize_answer(item)]
    for prediction in parse_open_response(response):
        if isinstance(prediction, str):
            if any(isinstance(g, str) and g in prediction for g in gold):
                return True
        elif prediction in gold:
            return True
    return False
