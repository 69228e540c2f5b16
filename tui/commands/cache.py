"""`finetui cache …` — the host's tokenize-once cache (engine/data/tokcache.py): list it, empty it."""

from __future__ import annotations

import json
import time
from typing import List, Optional

import typer

from tui.commands import common

cache_app = typer.Typer(help="The tokenized-data cache of this host (~/.cache/finetui/tokenized): list, clear.",
                        no_args_is_help=True)


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


def _ago(t: float) -> str:
    s = max(0.0, time.time() - t)
    for unit, secs in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= secs:
            return f"{s / secs:.0f} {unit} ago"
    return "just now"


@cache_app.command("list")
def list_cmd(as_json: bool = typer.Option(False, "--json", help="One JSON object per entry.")) -> None:
    """The cached tokenizations, most recently used first, with their size and the cap."""
    from engine.data import tokcache

    es = tokcache.entries()
    if as_json:
        typer.echo(json.dumps({"folder": str(tokcache.root()), "cap_bytes": tokcache.cap_bytes(), "entries": es},
                              indent=2))
        return
    total = sum(e["bytes"] for e in es)
    typer.echo(f"{tokcache.root()}: {len(es)} tokenization(s), {_size(total)} of {_size(tokcache.cap_bytes())} "
               "(FINETUI_TOKENIZED_CACHE_GB; least recently used removed first)")
    for e in es:
        typer.echo(f"  {e['key'][:12]}  {_size(e['bytes']):>10}  {e.get('rows', '?'):>9} rows  "
                   f"{e.get('stage', '?')}, max length {e.get('max_len', '?')}  used {_ago(e['last_used'])}  "
                   f"{e.get('source') or ''}")


@cache_app.command("clear")
def clear_cmd(keys: Optional[List[str]] = typer.Argument(None, help="Entries to remove (their key or its first "
                                                          "characters, as `finetui cache list` shows); none: all.")
              ) -> None:
    """Remove cached tokenizations (all of them, or the ones named); an entry a run is preparing is kept."""
    from engine.data import tokcache
    from engine.errors import FinetuiError

    try:
        removed, busy = tokcache.clear(keys or None)
    except FinetuiError as e:
        common.fail(str(e))
    typer.echo(f"removed {len(removed)} tokenization(s) from {tokcache.root()}")
    for k in busy:
        common.err(f"{k[:12]}: in use by a run preparing its data; kept")


def register(app: typer.Typer) -> None:
    app.add_typer(cache_app, name="cache")
