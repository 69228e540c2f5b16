"""Step 5 — Launch: target, GPUs and nodes, run name, the estimate, the review, Launch.

The Launch button stays disabled until the job validates and says why (the first problems).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Label, Select, Static

from engine.schema import LOCAL_HOST, REMOTE_WORKDIR, JobConfig, is_local_host, is_remote_job
from tui.screens.hyperparameters import diff_table
from tui.widgets.form import FieldEdited, SchemaForm, widget_id
from tui.widgets.lazyselect import LazySelect
from tui.widgets.step import StepPane, group_names

TARGET_FIELDS = ["launch.host", "launch.procs_per_node", "launch.nodes", "launch.device", "launch.run_name"]


def ssh_hosts(config: str | Path = "~/.ssh/config") -> list[str]:
    """Host aliases of an OpenSSH client config (wildcard patterns left out; Include followed)."""
    out: list[str] = []
    seen: set[Path] = set()

    def read(p: Path) -> None:
        p = p.expanduser()
        if p in seen or not p.is_file():
            return
        seen.add(p)
        try:
            lines = p.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return
        for line in lines:
            parts = line.strip().split(None, 1)
            if len(parts) < 2 or parts[0].startswith("#"):
                continue
            key, val = parts[0].lower(), parts[1]
            if key == "host":
                for h in val.split():
                    if not any(c in h for c in "*?!") and h not in out:
                        out.append(h)
            elif key == "include":
                for pat in val.split():
                    base = Path(pat).expanduser()
                    if not base.is_absolute():
                        base = Path("~/.ssh").expanduser() / pat
                    for q in sorted(base.parent.glob(base.name)):
                        read(q)

    read(Path(config))
    return out


def default_run_name(res: dict[str, Any], now: Any) -> str:
    """``ft_<model>_<stage>-<method>_<YYYYmmdd-HHMMSS>`` (FPT naming, with the kind of run): the launcher's own."""
    from engine.launch.rundir import default_name

    return default_name(res, now.timestamp())


def runs_where(job: JobConfig, res: dict[str, Any], default_name: str) -> Text:
    """Where the run's folder will really be: $FINETUI_RUNS_DIR (or the TUI's --runs-dir) overrides the
    job's launch.runs_dir; on a remote target, under its work directory."""
    import os

    from tui import state

    name = res.get("launch.run_name") or default_name
    t = Text()
    t.append("Runs go to  ", "bold")
    if is_remote_job(res):
        t.append(f"{res.get('launch.host')}:{res.get('launch.remote_workdir') or REMOTE_WORKDIR}/{name}/")
        return t
    from tui.widgets.dialogs import short_path

    where = state.runs_dir(job)
    t.append(f"{short_path(str(Path(where).expanduser().resolve()))}/{name}/")
    if os.environ.get("FINETUI_RUNS_DIR"):
        t.append(f"  ($FINETUI_RUNS_DIR; the job says {res.get('launch.runs_dir') or 'runs'})", "dim")
    return t


def estimate_text(est: Any) -> Any:
    """engine.estimate.Estimate as a compact table: total per GPU, its parts, steps, time."""
    from engine.estimate import gib

    t = Table.grid(padding=(0, 1))
    t.add_column(style="bold", no_wrap=True)
    t.add_column(justify="right", no_wrap=True)
    t.add_column(style="dim")
    fits = getattr(est, "fits", None)
    verdict = "" if fits is None else (f"fits in {est.gpu_memory_gb:g} GB" if fits else
                                       f"does NOT fit in {est.gpu_memory_gb:g} GB")
    unit = "rank (CPU)" if getattr(est, "on_cpu", False) else "GPU"
    t.add_row(f"Memory / {unit}", Text(gib(est.total_bytes), "bold"), verdict)
    for p in est.parts:
        t.add_row(Text("  " + p.name, "not bold"), gib(p.bytes), "")
    st = getattr(est, "steps", None)
    if st is not None:
        if st.total_steps:
            t.add_row("Steps", f"{st.total_steps:,}",
                      f"{st.updates_per_epoch:,}/epoch" if st.updates_per_epoch else "")
        t.add_row("Effective batch", str(st.effective_batch),
                  f"{st.batch_size} × {st.accumulation} × {st.ranks} rank{'s' if st.ranks != 1 else ''}")
    if getattr(est, "seconds", None):
        t.add_row("Time", _dur(est.seconds), "")
    t.add_row("Trainable", _count(est.trainable_params), f"of {_count(est.num_params)}")
    notes = [n for n in getattr(est, "notes", None) or [] if "--" not in n]  # (not those about the CLI's options)
    if getattr(est, "total_formula", ""):  # the parts do not always add up to the total: say how it is made
        notes.insert(0, f"total = {est.total_formula}")
    for s in getattr(est, "suggestions", None) or []:  # it does not fit: each change alone, with its estimate
        notes.append(f"to fit: {s.title} → {gib(s.total_bytes)}{' (fits)' if s.fits else ''}")
    if not notes:
        return t
    # what the stage and the data change (DPO's paired sequences, a reference model, packing): below the table
    return Group(t, *(Text(f"· {n}", "yellow" if n.startswith("⚠") else "dim") for n in notes))


def _count(n: float) -> str:
    for div, suf in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.3g}{suf}"
    return str(int(n))


def _dur(s: float) -> str:
    s = int(s)
    if s < 90:
        return f"~{s} s"
    if s < 5400:
        return f"~{round(s / 60)} min"
    return f"~{s / 3600:.1f} h"


class LaunchPane(StepPane):
    STEP = "launch"
    TITLE = "Launch"
    SUBTITLE = "where, how many GPUs, and a last look"
    FIRST = "known-hosts"  # not a free-text field: a stray key there would make another target

    def compose(self) -> ComposeResult:
        yield self.header()
        with VerticalScroll(classes="step-body"):
            with Horizontal(classes="field-line", id="known-hosts-line"):
                yield Label("Known hosts", classes="field-label")
                yield LazySelect([(LOCAL_HOST, LOCAL_HOST)], value=LOCAL_HOST, allow_blank=False, compact=True,
                             id="known-hosts", classes="-textual-compact field-input")
                yield Label("~/.ssh/config", classes="field-hint")
            yield SchemaForm(TARGET_FIELDS, id="launch-target-form")
            yield Static("", id="runs-where", markup=False)
            with Horizontal(classes="columns", id="launch-columns"):
                with Vertical(classes="column"):
                    yield Label("Estimate", classes="section-title")
                    yield Static("", id="estimate")
                with Vertical(classes="column"):
                    yield Label("Review — values that differ from the profile", classes="section-title")
                    yield Static("", id="review")
            yield Label("More launch options", classes="section-title")
            yield SchemaForm([n for n in group_names("launch") if n not in TARGET_FIELDS], id="launch-form")
        with Horizontal(classes="nav-bar launch-bar"):
            yield Button("‹ Back", id="back-launch", classes="-textual-compact nav-back", compact=True)
            yield Static("", id="launch-reason")
            yield Button("Launch ▶", id="launch-button", variant="success", compact=True, disabled=True, classes="-textual-compact")

    _host_shown: str | None = LOCAL_HOST
    _hosts: list[str] = [LOCAL_HOST]

    def on_mount(self) -> None:
        try:
            hosts = list(self.app.services.ssh_hosts())  # type: ignore[attr-defined]
        except Exception:
            hosts = []
        self._hosts = [LOCAL_HOST] + [h for h in hosts if not is_local_host(h)]
        for sel in self.query("#known-hosts").results(Select):
            with sel.prevent(Select.Changed):
                sel.set_options([(h, h) for h in self._hosts])
                sel.value = LOCAL_HOST

    def sync(self, job: JobConfig, res: dict[str, Any], states: dict) -> None:
        for f in self.query(SchemaForm):
            f.sync(job, states)
        rn = self.query_one(f"#{widget_id('launch.run_name')}")
        rn.placeholder = self.app.default_run_name(job)  # type: ignore[attr-defined]
        sel = self.query_one("#known-hosts", Select)
        host = str(res["launch.host"] or LOCAL_HOST)
        if host in self._hosts and sel.value != host:
            with sel.prevent(Select.Changed):
                sel.value = host
        self._host_shown = host if host in self._hosts else None
        self.query_one("#review", Static).update(diff_table(job))
        self.update_estimate(job)
        self.query_one("#runs-where", Static).update(runs_where(job, res, rn.placeholder))
        probs = [p for p in job.problems()]
        host = getattr(self.app, "host_check", lambda j: None)(job)
        btn = self.query_one("#launch-button", Button)
        btn.disabled = bool(probs) or self.app.launching or (host is not None and not host[0])  # type: ignore[attr-defined]
        reason = self.query_one("#launch-reason", Static)
        if probs:
            t = Text(overflow="ellipsis")
            t.append(f"✗ {len(probs)} to fix: ", "bold")
            t.append(str(probs[0]))
            reason.update(t)
            reason.tooltip = "\n".join(str(p) for p in probs[:8])
        elif self.app.launching and getattr(self.app, "upload_text", None):  # type: ignore[attr-defined]
            reason.update(Text(f"⇡ {self.app.upload_text}", overflow="ellipsis"))  # type: ignore[attr-defined]
            reason.tooltip = None
        elif host is not None:
            reason.update(Text(f"{'⚠' if host[0] else '✗'} {host[1]}", overflow="ellipsis"))
            reason.tooltip = host[1]
        else:
            notes = list(job.notes)  # an import dropped something that changes the training: said first
            warning = notes[0] if notes else getattr(self.app, "model_warning", lambda j: None)(job)
            reason.update(Text(f"⚠ {warning}", overflow="ellipsis") if warning
                          else Text("✓ ready to launch", "bold"))
            reason.tooltip = "\n".join(notes) or warning
        reason.set_class(bool(probs) or (host is not None and not host[0]), "-invalid")

    def update_estimate(self, job: JobConfig) -> None:
        try:
            # rows and row length (the last data check), the target's GPU memory (once probed)
            hints = self.app.estimate_hints(job)  # type: ignore[attr-defined]
            est = self.app.services.estimate(job, **hints)  # type: ignore[attr-defined]
            out: Any = estimate_text(est)
            # every part's formula, as `finetui estimate` prints them, on hover
            tip = est.to_text() if hasattr(est, "to_text") else None
        except Exception as e:
            out = Text(f"No estimate: {str(e).splitlines()[0] if str(e) else e.__class__.__name__}", "dim")
            tip = None
        st = self.query_one("#estimate", Static)
        st.update(out if not isinstance(out, list) else Group(*out))
        st.tooltip = tip

    @on(Select.Changed, "#known-hosts")
    def _host(self, event: Select.Changed) -> None:
        event.stop()
        if event.value is Select.BLANK or event.value != event.select.value or event.value == self._host_shown:
            return
        self._host_shown = str(event.value)
        self.post_message(FieldEdited("launch.host", str(event.value)))

    @on(Button.Pressed, "#launch-button")
    def _launch(self, event: Button.Pressed) -> None:
        event.stop()
        self.app.action_launch()  # type: ignore[attr-defined]
