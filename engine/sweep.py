"""Sweeps: a preset's ``[sweep]`` table, its trials, and the driver that runs them one after another.

A preset may carry::

    [sweep]
    method = "grid"            # or "random"
    objective = "eval_loss"    # a value of the runs' eval records (else of their log records)
    goal = "minimize"          # or "maximize"
    budget = 8                 # at most this many trials
    trials = 6                 # random: how many trials (default: budget, else 10)
    seed = 0                   # random: the draw is the same for the same seed
    parallel = 1               # trials at a time: a number, or "auto" (one per GPU set of the target)

    [sweep.parameters]
    "adapter.lora_rank" = [8, 16]                                    # a list of values
    "general.learning_rate" = { min = 1e-4, max = 1e-2, scale = "log", count = 3 }   # a range

A range is drawn uniformly (``scale = "linear"``) or log-uniformly (``"log"``) by a random sweep, and gives
``count`` evenly spaced values (in its scale) to a grid.  Integer fields get whole numbers.

Each trial is the preset's job with the trial's values set: it is validated like any job before anything
starts, and run through the normal launch path (:func:`engine.launch.start_run`, local or SSH) as a run
named ``<sweep>-t01``, ``-t02``… beside the sweep's folder in the runs directory: one after another, or
with ``parallel`` several at a time, each on a GPU set of its own (``launch.procs_per_node`` GPUs, given
to it as ``CUDA_VISIBLE_DEVICES``; see :func:`slots`).  The sweep's folder
(``runs/<sweep>/``) holds ``sweep.json`` (the trials, their runs, status and objective), each trial's
preset (``trials/tNN.toml``) and the driver's log.  The driver (``python -m engine.sweep DIR``) runs
detached like a run's supervisor, so the sweep survives the terminal; :func:`stop` stops it as a whole
(the trial running now, and no more trials).  With ``launch.launcher = "slurm"`` (this machine the login
node, the same allocation for every trial) the trials are one Slurm job array instead, submitted by
:func:`start` (``engine.launch.slurm.array_tasks`` / ``submit_array``: ``--array=1-N%parallel``); the driver
then only follows them, and :func:`stop` cancels the array.  No torch import here.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.schema import FIELD_BY_NAME, RUNS_DIR, JobConfig, Problem, suggest

SWEEP_FILE = "sweep.json"
STOP_FILE = "stop-requested"
LOG_FILE = "sweep.log"
METHODS = ("grid", "random")
GOALS = ("minimize", "maximize")
SCALES = ("linear", "log")
KEYS = ("method", "parameters", "objective", "goal", "budget", "trials", "seed", "parallel")
RANGE_KEYS = ("min", "max", "scale", "count")
#: set by the sweep for each trial: not sweepable
RESERVED = ("launch.run_name", "launch.runs_dir")
DEFAULT_RANDOM_TRIALS = 10
#: a Slurm sweep with parallel = "auto" queues up to this many trials at once (Slurm decides when each runs)
SLURM_QUEUE_SLOTS = range(256)
#: statuses of a trial that are over
TRIAL_DONE = ("completed", "early_stopped", "failed", "stopped", "lost", "skipped")
#: statuses of a trial's run that is not over (a Slurm trial waits in the queue as pending)
TRIAL_ACTIVE = ("pending", "running", "scheduled")


class SweepError(ValueError):
    """A sweep that cannot be found, started or stopped; ``str()`` is one line."""


# ------------------------------------------------------------------ the [sweep] table

def _is_param_leaf(v: Any) -> bool:
    return isinstance(v, list) or (isinstance(v, dict) and any(k in v for k in (*RANGE_KEYS, "values")))


def _flatten(params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"general": {"learning_rate": [...]}}`` (TOML dotted keys) and ``{"general.learning_rate": [...]}``."""
    out: dict[str, Any] = {}
    for k, v in params.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict) and not _is_param_leaf(v):
            out.update(_flatten(v, name + "."))
        else:
            out[name] = v
    return out


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def parse_table(tbl: Any, source: str = "<preset>") -> tuple[dict[str, Any] | None, list[Problem]]:
    """The ``[sweep]`` table, normalised, and the problems of its form (one per wrong key or value)."""
    if not isinstance(tbl, dict):
        return None, [Problem("sweep", f"must be a table ([sweep]) in {source}")]
    probs: list[Problem] = []
    for k in tbl:
        if k not in KEYS:
            probs.append(Problem(f"sweep.{k}", f"unknown key in {source}{suggest(k, KEYS)}", ", ".join(KEYS)))
    spec: dict[str, Any] = {"method": tbl.get("method", "grid"), "objective": tbl.get("objective", "eval_loss"),
                            "goal": tbl.get("goal", "minimize"), "budget": tbl.get("budget"),
                            "trials": tbl.get("trials"), "seed": tbl.get("seed", 0), "parameters": {}}
    if spec["method"] not in METHODS:
        probs.append(Problem("sweep.method", f"{spec['method']!r} is not a sweep method", ", ".join(METHODS)))
    if spec["goal"] not in GOALS:
        probs.append(Problem("sweep.goal", f"{spec['goal']!r} is not a goal", ", ".join(GOALS)))
    if not isinstance(spec["objective"], str) or not spec["objective"].strip():
        probs.append(Problem("sweep.objective", "must name a metric of the runs' records (e.g. eval_loss)"))
    for k in ("budget", "trials"):
        v = spec[k]
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            probs.append(Problem(f"sweep.{k}", f"{v!r} is not a whole number of trials", "1 or more"))
    par = tbl.get("parallel")
    if par is not None and par != "auto" and (not isinstance(par, int) or isinstance(par, bool) or par < 1):
        probs.append(Problem("sweep.parallel", f"{par!r} is not a number of trials at a time", "1 or more, \"auto\""))
    elif par is not None:
        spec["parallel"] = par
    if not isinstance(spec["seed"], int) or isinstance(spec["seed"], bool):
        probs.append(Problem("sweep.seed", f"{spec['seed']!r} is not a whole number"))
    raw = tbl.get("parameters")
    if not isinstance(raw, dict) or not raw:
        probs.append(Problem("sweep.parameters", "a sweep needs a [sweep.parameters] table naming at least one field "
                                                 "and its values (e.g. \"general.learning_rate\" = [1e-4, 1e-3])"))
        return spec, probs
    for name, v in _flatten(raw).items():
        where = f"sweep.parameters.{name}"
        f = FIELD_BY_NAME.get(name)
        if f is None:
            probs.append(Problem(where, f"unknown field{suggest(name, FIELD_BY_NAME)}"))
            continue
        if name in RESERVED:
            probs.append(Problem(where, "is set by the sweep for each trial and cannot be swept"))
            continue
        if isinstance(v, dict) and "values" in v:
            extra = [k for k in v if k != "values"]
            if extra:
                probs.append(Problem(where, f"a list of values takes no {', '.join(extra)}"))
            v = v["values"]
        if isinstance(v, list):
            if not v:
                probs.append(Problem(where, "the list of values is empty"))
                continue
            spec["parameters"][name] = {"values": list(v)}
            continue
        if not isinstance(v, dict):
            probs.append(Problem(where, "must be a list of values or a range { min, max, scale, count }"))
            continue
        bad = [k for k in v if k not in RANGE_KEYS]
        if bad:
            probs.append(Problem(where, f"unknown key {bad[0]!r} in a range{suggest(bad[0], RANGE_KEYS)}",
                                 ", ".join(RANGE_KEYS)))
            continue
        if not f.kind.numeric:
            probs.append(Problem(where, f"a range needs a numeric field ({name} is {f.kind}); give a list of values"))
            continue
        lo, hi, scale, count = v.get("min"), v.get("max"), v.get("scale", "linear"), v.get("count")
        if not (_num(lo) and _num(hi)):
            probs.append(Problem(where, "a range needs numbers min and max"))
            continue
        if lo > hi:
            probs.append(Problem(where, f"min {lo} is above max {hi}"))
            continue
        if scale not in SCALES:
            probs.append(Problem(where, f"scale {scale!r} is not offered", ", ".join(SCALES)))
            continue
        if scale == "log" and lo <= 0:
            probs.append(Problem(where, f"a log scale needs min above 0 (min is {lo})"))
            continue
        if count is not None and (not isinstance(count, int) or isinstance(count, bool) or count < 1):
            probs.append(Problem(where, f"count {count!r} is not a whole number of values", "1 or more"))
            continue
        if count is None and spec["method"] == "grid":
            probs.append(Problem(where, "a range in a grid sweep needs count (how many values between min and max)"))
            continue
        spec["parameters"][name] = {"min": lo, "max": hi, "scale": scale, "count": count}
    return spec, probs


def table_for_toml(spec: dict[str, Any]) -> dict[str, Any]:
    """The normalised spec back as a ``[sweep]`` table (unset keys left out)."""
    out = {k: spec[k] for k in ("method", "objective", "goal", "budget", "trials", "seed", "parallel")
           if spec.get(k) is not None}
    params = {}
    for name, p in spec.get("parameters", {}).items():
        params[name] = list(p["values"]) if "values" in p else {k: p[k] for k in RANGE_KEYS if p.get(k) is not None}
    out["parameters"] = params
    return out


# ------------------------------------------------------------------ trials

@dataclass
class Trial:
    index: int  # 1-based
    values: dict[str, Any]  # the swept fields' values
    job: JobConfig

    def label(self) -> str:
        return ", ".join(f"{k}={fmt(v)}" for k, v in self.values.items())


def fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return json.dumps(v) if isinstance(v, (list, dict)) else str(v)


def _round(name: str, x: float) -> Any:
    if FIELD_BY_NAME[name].kind.cli_type is int:
        return int(round(x))
    return float(f"{x:.6g}")


def _points(name: str, p: dict[str, Any]) -> list[Any]:
    """The grid values of one parameter (a range: ``count`` evenly spaced in its scale, duplicates dropped)."""
    if "values" in p:
        return list(p["values"])
    lo, hi, n = float(p["min"]), float(p["max"]), int(p["count"])
    if n == 1:
        xs = [lo]
    elif p["scale"] == "log":
        a, b = math.log(lo), math.log(hi)
        xs = [math.exp(a + (b - a) * i / (n - 1)) for i in range(n)]
    else:
        xs = [lo + (hi - lo) * i / (n - 1) for i in range(n)]
    out: list[Any] = []
    for x in xs:
        v = _round(name, x)
        if v not in out:
            out.append(v)
    return out


def _draw(name: str, p: dict[str, Any], rng: random.Random) -> Any:
    if "values" in p:
        return rng.choice(p["values"])
    lo, hi = float(p["min"]), float(p["max"])
    if p["scale"] == "log":
        return _round(name, math.exp(rng.uniform(math.log(lo), math.log(hi))))
    return _round(name, rng.uniform(lo, hi))


def combinations(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The swept values of every trial, in order: the grid's product (first parameter slowest), or the random
    draws (seeded), cut at ``budget``."""
    params = spec["parameters"]
    budget = spec.get("budget")
    if spec["method"] == "grid":
        names = list(params)
        combos = [dict(zip(names, vals)) for vals in itertools.product(*(_points(n, params[n]) for n in names))]
        return combos[:budget] if budget else combos
    n = spec.get("trials") or budget or DEFAULT_RANDOM_TRIALS
    if budget:
        n = min(n, budget)
    rng = random.Random(spec.get("seed", 0))
    return [{name: _draw(name, p, rng) for name, p in params.items()} for _ in range(n)]


def trials(job: JobConfig) -> list[Trial]:
    """The sweep's trials: the job (its ``[sweep]`` table left out) with each combination's values set."""
    if not job.sweep:
        raise SweepError("the preset has no [sweep] table")
    out = []
    for i, combo in enumerate(combinations(job.sweep), 1):
        t = job.copy()
        t.sweep = None
        t.values.update(combo)
        out.append(Trial(i, combo, t))
    return out


def trial_problems(job: JobConfig) -> list[str]:
    """One line per invalid trial (naming the trial, its values and the field), plus the sweep's own problems:
    an objective the runs will not record.  Empty when every trial may start."""
    lines = []
    ts = trials(job)
    for t in ts:
        for p in t.job.problems():
            lines.append(f"trial {t.index} ({t.label()}): {p}")
    spec = job.sweep or {}
    if spec.get("objective", "").startswith("eval_") and ts:
        res = ts[0].job.resolved()
        if res.get("eval.evaluation_strategy") == "no":
            lines.append(f"sweep.objective: {spec['objective']} needs evaluations: set eval.evaluation_strategy (and "
                         f"a validation set: data.val_size or data.validation_path), or choose objective = \"loss\"")
    return lines


# ------------------------------------------------------------------ the record

def read(sweep_dir: Path) -> dict[str, Any]:
    try:
        d = json.loads((Path(sweep_dir) / SWEEP_FILE).read_text(encoding="utf-8"))
        return d if isinstance(d, dict) else {}
    except (OSError, ValueError):
        return {}


def _write(sweep_dir: Path, rec: dict[str, Any]) -> None:
    from engine.safeio import atomic_write

    atomic_write(Path(sweep_dir) / SWEEP_FILE, json.dumps(rec, indent=1, default=str))


def driver_alive(rec: dict[str, Any]) -> bool:
    from engine.launch import procs

    d = rec.get("driver") or {}
    return procs.run_alive(d.get("pgid"), d.get("token"), 0.0, d.get("pid_start"))


def status(rec: dict[str, Any]) -> str:
    """running / completed / stopped / lost (the driver is gone without finishing)."""
    st = str(rec.get("status", "unknown"))
    if st == "running" and not driver_alive(rec) and not rec.get("slurm_array"):
        return "lost"  # (a job array's trials go on in Slurm without the driver: see refresh)
    return st


def trial_result(ref: Any, run_status: str, error: str | None, objective: str, goal: str) -> dict[str, Any]:
    """What the sweep records of a trial whose run is over: its status (a Slurm trial scancelled: ``stopped`` as
    a local one, or ``skipped`` when it was still queued), objective and end."""
    from engine.events import EVENTS_FILE
    from engine.launch.rundir import read_records

    recs = read_records(ref.run_dir / EVENTS_FILE)
    st = run_status
    if st == "cancelled":
        st = "stopped" if any(r.get("kind") == "start" for r in recs) else "skipped"
    return {"status": st, "objective": objective_of(recs, objective, goal), "ended": time.time(), "error": error}


def refresh(sweep_dir: Path) -> dict[str, Any]:
    """The sweep's record; for a job array whose driver is gone (the login node restarted, the driver killed),
    brought up to date from its trials' runs — Slurm runs them without the driver — and closed once they are
    all over."""
    rec = read(sweep_dir)
    if rec.get("status") != "running" or not rec.get("slurm_array") or driver_alive(rec):
        return rec
    import engine.launch as L

    runs_dir = rec.get("runs_dir", RUNS_DIR)
    for t in rec.get("trials", []):
        if t.get("run") and t.get("status") in TRIAL_ACTIVE:
            try:
                ref = L.resolve_run(t["run"], runs_dir)
                info = L.run_info(ref, runs_dir)
            except L.LaunchError:
                continue
            if info.status in TRIAL_ACTIVE:
                t["status"] = info.status
            else:
                t.update(trial_result(ref, info.status, info.error, rec.get("objective", "eval_loss"),
                                      rec.get("goal", "minimize")))
    if not any(t.get("status") in TRIAL_ACTIVE for t in rec.get("trials", [])):
        rec["status"] = "stopped" if _stop_requested(Path(sweep_dir)) else "completed"
        rec["ended"], rec["best"] = time.time(), best(rec)
    _write(sweep_dir, rec)
    return rec


def best(rec: dict[str, Any]) -> int | None:
    """The index of the best trial with an objective (completed or early-stopped), or None."""
    sign = -1 if rec.get("goal") == "maximize" else 1
    scored = [t for t in rec.get("trials", []) if isinstance(t.get("objective"), (int, float))
              and t.get("status") in ("completed", "early_stopped")]
    if not scored:
        return None
    return min(scored, key=lambda t: sign * t["objective"])["index"]


def objective_of(records: list[dict[str, Any]], objective: str, goal: str) -> float | None:
    """The objective of a run: the best value over its eval records (an early-stopped run's best evaluation
    counts), else the last value in its log records (e.g. ``loss``)."""
    # eval records carry the trainer's metrics without their eval_ prefix (eval_loss → loss)
    keys = (objective, objective[len("eval_"):]) if objective.startswith("eval_") else (objective,)
    vals = [next(r[k] for k in keys if isinstance(r.get(k), (int, float))) for r in records
            if r.get("kind") == "eval" and any(isinstance(r.get(k), (int, float)) for k in keys)]
    if vals:
        return float(max(vals) if goal == "maximize" else min(vals))
    logs = [r[objective] for r in records if r.get("kind") == "log" and isinstance(r.get(objective), (int, float))]
    return float(logs[-1]) if logs else None


def find(name: str, runs_dir: str | os.PathLike[str] = RUNS_DIR) -> Path | None:
    """A sweep's folder by name (in ``runs_dir``) or path; None when it names no sweep."""
    for d in (Path(runs_dir).expanduser() / name, Path(name).expanduser()):
        if (d / SWEEP_FILE).is_file():
            return d.resolve()
    return None


def list_sweeps(runs_dir: str | os.PathLike[str] = RUNS_DIR) -> list[Path]:
    base = Path(runs_dir).expanduser()
    if not base.is_dir():
        return []
    return sorted((d for d in base.iterdir() if (d / SWEEP_FILE).is_file()),
                  key=lambda d: read(d).get("created", 0), reverse=True)


def trial_runs(runs_dir: str | os.PathLike[str] = RUNS_DIR) -> dict[str, tuple[str, int, bool]]:
    """Run name → (sweep name, trial index, whether it is the sweep's best) for every sweep in ``runs_dir``."""
    out = {}
    for d in list_sweeps(runs_dir):
        rec = read(d)
        b = best(rec)
        for t in rec.get("trials", []):
            if t.get("run"):
                out[t["run"]] = (d.name, int(t["index"]), t["index"] == b)
    return out


def table(rec: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The swept values against the objective: (header, rows), the best trial marked ``*``."""
    params = list((rec.get("spec") or {}).get("parameters", {}))
    b = best(rec)
    head = ["", "trial", "run", "status", *params, rec.get("objective", "objective")]
    rows = []
    for t in rec.get("trials", []):
        obj = t.get("objective")
        rows.append(["*" if t["index"] == b else "", str(t["index"]), t.get("run") or "-", str(t.get("status")),
                     *(fmt(t["values"].get(p)) for p in params),
                     f"{obj:.4f}" if isinstance(obj, (int, float)) else "-"])
    return head, rows


def render_table(rec: dict[str, Any]) -> str:
    """:func:`table` as aligned plain text (``finetui sweep show``; the TUI shows the same rows)."""
    head, rows = table(rec)
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [head, *rows]]
    return "\n".join(lines)


# ------------------------------------------------------------------ start / drive / stop

def start(job: JobConfig, *, runs_dir: str | os.PathLike[str] | None = None, name: str | None = None,
          cwd: str | None = None) -> Path:
    """Validate every trial (SweepError with one line per invalid trial), write the sweep's folder and start its
    driver detached; → the sweep's folder."""
    from engine import presets
    from engine.launch import procs
    from engine.launch.rundir import default_name, unique_dir, valid_name

    lines = trial_problems(job)
    if lines:
        raise SweepError("\n".join(lines))
    ts = trials(job)
    res = ts[0].job.resolved()
    base = Path(runs_dir or res.get("launch.runs_dir") or RUNS_DIR).expanduser().resolve()
    name = name or res.get("launch.run_name") or default_name(res).replace("ft_", "sw_", 1)
    if not valid_name(name):
        raise SweepError(f"launch.run_name: {name!r} cannot name a folder")
    sweep_dir = unique_dir(base, name)
    name = sweep_dir.name
    (sweep_dir / "trials").mkdir()
    rec_trials = []
    for t in ts:
        t.job.values["launch.run_name"] = f"{name}-t{t.index:02d}"
        t.job.values["launch.runs_dir"] = str(base)
        presets.save(t.job, sweep_dir / "trials" / f"t{t.index:02d}.toml")
        rec_trials.append({"index": t.index, "values": t.values, "run": None, "status": "pending", "objective": None})
    spec = job.sweep or {}
    rec = {"name": name, "created": time.time(), "runs_dir": str(base), "spec": table_for_toml(spec),
           "objective": spec.get("objective", "eval_loss"), "goal": spec.get("goal", "minimize"),
           "status": "running", "trials": rec_trials, "driver": {}}
    _write(sweep_dir, rec)
    if slurm_array(ts):
        _submit_array(sweep_dir, ts, spec.get("parallel"))
    token = uuid.uuid4().hex
    env = dict(os.environ)
    env[procs.TOKEN_ENV] = token
    env.setdefault("PYTHONUNBUFFERED", "1")
    argv = procs.module_argv(procs.python_exe(), "engine.sweep", str(sweep_dir))
    try:
        pid, pgid = procs.spawn_detached(argv, cwd=cwd or os.getcwd(), log_path=sweep_dir / LOG_FILE, env=env)
    except OSError as e:
        raise SweepError(f"cannot start the sweep in {sweep_dir}: {e}") from None
    rec = read(sweep_dir)  # (the driver may have written already)
    rec["driver"] = {"pid": pid, "pgid": pgid, "token": token, "pid_start": procs.start_time(pid),
                     "started": time.time()}
    _write(sweep_dir, rec)
    return sweep_dir


def slurm_array(ts: list[Trial]) -> bool:
    """Whether the trials run as one Slurm job array: launcher slurm with this machine as the login node, and
    the same allocation for every trial (trials that differ in it, or go through an SSH login node, are
    submitted by the driver as jobs of their own)."""
    from engine.launch import slurm

    ress = [t.job.resolved() for t in ts]
    if not ress or any(r.get("launch.launcher") != "slurm" for r in ress):
        return False
    keys = {slurm.array_key(r) for r in ress}
    return len(keys) == 1 and next(iter(keys))[-1]


def _submit_array(sweep_dir: Path, ts: list[Trial], parallel: int | str | None) -> None:
    """Prepare every trial's run directory (the normal launch path, held back from sbatch) and submit them as
    one job array: task i runs trial i, at most ``parallel`` at a time (``%N``; "auto" or unset: as Slurm
    allows).  On failure nothing of the sweep is left and SweepError says why."""
    import shutil

    import engine.launch as L
    from engine.launch import slurm

    rec = read(sweep_dir)
    refs: list[Any] = []
    try:
        with slurm.array_tasks() as tasks:
            for t in ts:
                refs.append(L.start_run(t.job))
        array_id = slurm.submit_array(sweep_dir, tasks, parallel=parallel if isinstance(parallel, int) else None)
    except Exception as e:  # noqa: BLE001 - one sentence; the prepared runs go with the sweep
        for ref in refs:
            shutil.rmtree(ref.run_dir, ignore_errors=True)
        shutil.rmtree(sweep_dir, ignore_errors=True)
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SweepError(f"the sweep's job array was not submitted: {msg}") from None
    for t, ref in zip(rec["trials"], refs):
        t.update(run=ref.name, started=time.time())
    rec.update(slurm_array=array_id, slurm_script=str(sweep_dir / slurm.SCRIPT_FILE),
               slurm_conf=os.environ.get("SLURM_CONF"))
    _write(sweep_dir, rec)


def _stop_requested(sweep_dir: Path) -> bool:
    return (sweep_dir / STOP_FILE).exists()


def slots(res: dict[str, Any], parallel: int | str | None,
          probe: Any = None) -> tuple[list[str | None], str]:
    """Where trials run at the same time: one ``CUDA_VISIBLE_DEVICES`` value per GPU set of the target
    (``launch.procs_per_node`` GPUs each; None: the job's own GPUs / the CPU), and a note when fewer than
    asked.  ``parallel``: 1 (default), a number, or ``"auto"`` (every GPU set of the target)."""
    want = parallel or 1
    if res.get("launch.launcher") == "slurm":  # each trial a job of its own: Slurm places them
        return [None] * (len(SLURM_QUEUE_SLOTS) if want == "auto" else int(want)), ""
    if want == 1:
        return [None], ""
    if res.get("launch.hosts"):
        return [None], "a multi-node job runs one trial at a time"
    if res.get("launch.device") == "cpu":
        return [None] * (1 if want == "auto" else int(want)), ""
    from engine import gpus as G
    from engine.schema import is_local_host

    host = res.get("launch.host")
    gpus = (probe or G.probe)(None if is_local_host(host) else host)
    where = "this machine" if is_local_host(host) else str(host)
    if not gpus:
        return [None], f"{where} shows no GPUs (nvidia-smi): one trial at a time"
    per = int(res.get("launch.procs_per_node") or 1)
    # UUIDs name a GPU whatever CUDA's device order; DeepSpeed's launcher takes indices only
    ids = [str(g.index) if res.get("launch.launcher") == "deepspeed" or not g.uuid else g.uuid for g in gpus]
    sets = [",".join(ids[k * per:(k + 1) * per]) for k in range(len(ids) // per)]
    n = len(sets) if want == "auto" else min(int(want), len(sets))
    note = "" if want == "auto" or n == int(want) else (
        f"{where} has {len(gpus)} GPUs: {n} trial(s) of {per} GPU(s) at a time, not {want}")
    return (sets[:n] or [None]), note


def drive(sweep_dir: Path, poll: float = 1.0) -> int:
    """Run the sweep's pending trials (the driver process): one after another, or as many at a time as the
    sweep's ``parallel`` and the target's GPU sets allow, each trial on a set of its own.  → 0 completed,
    1 stopped."""
    import engine.launch as L
    from engine import presets

    sweep_dir = Path(sweep_dir).resolve()
    deadline = time.monotonic() + 30  # the starter writes the driver's pid just after starting it
    while not (read(sweep_dir).get("driver") or {}).get("token") and time.monotonic() < deadline:
        time.sleep(0.05)

    def update(index: int, **kv: Any) -> None:
        rec = read(sweep_dir)
        for t in rec["trials"]:
            if t["index"] == index:
                t.update(kv)
        _write(sweep_dir, rec)

    def say(text: str) -> None:
        print(text, flush=True)

    rec = read(sweep_dir)
    objective, goal = rec.get("objective", "eval_loss"), rec.get("goal", "minimize")
    runs_dir = rec.get("runs_dir", RUNS_DIR)
    pending = [t for t in rec["trials"] if t["status"] == "pending" and not t.get("run")]
    free: list[str | None] = [None]
    if pending:
        try:
            res = presets.load(sweep_dir / "trials" / f"t{pending[0]['index']:02d}.toml").resolved()
            free, note = slots(res, (rec.get("spec") or {}).get("parallel"))
        except Exception as e:  # noqa: BLE001 - one at a time, said in the log
            free, note = [None], f"one trial at a time ({e})"
        if note:
            say(f"note: {note}")
    running: dict[int, tuple[Any, str | None, bool]] = {}  # trial → (run, its GPU set, stop asked)
    shown: dict[int, str] = {}  # trial → the status recorded
    for t in rec["trials"]:  # already submitted (a Slurm job array's tasks): watched like the trials started here
        if t.get("run") and t["status"] in TRIAL_ACTIVE:
            running[t["index"]] = (L.resolve_run(t["run"], runs_dir), None, False)
            shown[t["index"]] = t["status"]
    if rec.get("slurm_array"):
        say(f"job array {rec['slurm_array']}: {len(running)} trial(s) queued ({rec.get('slurm_script')})")
        poll = max(poll, 2.0)
    while pending or running:
        stopping = _stop_requested(sweep_dir)
        while pending and free and not stopping:
            t = pending.pop(0)
            gpu_set = free.pop(0)
            i = t["index"]
            on = f" on GPUs {gpu_set}" if gpu_set else ""
            say(f"trial {i}: starting{on} ({', '.join(f'{k}={fmt(v)}' for k, v in t['values'].items())})")
            try:
                job = presets.load(sweep_dir / "trials" / f"t{i:02d}.toml")
                env = None
                if gpu_set is not None:
                    job.values["launch.procs_per_node"] = gpu_set.count(",") + 1
                    env = {"CUDA_VISIBLE_DEVICES": gpu_set}
                ref = L.start_run(job, secrets=env)
            except Exception as e:  # noqa: BLE001 - a trial that cannot start is recorded; the sweep goes on
                msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                say(f"trial {i}: did not start: {msg}")
                update(i, status="failed", error=msg)
                free.insert(0, gpu_set)
                continue
            update(i, run=ref.name, status="running", started=time.time(), gpus=gpu_set)
            shown[i] = "running"
            running[i] = (ref, gpu_set, False)
        for i, (ref, gpu_set, asked) in list(running.items()):
            info = L.run_info(ref, runs_dir)
            if info.status in TRIAL_ACTIVE:
                if info.status != shown.get(i):
                    shown[i] = info.status
                    update(i, status=info.status)
                if stopping and not asked:
                    say(f"trial {i}: stopping ({ref.name}): the sweep is stopped")
                    running[i] = (ref, gpu_set, True)
                    try:
                        L.stop_run(ref, runs_dir=runs_dir)
                    except Exception as e:  # noqa: BLE001 - said in the log; its status tells the rest
                        say(f"trial {i}: stop failed: {e}")
                continue
            res_i = trial_result(ref, info.status, info.error, objective, goal)
            update(i, **res_i)
            val = res_i["objective"]
            say(f"trial {i}: {res_i['status']}" + (f", {objective} {val:.4f}" if val is not None else ""))
            del running[i]
            free.append(gpu_set)
        if stopping and not running:
            break
        if running:
            remote = any(ref.is_remote for ref, _, _ in running.values())
            time.sleep(max(poll, 5.0) if remote else poll)
    rec = read(sweep_dir)
    stopped = _stop_requested(sweep_dir)
    for t in rec["trials"]:
        if t["status"] == "pending" and not t.get("run"):
            t["status"] = "skipped"
    rec["status"] = "stopped" if stopped else "completed"
    rec["ended"] = time.time()
    rec["best"] = best(rec)
    _write(sweep_dir, rec)
    say(f"sweep {rec['status']}; best trial: {rec['best']}")
    return 1 if stopped else 0


def stop(sweep_dir: Path, grace: float = 15.0) -> str:
    """Stop the sweep as a whole: no trial starts any more, the running one is stopped (SIGTERM, SIGKILL after
    ``grace``); waits for the driver to record it.  → the sweep's final status."""
    import engine.launch as L
    from engine.launch import procs

    sweep_dir = Path(sweep_dir)
    rec = read(sweep_dir)
    if rec.get("status") != "running":
        return str(rec.get("status"))
    (sweep_dir / STOP_FILE).touch()
    runs_dir = rec.get("runs_dir", RUNS_DIR)
    if rec.get("slurm_array"):  # every task of the job array at once (the running and the queued)
        from engine.launch import slurm

        try:
            slurm.cancel(rec["slurm_array"], {"slurm_conf": rec.get("slurm_conf")})
        except L.LaunchError:
            pass
    for t in rec.get("trials", []):  # stopped at once, not at the driver's next look
        if t.get("status") in TRIAL_ACTIVE and t.get("run"):
            try:
                L.stop_run(t["run"], grace=grace, runs_dir=runs_dir)
            except L.LaunchError:
                pass
    deadline = time.monotonic() + grace + 30
    while time.monotonic() < deadline and driver_alive(read(sweep_dir)) and read(sweep_dir).get("status") == "running":
        time.sleep(0.2)
    rec = read(sweep_dir)
    if rec.get("status") == "running":  # the driver is gone (or stuck): the sweep is closed here
        d = rec.get("driver") or {}
        procs.stop_group(d.get("pgid"), grace=5.0, token=d.get("token"), started=d.get("pid_start"))
        for t in rec.get("trials", []):
            if t.get("status") in TRIAL_ACTIVE and t.get("run"):
                try:
                    t["status"] = L.stop_run(t["run"], grace=grace, runs_dir=runs_dir)
                except L.LaunchError:
                    t["status"] = "stopped"
            elif t.get("status") == "pending":
                t["status"] = "skipped"
        rec["status"], rec["ended"], rec["best"] = "stopped", time.time(), best(rec)
        _write(sweep_dir, rec)
    return str(rec.get("status"))


if __name__ == "__main__":  # the driver: python -m engine.sweep SWEEP_DIR
    if len(sys.argv) != 2:
        print("usage: python -m engine.sweep SWEEP_DIR", file=sys.stderr)
        sys.exit(2)
    sys.exit(drive(Path(sys.argv[1])))
