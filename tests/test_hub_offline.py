"""Hub model names where the Hub cannot be reached: a cached model loads at once, a missing one fails at once.

The Hub is played by ``HF_ENDPOINT`` pointing at a closed port on 127.0.0.1 (refused: unreachable)
or at a listening socket (reachable); the cache is a real Hugging Face cache folder holding the tiny
model's files under a Hub name.  Each case runs in its own process: offline mode is process state.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from engine.hub import is_hub_name
from tests.fixtures_launch import free_port

ROOT = Path(__file__).resolve().parent.parent


def closed_port() -> int:
    return free_port()  # nothing listens there: a connection is refused at once


def hub_cache(tmp_path: Path, tiny_model: Path, name: str = "acme/tiny") -> Path:
    """A Hugging Face cache (HF_HOME) holding the tiny model under the Hub name ``name``."""
    home = tmp_path / "hf"
    repo = home / "hub" / ("models--" + name.replace("/", "--"))
    snap = repo / "snapshots" / "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(tiny_model, snap)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(snap.name)
    return home


def env_for(home: Path, endpoint: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY",
                        "all_proxy")}
    env.update(HF_HOME=str(home), HF_ENDPOINT=endpoint, **extra)
    return env


def python(code: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=timeout)


def test_hub_names():
    assert is_hub_name("Qwen/Qwen3-4B-Instruct-2507") and is_hub_name("gpt2")
    for local in ("finetui:tiny-llama", "/models/llama", "./m", "~/m", "s3://b/m", "a/b/c", ""):
        assert not is_hub_name(local), local


PROBE = """
import json, os, sys
import huggingface_hub.constants as C
from engine.hub import offline_if_unreachable
note = offline_if_unreachable(sys.argv[1] if len(sys.argv) > 1 else "acme/tiny")
print(json.dumps({"note": note, "env": os.environ.get("HF_HUB_OFFLINE"), "const": C.HF_HUB_OFFLINE}))
"""


def probe(env: dict[str, str]) -> dict:
    import json

    r = python(PROBE, env)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_unreachable_hub_switches_to_offline_mode(tmp_path):
    port = closed_port()
    out = probe(env_for(tmp_path, f"http://127.0.0.1:{port}"))
    assert out["note"] == (f"127.0.0.1:{port} cannot be reached from this machine: acme/tiny is loaded from the "
                           "local Hugging Face cache (offline mode, HF_HUB_OFFLINE=1)")
    assert out["env"] == "1" and out["const"] is True  # huggingface_hub was imported first: switched too


def test_reachable_hub_or_a_choice_already_made_changes_nothing(tmp_path):
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        port = srv.getsockname()[1]
        assert probe(env_for(tmp_path, f"http://127.0.0.1:{port}")) == {"note": None, "env": None, "const": False}
        # an HTTPS proxy is what a Hub request connects to: it is probed, not the Hub itself
        out = probe(env_for(tmp_path, f"http://127.0.0.1:{closed_port()}", HTTPS_PROXY=f"http://127.0.0.1:{port}"))
        assert out["note"] is None
    out = probe(env_for(tmp_path, f"http://127.0.0.1:{closed_port()}", HF_HUB_OFFLINE="0"))
    assert out == {"note": None, "env": "0", "const": False}


@pytest.fixture
def cached_hub_model(tmp_path, tiny_model):
    return hub_cache(tmp_path, tiny_model)


def test_data_check_tokenizer_from_the_cache_when_the_hub_is_unreachable(tmp_path, cached_hub_model):
    env = env_for(cached_hub_model, f"http://127.0.0.1:{closed_port()}")
    r = subprocess.run([sys.executable, "-m", "tui.cli", "data", "check", "finetui:samples/alpaca_demo.jsonl",
                        "--format", "alpaca", "--tokenizer", "acme/tiny"], capture_output=True, text=True,
                       env=env, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "tokens (acme/tiny, chat template" in r.stdout
    assert "Retrying" not in r.stderr  # no request was tried
    r = subprocess.run([sys.executable, "-m", "tui.cli", "data", "check", "finetui:samples/alpaca_demo.jsonl",
                        "--format", "alpaca", "--tokenizer", "acme/absent"], capture_output=True, text=True,
                       env=env, cwd=ROOT, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1] == (
        "--tokenizer: cannot load `acme/absent` — acme/absent is not in this machine's Hugging Face cache "
        "and the Hub cannot be reached: download it where the Hub is reachable (`hf download acme/absent`) and "
        "copy the cache, or set model.name_or_path to a local folder")


def test_training_loads_a_cached_hub_model_when_the_hub_is_unreachable(tmp_path, cached_hub_model):
    """The worker's real from_pretrained path: the run says it went offline, and trains."""
    from tests.fixtures_train import BASE, events, kinds, train_env, write_run

    run = tmp_path / "run"
    write_run(run, **{"model.name_or_path": "acme/tiny", "general.max_steps": 1})
    env = train_env(**env_for(cached_hub_model, f"http://127.0.0.1:{closed_port()}"))
    r = subprocess.run([sys.executable, "-m", "engine.train.worker", "--run-dir", str(run)], capture_output=True, text=True,
                       env=env, cwd=ROOT, timeout=300)
    recs = events(run)
    assert kinds(recs, "end") and kinds(recs, "end")[-1]["outcome"] == "completed", (r.stderr[-3000:], recs[-3:])
    warned = [x["text"] for x in kinds(recs, "status") if x.get("phase") == "warning"]
    assert any("acme/tiny is loaded from the local Hugging Face cache (offline mode" in w for w in warned), warned
    assert BASE["model.name_or_path"] == "finetui:tiny-llama"  # (the other tests' model is not a Hub name)


def test_doctor_says_whether_the_hub_answers_and_what_is_cached(tmp_path, cached_hub_model):
    def hub_line(env):
        r = subprocess.run([sys.executable, "-m", "tui.cli", "doctor"], capture_output=True, text=True, env=env,
                           cwd=ROOT, timeout=180)
        return next(ln for ln in r.stdout.splitlines() if ln.split()[1] == "hub")

    port = closed_port()
    assert hub_line(env_for(cached_hub_model, f"http://127.0.0.1:{port}")) == (
        f"ok       hub      127.0.0.1:{port} not reachable: Hub model names load from the cache only; 1 model(s) "
        "in its Hugging Face cache: acme/tiny")
    assert hub_line(env_for(tmp_path / "empty", f"http://127.0.0.1:{port}")).startswith(
        f"problem  hub      127.0.0.1:{port} not reachable: Hub model names load from the cache only; no model "
        "in its Hugging Face cache — fix: copy the models")
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        up = srv.getsockname()[1]
        assert hub_line(env_for(cached_hub_model, f"http://127.0.0.1:{up}")) == (
            f"ok       hub      127.0.0.1:{up} reachable; 1 model(s) in its Hugging Face cache: acme/tiny")
