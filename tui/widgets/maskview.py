"""The data check's preview as rich text: trained tokens highlighted, prompt (masked) tokens dimmed,
the token count of each part and the problems of each row.  Used by ``finetui data check`` in a
terminal and by the data step's preview panel."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.text import Text

TRAINED = "bold green"
PROMPT = "dim"


def row_text(p: dict[str, Any], width_chars: int = 2000) -> Text:
    """One previewed row: its segments, trained in green, the rest dimmed (special tokens kept)."""
    t = Text()
    used = 0
    for s in p.get("segments") or []:
        text = str(s.get("text", ""))
        if used + len(text) > width_chars:
            text = text[: max(0, width_chars - used)] + "…"
        t.append(text, TRAINED if s.get("trained") else PROMPT)
        used += len(text)
        if used >= width_chars:
            break
    return t


def mask_preview(rep: dict[str, Any], rows: int | None = None, width_chars: int = 2000) -> Group:
    """The preview rows of a ``finetui data check`` report (with a tokenizer) and the loss-mask problems."""
    from engine.data.check import mask_lines, preview_counts

    parts: list[Any] = []
    prev = rep.get("preview") or []
    if prev:
        legend = Text("Preview — ")
        legend.append("trained tokens", TRAINED)
        legend.append(" · ")
        legend.append("prompt (masked, not trained)", PROMPT)
        parts.append(legend)
    for p in prev[:rows] if rows else prev:
        parts.append(Text(f"── {p.get('location', '')}{preview_counts(p)}", "bold"))
        parts.append(row_text(p, width_chars))
        for x in p.get("problems") or []:
            parts.append(Text(f"  ⚠ {x}", "yellow"))
    for line in mask_lines(rep):
        parts.append(Text(line, "yellow" if line.startswith("mask problem") else "dim"))
    return Group(*parts)
