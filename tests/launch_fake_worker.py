"""A stand-in training worker for the launch tests (no torch).

Writes ``start``, one ``log`` per step, ``end`` completed into RUN_DIR/events.jsonl;
SIGTERM → ``end`` stopped.  ``--ranks N`` starts N-1 extra child processes (in
the same process group) that just sleep, like torchrun's ranks; ``--setsid-ranks`` puts
each in a session of its own, as torchrun really does (with ``--ignore-term`` they
ignore SIGTERM too, so only a SIGKILL found by the run token ends them).  ``--env-report
NAME`` writes whether the environment variable NAME is set (and its length) to
RUN_DIR/env_report.json — for the secrets test.  ``--launcher`` behaves like DeepSpeed's
launcher: the worker runs in a child of its own session and the launcher exits at once on
SIGTERM, while the child takes ``--slow-stop`` seconds to save and write its ``end``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--delay", type=float, default=0.1)
    ap.add_argument("--ranks", type=int, default=1)
    ap.add_argument("--env-report", default="")
    ap.add_argument("--fail-at", type=int, default=0)
    ap.add_argument("--ignore-term", action="store_true")
    ap.add_argument("--setsid-ranks", action="store_true")
    ap.add_argument("--fail-if-dir-endswith", default="", help="exit 3 at once (no event) in such a run dir")
    ap.add_argument("--start-delay", type=float, default=0.0, help="seconds before the first event")
    ap.add_argument("--master_port", type=int, default=0, help="as torchrun's: reported in the start event")
    ap.add_argument("--launcher", action="store_true", help="run the worker in a setsid child; exit at once on SIGTERM")
    ap.add_argument("--slow-stop", type=float, default=0.0, help="seconds between SIGTERM and the end record")
    a = ap.parse_args()
    if a.launcher:
        argv = [x for x in sys.argv[1:] if x != "--launcher"] + ["--slow-stop", "1.5"]
        child = subprocess.Popen([sys.executable, os.path.abspath(__file__), *argv], start_new_session=True)

        def forward(*_):
            try:
                os.kill(child.pid, signal.SIGTERM)
            finally:
                os._exit(128 + signal.SIGTERM)

        signal.signal(signal.SIGTERM, forward)
        return child.wait()
    if a.fail_if_dir_endswith and a.run_dir.rstrip("/").endswith(a.fail_if_dir_endswith):
        print("fake worker: cannot reach the rendezvous", flush=True)
        return 3
    path = os.path.join(a.run_dir, "events.jsonl")
    fh = open(path, "a", buffering=1)
    code = "import time\nwhile True: time.sleep(1)"
    if a.ignore_term:
        code = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nwhile True: time.sleep(1)"
    kids = [subprocess.Popen([sys.executable, "-c", code], start_new_session=a.setsid_ranks)
            for _ in range(a.ranks - 1)]
    stop = {"now": False}

    def emit(kind, step=0, **kw):
        fh.write(json.dumps({"t": round(time.time(), 3), "kind": kind, "step": step, **kw}) + "\n")
        fh.flush()

    def on_term(*_):
        if a.ignore_term:
            return
        stop["now"] = True

    signal.signal(signal.SIGTERM, on_term)
    if a.env_report:
        v = os.environ.get(a.env_report)
        with open(os.path.join(a.run_dir, "env_report.json"), "w") as f:
            json.dump({"set": v is not None, "len": len(v or ""), "cwd": os.getcwd()}, f)
    print("fake worker: starting", flush=True)
    deadline = time.time() + a.start_delay
    while time.time() < deadline and not stop["now"]:
        time.sleep(0.05)
    emit("start", 0, world_size=a.ranks, total_steps=a.steps, config_hash="fake", master_port=a.master_port)
    emit("status", 0, phase="training")
    for step in range(1, a.steps + 1):
        if stop["now"]:
            break
        time.sleep(a.delay)
        if a.fail_at and step == a.fail_at:
            print("fake worker: boom", flush=True)
            raise SystemExit(3)
        emit("log", step, loss=round(2.0 / step, 4), lr=0.001)
        print(f"fake worker: step {step}", flush=True)
    for k in kids:
        k.kill()
    if stop["now"] and a.slow_stop:
        time.sleep(a.slow_stop)  # saving a checkpoint
    emit("end", step, outcome="stopped" if stop["now"] else "completed", final_path=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
