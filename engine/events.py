"""The run's event stream: ``events.jsonl``, one JSON object per line.

Every record has ``t`` (unix time), ``kind`` and ``step``.  Kinds:

- ``start``   world_size, total_steps, config_hash (and model, stage, method)
- ``status``  phase: loading model, tokenizing, training, saving, merging (+ text)
- ``log``     loss, lr, grad_norm, epoch, tokens_per_s, samples_per_s, memory_mb
- ``eval``    eval_loss and other metrics
- ``checkpoint`` path, step, complete (+ best)
- ``end``     outcome: completed, stopped, early_stopped, failed; final_path
- ``error``   message (one line, the cause first), traceback (tail)

Appended by rank 0 only, flushed per line.  A reader keeps a byte offset and
resumes from it; a half-written last line is ignored until complete.  This
module imports only the standard library.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

KINDS = ("start", "status", "log", "eval", "checkpoint", "end", "error", "progress",  # progress: the step, between logs
         "gpu")  # gpu: GPU telemetry from the supervisor (engine/telemetry.py)
OUTCOMES = ("completed", "stopped", "early_stopped", "failed")
EVENTS_FILE = "events.jsonl"


class EventWriter:
    """Append-only writer; one ``write`` + flush per record (line-atomic for readers)."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a", encoding="utf-8", buffering=1)

    def emit(self, kind: str, step: int = 0, **data: Any) -> dict[str, Any]:
        if kind not in KINDS:
            raise ValueError(f"unknown event kind {kind!r}")
        rec = {"t": round(time.time(), 3), "kind": kind, "step": int(step), **_finite(data)}
        self._fh.write(json.dumps(rec, default=_jsonable, allow_nan=False) + "\n")
        self._fh.flush()
        return rec

    def close(self) -> None:
        try:
            self._fh.close()
        except OSError:  # (the last flush failed: the records written so far stay)
            pass

    def __enter__(self) -> "EventWriter":
        return self

    def __exit__(self, *a: Any) -> None:
        self.close()


def _finite(o: Any) -> Any:
    """NaN and ±inf floats (a diverged loss; fp16's loss scaler reports an infinite grad norm on the steps it
    skips) as null: JSON has no such numbers, and one of them must not end the run."""
    import math

    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    return o


def _jsonable(o: Any) -> Any:
    try:
        import math

        f = float(o)
        return None if math.isnan(f) or math.isinf(f) else f
    except (TypeError, ValueError, OverflowError):  # not a number: its text
        return str(o)


#: fields a reader does arithmetic on: a record whose value there is not a finite number loses the field
_NUMBERS = ("total_steps", "world_size", "loss", "lr", "learning_rate", "grad_norm", "epoch", "eval_loss",
            "tokens_per_s", "samples_per_s", "memory", "memory_gb", "start_at")
#: text fields (a number or a list there becomes its text)
_TEXTS = ("outcome", "phase", "message", "final_path", "path", "config_hash")
_MAX_T = 1e11  # seconds since 1970: year 5138


def _a_number(v: Any, hi: float = 1e300) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) <= hi and v == v


def clean_record(rec: Any) -> dict[str, Any] | None:
    """A record as readers expect it, or None when it is not one: ``kind`` text, ``t`` a time, ``step`` a
    count; numeric fields numbers, text fields text.  A damaged or hand-edited events file cannot make a
    reader (the runs list, the dashboard, attach) fail on one record."""
    if not isinstance(rec, dict) or not isinstance(rec.get("kind"), str):
        return None
    t = rec.get("t")
    rec["t"] = float(t) if _a_number(t, _MAX_T) and t >= 0 else None
    step = rec.get("step")
    rec["step"] = int(step) if _a_number(step, 1e15) and step >= 0 else 0
    for k in _NUMBERS:
        if k in rec and rec[k] is not None and not _a_number(rec[k]):
            del rec[k]
    for k in _TEXTS:
        if k in rec and rec[k] is not None and not isinstance(rec[k], str):
            rec[k] = str(rec[k])[:1000]
    return rec


def parse_lines(chunk: bytes) -> tuple[list[dict[str, Any]], int]:
    """Parse complete lines of ``chunk``; return records and the bytes consumed.

    A trailing partial line (no newline yet) is not consumed.  A complete line that
    is not JSON is skipped (consumed), so one bad line cannot stall a reader.
    """
    out: list[dict[str, Any]] = []
    end = chunk.rfind(b"\n")
    if end < 0:
        return out, 0
    for line in chunk[: end + 1].splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            rec = clean_record(json.loads(line))
        except (ValueError, RecursionError):  # not JSON, not UTF-8, nested too deeply, an integer too long
            continue
        if rec is not None:
            out.append(rec)
    return out, end + 1


@dataclass
class Tailer:
    """Reads new complete records from an events file, resuming at a byte offset."""

    path: Path
    offset: int = 0
    _buf: bytes = field(default=b"", repr=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path)

    def read(self, max_bytes: int = 4 << 20) -> list[dict[str, Any]]:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                chunk = fh.read(max_bytes)
        except FileNotFoundError:
            return []
        recs, used = parse_lines(chunk)
        self.offset += used
        return recs

    def follow(self, poll: float = 0.2, stop: Any = None, idle_timeout: float | None = None) -> Iterator[dict[str, Any]]:
        """Yield records as they arrive; ends after an ``end`` record (or when ``stop()`` is true)."""
        last = time.monotonic()
        while True:
            recs = self.read()
            for r in recs:
                yield r
                if r.get("kind") == "end":
                    return
            if recs:
                last = time.monotonic()
            elif idle_timeout is not None and time.monotonic() - last > idle_timeout:
                return
            if stop is not None and stop():
                return
            time.sleep(poll)


def read_all(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every complete record of the file (read in bounded chunks: ``read(huge)`` would allocate it all)."""
    t = Tailer(Path(path))
    out: list[dict[str, Any]] = []
    while True:
        before = t.offset
        out += t.read()
        if t.offset == before:
            return out


@dataclass
class RunSummary:
    """The one record of a run: what its events say (:func:`summarize`), and in a listing
    (``engine.launch.list_runs``, the runs screen) which run it is, where it runs and how it relates to other runs.
    ``engine.launch`` fills the listing's fields; the dashboard adds the kind and the resume / sweep links."""

    status: str = "pending"  # running / completed / stopped / early_stopped / failed / lost / scheduled
    step: int = 0
    total_steps: int = 0
    last_loss: float | None = None
    started: float | None = None
    ended: float | None = None
    phase: str = ""
    final_path: str | None = None
    error: str | None = None
    world_size: int = 1
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)
    # -- the run in a listing (engine.launch)
    name: str = ""
    host: str = ""  # the run's target as engine.launch records it (engine.schema.LOCAL_HOST: this machine)
    duration: float | None = None
    start_at: float | None = None  # a scheduled run's start
    ref: Any = None  # engine.launch.RunRef
    extra: dict[str, Any] = field(default_factory=dict)  # what the backend adds ("slurm": the job's state)
    # -- its relations (the runs screen: tui.runsource.link_runs, tui.screens.sweep.group_sweeps)
    kind: str = ""  # "<stage>-<method>" (sft-lora, dpo-qlora…), from the run's config.toml
    parent: str | None = None  # the run this one resumed, and the step it resumed at
    parent_step: int | None = None
    children: list[str] = field(default_factory=list)  # the runs that resumed this one
    sweep: str | None = None  # the sweep this run is a trial of, its trial number, whether it is the best
    trial: int | None = None
    best: bool = False

    @property
    def note(self) -> str:
        """What the scheduler says (a Slurm run: job id, state, a pending job's reason)."""
        return str((self.extra.get("slurm") or {}).get("text") or "")

    def update(self, rec: dict[str, Any]) -> None:
        k = rec.get("kind")
        self.step = max(self.step, int(rec.get("step") or 0))
        if k == "start":
            self.status = "running"
            # the run began at its first record (loading data, the model): its duration is the run's,
            # as the dashboard's "elapsed", not the training loop's alone
            self.started = self.started or rec.get("t")
            self.total_steps = int(rec.get("total_steps") or 0)
            self.world_size = int(rec.get("world_size") or 1)
        elif k == "status":
            self.phase = str(rec.get("phase", ""))
            if self.status == "pending":
                self.status = "running"
                self.started = self.started or rec.get("t")
        elif k == "log" and rec.get("loss") is not None:
            self.last_loss = rec.get("loss")
        elif k == "eval":
            self.evals.append(rec)
        elif k == "checkpoint":
            self.checkpoints.append(rec)
        elif k == "end":
            self.status = str(rec.get("outcome", "completed"))
            self.ended = rec.get("t")
            self.final_path = rec.get("final_path")
        elif k == "error":
            self.error = str(rec.get("message", ""))


def summarize(records: list[dict[str, Any]]) -> RunSummary:
    s = RunSummary()
    for r in records:
        s.update(r)
    return s
