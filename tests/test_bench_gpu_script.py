"""bench/gpu_memory.py runs: its --cpu-smoke mode takes the GPU benchmark's whole path on CPU.

The GPU benchmark can only be measured in sessions lent a GPU, with a few minutes of device
time: a script that fails there wastes them. The smoke mode builds the checkpoints, runs the
worker's model and TRL trainer (SFT and DPO) in child processes and prints the table, on CPU.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_gpu_memory_benchmark_runs_its_cpu_smoke_path(tmp_path):
    out = tmp_path / "smoke.json"
    p = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_memory.py"), "--cpu-smoke", "--json", str(out)],
                       capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "| llama-untied | DPO, lora, bf16, b2×128, GC |" in p.stdout
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == 2 and all(r["error"] is None and r["measured_gib"] > 0 for r in rows)
    assert all(r["parts_gib"]["activations"] > 0 for r in rows)
