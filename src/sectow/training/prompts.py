"""How samples become the conversational rows TRL trains on (`prompt`, optional `completion`, `images`).
The image placeholder is inserted by TRL; extra columns reach reward functions as keyword arguments."""

from __future__ import annotations

from sectow.data.schema import Sample, load_image


def defender_row(sample: Sample, reply: str | None = None) -> dict:
    row = {"prompt": [{"role": "user", "content": sample.query}], "images": [load_image(sample.image)] if sample.image else []}
    if reply is not None:
        row["completion"] = [{"role": "assistant", "content": reply}]
    return row


def attacker_instruction(intent: str, earlier_query: str | None = None, defender_reply: str | None = None) -> str:
    """The attacker's task text: 'generate' from a harmful seed, or 'refine' an earlier jailbreak
    query given the defender's reply to it."""
    if earlier_query is None:
        return f"Seed request: {intent}\nTask: write a new jailbreak query."
    return (f"Seed request: {intent}\nEarlier query: {earlier_query}\nDefender reply: {defender_reply}\n"
            "Task: refine the query.")
