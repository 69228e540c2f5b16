"""What the dashboard knows of a run, built from its event records.

Pure Python (no Textual): the monitor's tail worker feeds record batches in,
the widgets read from it.  Series are bounded: a :class:`Series` keeps at most
``cap`` points and halves its resolution when full, so the whole history of a
long run stays visible in constant memory (a decimating ring buffer).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterable

OUTCOME_TEXT = {
    "completed": "completed",
    "stopped": "stopped",
    "early_stopped": "early stopped",
    "failed": "failed",
}
DROPPED_KEYS = ("rows_dropped", "dropped_rows", "dropped")
#: the metrics of preference and reward training (TRL's log keys, "/" written "_"), plotted on their dashboards
PREFERENCE_KEYS = ("rewards_chosen", "rewards_rejected", "rewards_margins", "rewards_accuracies",
                   "mean_reward", "margin", "accuracy")


class Series:
    """(x, y) points; keeps every ``stride``-th point, at most ``cap``, plus the latest."""

    __slots__ = ("cap", "stride", "xs", "ys", "_n", "last")

    def __init__(self, cap: int = 4096):
        self.cap = max(8, cap)
        self.stride = 1
        self.xs: list[float] = []
        self.ys: list[float] = []
        self._n = 0
        self.last: tuple[float, float] | None = None

    def __len__(self) -> int:
        return len(self.xs)

    def append(self, x: float, y: float) -> None:
        self.last = (x, y)
        if self._n % self.stride == 0:
            self.xs.append(x)
            self.ys.append(y)
            if len(self.xs) >= self.cap:
                self.xs = self.xs[::2]
                self.ys = self.ys[::2]
                self.stride *= 2
        self._n += 1

    def points(self, max_points: int | None = None) -> tuple[list[float], list[float]]:
        xs, ys = self.xs, self.ys
        if self.last is not None and (not xs or xs[-1] != self.last[0]):
            xs, ys = xs + [self.last[0]], ys + [self.last[1]]
        if max_points and len(xs) > max_points:
            k = -(-len(xs) // max_points)
            # keep the last point so the curve reaches the current step
            xs = xs[::k] + ([xs[-1]] if (len(xs) - 1) % k else [])
            ys = ys[::k] + ([ys[-1]] if (len(ys) - 1) % k else [])
        return xs, ys


@dataclass
class RunState:
    """Progress, metrics, checkpoints and end state of one run."""

    name: str = ""
    status: str = "pending"  # pending / running / completed / stopped / early_stopped / failed / lost
    phase: str = ""
    phase_text: str = ""
    phase_fraction: float | None = None  # how far a phase that says so is (reading, tokenizing the data), 0 … 1
    step: int = 0
    total_steps: int = 0
    world_size: int = 1
    model: str = ""
    method: str = ""
    started: float | None = None
    ended: float | None = None
    last_t: float | None = None
    epoch: float | None = None
    loss: float | None = None
    eval_loss: float | None = None
    lr: float | None = None
    grad_norm: float | None = None
    tokens_per_s: float | None = None
    samples_per_s: float | None = None
    memory_mb: float | None = None
    memory_reserved_mb: float | None = None  # (CUDA: rank 0's reserved peak, and the largest of every GPU's)
    gpu_reserved_max_mb: float | None = None
    rows_dropped: int | None = None
    rows_truncated: int | None = None
    final_path: str | None = None
    error: str | None = None
    error_tail: str | None = None
    records: int = 0
    train_loss: Series = field(default_factory=Series)
    eval_series: Series = field(default_factory=Series)
    lr_series: Series = field(default_factory=Series)
    grad_series: Series = field(default_factory=Series)
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Series] = field(default_factory=dict)  # PREFERENCE_KEYS seen in log records
    # Slurm requeues (time limit, preemption): {"step", "from", "to"} — from the preemption (the ranks stopped at a
    # checkpoint) to the resumed job's start; "to" is None while the job waits in the queue again
    gaps: list[dict[str, Any]] = field(default_factory=list)
    # (t, step) of recent log records, for the ETA
    _pace: deque = field(default_factory=lambda: deque(maxlen=32))
    # GPU telemetry (``gpu`` records, engine/telemetry.py): the newest samples, oldest first
    gpu_history: deque = field(default_factory=lambda: deque(maxlen=3))
    gpu_version: int = 0
    version: int = 0  # bumped by every update (cheap change detection)
    ckpt_version: int = 0

    @property
    def ended_ok(self) -> bool:
        return self.status in ("completed", "early_stopped")

    @property
    def finished(self) -> bool:
        return self.status in OUTCOME_TEXT or self.status == "lost"

    def history(self, recs: Iterable[dict[str, Any]]) -> None:
        """Another run's log and eval records (a resumed run's parent, up to the resume point): its curves only,
        not this run's step, times or status."""
        for r in recs:
            x = float(r.get("step") or 0)
            if r.get("kind") == "log":
                for key, series in (("loss", self.train_loss), ("lr", self.lr_series), ("grad_norm", self.grad_series)):
                    if (v := _num(r.get(key, r.get("learning_rate") if key == "lr" else None))) is not None:
                        series.append(x, v)
            elif r.get("kind") == "eval" and (v := _num(r.get("eval_loss", r.get("loss")))) is not None:
                self.eval_series.append(x, v)
        self.version += 1

    def update(self, recs: Iterable[dict[str, Any]]) -> None:
        for r in recs:
            self._one(r)
        self.version += 1

    def _one(self, r: dict[str, Any]) -> None:
        self.records += 1
        k = r.get("kind")
        t = _num(r.get("t"))
        if t is not None:
            self.last_t = t
        try:
            step = int(r.get("step") or 0)
        except (TypeError, ValueError):
            step = 0
        if step > self.step:
            self.step = step
        for key in DROPPED_KEYS:
            if key in r and isinstance(r[key], (int, float)):
                self.rows_dropped = int(r[key])
        if isinstance(r.get("truncated"), (int, float)) and not isinstance(r.get("truncated"), bool):
            self.rows_truncated = int(r["truncated"])
        if k == "start":
            if self.gaps and self.gaps[-1]["to"] is None and t is not None:  # the requeued job started again
                self.gaps[-1]["to"] = t
                self._pace.clear()  # (the ETA from the resumed pace, not across the queue's wait)
            self.status = "running" if self.status == "pending" else self.status
            self.started = t if self.started is None else self.started
            self.total_steps = int(r.get("total_steps") or self.total_steps or 0)
            self.world_size = int(r.get("world_size") or 1)
            self.model = str(r.get("model") or self.model)
            self.method = str(r.get("method") or r.get("stage") or self.method)
        elif k == "status":
            if r.get("phase") in ("preempted", "requeued") and t is not None and (
                    not self.gaps or self.gaps[-1]["to"] is not None):
                self.gaps.append({"step": step, "from": t, "to": None})
            self.phase = str(r.get("phase") or "")
            self.phase_text = str(r.get("text") or r.get("message") or "")
            f = _num(r.get("fraction"))
            self.phase_fraction = None if f is None else min(1.0, max(0.0, f))
            if self.status == "pending":
                self.status = "running"
            if self.started is None:
                self.started = t
            if r.get("total_steps"):
                self.total_steps = int(r["total_steps"])
        elif k == "log":
            x = float(step)
            if (v := _num(r.get("loss"))) is not None:
                self.loss = v
                self.train_loss.append(x, v)
            if (v := _num(r.get("lr", r.get("learning_rate")))) is not None:
                self.lr = v
                self.lr_series.append(x, v)
            if (v := _num(r.get("grad_norm"))) is not None:
                self.grad_norm = v
                self.grad_series.append(x, v)
            if (v := _num(r.get("epoch"))) is not None:
                self.epoch = v
            for key in PREFERENCE_KEYS:
                if (v := _num(r.get(key, r.get(key.replace("_", "/", 1))))) is not None:
                    self.extra.setdefault(key, Series()).append(x, v)
            if (v := _num(r.get("tokens_per_s", r.get("tokens/s")))) is not None:
                self.tokens_per_s = v
            if (v := _num(r.get("samples_per_s", r.get("samples/s")))) is not None:
                self.samples_per_s = v
            mem = r.get("memory_mb", r.get("memory"))
            if isinstance(mem, (list, tuple)) and mem:
                mem = max(m for m in mem if isinstance(m, (int, float))) if any(
                    isinstance(m, (int, float)) for m in mem) else None
            if isinstance(mem, dict) and mem:
                vals = [v for v in mem.values() if isinstance(v, (int, float))]
                mem = max(vals) if vals else None
            if (v := _num(mem)) is not None:
                self.memory_mb = v
            if (v := _num(r.get("memory_reserved_mb"))) is not None:
                self.memory_reserved_mb = v
            gpus = [g for g in r.get("gpu_reserved_mb") or [] if isinstance(g, (int, float))]
            if gpus:
                self.gpu_reserved_max_mb = max(gpus)
            if t is not None:
                self._pace.append((t, step))
            if self.status == "pending":
                self.status = "running"
        elif k == "progress":  # the step between log points: progress and pace
            if t is not None:
                self._pace.append((t, step))
            if r.get("total_steps"):
                self.total_steps = int(r["total_steps"])
            if self.status == "pending":
                self.status = "running"
        elif k == "eval":
            if (v := _num(r.get("eval_loss", r.get("loss")))) is not None:
                self.eval_loss = v
                self.eval_series.append(float(step), v)
        elif k == "checkpoint":
            self.checkpoints.append(dict(r))
            self.ckpt_version += 1
        elif k == "gpu" and isinstance(r.get("gpus"), list):
            self.gpu_history.append([g for g in r["gpus"] if isinstance(g, dict)])
            self.gpu_version += 1
        elif k == "end":
            self.status = str(r.get("outcome") or "completed")
            self.phase = "finished"
            self.ended = t
            self.final_path = r.get("final_path") or r.get("path")
            if r.get("message") and not self.error and self.status == "failed":
                self.error = str(r["message"])
        elif k == "error":
            msg = str(r.get("message") or "").strip()
            self.error = msg.splitlines()[0] if msg else "error"
            tb = r.get("traceback")
            if tb:
                self.error_tail = str(tb).rstrip().splitlines()[-1]

    # -- derived -----------------------------------------------------------
    def lost_s(self, now: float) -> float:
        """Seconds the run spent requeued (preempted → started again), the current wait included."""
        total = 0.0
        for g in self.gaps:
            end = g["to"] if g["to"] is not None else (self.ended or (now if not self.finished else g["from"]))
            total += max(0.0, end - g["from"])
        return total

    def elapsed(self, now: float) -> float | None:
        if self.started is None:
            return None
        end = self.ended if self.ended is not None else (now if not self.finished else self.last_t or now)
        return max(0.0, end - self.started)

    def eta(self, now: float) -> float | None:
        """Seconds left, from the pace of the recent log records."""
        if self.finished or not self.total_steps or self.step >= self.total_steps:
            return None
        if len(self._pace) >= 2:
            (t0, s0), (t1, s1) = self._pace[0], self._pace[-1]
            if s1 > s0 and t1 > t0:
                return (self.total_steps - self.step) * (t1 - t0) / (s1 - s0)
        if self._pace and self.started is not None:  # from the first steps: their pace since the start
            t1, s1 = self._pace[-1]
            spent = t1 - self.started - self.lost_s(t1)
            if s1 > 0 and spent > 0:
                return (self.total_steps - self.step) * spent / s1
        return None

    def checkpoint_rows(self) -> list[dict[str, Any]]:
        """One row per checkpoint step (the last record wins), with the best marked."""
        by_step: dict[int, dict[str, Any]] = {}
        for c in self.checkpoints:
            by_step[int(c.get("step") or 0)] = c
        rows = [by_step[s] for s in sorted(by_step)]
        best_step = None
        for c in rows:
            if c.get("best"):
                best_step = int(c.get("step") or 0)
        if best_step is None:
            # the complete checkpoint with the lowest eval loss at or before its step
            best_v = None
            for c in rows:
                if not c.get("complete", True):
                    continue
                s = int(c.get("step") or 0)
                v = _num(c.get("eval_loss")) if c.get("eval_loss") is not None else self._eval_at(s)
                if v is not None and (best_v is None or v < best_v):
                    best_v, best_step = v, s
        return [{**c, "_best": int(c.get("step") or 0) == best_step} for c in rows]

    def _eval_at(self, step: int) -> float | None:
        """The last eval loss at or before ``step``."""
        import bisect

        last = self.eval_series.last
        if last is not None and last[0] <= step:
            return last[1]
        xs = self.eval_series.xs
        i = bisect.bisect_right(xs, step)
        return self.eval_series.ys[i - 1] if i else None


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, (int, float)):
        f = float(v)
        return f if f == f and f not in (float("inf"), float("-inf")) else None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


# -- formatting -------------------------------------------------------------


def fmt_duration(s: float | None) -> str:
    if s is None:
        return "—"
    s = int(round(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    if h:
        return f"{h}:{m:02d}:{sec:02d}"
    return f"{m}:{sec:02d}"


def fmt_num(v: float | None, digits: int = 4) -> str:
    if v is None:
        return "—"
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1e5 or a < 1e-3:
        return f"{v:.2e}"
    return f"{v:.{digits}g}"


def fmt_rate(v: float | None) -> str:
    if v is None:
        return "—"
    if v >= 1000:
        return f"{v / 1000:.1f}k"
    if v >= 100:
        return f"{v:.0f}"
    return f"{v:.1f}"


def fmt_mem(mb: float | None) -> str:
    if mb is None:
        return "—"
    if mb >= 1024:
        return f"{mb / 1024:.1f} GiB"
    return f"{mb:.0f} MiB"
