"""Judges: decide whether a response is a refusal, or whether it is unsafe. One small interface, a
registry, and `build_judge`, which makes the run's one judge from its config (composites included)."""

import difflib
import inspect

from sectow.config import JudgeSettings
from sectow.errors import UserError
from sectow.judges.base import Judge, Verdict
from sectow.judges.composite import AllOf, AnyOf, _Composite
from sectow.judges.guard import GuardJudge
from sectow.judges.http import HttpJudge, check_base_url
from sectow.judges.native import NativeJudge
from sectow.judges.on_topic import OnTopicJudge
from sectow.judges.refusal import TRAINING_MARKERS, RefusalJudge

JUDGES: dict[str, type[Judge]] = {"refusal": RefusalJudge, "guard": GuardJudge, "http": HttpJudge,
                                  "native": NativeJudge, "on_topic": OnTopicJudge}
COMPOSITES: dict[str, type] = {"all": AllOf, "any": AnyOf}


def check_judge(settings: JudgeSettings, where: str = "judge") -> None:
    """Raise a UserError for options the judge (or a part of it) does not take, without building it."""
    if settings.kind in COMPOSITES:
        for number, part in enumerate(settings.parts):
            check_judge(part, f"{where}.parts.{number}")
        return
    if settings.kind not in JUDGES:
        known = [*JUDGES, *COMPOSITES]
        nearest = difflib.get_close_matches(settings.kind, known, n=1)
        hint = f"; did you mean {nearest[0]!r}?" if nearest else ""
        raise UserError(f"unknown judge {settings.kind!r}{_at(where)} (judges: {', '.join(known)}){hint}")
    cls = JUDGES[settings.kind]
    url = settings.options.get("base_url")
    if url is not None:  # before any folder is made: a URL with a password in it is printed and saved
        check_base_url(url if isinstance(url, str) else repr(url), f"judge {settings.kind!r}{_at(where)}: base_url")
    try:
        inspect.signature(cls).bind(**settings.options)
    except TypeError as err:
        accepted = ", ".join(inspect.signature(cls).parameters)
        raise UserError(f"judge {settings.kind!r}{_at(where)}: {err} (options: {accepted})") from None


def _at(where: str) -> str:
    return "" if where == "judge" else f" at {where}"


def refusal_set_of(judge: Judge) -> str | None:
    """The refusal-string set behind a judge's `refused` flags, for the record: the refusal judge's own;
    the training set for the guard, http and native judges, which match it on every reply; the parts' sets
    for a composite ("a+b" when they differ); None for a judge that matches no strings (on_topic)."""
    if isinstance(judge, RefusalJudge):
        return judge.markers.name
    if isinstance(judge, (GuardJudge, HttpJudge, NativeJudge)):
        return TRAINING_MARKERS
    if isinstance(judge, _Composite):
        names = sorted({name for part in judge.judges if (name := refusal_set_of(part))})
        return "+".join(names) or None
    return None


def build_judge(settings: JudgeSettings) -> Judge:
    """The judge `settings` describe; a UserError for options it does not take."""
    check_judge(settings)
    if settings.kind in COMPOSITES:
        return COMPOSITES[settings.kind](*(build_judge(part) for part in settings.parts))
    return JUDGES[settings.kind](**settings.options)


__all__ = ["Judge", "Verdict", "RefusalJudge", "GuardJudge", "HttpJudge", "NativeJudge", "OnTopicJudge", "AllOf",
           "AnyOf", "JUDGES", "build_judge", "check_judge", "refusal_set_of"]
