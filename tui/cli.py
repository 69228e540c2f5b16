"""The `finetui` entry point.

`finetui` with no command opens the TUI.  Headless commands call the engine.
Exit codes: 0 success; 1 the run failed / was stopped; 2 bad input (one clear
line per problem, never a traceback); 130 interrupted.

The typer application (``app``) lives in :mod:`tui.cli_app`; each area registers its
commands from ``tui/commands/<area>.py`` so the areas can grow independently.  When the
arguments only open the TUI (none, ``--demo``, ``--preset FILE``), :func:`main` opens it
without importing typer and the command modules (start-up time); anything else, and any
preset that does not load, goes through typer as before.
"""

from __future__ import annotations

import sys
from typing import Any


def __getattr__(name: str) -> Any:
    # ``from tui.cli import app`` keeps working; typer is imported on first use only
    if name == "app":
        from tui.cli_app import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _tui_args(argv: list[str]) -> tuple[bool, str | None] | None:
    """(demo, preset) when ``argv`` only opens the TUI; None for anything else."""
    demo, preset = False, None
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--demo":
            demo = True
        elif a in ("--preset", "-p") and i + 1 < len(argv) and not argv[i + 1].startswith("-"):
            preset = argv[i + 1]
            i += 1
        elif a.startswith("--preset=") and len(a) > len("--preset="):
            preset = a.split("=", 1)[1]
        else:
            return None
        i += 1
    if preset == "":
        return None
    return demo, preset


def _open_tui(demo: bool, preset: str | None) -> bool:
    """Open the TUI; False (nothing shown) when the preset does not load: typer reports it."""
    import gc

    # the cyclic collector waits until the first screen is up (FinetuiApp.run resumes it): the
    # imports, the parsed CSS unpickled and the widgets are long-lived objects it would walk over
    # and over (about 30 ms of imports and 35 ms of unpickling on a 2-core machine)
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        from pathlib import Path

        from engine import presets

        path = Path(preset) if preset is not None else None
        if demo and path is None:
            path = presets.PRESETS_DIR / "demo.toml"
        job = None
        if path is not None:
            try:
                job = presets.load(path)
            except Exception:  # noqa: BLE001 - the typer path prints the problems and exits 2
                return False
        from tui.app import FinetuiApp

        app = FinetuiApp(job=job, preset_path=path)
        app.resume_gc_after_start = gc_was_on
        app.run()
        return True
    finally:
        if gc_was_on:
            gc.enable()


def main() -> None:
    try:
        args = _tui_args(sys.argv[1:])
        if args is None or not _open_tui(*args):
            from tui.cli_app import app

            app()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
