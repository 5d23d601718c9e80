"""Judges: decide whether a response is a refusal, or whether it is unsafe. One small interface, and a
registry so configs can name a judge."""

import inspect

from sectow.errors import UserError
from sectow.judges.base import Judge, Verdict
from sectow.judges.composite import AllOf, AnyOf
from sectow.judges.guard import GuardJudge
from sectow.judges.http import HttpJudge
from sectow.judges.native import NativeJudge
from sectow.judges.refusal import RefusalJudge

JUDGES: dict[str, type[Judge]] = {"refusal": RefusalJudge, "guard": GuardJudge, "http": HttpJudge,
                                  "native": NativeJudge}


def build_judge(name: str, **options) -> Judge:
    """The judge registered as `name`, built with `options`; a UserError for unknown names or options."""
    if name not in JUDGES:
        raise UserError(f"unknown judge {name!r} (judges: {', '.join(JUDGES)})")
    cls = JUDGES[name]
    try:
        inspect.signature(cls).bind(**options)
    except TypeError as err:
        accepted = ", ".join(p for p in inspect.signature(cls).parameters)
        raise UserError(f"judge {name!r}: {err} (options: {accepted})") from None
    return cls(**options)


__all__ = ["Judge", "Verdict", "RefusalJudge", "GuardJudge", "HttpJudge", "NativeJudge", "AllOf", "AnyOf", "JUDGES",
           "build_judge"]
