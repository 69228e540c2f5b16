"""The launch step shows a remote launch's data upload as it goes (the same line `finetui train --host` prints):
percent, bytes, rate and time left, through the Services seam's ``start_run(job, progress=…)``."""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace

from textual.widgets import Button

from engine.launch.remote import upload_meter, upload_text
from tests.fake_run import wait_for

SIZE = (100, 40)


def test_upload_text_says_rate_and_time_left():
    assert upload_text("gpu-box", 0, 4_000_000, 0.0) == "uploading data to gpu-box: 0% (0.0 MB of 4.0 MB)"
    assert upload_text("gpu-box", 1_000_000, 4_000_000, 2.0) == \
        "uploading data to gpu-box: 25% (1.0 MB of 4.0 MB) · 0.5 MB/s · about 6 s left"
    assert upload_text("gpu-box", 4_000_000, 4_000_000, 8.0) == "uploading data to gpu-box: 100% (4.0 MB of 4.0 MB)"
    t = iter([10.0, 12.0])
    said = []
    meter = upload_meter(lambda *a: said.append(a[-1]), clock=lambda: next(t))
    meter("h", 0, 2_000_000_000)
    meter("h", 1_000_000_000, 2_000_000_000)
    assert said[-1] == "uploading data to h: 50% (1.00 GB of 2.00 GB) · 500.0 MB/s · about 2 s left"


async def test_launch_step_shows_the_upload_progress(make_app):
    gate = threading.Event()
    calls = []

    def start_run(job, progress=None):
        calls.append(job)
        progress("gpu-box", 0, 4_000_000)
        progress("gpu-box", 1_000_000, 4_000_000)
        gate.wait(30)
        progress("gpu-box", 4_000_000, 4_000_000)
        return SimpleNamespace(name="up", run_dir=Path("runs") / "up")

    app = make_app()
    app.services.start_run = start_run
    async with app.run_test(size=SIZE) as pilot:
        app.goto("launch")
        await pilot.pause()
        await wait_for(pilot, lambda: not app.query_one("#launch-button", Button).disabled)
        await pilot.click("#launch-button")
        reason = app.query_one("#launch-reason")
        await wait_for(pilot, lambda: "uploading data to gpu-box: 25% (1.0 MB of 4.0 MB)" in str(reason.render()))
        assert str(reason.render()).startswith("⇡ ") and app.launching
        app.refresh_views()  # (a redraw of the step keeps the upload line while it lasts)
        await pilot.pause()
        assert "uploading data to gpu-box: 25%" in str(reason.render())
        gate.set()
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert len(calls) == 1 and not app.launching and app.upload_text is None
