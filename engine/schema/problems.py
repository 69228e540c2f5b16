"""A validation problem and the error that carries a list of them."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Iterable

from engine.errors import FinetuiError

@dataclass
class Problem:
    """One validation problem; ``str()`` gives the CLI line of design.md."""

    field: str
    message: str
    allowed: str = ""
    severity: str = "error"  # or "warning"

    def __str__(self) -> str:
        from engine.redact import redact

        s = f"{self.field}: {self.message}"
        if self.allowed:
            s += f" (allowed: {self.allowed})"
        return redact(s)


class ConfigError(FinetuiError, ValueError):
    """Raised with a list of problems; ``str()`` is one line per problem."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems), field=problems[0].field if problems else None)

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)

    def lines(self) -> list[str]:
        return [str(p) for p in self.problems]


def suggest(name: str, options: Iterable[str]) -> str:
    options = list(options)
    close = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
    if not close:
        # also match on the last component
        tails = {o.rsplit(".", 1)[-1]: o for o in options}
        close = [tails[c] for c in difflib.get_close_matches(name.rsplit(".", 1)[-1], list(tails), n=1, cutoff=0.6)]
    return f"; did you mean `{close[0]}`?" if close else ""
