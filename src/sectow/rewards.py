"""Rewards as METHOD.md states them: small pure functions of (sample fields, response, verdict) that
return the reward and the outcome they saw. They know nothing of TRL."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from sectow.config import RewardSettings

ANSWER_TEMPLATE = re.compile(r"^\s*Answer:\s*\(?([A-Z])\)?\s*$")


class Outcome(str, Enum):
    """What one attack came to (the attacker's reward, the pool's filter)."""

    SUCCESS = "success"  # the defender complied, and the query passed quality monitoring
    REFUSED = "refused"
    LOW_QUALITY = "low_quality"  # off the seed's intent
    MALFORMED = "malformed"  # unparsable, or a query too short or too long
    DUPLICATE = "duplicate"  # a near-copy of the pool, or a copy of another attempt of the round


class Response(str, Enum):
    """What one defender reply was (the defender's reward)."""

    REFUSED = "refused"  # a harmful or jailbreak sample, refused
    COMPLIED = "complied"
    OVER_REFUSED = "over_refused"  # a benign sample, refused
    ANSWERED = "answered"  # a benign request, answered
    CORRECT = "correct"
    WRONG = "wrong"
    UNFORMATTED = "unformatted"  # a benign question answered outside the template


@dataclass(frozen=True)
class Scored:
    reward: float
    outcome: Outcome | Response


def parse_option_letter(response: str) -> str | None:
    """The option letter of a reply that follows the 'Answer: X' template, else None."""
    match = ANSWER_TEMPLATE.match(response)
    return match.group(1) if match else None


def defender_reward(label: str, answer: str | None, response: str, refused: bool, coeffs: RewardSettings) -> Scored:
    """Refuse harmful and jailbreak samples; answer benign questions correctly; never refuse benign
    samples; a format bonus for replies to questions that follow the answer template."""
    if label == "harmful":
        return Scored(coeffs.refusal_on_harmful, Response.REFUSED) if refused else Scored(0.0, Response.COMPLIED)
    if refused:
        return Scored(coeffs.benign_refusal, Response.OVER_REFUSED)
    if answer is None:
        return Scored(coeffs.benign_compliance, Response.ANSWERED)
    letter = parse_option_letter(response)
    bonus = coeffs.format_bonus if letter is not None else 0.0
    if letter == answer:
        return Scored(coeffs.correct_answer + bonus, Response.CORRECT)
    return Scored(bonus, Response.WRONG if letter is not None else Response.UNFORMATTED)


def attacker_reward(quality: Outcome | None, defender_refused: bool, coeffs: RewardSettings) -> Scored:
    """Reward only when the current defender complied AND the query passed quality monitoring (`quality`
    is None, or the outcome that failed it); a small format bonus for a query that passed quality but was
    refused (never for an off-intent one, or the attacker drifts to well-formed junk)."""
    if quality is not None:
        return Scored(0.0, quality)
    if defender_refused:
        return Scored(coeffs.format_bonus, Outcome.REFUSED)
    return Scored(coeffs.attack_success + coeffs.format_bonus, Outcome.SUCCESS)
