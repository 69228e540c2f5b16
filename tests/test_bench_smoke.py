"""Every benchmark in bench/ runs: its ``--smoke`` mode takes the script's whole path at tiny sizes.

A benchmark that only runs when someone runs it rots: the engine moves under it and the figures in
bench/RESULTS.md can no longer be reproduced.  Each smoke run builds its model and data, trains or
starts what the benchmark measures, and prints its report; the figures themselves mean nothing at
these sizes.  ``bench/plain_trl.py`` (the plain-TRL side of the overhead benchmark) runs inside
``engine_overhead.py``'s; ``gpu_memory.py``'s smoke mode takes the GPU path on CPU, and so does
``gpu_check.py``'s (``tests/test_bench_gpu_check.py`` runs it, with the tiny model of the training tests).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow

#: script → (extra arguments, lines its report must print)
SMOKES = {
    "estimator_cpu.py": ([], ["| llama-untied 6.2M | sft | lora |", "| llama-untied 6.2M | dpo | lora |",
                              "worst error"]),
    "activations_cpu.py": ([], ["| llama-untied | sft | full | fp32 | off |", "over 1 configurations"]),
    "engine_overhead.py": ([], ["round 1 finetui", "round 1 plain", "ratio finetui ÷ plain"]),
    "packing.py": ([], ["packing vs padded (cpu"]),
    "eta.py": ([], ["time to finish: one finetui train run", "monitor ETA after", "finetui estimate --tokens-per-s"]),
    "data_check.py": ([], ["| check | 2,000 |", "| load_rows | 2,000 |", "check: 1,999 valid, 1 invalid"]),
    "data_scale.py": ([], ["| pyarrow.json.read_json | 2,000 |", "| check ×2 | 4,000 |",
                           "ratio check ÷ pyarrow.json.read_json", "check: 1,999 valid, 1 invalid",
                           "| 2,000 | 0 |", "tokens equal to datasets.map's: True"]),
    "hub_offline.py": ([], ["| finetui (probe, then offline mode) |"]),
    "startup_ab.py": ([], ["A .", "B .", "B - A, paired CPU time to the first screen"]),
    "tui_latency.py": ([], ["python -c 'import textual'", "event-to-screen at"]),
    "profile_step.py": ([], ["round 0: finetui", "median speed ratio finetui ÷ plain Trainer"]),
}


def test_every_benchmark_has_a_smoke_run():
    # peer_llamafactory.py needs LLaMA-Factory in a venv of its own (--setup): tests/test_bench_peer.py checks
    # the identical job it builds for both tools without it
    scripts = {p.name for p in (ROOT / "bench").glob("*.py")} - {"plain_trl.py", "gpu_memory.py", "gpu_check.py",
                                                                  "peer_llamafactory.py"}
    assert "--smoke" in (ROOT / "bench" / "gpu_check.py").read_text()
    assert scripts == set(SMOKES)


def smoke(script: str, *args: str, cwd: Path) -> str:
    p = subprocess.run([sys.executable, str(ROOT / "bench" / script), "--smoke", *args], capture_output=True,
                       text=True, timeout=600, cwd=cwd)
    assert p.returncode == 0, (p.stdout[-2000:], p.stderr[-3000:])
    return p.stdout


@pytest.mark.parametrize("script", sorted(SMOKES))
def test_benchmark_smoke(script, tmp_path):
    extra, lines = SMOKES[script]
    out = smoke(script, *extra, cwd=tmp_path)
    missing = [ln for ln in lines if ln not in out]
    assert not missing, f"{script} --smoke did not print {missing}:\n{out[-3000:]}"


def test_gpu_memory_benchmark_smoke_takes_the_gpu_path_on_cpu(tmp_path):
    """The GPU benchmark can only be measured in sessions lent a GPU, with a few minutes of device time: a script
    that fails there wastes them.  Its smoke mode builds the checkpoints, runs the worker's model and TRL trainer
    (SFT and DPO) in child processes and prints the table, on CPU."""
    out = tmp_path / "smoke.json"
    stdout = smoke("gpu_memory.py", "--json", str(out), cwd=tmp_path)
    assert "| llama-untied | DPO, lora, bf16, b2×128, GC |" in stdout
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == 2 and all(r["error"] is None and r["measured_gib"] > 0 for r in rows)
    assert all(r["parts_gib"]["activations"] > 0 for r in rows)
