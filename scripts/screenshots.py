#!/usr/bin/env python3
"""Regenerate ``screenshots/``: one SVG per screen of the TUI, at 120×40.

    python scripts/screenshots.py             # write every screenshot
    python scripts/screenshots.py model runs  # only these
    python scripts/screenshots.py --list      # the names, one a line

Each view is the real app (``tui.app.create_app``) driven by ``App.run_test`` with the
snapshot tests' deterministic fakes (``tests/fixtures_tui.py``: fixed clock, fake model
info / estimate / data report) and fake runs from ``tests/fake_run.py``: the monitor attaches
to a run and watches the rest of its records stream in (fixed records, fixed clock), so a
re-run rewrites identical files.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "screenshots"
SIZE = (120, 40)

sys.path.insert(0, str(ROOT))

# name -> what it shows (README alt text); the order is the README's
SCREENS: dict[str, str] = {
    "model": "Model: profile, catalog and what config.json says",
    "data": "Data: source, format, the validation report and a preview",
    "trainer": "Trainer: only valid combinations, reasons for the others",
    "hyperparameters": "Hyperparameters: grouped, range hints, checked as typed",
    "toml": "TOML: the job as TOML, synced both ways with the form",
    "launch": "Launch: target, GPUs, run name, estimate and review (launch stays disabled, with the reason, until the job validates)",
    "monitor": "Monitor: a live run with plots, checkpoints and the log",
    "runs": "Runs: every run with its status",
    "try": "Try the model: a finished run's model answers prompts (t on its dashboard)",
    "presets": "Presets: shipped and recent presets, open or import",
    "import": "Import: a LLaMA-Factory YAML opened as a job, every note of the import kept on screen until dismissed",
    "export": "Save or export: a TOML preset, or LLaMA-Factory / Nova / FPT / OCI / watsonx",
    "help": "Help: the focused field's help, range and default, and the keys",
    "sweep": "Sweep: a sweep's trials grouped on the runs screen, the best starred; w: the swept values against "
             "the objective",
}


#: a model server speaking engine.train.generate's protocol with canned answers (the picture is the same every time)
CANNED_MODEL = """
import json, sys
print(json.dumps({"ready": True, "model": "finetui:tiny-llama", "device": "cpu", "chat": True}), flush=True)
answers = iter(["Red, yellow and blue.", "I am a small assistant fine-tuned with finetui."])
for line in sys.stdin:
    print(json.dumps({"text": next(answers, "...")}), flush=True)
"""


async def _settle(pilot: Any) -> None:
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    await pilot.pause()


def _steady(app: Any) -> None:
    """A visible, non-blinking cursor: the same picture whatever the timing."""
    from textual.widgets import Input, TextArea

    for screen in app.screen_stack:
        for w in screen.query(Input):
            w.cursor_blink = False
        for w in screen.query(TextArea):
            w.cursor_blink = False


def _wizard_app(**kw: Any) -> Any:
    from engine import presets
    from tests.fixtures_tui import FIXED_NOW, FakeLauncher, fake_data_check, fake_estimate, fake_model_info
    from tui.app import Services, create_app

    services = Services(describe_model=fake_model_info, estimate=fake_estimate, data_check=fake_data_check,
                        start_run=FakeLauncher(), ssh_hosts=lambda: ["gpu-box", "lab"], clock=lambda: FIXED_NOW)
    p = presets.PRESETS_DIR / "demo.toml"
    # a relative preset path: no machine's folders in the pictures
    return create_app(presets.load(p), Path("demo.toml"), services=services, autosave=False, offer_restore=False,
                      **kw)


async def _step(pilot: Any, step: str) -> None:
    await _settle(pilot)
    pilot.app.goto(step)
    await _settle(pilot)


def _runs_dir(base: Path) -> Path:
    from tests.fake_run import T0, write_fake_run

    d = base / "runs"
    write_fake_run(d / "ft_tiny-llama_20261118-101320", steps=80)
    write_fake_run(d / "ft_tiny-llama_20261118-111320", steps=120, outcome="failed", end_at=42, t0=T0 + 3600, seed=1)
    write_fake_run(d / "ft_tiny-llama_20261118-121320", steps=120, outcome="stopped", end_at=77, t0=T0 + 7200, seed=2)
    write_fake_run(d / "ft_tiny-llama_20261118-131320", steps=100, outcome="early_stopped", end_at=60, t0=T0 + 10800,
                   seed=3)
    return d


LIVE_RUN = "ft_tiny-llama_20261118-141320"
LIVE_T0 = 1_795_000_000.0 + 14400  # tests.fake_run.T0 + 4 h


def _live_records() -> list[dict[str, Any]]:
    """The monitor's run: 200 steps planned, streamed up to step 90 (no end record: still running)."""
    from tests.fake_run import fake_records

    out = []
    for r in fake_records(200, end=False, end_at=90, t0=LIVE_T0, seed=4):
        out.append(r)
        if r["kind"] == "log" and r["step"] % 5 == 0:  # the supervisor's GPU telemetry (engine/telemetry.py)
            out.append({"t": r["t"] + 0.1, "kind": "gpu", "step": r["step"], "gpus": [
                {"index": i, "name": "NVIDIA H100 80GB HBM3", "util": 96.0 - 3 * i, "mem_used": 61_440.0 + 2048 * i,
                 "mem_total": 81_559.0, "temp": 64.0 + i, "power": 598.0 - 11 * i, "power_limit": 700.0}
                for i in range(2)]})
    return out


def _append(run: Path, records: list[dict[str, Any]]) -> None:
    import json

    from tests.fake_run import log_line

    with open(run / "events.jsonl", "a", encoding="utf-8") as fe, \
            open(run / "worker.log", "a", encoding="utf-8") as fl:
        for rec in records:
            fe.write(json.dumps(rec) + "\n")
            if rec["kind"] != "gpu":  # (the supervisor writes telemetry to the events only)
                fl.write(log_line(rec) + "\n")


async def _wait(pilot: Any, cond: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError("the screen did not settle")
        await pilot.pause(0.02)


async def shoot(name: str, base: Path) -> str:
    """The SVG of one named view."""
    from tests.fake_run import T0, plots_settled
    from tui.widgets.form import widget_id

    app = _wizard_app()
    async with app.run_test(size=SIZE) as pilot:
        if name in ("model", "hyperparameters", "launch"):
            await _step(pilot, name)
        elif name == "trainer":
            app.apply_edit("profile", "fpt_studio")  # a profile that rules some choices out: reasons shown
            await _step(pilot, "trainer")
        elif name == "data":
            await _step(pilot, "data")
            app.panes["data"].run_check()
            await _settle(pilot)
            app.query_one(f"#{widget_id('data.train_path')}").focus()
        elif name == "toml":
            await _step(pilot, "hyperparameters")
            app.action_show_toml()
            await _settle(pilot)
        elif name == "help":
            await _step(pilot, "hyperparameters")
            app.query_one(f"#{widget_id('general.learning_rate')}").focus()
            await pilot.press("f1")
            await _settle(pilot)
        elif name == "presets":
            await _settle(pilot)
            os.chdir(ROOT)  # shipped presets shown relative to the checkout
            try:
                app.action_open_preset()
                await _settle(pilot)
            finally:
                os.chdir(base)
        elif name == "import":
            from tests.test_tui_habits import LF_DPO

            await _settle(pilot)
            src = base / "qwen3_lora_dpo.yaml"
            src.write_text(LF_DPO)
            app.open_path(str(src))
            await _settle(pilot)
            app.clear_notifications()
        elif name == "export":
            await _settle(pilot)
            app.action_export()
            await _settle(pilot)
        elif name == "monitor":
            # a run streaming: the first part is on disk at attach, the rest arrives while the
            # monitor tails it (fixed records and clock: the same picture every time)
            from tests.fake_run import _prepare
            from tui.screens.monitor import MonitorScreen

            await _settle(pilot)
            run = base / "live" / LIVE_RUN
            _prepare(run)
            (run / "events.jsonl").write_text("")
            (run / "worker.log").write_text("")
            records = _live_records()
            _append(run, records[:40])
            now = records[-1]["t"] + 10.0  # 10 s after its last record
            await app.push_screen(MonitorScreen(run, clock=lambda: now))
            scr = app.screen
            await _wait(pilot, lambda: getattr(scr, "loaded", False))
            for i in range(40, len(records), 25):
                _append(run, records[i:i + 25])
                await pilot.pause(0.05)
            last = records[-1]["step"]
            await _wait(pilot, lambda: scr.state.step >= last)
            await pilot.pause(0.6)  # the log tail writes in batches
            scr._redraw_plots(force=True)  # every plot from the whole stream (side plots redraw at half rate)
            await _wait(pilot, lambda: plots_settled(scr))
            await pilot.pause(0.1)  # the tail worker runs on: no waiting for workers here
        elif name == "runs":
            from tui.screens.runs import RunsScreen

            await _settle(pilot)
            await app.push_screen(RunsScreen("runs", clock=lambda: T0 + 20_000, auto_refresh=False))
            scr = app.screen
            await _wait(pilot, lambda: getattr(scr, "loaded", False))
            await pilot.pause(0.1)
        elif name == "try":
            from tui.screens.monitor import MonitorScreen
            from tui.screens.try_model import TryScreen

            await _settle(pilot)
            run = base / "runs" / "ft_tiny-llama_20261118-101320"
            await app.push_screen(MonitorScreen(run, clock=lambda: T0 + 20_000))
            await _wait(pilot, lambda: getattr(app.screen, "loaded", False))
            await app.push_screen(TryScreen(run, run.name, command=[sys.executable, "-c", CANNED_MODEL]))
            scr = app.screen
            await _wait(pilot, lambda: scr.ready)
            for n, prompt in enumerate(("Name three primary colours.", "Who are you?"), 1):
                await pilot.press(*prompt, "enter")
                await _wait(pilot, lambda: scr.answers == n)
            await pilot.press(*"Translate 'good morning' into French")
            await pilot.pause(0.1)
        elif name == "sweep":
            from tests.fake_run import write_fake_sweep
            from tui.screens.runs import RunsScreen

            await _settle(pilot)
            trials = [({"general.learning_rate": lr, "adapter.lora_rank": r}, out, obj) for lr, r, out, obj in (
                (1e-4, 8, "completed", 1.9132), (1e-4, 16, "completed", 1.8871), (1e-3, 8, "early_stopped", 1.6204),
                (1e-3, 16, "completed", 1.6712))]
            write_fake_sweep(base / "sweeps", "sw_tiny-llama_sft-lora_20261118-101320", trials)
            await app.push_screen(RunsScreen("sweeps", clock=lambda: T0 + 20_000, auto_refresh=False))
            scr = app.screen
            await _wait(pilot, lambda: getattr(scr, "loaded", False))
            await pilot.pause(0.1)
            await pilot.press("w")
            await _wait(pilot, lambda: app.screen is not scr)
            await _settle(pilot)
        else:
            raise KeyError(name)
        _steady(app)
        await pilot.pause()
        return _stable_ids(app.export_screenshot(title=f"finetui — {name}"))


def _stable_ids(svg: str) -> str:
    """Textual names the SVG's classes after a hash that can differ between runs for the same
    picture; name them after the picture instead (a re-run rewrites identical files)."""
    import re
    import zlib

    found = re.search(r"terminal-(\d+)-", svg)
    if not found:
        return svg
    plain = svg.replace(found.group(1), "")
    return svg.replace(f"terminal-{found.group(1)}", f"terminal-{zlib.adler32(plain.encode())}")


async def main_async(names: list[str]) -> list[Path]:
    written = []
    with tempfile.TemporaryDirectory(prefix="finetui-shots-") as tmp:
        base = Path(tmp)
        # deterministic and private: no recent presets, no autosave, UTC times, fake runs in ./runs
        os.environ["FINETUI_STATE_DIR"] = str(base / "state")
        os.environ["TZ"] = "UTC"
        time.tzset()
        _runs_dir(base)
        cwd = os.getcwd()
        os.chdir(base)
        try:
            OUT.mkdir(exist_ok=True)
            for name in names:
                svg = await shoot(name, base)
                p = OUT / f"{name}.svg"
                p.write_text(svg, encoding="utf-8")
                written.append(p)
                print(f"wrote {p.relative_to(ROOT)}")
        finally:
            os.chdir(cwd)
    return written


def main(argv: list[str]) -> int:
    if "--list" in argv:
        print("\n".join(SCREENS))
        return 0
    names = [a for a in argv if not a.startswith("-")] or list(SCREENS)
    unknown = [n for n in names if n not in SCREENS]
    if unknown:
        print(f"unknown screen(s): {', '.join(unknown)} (known: {', '.join(SCREENS)})", file=sys.stderr)
        return 2
    asyncio.run(main_async(names))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
