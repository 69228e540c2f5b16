"""Errors a user can cause with their data: one clear line naming file:line and field."""

from __future__ import annotations

from engine.errors import FinetuiError


class DataError(FinetuiError, ValueError):
    """A data problem that stops loading; ``str(e)`` is one line naming the file (and line / field)."""


class RowError(FinetuiError, ValueError):
    """One invalid row: the field (dotted / indexed path inside the row) and a plain-words reason."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}" if field else reason)
        self.field = field
        self.reason = reason
