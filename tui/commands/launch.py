"""Run commands: train, runs, attach, logs, stop, doctor.

``train`` always starts the run detached; without ``--detach`` it then follows
the run's events with a progress bar and exits with the run's outcome (0 only
when completed).  Ctrl-C asks whether to stop the run (stops it when there is
no terminal to ask on).  Bad input → one line, exit 2.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

import typer

from engine.schema import LOCAL_HOST, REMOTE_PYTHON, REMOTE_WORKDIR, is_local_host
from engine.errors import FinetuiError
from tui.commands import common
from tui.follow import format_event

RUNS_DIR_OPT = typer.Option(None, "--runs-dir", envvar="FINETUI_RUNS_DIR",
                            help="Folder of run directories (default: runs).")


def _runs_dir(v: Optional[Path]) -> Path:
    return v if v is not None else Path("runs")


def _resolve(run: str, runs_dir: Optional[Path]):
    import engine.launch as L

    try:
        return L.resolve_run(run, _runs_dir(runs_dir))
    except L.LaunchError as e:
        common.fail(str(e))


def _upload_progress():  # noqa: ANN202
    """Report a data upload on stderr: one line kept up to date on a terminal, a line per tenth otherwise."""
    from engine.launch import upload_meter

    shown: dict[str, int] = {}
    tty = sys.stderr.isatty()

    def show(host: str, sent: int, total: int, text: str) -> None:
        pct = 100 if not total else int(sent * 100 / total)
        if tty:
            sys.stderr.write("\r" + text + "\033[K" + ("\n" if sent >= total else ""))
            sys.stderr.flush()
        elif shown.get(host, -1) < pct // 10:
            shown[host] = pct // 10
            common.err(text)

    return upload_meter(show)


def _outcome_code(src, last_end: Optional[dict]) -> int:  # noqa: ANN001
    if last_end is not None:
        return 0 if last_end.get("outcome") == "completed" else 1
    return 1


def _follow(ref, *, progress: bool, replay_json: bool = False, offset: int = 0) -> int:  # noqa: ANN001
    """Follow a run's events until it ends; return the exit code (0 only when completed)."""
    import engine.launch as L
    from rich.console import Console

    console = Console(stderr=False, highlight=False)
    src = L.event_source(ref, offset)
    end: Optional[dict] = None
    stopping = False
    last_err = None

    def on_interrupt() -> None:
        nonlocal stopping
        if stopping:
            raise KeyboardInterrupt
        if common.stdin_is_tty():
            try:
                ans = typer.confirm(f"\nStop the run {ref.name}?", default=False)
            except (KeyboardInterrupt, EOFError, typer.Abort):
                ans = False
            if not ans:
                console.print(f"detached; the run goes on — reattach with: finetui attach {ref.name}")
                raise typer.Exit(130)
        console.print(f"stopping {ref.name} …")
        stopping = True
        try:
            L.stop_run(ref)
        except L.LaunchError as e:
            common.err(str(e))

    if not progress:
        while True:
            try:
                recs = src.read()
                for r in recs:
                    if replay_json:
                        sys.stdout.write(json.dumps(r) + "\n")
                    elif r.get("kind") != "progress":  # (the step between log points: not a line each second)
                        console.print(format_event(r), markup=False)
                    if r.get("kind") == "end":
                        end = r
                sys.stdout.flush()
                if src.done and not recs:
                    break
                if not recs:
                    err = getattr(src, "error", None)
                    if err and err != last_err:
                        common.err(f"{err} — reconnecting")
                        last_err = err
                    time.sleep(0.2)
            except KeyboardInterrupt:
                on_interrupt()
        return _finish(src, end, ref, Console(stderr=True, highlight=False) if replay_json else console)

    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    prog = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[phase]}"),
                    TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console,
                    transient=False)
    with prog:
        task = prog.add_task(ref.name, total=None, loss="-", phase="")
        while True:
            try:
                recs = src.read()
                for r in recs:
                    k = r.get("kind")
                    if k == "start":
                        prog.update(task, total=int(r.get("total_steps") or 0) or None, phase="training")
                    elif k == "status":
                        prog.update(task, phase=str(r.get("phase", "")))
                    elif k == "log":
                        if r.get("loss") is not None:
                            prog.update(task, loss=f"{float(r['loss']):.4f}")
                    elif k == "eval":
                        prog.console.print(format_event(r), markup=False)
                    elif k == "checkpoint":
                        prog.console.print(f"checkpoint {r.get('path', '')} (step {r.get('step')})", markup=False)
                    elif k == "error":
                        prog.console.print(f"error: {r.get('message', '')}", markup=False)
                    elif k == "end":
                        end = r
                    if r.get("step") is not None:
                        prog.update(task, completed=int(r.get("step") or 0))
                if src.done and not recs:
                    break
                if not recs:
                    err = getattr(src, "error", None)
                    if err and err != last_err:
                        prog.console.print(f"{err} — reconnecting", markup=False)
                        last_err = err
                    time.sleep(0.2)
            except KeyboardInterrupt:
                on_interrupt()
    return _finish(src, end, ref, console)


def _finish(src, end, ref, console) -> int:  # noqa: ANN001
    if end is not None:
        oc = end.get("outcome", "?")
        extra = f" → {end['final_path']}" if end.get("final_path") else ""
        console.print(f"run {ref.name}: {oc}{extra}", markup=False)
    elif getattr(src, "lost", False):
        console.print(f"run {ref.name}: lost (its processes are gone without an end record; see finetui logs "
                      f"{ref.name})", markup=False)
    if hasattr(src, "close"):
        src.close()
    return _outcome_code(src, end)


def _own_terminal() -> bool:
    """Whether this process writes to real file descriptors (the console script), not to a test runner's
    captured streams (typer's CliRunner), which an exec would leave behind."""
    try:
        return sys.stdout.fileno() == 1 and sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):
        return False


def _exec_follower(ref) -> None:  # noqa: ANN001
    """Follow a local run from a small process: this one becomes ``tui/follow.py`` (standard library + the event
    record: about 10 MB instead of the CLI's 40 with typer, rich and the schema loaded); the run itself
    (supervisor and worker) is already detached and survives the terminal either way."""
    import os

    from engine.launch.rundir import LAUNCH_FILE, read_json
    from tui.follow import exec_argv

    if read_json(ref.run_dir / LAUNCH_FILE).get("slurm_job_id"):  # (Slurm says whether its job lives)
        return
    sys.stdout.flush()
    sys.stderr.flush()
    argv = exec_argv(ref.run_dir, ref.name)
    try:
        os.execv(argv[0], argv)
    except OSError as e:  # (the follower in this process, as before)
        common.err(f"note: following in this process ({e})")


def _bootstrap(job) -> None:  # noqa: ANN001
    from engine.launch import bootstrap as B

    res = job.resolved()
    hosts = list(res.get("launch.hosts") or []) or [res.get("launch.host")]
    for h in hosts:
        if is_local_host(h):
            continue
        B.bootstrap(h, res.get("launch.remote_python") or REMOTE_PYTHON, log=lambda m: common.err(m))


def register(app: typer.Typer) -> None:
    @app.command()
    def train(
        file: Path = typer.Argument(..., help="A TOML preset."),
        host: Optional[str] = typer.Option(None, "--host", help="Run on this SSH target (user@host[:port] or alias)."),
        run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="Exact run directory to create."),
        detach: bool = typer.Option(False, "--detach", "-d", help="Start and return (print the run name)."),
        at: Optional[str] = typer.Option(None, "--at", help='Scheduled start, "YYYY-mm-dd HH:MM" (local time).'),
        bootstrap: bool = typer.Option(False, "--bootstrap", help="Install this finetui on the remote host first."),
        runs_dir: Optional[Path] = RUNS_DIR_OPT,
    ) -> None:
        """Start a training run (detached) and follow it with a progress bar; exit code = outcome."""
        job = common.load_job(file)
        if job.sweep:
            common.err(f"note: {file}'s [sweep] is not run by train (it trains the base job); finetui sweep "
                       f"{file} runs its trials")
        if host:
            job.values["launch.host"] = host
        if at:
            job.values["launch.start_at"] = at
        if runs_dir is not None:
            job.values["launch.runs_dir"] = str(runs_dir)
        _start_and_follow(job, run_dir=run_dir, detach=detach, at=at, bootstrap=bootstrap)

    @app.command()
    def resume(
        run: str = typer.Argument(..., help="A run name (or a unique prefix of one) or a run directory."),
        detach: bool = typer.Option(False, "--detach", "-d", help="Start and return (print the run name)."),
        runs_dir: Optional[Path] = RUNS_DIR_OPT,
    ) -> None:
        """Resume a stopped or failed run from its newest complete checkpoint, as a new run beside it."""
        import engine.launch as L

        try:
            job, ck = L.resume_job(run, _runs_dir(runs_dir))
        except FinetuiError as e:
            common.fail(str(e).splitlines()[0])
        common.err(f"resuming from {ck['path']} (step {ck.get('step')})")
        _start_and_follow(job, run_dir=None, detach=detach, at=None, bootstrap=False)

    def _start_and_follow(job: Any, *, run_dir: Optional[Path], detach: bool, at: Optional[str],
                          bootstrap: bool) -> None:
        """Validate and start ``job``; then print its name (--detach), or follow it (exit code = outcome)."""
        import engine.launch as L

        probs = job.problems()
        if probs:
            for p in probs:
                common.err(str(p))
            raise typer.Exit(2)
        try:
            if bootstrap:
                _bootstrap(job)
            ref = L.start_run(job, run_dir=run_dir, progress=_upload_progress())
        except FinetuiError as e:  # (what the host's GPUs cannot do, a data file to fix: one line per problem)
            for line in e.lines():
                common.err(line)
            raise typer.Exit(2) from None
        where = "" if is_local_host(ref.host) else f" on {ref.host}"
        if at:
            typer.echo(f"{ref.name} scheduled for {at}{where} ({ref.run_dir})")
        elif detach:
            typer.echo(ref.name)
            common.err(f"started {ref.name}{where} in {ref.run_dir}; watch it with: finetui --attach {ref.name} "
                       f"(the dashboard) or finetui attach {ref.name} (event lines)")
        if detach or at:
            return
        common.err(f"started {ref.name}{where} in {ref.run_dir} (Ctrl-C to stop or detach)")
        if not ref.is_remote and _own_terminal():
            _exec_follower(ref)
        raise typer.Exit(_follow(ref, progress=True))

    @app.command()
    def runs(runs_dir: Optional[Path] = RUNS_DIR_OPT,
             as_json: bool = typer.Option(False, "--json", help="One JSON object per run.")) -> None:
        """List runs (local and remote) with their status, step and loss."""
        import engine.launch as L

        infos = L.list_runs(_runs_dir(runs_dir))
        if as_json:
            for i in infos:
                typer.echo(json.dumps({"name": i.name, "host": i.host, "status": i.status, "step": i.step,
                                       "total_steps": i.total_steps, "last_loss": i.last_loss,
                                       "started": i.started, "duration": i.duration, "error": i.error,
                                       "start_at": i.start_at,
                                       **({"slurm": i.extra["slurm"]} if i.extra.get("slurm") else {})}))
            return
        from rich.console import Console
        from rich.table import Table

        t = Table(title=f"runs in {_runs_dir(runs_dir)}")
        for c in ("name", "host", "status", "step", "loss", "started", "duration"):
            t.add_column(c, justify="right" if c in ("step", "loss", "duration") else "left")
        colors = {"running": "cyan", "completed": "green", "failed": "red", "lost": "red", "stopped": "yellow",
                  "early_stopped": "green", "scheduled": "magenta"}
        for i in infos:
            if i.status == "scheduled" and i.start_at:
                started = "at " + datetime.fromtimestamp(i.start_at).strftime("%Y-%m-%d %H:%M")
            else:
                started = datetime.fromtimestamp(i.started).strftime("%Y-%m-%d %H:%M") if i.started else "-"
            dur = f"{int(i.duration // 60)}m{int(i.duration % 60):02d}s" if i.duration is not None else "-"
            step = f"{i.step}/{i.total_steps}" if i.total_steps else str(i.step)
            loss = f"{i.last_loss:.4f}" if isinstance(i.last_loss, (int, float)) else "-"
            c = colors.get(i.status, "white")
            sl = i.extra.get("slurm")
            status = f"{i.status}: {sl['text']}" if sl and i.status in ("pending", "running") else i.status
            t.add_row(i.name, i.host, f"[{c}]{status}[/]", step, loss, started, dur)
        Console(width=max(120, Console().width)).print(t)
        if not infos:
            common.err(f"no runs in {_runs_dir(runs_dir)}")

    @app.command()
    def attach(run: str = typer.Argument(..., help="Run name or directory."),
               runs_dir: Optional[Path] = RUNS_DIR_OPT,
               as_json: bool = typer.Option(False, "--json", help="Print the raw event records (JSON lines)."),
               bar: bool = typer.Option(False, "--progress", help="A progress bar instead of event lines.")) -> None:
        """Replay a run's events from the start, then follow it live until it ends."""
        ref = _resolve(run, runs_dir)
        raise typer.Exit(_follow(ref, progress=bar, replay_json=as_json))

    @app.command()
    def logs(run: str = typer.Argument(..., help="Run name or directory."),
             follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing until the run ends."),
             node: Optional[int] = typer.Option(None, "--node", help="Multi-node run: the log of this node "
                                                "(0 = first host; default: the node of rank 0)."),
             runs_dir: Optional[Path] = RUNS_DIR_OPT) -> None:
        """Print the run's worker.log (stdout and stderr of every rank)."""
        import engine.launch as L

        ref = _resolve(run, runs_dir)
        out = sys.stdout.buffer
        try:
            chunks = L.log_stream(ref, follow, node)
        except FinetuiError as e:
            common.fail(str(e))
        try:
            for b in chunks:
                out.write(b)
                out.flush()
        except KeyboardInterrupt:
            pass
        except FinetuiError as e:  # the stream failed (not: the run ended, or Ctrl-C)
            common.fail(str(e), 1)
        finally:
            chunks.close()

    @app.command()
    def stop(run: str = typer.Argument(..., help="Run name or directory."),
             grace: float = typer.Option(15.0, "--grace", help="Seconds between SIGTERM and SIGKILL."),
             runs_dir: Optional[Path] = RUNS_DIR_OPT) -> None:
        """Stop a run (or cancel a scheduled one): SIGTERM every rank, SIGKILL after the grace period.
        A sweep's name stops the sweep as a whole: its running trial, and no trial after it."""
        import engine.launch as L
        from engine import sweep as S

        sweep_dir = S.find(run, _runs_dir(runs_dir))
        if sweep_dir is not None:
            typer.echo(f"{sweep_dir.name}: {S.stop(sweep_dir, grace=grace)}")
            return
        ref = _resolve(run, runs_dir)
        try:
            status = L.stop_run(ref, grace=grace)
        except FinetuiError as e:
            common.fail(str(e), 1)
        typer.echo(f"{ref.name}: {status}")

    @app.command()
    def doctor(host: str = typer.Option(LOCAL_HOST, "--host", help="SSH target to check (default: this machine)."),
               python: str = typer.Option(REMOTE_PYTHON, "--python", help="Remote Python with finetui (launch.remote_python)."),
               workdir: str = typer.Option(REMOTE_WORKDIR, "--workdir", help="Remote work directory."),
               file: Optional[Path] = typer.Option(None, "--preset", help="Take host/python/workdir from a preset "
                                                   "(a multi-node preset: every host in launch.hosts)."),
               bootstrap: bool = typer.Option(False, "--bootstrap", help="Install this finetui there first.")) -> None:
        """Check a host: reachability, Python and finetui, GPUs, free disk, torch/CUDA."""
        from engine.launch import doctor as D

        hosts = [host]
        res: dict = {}
        explicit: dict = {}
        if file is not None:
            job = common.load_job(file)
            res, explicit = job.resolved(), job.values
            if is_local_host(host) and len(res.get("launch.hosts") or []) > 1:
                hosts = list(res["launch.hosts"])  # a multi-node preset: every node
            else:
                hosts = [host if not is_local_host(host) else (res.get("launch.host") or LOCAL_HOST)]
            python = res.get("launch.remote_python") or python
            workdir = res.get("launch.remote_workdir") or workdir
        bad = False
        for i, h in enumerate(hosts):
            if len(hosts) > 1:
                typer.echo(f"# node {i}: {h}" + (" (master)" if i == 0 else ""))
            try:
                if bootstrap and not is_local_host(h):
                    from engine.launch import bootstrap as B

                    B.bootstrap(h, python, log=lambda m: common.err(m))
                checks = D.run(h, python, workdir)
            except FinetuiError as e:
                common.fail(str(e), 1)
            for c in checks:
                typer.echo(c.line())
            bad = bad or any(not c.ok for c in checks if c.topic in ("ssh", "python", "finetui", "torch"))
        if len(hosts) > 1 and not bad:  # every node reaches the first one's rendezvous port
            typer.echo("# rendezvous")
            try:
                checks = D.rendezvous(hosts, python, res.get("launch.master_addr"),
                                      explicit.get("launch.master_port"))
            except _launch_errors() as e:
                common.fail(str(e), 1)
            for c in checks:
                typer.echo(c.line())
            bad = any(not c.ok for c in checks)
        if bad:
            raise typer.Exit(1)
