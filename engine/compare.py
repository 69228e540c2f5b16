"""Runs compared: the configuration fields that differ between two runs, and a run's card (final and best
eval loss, tokens seen, wall time, GPU-hours and their cost when a price is set).

Reads only run directories (``config.toml``, ``events.jsonl``); imports neither torch nor textual.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Iterable

from engine.events import read_all

#: tables of config.toml that are not job fields
_SKIP = {"finetui"}


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}`` (lists and scalars are leaves)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def read_config(run_dir: Path) -> dict[str, Any]:
    """The run's ``config.toml`` as dotted fields (``profile`` included). Raises ValueError with one line."""
    p = Path(run_dir) / "config.toml"
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{p}: no config.toml (not a run directory, or the run is on another host)") from None
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ValueError(f"{p}: cannot read it ({str(e).splitlines()[0]})") from None
    return {k: v for k, v in flatten(raw).items() if k.split(".", 1)[0] not in _SKIP}


def resolved_config(run_dir: Path) -> dict[str, Any]:
    """The run's configuration with the profile's defaults applied (what the run actually used), as
    dotted fields; falls back to the file's own fields when it does not load as a job."""
    flat = read_config(run_dir)
    try:
        from engine import presets

        job = presets.load_run_config(Path(run_dir) / "config.toml")
        res = dict(job.resolved())
        res["profile"] = job.profile
        return res
    except Exception:  # noqa: BLE001 - an old or hand-edited file: its own fields still compare
        return flat


def config_diff(a: dict[str, Any], b: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(field, value in a, value in b)`` for every field whose values differ, in field order
    (a field missing on one side shows as None)."""
    from engine.schema import FIELDS

    order = {f.name: i for i, f in enumerate(FIELDS)}
    keys = sorted(set(a) | set(b), key=lambda k: (order.get(k, len(order)), k))
    return [(k, a.get(k), b.get(k)) for k in keys if _norm(a.get(k)) != _norm(b.get(k))]


def _norm(v: Any) -> Any:
    if isinstance(v, float) and v == int(v):
        return int(v)
    if isinstance(v, tuple):
        return list(v)
    return v


def fmt_value(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(fmt_value(x) for x in v) + "]"
    return str(v)


class CardFold:
    """A run's card folded over its event records, a batch at a time (the runs screen feeds it new records
    only); :meth:`card` finishes it with the run's configuration (GPU count, price)."""

    def __init__(self) -> None:
        self.t0: float | None = None
        self.t1: float | None = None
        self.device: str | None = None
        self.world: int | None = None
        self.acc: dict[str, Any] = {"final_loss": None, "final_eval_loss": None, "best_eval_loss": None,
                                    "best_eval_step": None, "tokens_seen": None}

    def update(self, records: Iterable[dict[str, Any]]) -> "CardFold":
        acc = self.acc
        for r in records:
            t = r.get("t")
            if isinstance(t, (int, float)):
                self.t0 = t if self.t0 is None else min(self.t0, t)
                self.t1 = t if self.t1 is None else max(self.t1, t)
            k = r.get("kind")
            if k == "start":
                self.device = r.get("device")
                self.world = r.get("world_size")
            elif k == "log":
                if isinstance(r.get("loss"), (int, float)):
                    acc["final_loss"] = r["loss"]
                if isinstance(r.get("num_input_tokens_seen"), (int, float)):
                    acc["tokens_seen"] = int(r["num_input_tokens_seen"])
            elif k == "eval" and isinstance(r.get("loss", r.get("eval_loss")), (int, float)):
                v = r.get("loss", r.get("eval_loss"))  # the worker strips eval_ (engine/train/callbacks.py)
                acc["final_eval_loss"] = v
                if acc["best_eval_loss"] is None or v < acc["best_eval_loss"]:
                    acc["best_eval_loss"], acc["best_eval_step"] = v, r.get("step")
        return self

    def card(self, res: dict[str, Any] | None = None) -> dict[str, Any]:
        res = res or {}
        card: dict[str, Any] = {**self.acc, "wall_s": None, "gpus": None, "gpu_hours": None, "cost": None,
                                "price": res.get("launch.gpu_hour_price")}
        if self.t0 is not None and self.t1 is not None:
            card["wall_s"] = round(self.t1 - self.t0, 1)
        world = self.world
        if world is None and res:
            from engine.schema import total_ranks

            try:
                world = total_ranks(res)
            except (KeyError, TypeError, ValueError):
                world = None
        device = self.device if self.device is not None else res.get("launch.device")
        card["gpus"] = 0 if device == "cpu" else (int(world) if world else None)
        if card["gpus"] and card["wall_s"] is not None:
            card["gpu_hours"] = round(card["gpus"] * card["wall_s"] / 3600, 4)
            if card["price"] is not None:
                card["cost"] = round(card["gpu_hours"] * float(card["price"]), 2)
        return card


def run_card(records: Iterable[dict[str, Any]], res: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a run's card shows, from its events (and its configuration for the GPU count and the price):
    ``final_loss`` (train), ``final_eval_loss``, ``best_eval_loss`` and ``best_eval_step``, ``tokens_seen``,
    ``wall_s`` (first to last event), ``gpus`` (ranks on GPUs; 0 on CPU), ``gpu_hours`` and ``cost``."""
    return CardFold().update(records).card(res)


def card_line(card: dict[str, Any]) -> str:
    """The card as one line: ``eval loss 1.23 (best 1.20 at step 40) · 1.2M tokens · 12m 3s · 2 GPUs ·
    0.40 GPU-h · cost 1.20``."""
    parts = []
    if card.get("final_eval_loss") is not None:
        best = card["best_eval_loss"]
        at = f" at step {card['best_eval_step']}" if card.get("best_eval_step") is not None else ""
        parts.append(f"eval loss {card['final_eval_loss']:.4g} (best {best:.4g}{at})")
    elif card.get("final_loss") is not None:
        parts.append(f"train loss {card['final_loss']:.4g}, no eval")
    if card.get("tokens_seen") is not None:
        parts.append(f"{_si(card['tokens_seen'])} tokens")
    if card.get("wall_s") is not None:
        parts.append(_dur(card["wall_s"]))
    if card.get("gpus") == 0:
        parts.append("CPU")
    elif card.get("gpus"):
        parts.append(f"{card['gpus']} GPU{'s' if card['gpus'] != 1 else ''} · {card['gpu_hours']:.2f} GPU-h")
        if card.get("cost") is not None:
            parts.append(f"cost {card['cost']:.2f}")
    return " · ".join(parts) or "no metrics yet"


def _si(n: float) -> str:
    for div, suf in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= div:
            return f"{n / div:.3g}{suf}"
    return str(int(n))


def _dur(s: float) -> str:
    s = int(round(s))
    h, m, sec = s // 3600, s % 3600 // 60, s % 60
    return f"{h}h {m:02d}m" if h else f"{m}m {sec:02d}s" if m else f"{sec}s"


def compare(dir_a: Path, dir_b: Path) -> dict[str, Any]:
    """Two run directories side by side: the differing fields and each run's card."""
    out: dict[str, Any] = {"runs": [Path(dir_a).name, Path(dir_b).name], "cards": []}
    cfgs = []
    for d in (dir_a, dir_b):
        res = resolved_config(Path(d))
        cfgs.append(res)
        out["cards"].append(run_card(_records(Path(d)), res))
    out["diff"] = [{"field": k, "a": a, "b": b} for k, a, b in config_diff(*cfgs)]
    return out


def _records(run_dir: Path) -> list[dict[str, Any]]:
    p = run_dir / "events.jsonl"
    return read_all(p) if p.exists() else []


_CARDS: dict[str, tuple[Any, CardFold, Any, dict[str, Any]]] = {}


def card_of_dir(run_dir: Path | None) -> dict[str, Any] | None:
    """A run directory's card (its events and config.toml); a directory seen before reads only the records
    appended since (a live run's file grows every few seconds); None when it holds neither file."""
    from engine.events import Tailer

    if run_dir is None:
        return None
    d = Path(run_dir)
    ev, cfg = d / "events.jsonl", d / "config.toml"
    if not ev.exists() and not cfg.exists():
        return None
    try:
        cstamp = cfg.stat().st_mtime_ns
    except OSError:
        cstamp = None
    hit = _CARDS.get(str(d))
    try:
        size = ev.stat().st_size
    except OSError:
        size = 0
    if hit is None or size < hit[0].offset:  # new, or the file was replaced
        hit = (Tailer(ev), CardFold(), None, {})
    tail, fold, seen, res = hit
    while True:
        before = tail.offset
        fold.update(tail.read())
        if tail.offset == before:
            break
    if cstamp != seen:
        try:
            res = read_config(d)
        except ValueError:
            res = {}
    _CARDS[str(d)] = (tail, fold, cstamp, res)
    return fold.card(res)
