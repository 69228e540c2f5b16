"""The finetui Textual app: the five-step wizard Model → Data → Trainer → Hyperparameters → Launch.

One factory (:func:`create_app`) is shared by the CLI and the tests.  Everything the
app needs from the engine beyond the schema goes through :class:`Services` (model
info, data check, estimate, launch, SSH hosts, clock), so tests and snapshots inject
deterministic fakes and the interface never imports torch: heavy work runs in
subprocesses or thread workers.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from textual import events, on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.screen import ModalScreen, Screen
from textual.widgets import ContentSwitcher

from engine.schema import DATA_CHECK_FIELDS, FIELD_BY_NAME, LOCAL_HOST, JobConfig, is_local_host, is_remote_job, spec
from engine.errors import FinetuiError, one_line, report_crash
from tui import keys, state
from tui.keys import with_ids
from tui.screens.base import QuietScreen
from tui.screens.model import ModelPane
from tui.widgets.form import FieldEdited, FieldFocused, FieldRow, compute_states
from tui.widgets.keybar import KeyBar
from tui.widgets.step import STEP_IDS, STEPS, HelpBar, StepBar, StepPane, TomlEdited, step_errors

if TYPE_CHECKING:
    import threading

    from textual.widget import Widget

    from tui.screens.hyperparameters import HyperparametersPane

AUTOSAVE_DELAY = 1.0
PREBUILD_AFTER = 1.5  # s after the first screen: the steps not visited yet are built, hidden, ...
PREBUILD_QUIET = 1.0  # ... each after this long without a key or a click


# --------------------------------------------------------------------------
# Engine services (imported when first used: the app starts without them)
# --------------------------------------------------------------------------


def _describe_model(name: str) -> Any:
    from engine import modelinfo

    return modelinfo.describe(name)


def _estimate(job: JobConfig, num_examples: int | None = None, tokens_per_example: float | None = None,
              gpu_memory_gb: float | None = None) -> Any:
    """The launch screen's estimate; the row count and mean row length come from the last data check of
    this data (FinetuiApp.data_hints), else the rows are counted in a local file (cheap, no tokenizer);
    with the GPU's memory (``gpu_memory_gb``) it says whether the job fits and, if not, what would."""
    from engine import estimate

    res = job.resolved()
    no_gpu = res.get("launch.device") == "auto" and _local_without_gpu(res)
    if no_gpu:  # "auto" on this machine without a GPU: the run is on CPU, and so is the estimate
        res = {**res, "launch.device": "cpu"}
    if num_examples is None:
        from engine.data.sources import count_examples

        num_examples = count_examples(str(res.get("data.train_path") or ""))
    est = estimate.estimate(res, num_examples=num_examples, tokens_per_example=tokens_per_example,
                            gpu_memory_gb=gpu_memory_gb)
    if no_gpu:
        est.notes.insert(0, "no GPU on this machine: device auto trains on CPU (memory per CPU rank)")
    return est


def _local_without_gpu(res: dict[str, Any]) -> bool:
    """A local target on a machine with no NVIDIA GPU (no nvidia-smi: no torch import here)."""
    import shutil

    from engine.launch import is_remote_job

    return not is_remote_job(res) and shutil.which("nvidia-smi") is None


def _gpu_memory(host: str) -> float | None:
    """GiB of the smallest GPU of the launch target, for the estimate's verdict, through ``nvidia-smi`` (no
    torch): this machine's, or a host of ~/.ssh/config's over SSH (not a half-typed name); None without one."""
    import shutil

    query = ["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits"]
    try:
        if is_local_host(host):
            smi = shutil.which("nvidia-smi")
            if not smi:
                return None
            p = subprocess.run([smi, *query[1:]], capture_output=True, text=True, timeout=10)
            out = p.stdout if p.returncode == 0 else ""
        else:
            if host.split("@")[-1].split(":")[0] not in ssh_hosts():
                return None
            from engine.launch import ssh

            r = ssh.run(host, " ".join(query), timeout=20)
            out = r.stdout.decode("utf-8", "replace") if r.returncode == 0 else ""
        mib = [float(x) for x in out.split()]
    except Exception:  # noqa: BLE001 - no answer, no verdict: the estimate stands without one
        return None
    return round(min(mib) / 1024, 1) if mib else None


def _check_host(host: str) -> tuple[bool, str]:
    """Whether a remote launch target answers, before the job is called ready: (launchable, what to say).
    ``ssh -G`` reads ~/.ssh/config (an alias → its HostName and Port); a name that does not resolve cannot
    be launched on; a port that does not answer is said (an unverified host), not refused."""
    import shutil
    import socket

    target = host.split("@")[-1]
    name, _, port_text = target.partition(":")
    port = int(port_text) if port_text.isdigit() else 22
    ssh = shutil.which("ssh")
    if ssh:
        try:
            p = subprocess.run([ssh, "-G", name], capture_output=True, text=True, timeout=5,
                               stdin=subprocess.DEVNULL)
            for line in p.stdout.splitlines():
                key, _, value = line.partition(" ")
                if key == "hostname" and value.strip():
                    name = value.strip()
                elif key == "port" and value.strip().isdigit() and not port_text:
                    port = int(value)
        except (OSError, subprocess.SubprocessError):
            pass
    try:
        socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
    except OSError:
        return False, f"host {host!r} does not resolve (no such name, nor an alias of ~/.ssh/config)"
    try:
        socket.create_connection((name, port), timeout=3).close()
    except OSError as e:
        return True, f"unverified host: {name}:{port} does not answer ({e.strerror or e.__class__.__name__})"
    return True, ""


def _sniff_data(path: str, res: dict[str, Any]) -> list[Any]:
    """The first rows of a local data path, decoded but not validated (format detection); [] when unreadable."""
    from engine.data.check import sniff

    return sniff(path, res)


def _local_tokenizer(model: str) -> str | None:
    from engine.data.tokenize import local_tokenizer

    return local_tokenizer(model)


def data_check_command(job: JobConfig) -> list[str]:
    """The ``finetui data check … --json`` command line for the job: path, format, trainer, max
    length, allowed invalid share, the S3 connection (endpoint, region, the variables that hold the
    keys: the keys themselves go in the environment) and a tokenizer when one is at hand."""
    from engine.launch.procs import module_argv

    res = job.resolved()
    cmd = module_argv(sys.executable, "tui.cli", "data", "check", str(res["data.train_path"]), "--json")
    for name in DATA_CHECK_FIELDS:  # each by the option the field declares
        v = res.get(name)
        if v not in (None, ""):
            cmd += [FIELD_BY_NAME[name].flag, str(v)]
    tok = _local_tokenizer(str(res.get("model.name_or_path") or ""))
    if tok:
        cmd += ["--tokenizer", tok]
    return cmd


#: the longest a data check may run (it says its progress, and the data step can stop it)
DATA_CHECK_TIMEOUT_S = 3600


def _data_check(job: JobConfig, progress: Callable[[dict[str, Any]], None] | None = None,
                cancel: threading.Event | None = None) -> dict[str, Any]:
    """The report of ``finetui data check … --json`` run for the job in a child process; ``progress(dict)`` with
    each of its progress lines (rows, bytes, total, seconds); ``cancel`` set: the check is interrupted and
    ``tui.workers.Stopped`` raised."""
    cmd = data_check_command(job)
    # typed S3 keys travel in the environment only (never on the command line, never on disk); the check
    # runs where the user is (relative data paths)
    from tui.commands.data import PROGRESS_PREFIX
    from tui.workers import engine_env, run_child

    env = engine_env(**job.secrets)

    def on_err_line(line: str) -> bool:
        if not line.startswith(PROGRESS_PREFIX):
            return False
        if progress is not None:
            import json

            try:
                progress(json.loads(line[len(PROGRESS_PREFIX):]))
            except ValueError:
                pass
        return True

    try:
        p = run_child(cmd + ["--progress", "lines"], timeout=DATA_CHECK_TIMEOUT_S, env=env, stdin=subprocess.DEVNULL,
                      on_err_line=on_err_line, cancel=cancel)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"the data check took longer than {DATA_CHECK_TIMEOUT_S // 60} minutes (stopped)") from None
    out = p.stdout.strip()
    if out:
        import json

        try:
            return json.loads(out)
        except ValueError:
            pass
    raise RuntimeError((p.stderr.strip().splitlines() or [f"exit code {p.returncode}"])[-1])


def ssh_hosts() -> list[str]:
    """Host aliases of ~/.ssh/config (tui.screens.launch.ssh_hosts)."""
    from tui.screens.launch import ssh_hosts as hosts

    return hosts()


def _start_run(job: JobConfig, progress: Callable[[str, int, int], None] | None = None) -> Any:
    from engine.launch import start_run

    return start_run(job, secrets=job.secrets, progress=progress)


@dataclass
class Services:
    describe_model: Callable[[str], Any] = _describe_model
    estimate: Callable[..., Any] = _estimate  # (job, num_examples=, tokens_per_example=)
    data_check: Callable[..., dict[str, Any]] = _data_check  # (job, progress=(dict), cancel=threading.Event)
    start_run: Callable[..., Any] = _start_run  # (job, progress=(host, bytes sent, bytes in all) while data uploads)
    ssh_hosts: Callable[[], list[str]] = ssh_hosts
    clock: Callable[[], datetime] = datetime.now
    gpu_memory: Callable[[str], float | None] = _gpu_memory  # launch host → GiB of its smallest GPU, or None
    check_host: Callable[[str], tuple[bool, str]] = _check_host  # remote host → (launchable, what to say)
    sniff_data: Callable[[str, dict[str, Any]], list[Any]] = _sniff_data  # data path → its first rows


# --------------------------------------------------------------------------
# Command palette
# --------------------------------------------------------------------------


class FinetuiCommands(Provider):
    """Every app action as a palette command."""

    def _screen_commands(self, screen: Any) -> list[tuple[str, str, Callable[[], Any]]]:
        """A pushed screen's (runs, monitor, …) key bindings as commands, each once."""
        out: list[tuple[str, str, Callable[[], Any]]] = []
        seen: set[str] = set()
        for b in getattr(screen, "BINDINGS", []):
            if not isinstance(b, Binding) or b.action in seen or not b.description:
                continue
            seen.add(b.action)
            key = b.key.split(",")[0]
            out.append((b.description, f"{screen.__class__.__name__.removesuffix('Screen').lower()} · key {key}",
                        partial(screen.call_later, screen.run_action, b.action)))
        return out

    def _commands(self) -> list[tuple[str, str, Callable[[], Any]]]:
        app: FinetuiApp = self.app  # type: ignore[assignment]
        scr = self.screen
        if app.screen_stack and scr is not app.screen_stack[0] and not isinstance(scr, ModalScreen):
            # a dashboard screen on top: its own actions, then the app-wide ones that make sense there
            return self._screen_commands(scr) + [
                ("Toggle theme", "light / dark", app.action_toggle_theme),
                ("Quit", "asks when there are unsaved changes", app.action_quit),
            ]
        cmds: list[tuple[str, str, Callable[[], Any]]] = []
        for i, (sid, title, _) in enumerate(STEPS):
            cmds.append((f"Go to {title}", f"step {i + 1} of the wizard", partial(app.goto, sid)))
        cmds += [
            ("Open preset…", "shipped, recent or any .toml file", app.action_open_preset),
            ("Save preset…", "write the job as TOML (secrets are never written)", app.action_save_preset),
            ("Import…", "a LLaMA-Factory / Nova YAML or FPT / OCI / watsonx JSON as a new job", app.action_import),
            ("Dismiss import notes", "hide the last import's notes", app.action_dismiss_notes),
            ("Export…", "the job as LLaMA-Factory / Nova YAML or FPT / OCI / watsonx JSON", app.action_export),
            ("Next step", "the wizard's next step", app.action_next_step),
            ("Previous step", "the wizard's previous step", app.action_prev_step),
            ("Launch", "start the run (when the job validates)", app.action_launch),
            ("Launch sweep", "the job's [sweep] table: its trials one after another", app.action_launch_sweep),
            ("Runs", "runs started from this machine", app.action_runs),
            ("Toggle theme", "light / dark", app.action_toggle_theme),
            ("Show TOML", "the job as a TOML editor, synced with the form", app.action_show_toml),
            ("Show diff", "values that differ from the profile's defaults", app.action_show_diff),
            ("Check data", "run the data validation report", app.action_check_data),
            ("Help", "help for the focused field and the keys", app.action_help),
            ("Copy job as TOML", "to the clipboard (OSC 52: works over SSH)", app.action_copy_job),
            ("Copy launch command", "the shell command that launches this job", app.action_copy_command),
            ("Quit", "asks when there are unsaved changes", app.action_quit),
        ]
        return cmds

    async def discover(self) -> Hits:
        for title, help, cb in self._commands():
            yield DiscoveryHit(title, cb, help=help)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help, cb in self._commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), cb, help=help)


def screen_keys(screen: Any, keymap: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """A screen's own keys as (keys, what they do), for its F1 help: each action once with all its keys (the
    user's own where ``keymap`` rebinds them), then the app-wide ones that work there."""
    names = {"escape": "Esc", "slash": "/", "space": "Space", "enter": "Enter", "delete": "Delete"}
    keys: dict[str, list[str]] = {}
    desc: dict[str, str] = {}
    for b in getattr(screen, "BINDINGS", []):
        if isinstance(b, Binding) and b.description:
            bound = (keymap or {}).get(b.id, b.key) if b.id else b.key
            keys.setdefault(b.action, []).extend(names.get(k, k) for k in bound.split(","))
            desc.setdefault(b.action, b.description)
    rows = [(" / ".join(dict.fromkeys(ks)), desc[a]) for a, ks in keys.items()]
    return rows + [("F1", "this help"), ("Ctrl+P", "command palette"),
                   ("Ctrl+Q", "quit (asks when there are unsaved changes)")]


#: what a focused button (by id, or id prefix ending in "-") does, for the bottom help line
BUTTON_HELP = {
    "next-": "the next step (Ctrl+N)",
    "back-": "the previous step (Ctrl+B, or Esc)",
    "launch-button": "start the run now (Ctrl+L here)",
    "model-catalog": "the profile's model catalog: pick a base model",
    "model-browse": "choose a local model folder (with config.json)",
    "data-browse": "choose the training file or folder",
    "data-add": "add another file of the same format: its rows are read after the others",
    "data-s3": "read the data from S3: an s3:// path and its connection",
    "data-check": "check the data: invalid rows, token lengths, a preview",
    "data-use-format": "use the format the first rows look like",
    "view-form": "the hyperparameters as a form",
    "view-toml": "the job as TOML, edited in place (Ctrl+T)",
    "view-diff": "the values that differ from the profile's defaults",
    "notes-dismiss": "hide the import's notes",
    "known-hosts": "where to run: this machine, or a host of ~/.ssh/config",
}


# --------------------------------------------------------------------------
# The app
# --------------------------------------------------------------------------


#: step → (module, class) of its pane
PANE_CLASSES = {
    "model": ("tui.screens.model", "ModelPane"),
    "data": ("tui.screens.data", "DataPane"),
    "trainer": ("tui.screens.trainer", "TrainerPane"),
    "hyperparameters": ("tui.screens.hyperparameters", "HyperparametersPane"),
    "launch": ("tui.screens.launch", "LaunchPane"),
}


class Panes(dict):  # type: ignore[type-arg]
    """The step panes by step id, each imported and built on first use (start-up time)."""

    def __missing__(self, step: str) -> StepPane:
        import importlib

        module, cls = PANE_CLASSES[step]
        pane = self[step] = getattr(importlib.import_module(module), cls)()
        return pane


class StepSwitcher(ContentSwitcher):
    """The steps' switcher.  While a step is built hidden (FinetuiApp.prebuild_step), its mount ends
    with a layout refresh of the switcher that also repaints it: the step on screen, painted again
    for nothing (~8 kB at 80×24 per step built).  The layout pass alone is kept then: a hidden step
    changes nothing on screen."""

    hidden_mounts = 0

    def refresh(self, *regions: Any, repaint: bool = True, layout: bool = False, recompose: bool = False) -> Any:
        if self.hidden_mounts and layout and not regions and not recompose:
            repaint = False
        return super().refresh(*regions, repaint=repaint, layout=layout, recompose=recompose)


class WizardScreen(QuietScreen):
    """The default screen, made cheaper to show first (start-up time, and bytes to the terminal):

    - its first resume does not restyle the whole tree (every widget got its styles when it was
      mounted, moments before);
    - Resize events of the size it is already laid out at are dropped: its first layout posts it
      one, and the app forwards the terminal's first size once more after the first paint; Textual
      answers each with a second full layout and repaint of every widget;
    - the whole-screen repaint its first resume asks for right after painting the first frame is
      skipped (that frame is already on the terminal).

    (QuietScreen, its base, has the rest: focus changes and whole frames.)
    """

    # the first field, not the first focusable widget (the step's scrolling body, whose blur a
    # moment later, when the step focuses its first field, repainted the whole step)
    AUTO_FOCUS = "Input"

    _resumed = False
    _first_resume = False
    _painted = False

    def _on_screen_resume(self, event: events.ScreenResume) -> None:
        # overrides Screen._on_screen_resume: it restyles the whole tree on every resume, the first one
        # included (every widget was styled when mounted, moments before)
        if not self._resumed:
            self._resumed = True
            self._first_resume = True
            event.refresh_styles = False
        else:
            wizard_resumed = getattr(self.app, "wizard_resumed", None)
            if wizard_resumed is not None:
                wizard_resumed()

    def _compositor_refresh(self) -> None:
        # extends Screen._compositor_refresh (paints the frame): notes that the first frame is painted
        super()._compositor_refresh()
        self._painted = True

    def refresh(self, *regions: Any, **kwargs: Any) -> Any:
        if self._first_resume and not regions and not any(kwargs.values()):
            # Screen._on_screen_resume ends with a plain refresh(): when the first frame is already
            # painted at this size, that is the whole screen once more
            self._first_resume = False
            if self._painted and getattr(self._compositor, "size", None) == self.size:
                return self
        return super().refresh(*regions, **kwargs)

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        focus_help = getattr(self.app, "focus_help", None)
        if focus_help is not None:
            focus_help(event.widget)

    def _on_resize(self, event: events.Resize) -> None:
        # overrides Screen._on_resize: it lays out and repaints everything even for the size it has
        if self.is_attached and event.size == self.size == getattr(self._compositor, "size", None):
            event.prevent_default()
            event.stop()


class FinetuiApp(App[None]):
    TITLE = "finetui"
    # the dashboards' CSS (RunsScreen, MonitorScreen: their CSS_PATH) is the app's from the start: a
    # screen bringing CSS the stylesheet does not have yet makes Textual re-parse every source in a
    # fresh stylesheet, without its parse cache (Stylesheet.reparse: 50-120 ms on the first Ctrl+R,
    # launch or --attach); parsed once here, it is in the saved parse results too (tui/csscache.py)
    CSS_PATH = ["app.tcss", "screens/dashboard.tcss"]
    COMMANDS = App.COMMANDS | {FinetuiCommands}
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-wide")]
    ENABLE_COMMAND_PALETTE = True

    BINDINGS = with_ids([
        Binding("f1", "help", "Help"),
        Binding("question_mark", "help", "Help", show=False),  # (a text field types it: F1 there)
        Binding("q", "quit_or_back", "Quit", show=False),  # outside text fields: quits the wizard, leaves a screen
        Binding("escape", "back", "Back", show=False),  # the wizard's previous step
        Binding("ctrl+n", "next_step", "Next", priority=True),
        Binding("ctrl+b", "prev_step", "Back", priority=True),
        Binding("ctrl+s", "save_preset", "Save", priority=True),
        Binding("ctrl+o", "open_preset", "Open", priority=True),
        Binding("ctrl+l", "launch", "Launch", priority=True),
        Binding("ctrl+r", "runs", "Runs", priority=True),
        Binding("ctrl+t", "show_toml", "TOML", show=False, priority=True),
        Binding("ctrl+q", "quit", "Quit", priority=True),
    ])

    def __init__(self, job: JobConfig | None = None, preset_path: str | os.PathLike[str] | None = None,
                 services: Services | None = None, autosave: bool = True, offer_restore: bool = True,
                 theme: str | None = None, start: str | None = None, attach: Any = None,
                 imported: tuple[str, list[str]] | None = None) -> None:
        """``start="runs"`` opens on the runs screen; ``attach`` (a RunRef, run directory or name) opens
        on that run's dashboard, with the runs screen under it.  The wizard is behind both (Esc).
        ``imported`` (file name, notes): the job was imported from another tool's config (unsaved, its
        notes shown)."""
        super().__init__()
        self.imported = imported
        self.start_on_runs = start == "runs" or attach is not None
        self.attach_ref = attach
        self.job = job.copy() if job is not None else JobConfig()
        self.preset_path: Path | None = Path(preset_path) if preset_path else None
        self.services = services or Services()
        self.autosave_enabled = autosave
        self.offer_restore = offer_restore
        self.dirty = imported is not None
        self.launching = False
        self.step = STEP_IDS[0]
        self._autosave_timer: Any = None
        self.last_export: tuple[list[Path], list[str]] | None = None  # (files written, warnings)
        self.data_report: tuple[tuple[Any, ...], dict[str, Any]] | None = None  # (data_key, last check's report)
        self.gpu_memory: dict[str, float | None] = {}  # launch host → GiB of its smallest GPU (probed once)
        self.hub_reachable: bool | None = None  # this machine → the Hugging Face Hub (probed once, when it matters)
        self.host_checks: dict[str, tuple[bool, str] | None] = {}  # remote host → its check (None: checking)
        if theme:
            self.theme = theme
        self.user_keys = keys.apply_user_keys(self)
        # last session's parsed CSS (tui/csscache.py): about 65 ms less to the first screen
        from tui import csscache

        self._css_loaded = csscache.load(self.stylesheet)

    def _handle_exception(self, error: Exception) -> None:
        # overrides textual's App._handle_exception: it prints a rich traceback on the terminal for any exception
        """The TUI's one top-level handler.  Overrides Textual's private ``App._handle_exception`` (textual 8.2),
        which ends the app on any unhandled exception and prints a rich traceback on the terminal.  A user's
        error (:class:`FinetuiError`) from a worker is shown as a notification and the app goes on; raised in a
        message handler it ends the app (Textual has stopped that handler's message loop) with its lines;
        anything else is a bug: the app ends (Pilot tests re-raise it) with one line that points to the crash
        log holding the traceback."""
        from textual.worker import WorkerFailed

        err = error.error if isinstance(error, WorkerFailed) else error
        if isinstance(err, FinetuiError) and isinstance(error, WorkerFailed):
            self.notify("\n".join(err.lines()), title="Cannot do that", severity="error", timeout=10)
            return
        line = "\n".join(err.lines()) if isinstance(err, FinetuiError) else report_crash(err)
        self._return_code = 1
        if self._exception is None:
            self._exception = error
            self._exception_event.set()
        self._exit_renderables.append(line)
        self._close_messages_no_wait()

    def run(self, *args: Any, **kwargs: Any) -> Any:
        """App.run, with two start-up savings: the cyclic garbage collector waits until the first screen
        is painted (it would otherwise walk the freshly imported modules several times), and the parsed
        CSS is saved for the next start (once the first screen is up, and again at the end)."""
        import gc

        self._started_by_run = True
        self._gc_paused = gc.isenabled() or self.resume_gc_after_start
        gc.disable()
        try:
            return super().run(*args, **kwargs)
        finally:
            self._resume_gc()
            self._save_css()

    _started_by_run = False
    _gc_paused = False
    resume_gc_after_start = False  # the launcher paused the collector before the imports (tui.cli)

    def _resume_gc(self) -> None:
        if self._gc_paused:
            import gc

            self._gc_paused = False
            gc.freeze()  # what start-up built lives as long as the app: never walked again
            gc.enable()

    def _first_screen_shown(self) -> None:
        self._resume_gc()
        self.set_timer(2.0, self._save_css)
        self.set_timer(PREBUILD_AFTER, self.prebuild_step)

    _last_input = 0.0

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.InputEvent):
            self._last_input = time.monotonic()
        await super().on_event(event)

    def prebuild_step(self) -> bool:
        """Build the next step not built yet, hidden, while the user reads the one on screen: its first
        visit is then a switch (data 570 ms, hyperparameters 720 ms, launch 580 ms to settle on a
        2-core machine before).  One step at a time, and only after a second without a key or a click,
        so typing never waits on it.  True when a step was started."""
        if not self.is_running or not self.screen_stack:
            return False
        quiet = time.monotonic() - self._last_input
        if self._wizard_pending and quiet >= PREBUILD_QUIET:  # the wizard itself, behind a dashboard
            self.run_worker(self._build_wizard(), group="wizard")
            self.set_timer(PREBUILD_AFTER, self.prebuild_step)
            return True
        if self.screen is not self.screen_stack[0] or self._wizard_pending:  # a dialog or a dashboard
            self.set_timer(PREBUILD_AFTER, self.prebuild_step)  # is open: later
            return False
        if quiet < PREBUILD_QUIET:
            self.set_timer(PREBUILD_QUIET - quiet + 0.05, self.prebuild_step)
            return False
        for sid in STEP_IDS:
            pane = self.panes[sid]
            if pane.parent is None:
                pane.display = False
                self.run_worker(self._mount_hidden(pane), group="prebuild")
                self.set_timer(PREBUILD_QUIET / 2, partial(self._sync_hidden, pane))
                self.set_timer(PREBUILD_QUIET, self.prebuild_step)
                return True
        return False

    async def _mount_hidden(self, pane: StepPane) -> None:
        switcher = self.switcher
        switcher.hidden_mounts += 1

        def done() -> None:
            switcher.hidden_mounts -= 1

        try:
            await switcher.mount(pane)
        finally:
            # Textual's AwaitMount refreshes the parent once more from its own callback, after this
            self.set_timer(0.2, done)

    def _sync_hidden(self, pane: StepPane) -> None:
        """A built step that is not on screen takes the job's values now, not on its first visit."""
        if pane.ready and pane is not self.pane():
            from textual.css.query import NoMatches

            res, states = compute_states(self.job)
            try:
                pane.sync(self.job, res, states)
            except NoMatches:  # still composing its deeper parts: its first visit syncs it
                pass

    def _save_css(self) -> None:
        from tui import csscache

        saved = csscache.save(self.stylesheet, self._css_loaded)
        if saved is not None:
            self._css_loaded = saved

    # -- layout -----------------------------------------------------------
    def compose(self) -> ComposeResult:
        # the screen's breakpoint class before its widgets get their styles: the first Resize then
        # changes no class and does not restyle the whole tree (start-up time)
        width = self.size.width
        for at, cls in sorted(self.HORIZONTAL_BREAKPOINTS, reverse=True):
            if width >= at:
                self.screen.add_class(cls, update=False)
                break
        # kept as attributes: App.query_one looks at the top screen, which may be a dialog
        self.stepbar = StepBar()
        self.helpbar = HelpBar()
        from tui.widgets.notes import NotesPanel

        self.notes = NotesPanel()
        self.panes: dict[str, StepPane] = Panes(model=ModelPane())
        # only the first step is mounted at start; the others once the first screen is up
        # (prebuild_step) or on their first visit, whichever comes first (fast start)
        self.switcher = StepSwitcher(self.panes["model"], initial="step-model", id="steps")
        if self.start_on_runs:
            # opened on the runs screen or a dashboard: the wizard is built behind it later, when the
            # app is idle or the wizard is first shown (_build_wizard): not before the first screen
            self._wizard_pending = True
            return
        yield from self._wizard_widgets()

    def _wizard_widgets(self) -> list[Widget]:
        return [self.stepbar, self.notes, self.switcher, self.helpbar, KeyBar()]

    _wizard_pending = False

    async def _build_wizard(self) -> None:
        if not self._wizard_pending:
            return
        self._wizard_pending = False
        step, self.step = self.step, STEP_IDS[0]  # a step chosen meanwhile (Ctrl+N) is shown once built
        await self.screen_stack[0].mount_all(self._wizard_widgets())
        if step != self.step:
            self.goto(step)

    def get_default_screen(self) -> Screen:
        return WizardScreen(id="_default")

    def update_styles(self, node: Any, animate: bool = True) -> None:
        # Textual restyles a widget whose classes change even before it is mounted (Button and Input
        # set their class-toggling reactives in __init__: two whole stylesheet passes each, 40 of the
        # first screen's 145); mounting styles it anyway, so a widget with no parent yet is skipped
        if node is not self and node.parent is None:
            return
        super().update_styles(node, animate=animate)

    def _on_resize(self, event: events.Resize) -> None:
        # overrides App._on_resize.  Textual keeps a Resize of the size it already has and re-sends it to the screen when idle:
        # a second full layout at start-up for nothing.  Drop it (a real change goes through).
        if event.size == getattr(self, "_size", None) and getattr(self, "_resize_timer", True) is None:
            event.prevent_default()
            event.stop()

    def on_load(self) -> None:
        from tui.workers import ExitExecutor

        # thread workers: quitting waits for a launch or a stop in flight, not for a listing or a data check
        asyncio.get_running_loop().set_default_executor(ExitExecutor())

    def on_mount(self) -> None:
        for problem in self.user_keys.problems:
            self.notify(problem, severity="error", timeout=12)
        if self.imported is not None:
            self.show_notes(*self.imported)
        if self._started_by_run:
            self.call_after_refresh(self._first_screen_shown)
        if self.start_on_runs:
            self.action_runs()
            if self.attach_ref is not None:
                from tui.screens.monitor import MonitorScreen

                self.push_screen(MonitorScreen(self.attach_ref))
            # the unsaved job is offered back when the wizard is first shown, not over a dashboard
            self._restore_pending = self.offer_restore and self.autosave_enabled
        elif self.offer_restore and self.autosave_enabled:
            self._maybe_offer_restore()

    _restore_pending = False

    def wizard_resumed(self) -> None:
        """The wizard is on top again (its screen resumed): built now if it was not yet, and the
        unsaved job offered back if that waited for it."""
        if self._wizard_pending:
            self.run_worker(self._build_wizard(), group="wizard")
        if self._restore_pending:
            self.call_after_refresh(self._offer_pending_restore)

    def _offer_pending_restore(self) -> None:
        if self._restore_pending and self.screen is self.screen_stack[0]:
            self._restore_pending = False
            self._maybe_offer_restore()

    def _focus_first(self) -> None:
        self.pane().focus_first()

    # -- state --------------------------------------------------------------
    def pane(self, step: str | None = None) -> StepPane:
        return self.panes[step or self.step]

    def refresh_views(self) -> None:
        """Re-read the job into the visible pane, the step bar and the title."""
        res, states = compute_states(self.job)
        pane = self.pane()
        if pane.ready:
            pane.sync(self.job, res, states)
        bar = self.stepbar
        bar.update_steps(self.step, step_errors(states))
        name = self.preset_path.name if self.preset_path else "new job"
        bar.set_status(f"{name}{' ●' if self.dirty else ''}  {self.job.profile}")
        self.sub_title = name

    @staticmethod
    def data_key(job: JobConfig) -> tuple[Any, ...]:
        """What a data check's figures depend on: file, format, stage, max length, tokenizer."""
        res = job.resolved()
        return tuple(res.get(k) for k in ("data.train_path", "data.format", "trainer.stage",
                                         "general.max_sequence_length", "model.name_or_path"))

    def remember_data_report(self, job: JobConfig, rep: dict[str, Any]) -> None:
        self.data_report = (self.data_key(job), rep)

    def data_hints(self, job: JobConfig) -> dict[str, Any]:
        """Rows and mean trained tokens per row from the last data check of this job's data, for the estimate."""
        if self.data_report is None or self.data_report[0] != self.data_key(job):
            return {}
        rep = self.data_report[1]
        out: dict[str, Any] = {}
        valid = (rep.get("rows") or {}).get("valid")
        if isinstance(valid, int) and valid > 0:
            out["num_examples"] = valid
        mean = (rep.get("tokens") or {}).get("mean_trained_length")
        if isinstance(mean, (int, float)) and mean > 0:
            out["tokens_per_example"] = float(mean)
        return out

    def estimate_hints(self, job: JobConfig) -> dict[str, Any]:
        """The data hints, and the launch target's GPU memory once probed (the first call for a host starts
        the probe in a thread; the launch pane's estimate is refreshed when it answers)."""
        hints = self.data_hints(job)
        res = job.resolved()
        if res.get("launch.device") == "cpu":
            return hints
        host = str(res.get("launch.host") or LOCAL_HOST)
        if host not in self.gpu_memory:
            self.gpu_memory[host] = None
            self._probe(lambda: self.services.gpu_memory(host) or None, lambda gb: self._gpu_probed(host, gb))
        elif self.gpu_memory[host]:
            hints["gpu_memory_gb"] = self.gpu_memory[host]
        return hints

    def model_warning(self, job: JobConfig) -> str | None:
        """Why a local run of ``job`` would stop at its start although the job is valid: a Hub model that is
        not in this machine's Hugging Face cache while the Hub cannot be reached (probed once, in a daemon
        thread; the launch pane is refreshed when it answers).  None when nothing is known against it."""
        res = job.resolved()
        name = str(res.get("model.name_or_path") or "")
        from engine import hub
        from engine.modelinfo import _from_hf_cache

        if not hub.is_hub_name(name) or _from_hf_cache(name) is not None:
            return None
        if is_remote_job(res) or os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE"):
            return None  # (another host's Hub and cache: `finetui doctor --host` says)
        if self.hub_reachable is None:
            self.hub_reachable = True  # (until the probe says otherwise: no warning on a guess)
            self._probe(lambda: None if hub.reachable(*hub.hub_target()) else False, self._hub_probed)
            return None
        if self.hub_reachable:
            return None
        return (f"{name} is not in this machine's Hugging Face cache and the Hub cannot be reached: the run would "
                f"stop at its start (download it, or choose a local folder)")

    def host_check(self, job: JobConfig) -> tuple[bool, str] | None:
        """What is known against the job's remote launch targets: None when local (or all answer), else
        (launchable, sentence): a host still being checked or that does not resolve is not launchable; one
        whose SSH port does not answer is (an unverified host).  Each host is checked once, in a thread."""
        res = job.resolved()
        if not is_remote_job(res):
            return None
        hosts = [str(h) for h in [res.get("launch.host"), *(res.get("launch.hosts") or [])] if not is_local_host(h)]
        for host in dict.fromkeys(hosts):
            if host not in self.host_checks:
                self.host_checks[host] = None
                self._probe(partial(self.services.check_host, host), partial(self._host_checked, host))
            got = self.host_checks[host]
            if got is None:
                return False, f"checking host {host}…"
            if not got[0] or got[1]:
                return got
        return None

    def _host_checked(self, host: str, got: tuple[bool, str]) -> None:
        self.host_checks[host] = got
        self.refresh_views()

    def _hub_probed(self, ok: bool) -> None:
        self.hub_reachable = ok
        self.refresh_views()

    def _probe(self, ask: Callable[[], Any], answered: Callable[[Any], None]) -> None:
        """``ask()`` in a daemon thread, then ``answered(what it returned)`` on the UI thread unless that is None.
        Not a worker: a probe still waiting on the network must not hold the app's exit."""
        import threading

        def run() -> None:
            result = ask()
            if result is not None:
                try:
                    self.call_from_thread(answered, result)
                except RuntimeError:  # the app has ended meanwhile
                    pass

        threading.Thread(target=run, name="probe", daemon=True).start()

    def _gpu_probed(self, host: str, gb: float) -> None:
        self.gpu_memory[host] = gb
        pane = self.panes.get("launch")
        if pane is not None and pane.ready:
            pane.update_estimate(self.job)  # type: ignore[attr-defined]

    def default_run_name(self, job: JobConfig | None = None) -> str:
        job = job or self.job
        from tui.screens.launch import default_run_name

        return default_run_name(job.resolved(), self.services.clock())

    job_generation = 0  # set_job's count: a field shows a replaced job's value even while focused

    def set_job(self, job: JobConfig, preset_path: Path | None | bool = False, dirty: bool = True) -> None:
        self.job_generation += 1
        secrets = self.job.secrets
        self.job = job
        self.job.secrets = {**secrets, **job.secrets}
        if preset_path is not False:
            self.preset_path = preset_path  # type: ignore[assignment]
        self.changed(dirty)

    def changed(self, dirty: bool = True) -> None:
        self.dirty = dirty
        if dirty:
            self.schedule_autosave()
        self.refresh_views()

    def schedule_autosave(self) -> None:
        if not self.autosave_enabled:
            return
        if self._autosave_timer is not None:
            self._autosave_timer.stop()
        self._autosave_timer = self.set_timer(AUTOSAVE_DELAY, self.autosave_now)

    def _stop_autosave_timer(self) -> None:
        if self._autosave_timer is not None:
            self._autosave_timer.stop()
            self._autosave_timer = None

    def autosave_now(self) -> None:
        self._stop_autosave_timer()  # a write now: the debounced one still pending is not needed
        if self.autosave_enabled and self.dirty:
            state.write_autosave(self.job, self.preset_path)

    def clear_autosave(self) -> None:
        """Remove the autosave (saved, discarded or clean quit), and the debounced write still
        pending: it would write the discarded job back a moment later, even while quitting."""
        self._stop_autosave_timer()
        state.clear_autosave()

    # -- edits ----------------------------------------------------------------
    @on(FieldEdited)
    def _field_edited(self, event: FieldEdited) -> None:
        event.stop()
        self.apply_edit(event.name, event.value)

    def apply_edit(self, name: str, value: Any) -> None:
        job = self.job
        if name == "profile":
            if value != job.profile:
                job.profile = value
                self.changed()
            return
        res_before = job.resolved()
        if name in job.values and job.values[name] == value:
            return
        if name not in job.values and res_before.get(name) == value and type(res_before.get(name)) is type(value):
            return
        default = spec(name, job.profile).default
        if value is None and default is None or FIELD_BY_NAME[name].kind.widget == "switch" and value == default:
            job.unset(name)  # (a switch set back to its default leaves the preset)
        else:
            job.values[name] = value
        note = job.redefaulted(res_before)  # another base model (or task type): its documented defaults
        if note:
            self.notify(note, title="Defaults for this model")
        # a field the edit hid, set explicitly, that now breaks a rule: drop it
        res = job.resolved()
        hidden = [n for n, f in FIELD_BY_NAME.items()
                  if n in job.values and n != name and f.is_visible(res_before) and not f.is_visible(res)]
        if hidden:
            bad = {p.field for p in job.problems()}
            for n in hidden:
                if n in bad:
                    job.unset(n)
        self.changed()

    @on(TomlEdited)
    def _toml_edited(self, event: TomlEdited) -> None:
        event.stop()
        new = event.job
        if new.profile == self.job.profile and new.values == self.job.values and new.name == self.job.name \
                and new.sweep == self.job.sweep:
            return
        self.set_job(new)

    @on(FieldFocused)
    def _field_focused(self, event: FieldFocused) -> None:
        self.helpbar.show_field(event.name)

    def focus_help(self, widget: Widget) -> None:
        """The bottom help line follows the focus onto what is not a field: a button, a group's title, a choice."""
        from textual.widgets import Button
        from textual.widgets._collapsible import CollapsibleTitle

        if self.focused_field() is not None or not hasattr(self, "helpbar"):
            return  # (a field: FieldFocused shows its help)
        wid = widget.id or ""
        if isinstance(widget, CollapsibleTitle):
            coll = widget.parent
            group = (getattr(coll, "id", "") or "").removeprefix("group-")
            from engine.schema import GROUP_FIELDS, GROUP_TITLES

            n = len(GROUP_FIELDS.get(group, []))
            title = GROUP_TITLES.get(group, str(getattr(coll, "title", "")))
            self.helpbar.show_text(title, f"a group of {n} field(s): Enter or a click opens and closes it"
                                   if n else "Enter or a click opens and closes it")
            return
        text = BUTTON_HELP.get(wid) or next((v for k, v in BUTTON_HELP.items() if k.endswith("-") and
                                             wid.startswith(k)), None) or (str(widget.tooltip or "") or None)
        if text is None and not isinstance(widget, Button):
            return
        label = str(widget.label) if isinstance(widget, Button) else wid.replace("-", " ").capitalize()
        self.helpbar.show_text(label.strip(), text or "Enter or Space presses it")

    @on(StepBar.Chosen)
    def _step_chosen(self, event: StepBar.Chosen) -> None:
        self.goto(event.step)

    # -- navigation -----------------------------------------------------------
    def goto(self, step: str) -> None:
        if step not in STEP_IDS:
            return
        self.step = step
        if self._wizard_pending:  # shown once built (_build_wizard)
            return
        pane = self.panes[step]
        if pane.parent is None:
            # first visit: the pane is built hidden (the current one stays on screen) and shows,
            # syncs and focuses itself once all of it is composed — no layout and paint of a
            # half-built pane on every compose wave (step switch time)
            pane.display = False
            self.switcher.mount(pane)
        if pane.ready:
            self.switcher.current = f"step-{step}"
        self.refresh_views()
        if pane.ready:
            self.call_after_refresh(self._focus_first)

    def action_next_step(self) -> None:
        i = STEP_IDS.index(self.step)
        if i < len(STEP_IDS) - 1:
            self.goto(STEP_IDS[i + 1])

    def action_prev_step(self) -> None:
        i = STEP_IDS.index(self.step)
        if i > 0:
            self.goto(STEP_IDS[i - 1])

    def _hp(self) -> HyperparametersPane:
        return self.panes["hyperparameters"]  # type: ignore[return-value]

    def action_show_toml(self) -> None:
        """The job as TOML; pressed again on the TOML view, back to the form."""
        if self.step == "hyperparameters" and self._hp().ready and getattr(self._hp(), "view", "") == "toml":
            self._hp().set_view("form")
            return
        self.goto("hyperparameters")
        self._hp().set_view("toml")

    async def action_quit_or_back(self) -> None:
        """``q`` outside text fields: the wizard quits (asking about unsaved changes), another screen closes."""
        if self.screen is self.screen_stack[0]:
            await self.action_quit()
        elif not isinstance(self.screen, ModalScreen):
            self.pop_screen()

    def action_back(self) -> None:
        """Esc in the wizard: the previous step."""
        if self.screen is self.screen_stack[0]:
            self.action_prev_step()

    def action_show_diff(self) -> None:
        self.goto("hyperparameters")
        self._hp().set_view("diff")

    def action_check_data(self) -> None:
        self.goto("data")
        self.panes["data"].run_check()  # type: ignore[attr-defined]

    def action_toggle_theme(self) -> None:
        self.theme = "textual-light" if self.current_theme.dark else "textual-dark"

    def focused_field(self) -> str | None:
        w = self.focused
        while w is not None:
            if isinstance(w, FieldRow):
                return w.field_name
            w = w.parent  # type: ignore[assignment]
        return None

    # -- copy (OSC 52) and vim-style moves: tui/keys.py ------------------------------
    def action_copy_job(self) -> None:
        from engine import presets

        text = presets.dumps(self.job)
        self.copy_to_clipboard(text)
        self.notify(f"Copied the job as TOML ({len(text.splitlines())} lines) to the clipboard.")

    def action_copy_command(self) -> None:
        text = keys.launch_command(self.job, self.preset_path, self.dirty)
        self.copy_to_clipboard(text)
        self.notify("Copied: " + (text if "\n" not in text else "the job (a here-document) and finetui train"))

    def action_vim_move(self, where: str) -> None:
        """j / k: the next / previous row of a focused table or list, else the next / previous field;
        h / l: the wizard's previous / next step."""
        if where in ("left", "right"):
            if self.screen is self.screen_stack[0]:
                (self.action_prev_step if where == "left" else self.action_next_step)()
            return
        w = self.focused
        act = getattr(w, "action_cursor_down" if where == "down" else "action_cursor_up", None)
        if callable(act):
            act()
        elif where == "down":
            self.screen.focus_next()
        else:
            self.screen.focus_previous()

    def action_help(self) -> None:
        """F1: the focused field's help and the wizard's keys; on another screen (runs, a dashboard), its keys."""
        from tui.widgets.dialogs import HelpDialog

        scr = self.screen
        if isinstance(scr, ModalScreen):
            return
        if scr is not self.screen_stack[0]:
            self.push_screen(HelpDialog(None, self.job.profile, keys=screen_keys(scr, self.user_keys.keymap)))
            return
        self.push_screen(HelpDialog(self.focused_field(), self.job.profile))

    # -- presets ----------------------------------------------------------------
    def action_open_preset(self) -> None:
        from engine import presets
        from tui.widgets.dialogs import OpenPresetDialog

        def opened(result: tuple[str, str] | None) -> None:
            if not result:
                return
            kind, path = result
            if self.dirty:
                self.confirm_discard(lambda: self.open_path(path, kind))
            else:
                self.open_path(path, kind)

        self.push_screen(OpenPresetDialog(presets.shipped(), state.recent_presets()), opened)

    def confirm_discard(self, then: Callable[[], Any]) -> None:
        from tui.widgets.dialogs import ConfirmDialog

        def answered(key: str | None) -> None:
            if key == "discard":
                then()

        self.push_screen(ConfirmDialog("Unsaved changes", "The job has unsaved changes. Discard them?",
                                       (("discard", "Discard"), ("cancel", "Keep editing"))), answered)

    def open_path(self, path: str, kind: str = "open") -> bool:
        """Open a job file: a TOML preset, or another tool's config (imported: engine.interop), told apart by
        its content wherever it is opened; ``kind="import"`` insists on an import.  An import's notes stay in
        the notes panel until dismissed."""
        from engine import interop, presets

        p = Path(path).expanduser()
        try:
            if kind != "import":
                found = interop.file_kind(p)
                if found is None:
                    raise FinetuiError("neither a finetui preset (TOML) nor a LLaMA-Factory / Nova YAML or an "
                                       "FPT / OCI / watsonx JSON", path=p)
                kind = "open" if found == "toml" else "import"
            if kind == "import":
                job, warnings = interop.import_file(p)
                self.set_job(job, None, dirty=True)
                self.show_notes(p.name, warnings)
                self.notify(f"Imported {p.name}" + (f": {len(warnings)} note(s), listed above the form"
                                                    if warnings else ""), timeout=6)
                return True
            job = presets.load(p)
        except (FinetuiError, OSError) as e:
            self.notify(one_line(e), title="Cannot import the file" if kind == "import" else "Cannot open the preset",
                        severity="error", timeout=8)
            return False
        self.notes.dismiss()
        self.set_job(job, p, dirty=False)
        state.add_recent(p)
        self.clear_autosave()
        self.notify(f"Opened {p.name}", timeout=3)
        return True

    def action_save_preset(self) -> None:
        self.save_dialog()

    def save_dialog(self, then: Callable[[], Any] | None = None, export: bool = False) -> None:
        from tui.widgets.dialogs import SavePresetDialog

        default = str(self.preset_path) if self.preset_path else "finetui-job.toml"

        def chosen(result: tuple[str, str] | None) -> None:
            if not result:
                return
            kind, path = result
            ok = self.save_to(path) if kind == "save" else self.export_to(kind.split(":", 1)[1], path)
            if ok and then is not None:
                then()

        self.push_screen(SavePresetDialog(default, export=export), chosen)

    def save_to(self, path: str | os.PathLike[str]) -> bool:
        from engine import presets

        p = Path(path).expanduser()
        try:
            presets.save(self.job, p)
        except OSError as e:
            self.notify(f"Cannot write {p}: {e.strerror or e}", severity="error", timeout=8)
            return False
        self.preset_path = p
        state.add_recent(p)
        self.clear_autosave()
        self.changed(dirty=False)
        self.notify(f"Saved {p.name}", timeout=3)
        return True

    def export_to(self, target: str, path: str) -> bool:
        """Write the job in another tool's format (engine.interop); warnings name what it cannot express."""
        from engine import interop

        suffix = interop.SUFFIX.get(target, ".yaml")
        p = Path(path or f"{(self.preset_path.stem if self.preset_path else 'finetui-job')}{suffix}").expanduser()
        if p.suffix in ("", ".toml"):
            p = p.with_suffix(suffix)
        try:
            written, warnings = interop.write_export(self.job, target, p)
        except (FinetuiError, OSError) as e:
            self.notify(one_line(e), title=f"Export to {target} failed", severity="error", timeout=8)
            return False
        self.last_export = (written, warnings)
        names = ", ".join(w.name for w in written)
        if warnings:
            self.notify(f"Wrote {names}. {len(warnings)} not expressible: " + "; ".join(warnings[:3]),
                        title=f"Exported to {target}", severity="warning", timeout=10)
        else:
            self.notify(f"Wrote {names}.", title=f"Exported to {target}", timeout=4)
        return True

    def action_export(self) -> None:
        self.save_dialog(export=True)

    def action_import(self) -> None:
        self.action_open_preset()

    def show_notes(self, source: str, notes: list[str]) -> None:
        """The notes of an import (ignored keys, converted values, what trains differently), on screen until
        dismissed."""
        self.notes.show(source, notes)

    def action_dismiss_notes(self) -> None:
        self.notes.dismiss()

    # -- autosave restore --------------------------------------------------------
    def _maybe_offer_restore(self) -> None:
        got = state.read_autosave()
        if got is None:
            return
        saved, preset = got
        if saved.profile == self.job.profile and saved.values == self.job.values:
            self.clear_autosave()
            return
        from tui.widgets.dialogs import ConfirmDialog

        where = f" (from {Path(preset).name})" if preset else ""
        n = len(saved.values)

        def answered(key: str | None) -> None:
            if key == "restore":
                self.set_job(saved, Path(preset) if preset else None, dirty=True)
                self.notify("Restored the unsaved job.", timeout=3)
            elif key == "discard":
                self.clear_autosave()

        self.push_screen(ConfirmDialog(
            "Restore the unsaved job?",
            f"The last session ended without saving{where}: {n} value(s), profile {saved.profile}.",
            (("restore", "Restore"), ("discard", "Discard")), no="discard"), answered)

    # -- quit -----------------------------------------------------------------
    async def action_quit(self) -> None:
        if not self.dirty:
            if self.autosave_enabled and not self._restore_pending:  # never offered: kept for next time
                self.clear_autosave()
            self.exit()
            return
        from tui.widgets.dialogs import ConfirmDialog

        def answered(key: str | None) -> None:
            if key == "save":
                if self.preset_path:
                    if self.save_to(self.preset_path):
                        self.exit()
                else:
                    self.save_dialog(then=self.exit)
            elif key == "discard":
                if self.autosave_enabled:
                    self.clear_autosave()
                self.exit()

        self.push_screen(ConfirmDialog("Unsaved changes", "Save the job before quitting?",
                                       (("save", "Save"), ("discard", "Quit without saving"), ("cancel", "Cancel")),
                                       id="quit-dialog", no="discard"), answered)

    # -- runs / launch ------------------------------------------------------------
    def action_launch_sweep(self) -> None:
        """The job's [sweep]: every trial checked, then the sweep's driver started (tui/screens/sweep.py)."""
        from tui.screens.sweep import launch_sweep

        launch_sweep(self)

    def action_runs(self) -> None:
        from tui.screens.runs import RunsScreen

        self.push_screen(RunsScreen(runs_dir=state.runs_dir(self.job)))

    def action_launch(self) -> None:
        """Ctrl+L: from another step, the launch step first (its estimate and review); there, the launch."""
        if self.launching:
            return
        if self.step != "launch" or self.screen is not self.screen_stack[0]:
            while self.screen is not self.screen_stack[0] and not isinstance(self.screen, ModalScreen):
                self.pop_screen()
            self.goto("launch")
            self.notify("Review the estimate and the job: Ctrl+L again launches.", timeout=4)
            return
        probs = self.job.problems()
        if probs:
            self.goto("launch")
            self.notify(str(probs[0]), title=f"Cannot launch: {len(probs)} to fix", severity="error", timeout=6)
            return
        host = self.host_check(self.job)
        if host is not None and not host[0]:
            self.goto("launch")
            self.notify(host[1], title="Cannot launch yet", severity="error", timeout=6)
            return
        job = self.job.copy()
        if os.environ.get("FINETUI_RUNS_DIR"):  # it overrides the job's, as for `finetui train`
            job.values["launch.runs_dir"] = state.runs_dir(job)
        if not job.values.get("launch.run_name"):
            job.values["launch.run_name"] = self.default_run_name(job)
        self.launching = True
        self.refresh_views()
        self.notify(f"Launching {job.values['launch.run_name']}…", timeout=3)
        self._launch_worker(job)

    #: the data upload of the launch under way, as the launch step shows it (None: no upload)
    upload_text: str | None = None

    def _upload_shown(self, text: str) -> None:
        from rich.text import Text

        self.upload_text = text
        for w in self.query("#launch-reason"):
            w.update(Text(f"⇡ {text}", overflow="ellipsis"))  # type: ignore[attr-defined]

    @work(thread=True, exclusive=True, group="launch")
    def _launch_worker(self, job: JobConfig) -> None:
        from engine.launch import upload_meter

        progress = upload_meter(lambda host, sent, total, text: self.call_from_thread(self._upload_shown, text))
        try:
            ref = self.services.start_run(job, progress=progress)
        except FinetuiError as e:
            self.call_from_thread(self._launched, None, "\n".join(e.lines()))
            return
        except Exception as e:  # noqa: BLE001 - a bug while launching must not end the app and lose the job
            self.call_from_thread(self._launched, None, report_crash(e))
            return
        self.call_from_thread(self._launched, ref, None)

    def _launched(self, ref: Any, error: str | None) -> None:
        self.launching = False
        self.upload_text = None
        self.refresh_views()
        if error:
            self.notify(error, title="Launch failed", severity="error", timeout=10)
            return
        from tui.screens.monitor import MonitorScreen

        self.push_screen(MonitorScreen(ref))


def create_app(job: JobConfig | None = None, preset_path: str | os.PathLike[str] | None = None,
               **kwargs: Any) -> FinetuiApp:
    """The one app factory shared by the CLI and the tests."""
    return FinetuiApp(job=job, preset_path=preset_path, **kwargs)


def demo_app(**kwargs: Any) -> FinetuiApp:
    from engine import presets

    p = presets.PRESETS_DIR / "demo.toml"
    return create_app(presets.load(p), p, **kwargs)
