"""Fixtures of the TUI tests: a deterministic app factory (fixed clock, fake engine services)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

FIXED_NOW = datetime(2026, 1, 2, 3, 4, 5)


def fake_model_info(name: str) -> dict[str, Any]:
    return {"architecture": "LlamaForCausalLM", "num_params": 131_392, "layers": 2, "hidden": 64,
            "context_length": 512, "vision": False, "default_target_modules": ["q_proj", "v_proj"],
            "source": "built-in tiny model"}


def fake_estimate(job: Any, **hints: Any) -> Any:
    res = job.resolved()
    parts = [SimpleNamespace(name=n, bytes=b) for n, b in
             (("weights", 301_000), ("gradients", 77_800), ("optimizer states", 155_600),
              ("activations", 20_447_232), ("framework overhead", 536_870_912))]
    b, a = int(res["general.batch_size"]), int(res["runtime.gradient_accumulation_steps"])
    r = int(res["launch.procs_per_node"]) * int(res["launch.nodes"])
    steps = SimpleNamespace(total_steps=12, updates_per_epoch=6, effective_batch=b * a * r, batch_size=b,
                            accumulation=a, ranks=r)
    return SimpleNamespace(parts=parts, total_bytes=sum(p.bytes for p in parts), fits=None, gpu_memory_gb=None,
                           on_cpu=res["launch.device"] == "cpu", steps=steps, seconds=42.0,
                           trainable_params=19_456, num_params=131_392)


def fake_data_check(job: Any, progress: Any = None, cancel: Any = None) -> dict[str, Any]:
    """A report in the shape of ``finetui data check --json`` (engine/data/check.py)."""
    return {"source": "train.jsonl", "format": "alpaca", "stage": "sft", "ok": False,
            "errors": ["2 invalid rows (1.7%) — more than the 0% allowed"], "warnings": ["3 duplicate rows"],
            "rows": {"total": 120, "valid": 118, "invalid": 2, "invalid_pct": 1.67},
            "invalid_rows": [{"location": "train.jsonl:7", "field": "output", "reason": "missing"},
                             {"location": "train.jsonl:42", "field": "instruction", "reason": "empty string"}],
            "invalid_more": 0, "allowed_invalid_pct": 0.0,
            "tokens": {"tokenizer": "finetui:tiny-llama", "chat_template": True, "sampled_rows": 118, "exact": True,
                       "min": 12, "median": 55, "p95": 118, "max": 131, "max_length": 128, "over_max": 3},
            "preview": [{"location": "train.jsonl:1", "messages": [
                {"role": "user", "content": "Name three primary colours."},
                {"role": "assistant", "content": "Red, yellow and blue."}],
                "segments": [{"text": "<|im_start|>user\nName three primary colours.<|im_end|>\n"
                                      "<|im_start|>assistant\n", "trained": False, "tokens": 14},
                             {"text": "Red, yellow and blue.<|im_end|>", "trained": True, "tokens": 7},
                             {"text": "\n", "trained": False, "tokens": 1}],
                "tokens": 22, "prompt_tokens": 15, "trained_tokens": 7, "truncated": 0, "answer_tokens": 7,
                "answer_lost": 0, "problems": []}],
            # the loss mask as engine/data/preview.py reports it (what the worker trains on)
            "loss_mask": {"end_of_turn": "<|im_end|>", "chat_template": True, "fallback": None,
                          "problems": ["3 of 118 rows are cut by max_sequence_length 128; 1 of them lose their "
                                       "whole answer"], "rows_cut": 3, "rows_answer_lost": 1, "rows_no_trained": 0}}


def fake_check_host(host: str) -> tuple[bool, str]:
    """The hosts of the fake ~/.ssh/config answer; ``slow-box`` resolves but does not answer; others do not resolve."""
    name = host.split("@")[-1].split(":")[0]
    if name in ("gpu-box", "lab"):
        return True, ""
    if name == "slow-box":
        return True, "unverified host: slow-box:22 does not answer (Connection timed out)"
    return False, f"host {host!r} does not resolve (no such name, nor an alias of ~/.ssh/config)"


def sniff_data(path: str, res: dict[str, Any]) -> list[Any]:
    """The real first-rows reader (cheap, no tokenizer): format detection is tested as it runs."""
    from tui.app import _sniff_data

    return _sniff_data(path, res)


class FakeLauncher:
    def __init__(self) -> None:
        self.jobs: list[Any] = []

    def __call__(self, job: Any, progress: Any = None) -> Any:
        self.jobs.append(job)
        return SimpleNamespace(name=job.values.get("launch.run_name"), run_dir=Path("runs") / "x")


@pytest.fixture
def tui_state(tmp_path, monkeypatch) -> Path:
    """A private state folder per test (autosave, recent presets)."""
    d = tmp_path / "state"
    monkeypatch.setenv("FINETUI_STATE_DIR", str(d))
    return d


@pytest.fixture
def make_app(tui_state):
    """Factory of a deterministic FinetuiApp: ``make_app(demo=True, **kwargs)``."""
    from engine import presets
    from tui.app import Services, create_app

    launcher = FakeLauncher()

    def make(demo: bool = True, job: Any = None, preset_path: Any = None, **kwargs: Any):
        services = kwargs.pop("services", None) or Services(
            describe_model=fake_model_info, estimate=fake_estimate, data_check=fake_data_check,
            start_run=launcher, ssh_hosts=lambda: ["gpu-box", "lab"], clock=lambda: FIXED_NOW,
            sniff_data=sniff_data,
            check_host=fake_check_host)
        if demo and job is None:
            preset_path = presets.PRESETS_DIR / "demo.toml"
            job = presets.load(preset_path)
        kwargs.setdefault("autosave", True)
        app = create_app(job, preset_path, services=services, **kwargs)
        app.launcher = launcher  # type: ignore[attr-defined]
        return app

    return make
