"""Try a finished run's model: prompts in, answers out, without leaving the dashboard (t on the monitor).

The model is loaded once, in a child process (``python -m engine.train.generate RUN_DIR``: the
interface never imports torch), and answers one JSON line per prompt.  Closing the screen ends that
process; so does quitting the app (tui.workers).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from textual import on, work

from engine.launch.procs import module_argv
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, RichLog, Static

from tui import workers
from tui.screens.base import QuietScreen

#: tokens an answer may take (greedy decoding: what the trained model says most likely)
MAX_NEW_TOKENS = 128


class TryScreen(QuietScreen, ModalScreen[None]):
    BINDINGS = [Binding("escape", "close", "Close")]
    DEFAULT_CSS = """
    TryScreen { align: center middle; }
    TryScreen #try-box { width: 90%; height: 85%; border: thick $primary; background: $surface; padding: 0 1; }
    TryScreen #try-title { height: auto; text-style: bold; }
    TryScreen #try-log { height: 1fr; border: none; background: $surface; }
    TryScreen #try-status { height: auto; color: $text-muted; }
    TryScreen #try-input { height: 3; }
    """

    def __init__(self, run_dir: str | Path, name: str, command: list[str] | None = None):
        super().__init__()
        self.run_dir = Path(run_dir)
        self.run_name = name
        #: the model server (another command speaking its protocol: the screenshots' canned one)
        self.command = command or module_argv(sys.executable, "engine.train.generate", str(self.run_dir))
        self.proc: subprocess.Popen | None = None
        self.ready = False
        self.answers = 0
        self.about = ""

    def compose(self) -> ComposeResult:
        with Vertical(id="try-box"):
            yield Static(f"Try the model of {self.run_name}", id="try-title", markup=False)
            yield RichLog(id="try-log", wrap=True, markup=False, highlight=False)
            yield Static("Loading the model…", id="try-status", markup=False)
            yield Input(placeholder="A prompt — Enter sends it · Esc closes", id="try-input", disabled=True)

    def on_mount(self) -> None:
        self._load()

    def _status(self, text: str) -> None:
        self.query_one("#try-status", Static).update(text)

    @work(thread=True, group="try-model", exit_on_error=False)
    def _load(self) -> None:
        try:
            self.proc = workers.child(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                      env=workers.engine_env(), bufsize=1)
            msg = self._read()
        except OSError as e:
            msg = {"error": str(e)}
        self.app.call_from_thread(self._loaded, msg)

    def _read(self) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            return {"error": "the model process ended without an answer"}
        try:
            return json.loads(line)
        except ValueError:
            return {"error": line.strip()[:200]}

    def _loaded(self, msg: dict[str, Any]) -> None:
        if not msg.get("ready"):
            self._status(f"✖ {msg.get('error')}")
            return
        how = "chat template" if msg.get("chat") else "raw text (a pre-training run)"
        self.about = (f"{msg.get('model')} + this run's training · {msg.get('device')} · {how} · greedy, up to "
                      f"{MAX_NEW_TOKENS} new tokens")
        self._status(self.about)
        inp = self.query_one("#try-input", Input)
        inp.disabled = False
        inp.focus()  # (applied once the enabled input can take focus: a moment later)
        self.ready = True

    @on(Input.Submitted, "#try-input")
    def _send(self, event: Input.Submitted) -> None:
        prompt = event.value.strip()
        if not prompt or not self.ready:
            return
        event.input.value = ""
        event.input.disabled = True
        self.query_one("#try-log", RichLog).write(f"you  ▸ {prompt}")
        self._status("Generating…")
        self._ask(prompt)

    @work(thread=True, group="try-model", exit_on_error=False)
    def _ask(self, prompt: str) -> None:
        try:
            assert self.proc is not None and self.proc.stdin is not None
            self.proc.stdin.write(json.dumps({"prompt": prompt, "max_new_tokens": MAX_NEW_TOKENS}) + "\n")
            self.proc.stdin.flush()
            msg = self._read()
        except (OSError, AssertionError) as e:
            msg = {"error": f"the model process is gone ({e.__class__.__name__})"}
        self.app.call_from_thread(self._answered, msg)

    def _answered(self, msg: dict[str, Any]) -> None:
        log = self.query_one("#try-log", RichLog)
        if "text" in msg:
            self.answers += 1
            log.write(f"model ▸ {msg['text'].strip() or '(nothing: the end token came first)'}")
            log.write("")
            self._status(self.about)
        else:
            self._status(f"✖ {msg.get('error')}")
        inp = self.query_one("#try-input", Input)
        inp.disabled = False
        inp.focus()

    def action_close(self) -> None:
        self.dismiss(None)

    def on_unmount(self) -> None:
        p = self.proc
        if p is not None:  # nothing to keep: end it now (a model still loading would finish loading first)
            try:
                if p.stdin:
                    p.stdin.close()
            except OSError:
                pass
            if p.poll() is None:
                p.terminate()
            workers.release(p)
