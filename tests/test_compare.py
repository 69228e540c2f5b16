"""Runs compared: the differing config fields (`finetui diff`, the runs screen's overlay) and each run's card
(final / best eval loss, tokens seen, wall time, GPU-hours and their cost)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from engine.compare import card_line, compare, config_diff, resolved_config, run_card
from tests.fake_run import T0, harness_app, wait_for, write_fake_run
from tui.screens.runs import OverlayScreen, RunsScreen

A, B = "ft_tiny-llama_20261118-101320", "ft_tiny-llama_20261118-111320"


def _records(device="cuda", world=4, evals=((10, 1.5), (20, 1.1), (30, 1.3)), tokens=123_456, t0=1000.0,
             wall=1800.0):
    yield {"t": t0, "kind": "start", "step": 0, "world_size": world, "device": device, "total_steps": 30}
    for step, loss in evals:
        yield {"t": t0 + step, "kind": "log", "step": step, "loss": loss + 0.1, "num_input_tokens_seen": step * 100}
        yield {"t": t0 + step + 1, "kind": "eval", "step": step, "loss": loss}
    yield {"t": t0 + wall - 1, "kind": "log", "step": 30, "loss": 0.9, "num_input_tokens_seen": tokens}
    yield {"t": t0 + wall, "kind": "end", "step": 30, "outcome": "completed"}


def _edit_config(run_dir: Path, **changes: str) -> None:
    p = run_dir / "config.toml"
    text = p.read_text()
    for old, new in changes.items():
        assert old in text
        text = text.replace(old, new)
    p.write_text(text)


@pytest.fixture
def two_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    d = tmp_path / "runs"
    write_fake_run(d / A, steps=80)
    write_fake_run(d / B, steps=60, t0=T0 + 3600, seed=1)
    _edit_config(d / B, **{"learning_rate = 0.003": "learning_rate = 0.0005", "lora_rank = 8": "lora_rank = 16",
                           'procs_per_node = 2': 'procs_per_node = 2\ngpu_hour_price = 2.5'})
    yield d
    monkeypatch.undo()
    time.tzset()


def test_card_counts_eval_losses_tokens_wall_time_and_cost():
    card = run_card(list(_records()), {"launch.gpu_hour_price": 3.0})
    assert card["final_eval_loss"] == 1.3 and card["best_eval_loss"] == 1.1 and card["best_eval_step"] == 20
    assert card["final_loss"] == 0.9 and card["tokens_seen"] == 123_456 and card["wall_s"] == 1800.0
    assert card["gpus"] == 4 and card["gpu_hours"] == 2.0 and card["cost"] == 6.0
    line = card_line(card)
    assert line == "eval loss 1.3 (best 1.1 at step 20) · 123k tokens · 30m 00s · 4 GPUs · 2.00 GPU-h · cost 6.00"
    # no price: GPU-hours, no cost; on CPU: neither
    assert run_card(list(_records()), {})["cost"] is None
    cpu = run_card(list(_records(device="cpu")), {"launch.gpu_hour_price": 3.0})
    assert cpu["gpus"] == 0 and cpu["gpu_hours"] is None and cpu["cost"] is None and "CPU" in card_line(cpu)


def test_diff_lists_only_the_fields_that_differ(two_runs):
    a, b = resolved_config(two_runs / A), resolved_config(two_runs / B)
    diff = {k: (x, y) for k, x, y in config_diff(a, b)}
    assert diff == {"general.learning_rate": (0.003, 0.0005), "adapter.lora_rank": (8, 16),
                    "launch.gpu_hour_price": (None, 2.5)}
    # in schema order (general before adapter before launch)
    assert [k for k, *_ in config_diff(a, b)] == ["general.learning_rate", "adapter.lora_rank",
                                                   "launch.gpu_hour_price"]
    assert config_diff(a, a) == []


def test_cli_diff(two_runs):
    from typer.testing import CliRunner

    from tui.cli import app

    r = CliRunner().invoke(app, ["diff", A, B, "--runs-dir", str(two_runs)])
    assert r.exit_code == 0, r.output
    out = r.stdout
    assert "3 fields differ" in out
    rows = [ln.replace("│", " ").split() for ln in out.splitlines()]
    lines = {r[0]: r[1:] for r in rows if r and r[0].startswith(("general.", "adapter.", "launch."))}
    assert lines["general.learning_rate"] == ["0.003", "0.0005"] and lines["adapter.lora_rank"] == ["8", "16"]
    assert lines["launch.gpu_hour_price"] == ["—", "2.5"]
    assert f"A {A}" in out and "eval loss" in out and "(best " in out
    j = json.loads(CliRunner().invoke(app, ["diff", A, B, "--runs-dir", str(two_runs), "--json"]).stdout)
    assert j["runs"] == [A, B] and len(j["diff"]) == 3 and j["cards"][1]["price"] == 2.5
    bad = CliRunner().invoke(app, ["diff", A, "nosuch-run", "--runs-dir", str(two_runs)])
    assert bad.exit_code == 2 and "nosuch-run" in bad.stderr and "Traceback" not in bad.output


def test_compare_reports_a_missing_config(two_runs):
    (two_runs / B / "config.toml").unlink()
    with pytest.raises(ValueError, match="no config.toml"):
        compare(two_runs / A, two_runs / B)


def _app():
    return harness_app(lambda: RunsScreen("runs", clock=lambda: T0 + 20_000, auto_refresh=False))


async def test_runs_screen_card_and_overlay_diff(two_runs):
    app = _app()
    async with app.run_test(size=(120, 40)) as pilot:
        scr = app.screen
        await wait_for(pilot, lambda: scr.loaded)
        await pilot.pause()
        table = scr.query_one("#runs-table")
        table.move_cursor(row=table.get_row_index(A))
        await pilot.pause()
        detail = str(scr.query_one("#runs-detail").render())
        assert "eval loss" in detail and "(best " in detail and "2 GPUs" not in detail  # demo runs on CPU
        for name in (A, B):
            table.move_cursor(row=table.get_row_index(name))
            await pilot.press("space")
        await pilot.press("o")
        ov = app.screen
        assert isinstance(ov, OverlayScreen)
        await wait_for(pilot, lambda: ov.states is not None and ov.comparison is not None)
        await pilot.pause()
        from rich.console import Console

        con = Console(width=110, record=True, color_system=None)
        con.print(ov.query_one("#overlay-diff").content)
        text = con.export_text()
        assert "3 fields differ" in text and "general.learning_rate" in text and "0.0005" in text


def test_card_of_a_live_run_follows_its_events(tmp_path):
    from engine.compare import card_of_dir

    d = tmp_path / "live"
    d.mkdir()
    recs = list(_records())
    ev = d / "events.jsonl"
    ev.write_text("".join(json.dumps(r) + "\n" for r in recs[:3]))
    first = card_of_dir(d)
    assert first["best_eval_loss"] == 1.5 and first["tokens_seen"] == 1000
    with open(ev, "a") as fh:  # the run goes on: only the new records are read
        fh.write("".join(json.dumps(r) + "\n" for r in recs[3:]))
    again = card_of_dir(d)
    assert again == run_card(recs, {}) and again["best_eval_loss"] == 1.1 and again["tokens_seen"] == 123_456
    ev.write_text(json.dumps(recs[0]) + "\n")  # replaced by a shorter file: read again from the start
    assert card_of_dir(d)["best_eval_loss"] is None
