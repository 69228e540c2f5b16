"""``finetui sweep``: run a preset's ``[sweep]`` (engine.sweep) and look at it.

* ``finetui sweep FILE [--detach]``: validate every trial (one line per invalid trial, exit 2; nothing
  starts), start the sweep's driver detached, then follow it (Ctrl-C detaches; the sweep goes on).
* ``finetui sweep --attach SWEEP``: follow a sweep until it ends; exit 0 when it completed.
* ``finetui sweep show [SWEEP]``: the swept values against the objective, the best trial marked
  (without SWEEP: every sweep in the runs directory).
* ``finetui stop SWEEP`` stops a sweep as a whole (tui/commands/launch.py asks engine.sweep.stop).

On Slurm the trials are one job array (engine.sweep, docs/slurm.md); the commands are the same.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

import typer

from tui.commands import common


def _sweep_dir(name: str, runs_dir: Path) -> Path:
    from engine import sweep as S

    d = S.find(name, runs_dir)
    if d is None:
        names = [p.name for p in S.list_sweeps(runs_dir)]
        common.fail(f"no sweep {name!r} in {runs_dir}" + (f" (sweeps there: {', '.join(names[:5])})" if names
                                                          else " (no sweeps there)"))
    return d


def follow(sweep_dir: Path, poll: float = 1.0) -> int:
    """Print each trial's changes until the sweep ends, then its table; → 0 when it completed."""
    from engine import sweep as S

    seen: dict[int, Any] = {}
    try:
        while True:
            rec = S.refresh(sweep_dir)
            n = len(rec.get("trials", []))
            for t in rec.get("trials", []):
                key = (t.get("status"), t.get("run"))
                if seen.get(t["index"]) != key and (t.get("status") != "pending" or t.get("run")):
                    seen[t["index"]] = key
                    obj = t.get("objective")
                    extra = f", {rec.get('objective')} {obj:.4f}" if isinstance(obj, (int, float)) else ""
                    err = f": {t['error']}" if t.get("status") == "failed" and t.get("error") else ""
                    vals = ", ".join(f"{k}={S.fmt(v)}" for k, v in t["values"].items())
                    typer.echo(f"trial {t['index']}/{n} {t.get('run') or '-'} ({vals}): {t['status']}{extra}{err}")
            st = S.status(rec)
            if st != "running":
                break
            time.sleep(poll)
    except KeyboardInterrupt:
        common.err(f"detached; the sweep goes on: finetui sweep --attach {sweep_dir.name}; "
                   f"stop it with finetui stop {sweep_dir.name}")
        return 130
    typer.echo(f"sweep {sweep_dir.name}: {st}")
    typer.echo(S.render_table(rec))
    return 0 if st == "completed" else 1


def register(app: typer.Typer) -> None:
    from tui.commands.launch import RUNS_DIR_OPT, _runs_dir

    @app.command()
    def sweep(
        target: Optional[str] = typer.Argument(None, metavar="FILE | show [SWEEP]",
                                               help="A TOML preset with a \\[sweep] table, or `show`."),
        name: Optional[str] = typer.Argument(None, metavar="[SWEEP]", help="With show: the sweep to show."),
        attach: Optional[str] = typer.Option(None, "--attach", metavar="SWEEP",
                                             help="Follow a running sweep until it ends."),
        detach: bool = typer.Option(False, "--detach", "-d", help="Start and return (print the sweep's name)."),
        runs_dir: Optional[Path] = RUNS_DIR_OPT,
    ) -> None:
        """Run a preset's \\[sweep] (its trials on its target), follow one, or show its results."""
        from engine import sweep as S

        if attach is not None:
            raise typer.Exit(follow(_sweep_dir(attach, _runs_dir(runs_dir))))
        if target == "show":
            if name is None:
                dirs = S.list_sweeps(_runs_dir(runs_dir))
                if not dirs:
                    common.fail(f"no sweeps in {_runs_dir(runs_dir)}")
            else:
                dirs = [_sweep_dir(name, _runs_dir(runs_dir))]
            for i, d in enumerate(dirs):
                rec = S.refresh(d)
                b = S.best(rec)
                typer.echo(("\n" if i else "") + f"sweep {d.name}: {S.status(rec)}; {rec.get('goal')} "
                           f"{rec.get('objective')}; best: " + (f"trial {b}" if b else "none yet"))
                typer.echo(S.render_table(rec))
            return
        if target is None:
            common.fail("give a preset with a [sweep] table (finetui sweep FILE), --attach SWEEP or show [SWEEP]")
        if name is not None:
            common.fail(f"unexpected argument {name!r} (finetui sweep FILE takes one preset)")
        job = common.load_job(target)
        if not job.sweep:
            common.fail(f"{target}: no [sweep] table (add one: method, parameters, objective; see the README)")
        try:
            d = S.start(job, runs_dir=str(runs_dir) if runs_dir is not None else None)
        except S.SweepError as e:
            for line in str(e).splitlines():
                common.err(line)
            raise typer.Exit(2) from None
        n = len(S.read(d).get("trials", []))
        if detach:
            typer.echo(d.name)
            common.err(f"started sweep {d.name} ({n} trials) in {d}; follow it with finetui sweep --attach {d.name}")
            return
        common.err(f"started sweep {d.name} ({n} trials) in {d} (Ctrl-C detaches; finetui stop {d.name} stops it)")
        raise typer.Exit(follow(d))
