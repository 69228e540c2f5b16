"""A fake training run: writes ``events.jsonl`` (+ ``worker.log``, ``config.toml``,
``launch.json``) exactly as the worker would, without torch.

- :func:`write_fake_run` writes a whole finished run at once, deterministically
  (fixed clock, fixed seed) — the fixture behind the dashboard's snapshot tests.
- :class:`FakeRunWriter` is a thread that appends events live at a given rate
  (``t`` is the real time of writing), for live Pilot tests and the latency bench.
- ``python -m tests.fake_run DIR [--rate 100] [--steps 2000] [--live]`` does either.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

T0 = 1_795_000_000.0  # a fixed clock for deterministic fixtures (2026-11-18 UTC)


def _lr(step: int, total: int, peak: float = 3e-3, warmup: int = 5) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    p = (step - warmup) / max(1, total - warmup)
    return peak * 0.5 * (1 + math.cos(math.pi * p))


def fake_records(
    steps: int = 80,
    *,
    t0: float = T0,
    dt: float = 1.5,
    outcome: str = "completed",
    end_at: int | None = None,
    log_every: int = 1,
    eval_every: int = 10,
    ckpt_every: int = 20,
    seed: int = 0,
    rows_dropped: int = 3,
    error: str = "CUDA out of memory: tried to allocate 2.00 GiB (GPU 0; 23.65 GiB total)",
    end: bool = True,
) -> Iterator[dict[str, Any]]:
    """Records of a run of ``steps`` steps ending in ``outcome`` at step ``end_at``."""
    rng = random.Random(seed)
    stop = steps if end_at is None else min(end_at, steps)
    t = t0
    yield {"t": t, "kind": "start", "step": 0, "world_size": 2, "total_steps": steps,
           "config_hash": "0123456789abcdef", "model": "finetui:tiny-llama", "stage": "sft", "method": "lora"}
    t += 0.5
    yield {"t": t, "kind": "status", "step": 0, "phase": "loading model"}
    t += 1.0
    yield {"t": t, "kind": "status", "step": 0, "phase": "tokenizing", "rows_dropped": rows_dropped,
           "text": f"1000 rows, {rows_dropped} dropped (longer than max_sequence_length)"}
    t += 1.0
    yield {"t": t, "kind": "status", "step": 0, "phase": "training"}
    best = None
    for step in range(1, stop + 1):
        t += dt
        if step % log_every == 0:
            loss = 0.45 + 2.2 * math.exp(-step / (steps / 4)) + rng.uniform(-0.08, 0.08)
            yield {"t": round(t, 3), "kind": "log", "step": step, "loss": round(loss, 4),
                   "lr": _lr(step, steps), "grad_norm": round(0.4 + 1.6 * math.exp(-step / (steps / 3))
                                                            + rng.uniform(0, 0.3), 4),
                   "epoch": round(2 * step / steps, 3), "tokens_per_s": round(5200 + rng.uniform(-200, 200), 1),
                   "samples_per_s": round(40 + rng.uniform(-2, 2), 2), "memory_mb": 1830 + (step % 7)}
        if eval_every and step % eval_every == 0:
            ev = 0.55 + 2.0 * math.exp(-step / (steps / 4)) + 0.002 * max(0, step - steps * 0.8)
            yield {"t": round(t + 0.2, 3), "kind": "eval", "step": step, "eval_loss": round(ev, 4),
                   "eval_runtime": 0.8}
            best = ev if best is None else min(best, ev)
        if ckpt_every and step % ckpt_every == 0:
            yield {"t": round(t + 0.4, 3), "kind": "status", "step": step, "phase": "saving"}
            yield {"t": round(t + 0.9, 3), "kind": "checkpoint", "step": step,
                   "path": f"checkpoints/checkpoint-{step}", "complete": True}
            yield {"t": round(t + 0.95, 3), "kind": "status", "step": step, "phase": "training"}
    if not end:
        return
    t += dt
    if outcome == "failed":
        yield {"t": round(t, 3), "kind": "error", "step": stop, "message": error,
               "traceback": "Traceback (most recent call last):\n  ...\ntorch.OutOfMemoryError: " + error}
        yield {"t": round(t + 0.1, 3), "kind": "end", "step": stop, "outcome": "failed", "final_path": None}
    else:
        yield {"t": round(t, 3), "kind": "status", "step": stop, "phase": "saving"}
        yield {"t": round(t + 1.0, 3), "kind": "end", "step": stop, "outcome": outcome, "final_path": "final"}


def log_line(rec: dict[str, Any]) -> str:
    """The worker.log line a record would come with."""
    k = rec["kind"]
    ts = time.strftime("%H:%M:%S", time.gmtime(rec["t"]))
    if k == "log":
        return (f"{ts} [rank0] step {rec['step']}: loss={rec['loss']:.4f} lr={rec['lr']:.2e} "
                f"grad_norm={rec['grad_norm']:.3f}")
    if k == "eval":
        return f"{ts} [rank0] eval step {rec['step']}: eval_loss={rec['eval_loss']:.4f}"
    if k == "checkpoint":
        return f"{ts} [rank0] saved {rec['path']}"
    if k == "status":
        return f"{ts} [rank0] {rec['phase']}" + (f": {rec['text']}" if rec.get("text") else "")
    if k == "error":
        return f"{ts} [rank0] ERROR {rec['message']}"
    if k == "end":
        return f"{ts} [rank0] run {rec['outcome']}"
    if k == "start":
        return f"{ts} [launcher] world size {rec['world_size']}, {rec['total_steps']} steps"
    return f"{ts} {k}"


def _prepare(run_dir: Path, host: str = "local", **launch: Any) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    demo = Path(__file__).resolve().parent.parent / "presets" / "demo.toml"
    if demo.exists() and not (run_dir / "config.toml").exists():
        shutil.copy(demo, run_dir / "config.toml")
    (run_dir / "launch.json").write_text(json.dumps({"host": host, "command": ["fake_run"], **launch}))


def write_fake_run(run_dir: str | Path, *, log: bool = True, **kw: Any) -> Path:
    """Write a whole run (deterministic) into ``run_dir``; returns the events path."""
    d = Path(run_dir)
    _prepare(d)
    ev = d / "events.jsonl"
    with open(ev, "w", encoding="utf-8") as fe, open(d / "worker.log", "w", encoding="utf-8") as fl:
        for rec in fake_records(**kw):
            fe.write(json.dumps(rec) + "\n")
            if log:
                fl.write(log_line(rec) + "\n")
    if not log:
        (d / "worker.log").unlink()
    return ev


class FakeRunWriter(threading.Thread):
    """Appends a run's events live at ``rate`` records/s (``t`` = time of writing).

    ``written`` maps step -> time.time() at which that step's ``log`` record was
    flushed (for latency measurements).  Call ``stop()`` to end early; it then
    writes an ``end`` record with outcome ``stopped`` unless ``end=False``.

    With ``guard=True`` a stand-in process (``sleep``, in its own session) plays
    the run's process group and is recorded in ``launch.json`` (pid, pgid), so the
    real ``stop_run`` / ``list_runs`` treat the fake run as a live one; when that
    group is killed the writer stops writing (``stop_run`` records the end).
    """

    def __init__(self, run_dir: str | Path, *, rate: float = 100.0, steps: int = 10_000,
                 outcome: str = "completed", end: bool = True, log: bool = True, guard: bool = False,
                 **kw: Any):
        super().__init__(daemon=True, name="fake-run-writer")
        self.run_dir = Path(run_dir)
        self.rate = rate
        self.steps = steps
        self.outcome = outcome
        self.end = end
        self.log = log
        self.kw = kw
        self.written: dict[int, float] = {}
        self.count = 0
        self._halt = threading.Event()
        self.done = threading.Event()
        self.guard: subprocess.Popen | None = None
        self.killed = False
        if guard:
            # it carries the run's token, as a real run's processes do (a pid alone proves nothing)
            token = uuid.uuid4().hex
            self.guard = subprocess.Popen(["sleep", "3600"], start_new_session=True, stdin=subprocess.DEVNULL,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                          env={**os.environ, "FINETUI_RUN_TOKEN": token})
            threading.Thread(target=self.guard.wait, daemon=True).start()  # reap it when killed
            _prepare(self.run_dir, pid=self.guard.pid, pgid=self.guard.pid, started=time.time(), token=token)
        else:
            _prepare(self.run_dir)

    def stop(self) -> None:
        self._halt.set()

    def close(self, timeout: float = 5.0) -> None:
        """Stop writing, wait for the thread, and kill the stand-in process."""
        self.stop()
        if self.is_alive():
            self.join(timeout)
        if self.guard is not None and self.guard.poll() is None:
            self.guard.kill()
            self.guard.wait(5)

    def _group_gone(self) -> bool:
        if self.guard is None:
            return False
        if self.guard.returncode is not None:
            return True
        try:
            os.killpg(self.guard.pid, 0)
            return False
        except ProcessLookupError:
            return True
        except PermissionError:
            return False

    def run(self) -> None:
        period = 1.0 / self.rate if self.rate > 0 else 0.0
        nxt = time.perf_counter()
        last_step = 0
        with open(self.run_dir / "events.jsonl", "a", encoding="utf-8") as fe, \
                open(self.run_dir / "worker.log", "a", encoding="utf-8") as fl:
            def put(rec: dict[str, Any]) -> None:
                if self._group_gone():
                    self.killed = True
                    return
                rec = {**rec, "t": round(time.time(), 4)}
                fe.write(json.dumps(rec) + "\n")
                fe.flush()
                if rec["kind"] == "log":
                    self.written[rec["step"]] = time.time()
                if self.log:
                    fl.write(log_line(rec) + "\n")
                    fl.flush()
                self.count += 1

            for rec in fake_records(self.steps, outcome=self.outcome, end=False, **self.kw):
                if self._halt.is_set() or self.killed:
                    break
                put(rec)
                last_step = rec["step"]
                if period:
                    nxt += period
                    delay = nxt - time.perf_counter()
                    if delay > 0:
                        if self._halt.wait(delay):
                            break
            if self.end and not self.killed and not self._group_gone():
                outcome = "stopped" if self._halt.is_set() else self.outcome
                put({"kind": "end", "step": last_step, "outcome": outcome, "final_path": None})
        self.done.set()


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--rate", type=float, default=100.0)
    ap.add_argument("--live", action="store_true", help="append live at --rate instead of all at once")
    ap.add_argument("--outcome", default="completed")
    a = ap.parse_args(argv)
    if a.live:
        w = FakeRunWriter(a.run_dir, rate=a.rate, steps=a.steps, outcome=a.outcome)
        w.start()
        try:
            while w.is_alive():
                w.join(0.2)
        except KeyboardInterrupt:
            w.stop()
            w.join()
    else:
        write_fake_run(a.run_dir, steps=a.steps, outcome=a.outcome)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


# -- test helpers (Textual imported lazily: the writer itself needs none) ------


def harness_app(screen_factory: Any, *, theme: str | None = None, open_job: Any = None) -> Any:
    """A bare App that shows ``screen_factory()`` on top of an empty base screen."""
    from textual.app import App

    class DashboardHarness(App):
        def on_mount(self) -> None:
            if theme:
                self.theme = theme
            self.push_screen(screen_factory())

    app = DashboardHarness()
    if open_job is not None:
        app.open_job = open_job  # type: ignore[attr-defined]
    return app


def plots_settled(screen: Any) -> bool:
    """Every plot on ``screen`` shows its latest data (plots are built on a background thread)."""
    from tui.widgets.plot import MetricPlot

    return all(p.settled for p in screen.query(MetricPlot))


async def wait_for(pilot: Any, cond: Any, timeout: float = 10.0, step: float = 0.02) -> None:
    """Pause the pilot until ``cond()`` is true (fails after ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {getattr(cond, '__name__', cond)}")
        await pilot.pause(step)


async def click_when_shown(pilot: Any, selector: str, timeout: float = 10.0) -> None:
    """Click ``selector`` on the top screen once it is laid out (a click sent before the screen's
    first layout lands on nothing: a just-pushed dialog on a loaded CI machine)."""

    def shown() -> bool:
        try:
            w = pilot.app.screen.query_one(selector)
        except Exception:  # noqa: BLE001 - not composed yet
            return False
        return w.region.width > 0 and w.region.height > 0

    await wait_for(pilot, shown, timeout)
    await pilot.click(selector)


def write_fake_sweep(runs_dir: str | Path, name: str, trials: list[tuple[dict[str, Any], str, float | None]], *,
                     t0: float = T0, status: str = "completed", objective: str = "eval_loss",
                     goal: str = "minimize") -> Path:
    """A finished sweep as engine.sweep records it: ``runs_dir/name/sweep.json`` and one fake run per trial
    (``name-t01``…, an hour apart; each trial: (swept values, outcome, objective))."""
    from engine import sweep as S

    runs_dir = Path(runs_dir)
    recs = []
    for i, (values, outcome, obj) in enumerate(trials, 1):
        run = f"{name}-t{i:02d}"
        write_fake_run(runs_dir / run, steps=40, outcome=outcome, end_at=30 if outcome != "completed" else None,
                       t0=t0 + 3600 * (i - 1), seed=i)
        recs.append({"index": i, "values": values, "run": run, "status": outcome, "objective": obj})
    names = list(trials[0][0]) if trials else []
    (runs_dir / name).mkdir(parents=True, exist_ok=True)
    rec = {"name": name, "created": t0, "runs_dir": str(runs_dir), "objective": objective, "goal": goal,
           "status": status, "driver": {}, "trials": recs,
           "spec": {"method": "grid", "parameters": {n: sorted({t[0][n] for t in trials}) for n in names}}}
    rec["best"] = S.best(rec)
    S._write(runs_dir / name, rec)
    return runs_dir / name


def wait_gone(pid: int, timeout: float) -> bool:
    """Whether process ``pid`` ends within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def assert_gone(pid: int, what: str, timeout: float = 5.0) -> None:
    """Fails (the process killed) unless process ``pid`` ends within ``timeout`` seconds."""
    if not wait_gone(pid, timeout):
        os.kill(pid, 9)
        raise AssertionError(f"{what} (pid {pid}) lives on")
