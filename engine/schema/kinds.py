"""The kinds of field: one class per kind, holding everything that differs by kind.

A :class:`~engine.schema.fields.Field` declares its kind by name (``"int"``, ``"float"``, ``"bool"``,
``"enum"``, ``"str"``, ``"list"``, ``"path"``); ``Field.kind`` is then the kind object, and every view asks
it rather than switching on the name: how a value is coerced (typed in the TUI, read from a preset, given
on the command line), how it is shown in an input, what the allowed values are in words (the CLI's
``(allowed: …)``, the form's hint, the docs' table), which widget edits it (a name the TUI maps: the
schema imports no UI) and the Python type of a CLI option that sets it.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

from engine.datapaths import data_paths, path_problem, split_format

if TYPE_CHECKING:
    from engine.schema.fields import Field, Range

#: no integer field holds more than this: larger ones are refused before they are formatted or compared
INT_LIMIT = 10**18


def _num(v: float) -> str:
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(f'"{x}"' for x in v) + "]"
    return str(v)


def _int_in_limit(v: int) -> int:
    if abs(v) > INT_LIMIT:
        digits = int(v.bit_length() * 0.30103) + 1  # (str() of a huge int raises ValueError)
        raise ValueError(f"an integer of about {digits} digits is too large")
    return v


class Kind:
    """What one kind of field does; subclasses override what differs."""

    #: the name a declaration uses
    name = ""
    #: the kind in the docs' words
    title = ""
    #: the widget that edits it, a name the TUI maps (input, switch, select)
    widget = "input"
    #: the Python type of a CLI option that sets it
    cli_type: type = str
    #: an empty text means "no value" (not for text and paths, where "" is a value)
    blank_is_unset = True
    #: a numeric kind: a range applies, a sweep can span it
    numeric = False

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"<kind {self.name}>"

    #: its values are a list of choices: a value that is none of them is "not offered"
    has_choices = False

    def parse(self, f: Field, value: Any) -> Any:
        """A value (possibly a string typed in the TUI) as the field's type; None for an optional field left
        blank. Raises ``ValueError`` with a short reason when it cannot."""
        if value is None or (self.blank_is_unset and isinstance(value, str) and value.strip() == ""):
            if f.optional:
                return None
            raise ValueError("a value is required")
        return self.coerce(f, value)

    def coerce(self, f: Field, value: Any) -> Any:
        """A value (never None or blank) as the field's type; ``ValueError`` with a short reason when it is not."""
        raise NotImplementedError

    def value_problem(self, value: Any) -> str | None:
        """Why a value of the right type can still not be one of this kind (None: it can)."""
        return None

    def format(self, value: Any) -> str:
        """A value as an input shows it (None: empty)."""
        return "" if value is None else str(value)

    def parse_input(self, f: Field, text: str) -> Any:
        """Typed text → the value stored in the job (as typed when it does not parse)."""
        try:
            return self.parse(f, text)
        except ValueError:
            return text

    def allowed(self, f: Field, rng: Range | None) -> str:
        """The allowed values in words, for a field without choices (the CLI's ``(allowed: …)``)."""
        return "a string"

    def docs_allowed(self, f: Field, rng: Range | None) -> str:
        """The allowed values as the docs' table writes them, for a field without choices."""
        return "text" + (" or unset" if f.optional else "")

    def hint(self, f: Field, rng: Range | None) -> str:
        """The short hint right of an input (empty: none)."""
        return ""


class _Number(Kind):
    numeric = True

    def allowed(self, f: Field, rng: Range | None) -> str:
        r = rng.describe() if rng else "any number"
        if self.cli_type is int:
            r += ", an integer"
        return r + (", or unset" if f.optional else "")

    def docs_allowed(self, f: Field, rng: Range | None) -> str:
        return (rng.interval() if rng else "any") + (" or unset" if f.optional else "")

    def hint(self, f: Field, rng: Range | None) -> str:
        h = rng.describe() if rng else "any number"
        return "an integer" if h == "any number" and self.cli_type is int else h


class IntKind(_Number):
    name, title, cli_type = "int", "integer", int

    def coerce(self, f: Field, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError(f"{value!r} is not an integer")
        if isinstance(value, int):
            return _int_in_limit(value)
        if isinstance(value, float):
            if value.is_integer():
                return _int_in_limit(int(value))
            raise ValueError(f"{_num(value)} is not an integer")
        s = str(value).strip().replace("_", "")
        if len(s) > 40:
            raise ValueError(f"a number of {len(s)} characters is too large for an integer field")
        try:
            x = float(s)
        except ValueError:
            raise ValueError(f"{str(value)!r} is not a number") from None
        if not x.is_integer():
            raise ValueError(f"{s} is not an integer")
        return _int_in_limit(int(x))


class FloatKind(_Number):
    name, title, cli_type = "float", "number", float

    def coerce(self, f: Field, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError(f"{value!r} is not a number")
        if isinstance(value, (int, float)):
            x = float(value)
        else:
            try:
                x = float(str(value).strip())
            except ValueError:
                raise ValueError(f"{str(value)!r} is not a number") from None
        if math.isnan(x) or math.isinf(x):
            raise ValueError(f"{value} is not a finite number")
        return x

    def format(self, value: Any) -> str:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return _num(float(value)) if float(value).is_integer() else f"{value:g}"
        return super().format(value)


class BoolKind(Kind):
    name, title, widget, cli_type = "bool", "boolean", "switch", bool

    def coerce(self, f: Field, value: Any) -> Any:
        if isinstance(value, bool):
            return value
        s = str(value).strip().lower()
        if s in ("true", "yes", "on", "1"):
            return True
        if s in ("false", "no", "off", "0"):
            return False
        raise ValueError(f"{value!r} is not true or false")

    def allowed(self, f: Field, rng: Range | None) -> str:
        return "true, false"

    def docs_allowed(self, f: Field, rng: Range | None) -> str:
        return "true, false"


class EnumKind(Kind):
    name, title, widget, has_choices = "enum", "choice", "select", True

    def coerce(self, f: Field, value: Any) -> Any:
        choices = f.choices or ()
        if value in choices and not isinstance(value, bool):
            return value
        s = str(value).strip()
        for c in choices:
            if str(c).lower() == s.lower():
                return c
        raise ValueError(f"{value!r} is not one of the choices")


class ListKind(Kind):
    name, title = "list", "list of text"

    def coerce(self, f: Field, value: Any) -> Any:
        if isinstance(value, str):
            s = value.strip()
            if s.startswith("["):
                try:
                    value = json.loads(s)
                except json.JSONDecodeError:
                    raise ValueError(f"{s!r} is not a list") from None
            else:
                value = [p.strip() for p in s.split(",") if p.strip()]
        if not isinstance(value, (list, tuple)) or not all(isinstance(x, str) for x in value):
            raise ValueError(f"{value!r} is not a list of strings")
        return list(value)

    def format(self, value: Any) -> str:
        if isinstance(value, (list, tuple)):
            return ", ".join(str(x) for x in value)
        return super().format(value)

    def allowed(self, f: Field, rng: Range | None) -> str:
        return "a list of strings"

    def docs_allowed(self, f: Field, rng: Range | None) -> str:
        return "list of text"

    def hint(self, f: Field, rng: Range | None) -> str:
        return "comma-separated"


class StrKind(Kind):
    name, title, blank_is_unset = "str", "text", False

    def coerce(self, f: Field, value: Any) -> Any:
        if f.bool_as is not None:
            if isinstance(value, bool):
                return f.bool_as[value]
            if isinstance(value, str) and value.strip().lower() in ("false", "true"):
                return f.bool_as[value.strip().lower() == "true"]
        if not isinstance(value, str):
            raise ValueError(f"{value!r} is not a string")
        return value

    def parse_input(self, f: Field, text: str) -> Any:
        return None if (text == "" and f.optional) else text


class PathKind(StrKind):
    """A file or folder (several: comma-separated, each may end in ``#format``); checked for a form no file
    system could hold."""

    name, title = "path", "path"

    def value_problem(self, value: Any) -> str | None:
        return paths_problem(value)


def paths_problem(value: Any) -> str | None:
    """Why a path field's value can never name a file here (a part too long, a NUL); None when it can."""
    for part in data_paths(value):
        why = path_problem(split_format(part)[0])
        if why:
            return why
    return None


#: every kind by the name a declaration uses
KINDS: dict[str, Kind] = {k.name: k for k in (IntKind(), FloatKind(), BoolKind(), EnumKind(), StrKind(),
                                               ListKind(), PathKind())}
