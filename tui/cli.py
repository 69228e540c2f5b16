"""The `finetui` entry point.

`finetui` with no command opens the TUI.  Headless commands call the engine.
Exit codes: 0 success; 1 the run failed / was stopped; 2 bad input (one clear
line per problem, never a traceback); 70 internal error (a bug: one line that points to the
crash log holding the traceback); 130 interrupted.

:func:`main` is the one top-level handler: a :class:`engine.errors.FinetuiError` that reaches it
is printed as its lines (exit 2), anything else as one line with a crash log (exit 70).

The typer application (``app``) lives in :mod:`tui.cli_app`; each area registers its
commands from ``tui/commands/<area>.py`` so the areas can grow independently.  When the
arguments only open the TUI (none, ``--demo``, ``--preset FILE``, ``--runs``, ``--attach RUN``),
:func:`main` opens it without importing typer and the command modules (start-up time); anything
else, any preset that does not load and any run not found go through typer, which says why.
"""

from __future__ import annotations

import sys
from typing import Any, NamedTuple


def __getattr__(name: str) -> Any:
    # ``from tui.cli import app`` keeps working; typer is imported on first use only
    if name == "app":
        from tui.cli_app import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: a bare argument naming a job file opens the TUI on it: a preset, or another tool's config (imported)
JOB_SUFFIXES = (".toml", ".yaml", ".yml", ".json")


class TuiArgs(NamedTuple):
    demo: bool = False
    preset: str | None = None
    runs: bool = False  # open on the runs screen
    attach: str | None = None  # open on this run's dashboard
    runs_dir: str | None = None  # where runs are listed and launched (as $FINETUI_RUNS_DIR)


def _tui_args(argv: list[str]) -> TuiArgs | None:
    """What to open when ``argv`` only opens the TUI; None for anything else."""
    got: dict[str, Any] = {}
    i = 0
    while i < len(argv):
        a = argv[i]
        key, _, value = a.partition("=")
        if a in ("--demo", "--runs"):
            got[a[2:]] = True
        elif key in ("--preset", "--attach", "--runs-dir") and value:
            got[key[2:].replace("-", "_")] = value
        elif a in ("--preset", "-p", "--attach", "--runs-dir") and i + 1 < len(argv) and argv[i + 1] \
                and not argv[i + 1].startswith("-"):
            got["preset" if a == "-p" else a[2:].replace("-", "_")] = argv[i + 1]
            i += 1
        elif a.endswith(JOB_SUFFIXES) and not a.startswith("-") and "preset" not in got:
            got["preset"] = a  # `finetui job.toml` (or another tool's job.yaml): what a user types first
        else:
            return None
        i += 1
    return TuiArgs(**got)


def _as_options(argv: list[str]) -> list[str]:
    """``finetui job.toml`` → ``finetui --preset job.toml``."""
    out: list[str] = []
    for i, a in enumerate(argv):
        bare = a.endswith(JOB_SUFFIXES) and not a.startswith("-") and (i == 0 or argv[i - 1] not in (
            "--preset", "-p", "--attach"))
        out += ["--preset", a] if bare else [a]
    return out


def _open_tui(args: TuiArgs) -> bool:
    """Open the TUI; False (nothing shown) when the preset does not load or the run is not found:
    typer reports it."""
    import gc

    # the cyclic collector waits until the first screen is up (FinetuiApp.run resumes it): the
    # imports, the parsed CSS unpickled and the widgets are long-lived objects it would walk over
    # and over (about 30 ms of imports and 35 ms of unpickling on a 2-core machine)
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        from pathlib import Path

        if args.runs_dir:  # the TUI's --runs-dir: $FINETUI_RUNS_DIR for this session (and the runs it starts)
            import os

            os.environ["FINETUI_RUNS_DIR"] = str(Path(args.runs_dir).expanduser().resolve())

        from engine import presets
        from engine.errors import FinetuiError

        path = Path(args.preset) if args.preset is not None else None
        if args.demo and path is None:
            path = presets.PRESETS_DIR / "demo.toml"
        job = None
        imported = None
        if path is not None:
            try:
                if path.suffix.lower() != ".toml":  # another tool's config is imported (its notes shown)
                    from engine import interop

                    if interop.file_kind(path) not in ("toml", None):
                        job, notes = interop.import_file(path)
                        imported, path = (path.name, notes), None
                if job is None:
                    job = presets.load(path)
            except FinetuiError:  # the typer path prints the problems and exits 2
                return False
        ref = None
        if args.attach is not None:
            import engine.launch as L
            from tui import state

            try:
                ref = L.resolve_run(args.attach, state.runs_dir(job))
            except L.LaunchError:  # the typer path prints why and exits 2
                return False
        from tui.app import FinetuiApp

        app = FinetuiApp(job=job, preset_path=path, start="runs" if args.runs else None, attach=ref, imported=imported)
        app.resume_gc_after_start = gc_was_on
        app.run()
        return True
    finally:
        if gc_was_on:
            gc.enable()


#: exit code of a command that ended in a bug (EX_SOFTWARE of sysexits.h)
EXIT_INTERNAL = 70


def main(argv: list[str] | None = None) -> None:
    """The entry point; ``argv`` (default ``sys.argv[1:]``) lets tests run a command in this process."""
    from engine.errors import FinetuiError, report_crash

    if argv is not None:
        sys.argv[1:] = list(argv)
    try:
        args = _tui_args(sys.argv[1:])
        if args is None or not _open_tui(args):
            from tui.cli_app import app

            if args is not None:  # the preset did not load: typer says why (FILE.toml given as --preset FILE)
                sys.argv[1:] = _as_options(sys.argv[1:])
            app()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except FinetuiError as e:
        for line in e.lines():
            print(line, file=sys.stderr)
        sys.exit(e.code)
    except Exception as e:  # noqa: BLE001 - anything else is a bug: one line and a crash log, never a traceback
        print(report_crash(e), file=sys.stderr)
        sys.exit(EXIT_INTERNAL)


if __name__ == "__main__":
    main()
