#!/usr/bin/env python3
"""finetui vs LLaMA-Factory on the same job, side by side: tokens/s, peak memory, time to first step.

Both tools train the engine's tiny Llama (``finetui:tiny-llama``, the folder engine/tiny.py builds) on the
bundled alpaca sample (400 rows), rendered with the same ChatML template (finetui: the model's chat template;
LLaMA-Factory: its ``chatml`` template, which renders the same text), LoRA r8 / alpha 16 / dropout 0 on all
linear layers, the same batch, length, learning rate, cosine schedule without warm-up, AdamW, seed, steps,
fp32 on the CPU, gradient checkpointing off, logging every step, no evaluation, no checkpoints.

Columns: one process; two processes (DDP over gloo: finetui ``procs_per_node = 2``, LLaMA-Factory
``FORCE_TORCHRUN=1 NPROC_PER_NODE=2``); one process with packing (finetui's BFD packing, LLaMA-Factory's
``packing: true`` with ``neat_packing: true``, its "sequence packing without cross-attention": the rows of a
pack attend only to themselves on both sides, as finetui's packing always does — the packers differ, so the
tokens per step differ in that column); a long run.

Why ``neat_packing``: without it LLaMA-Factory lets the rows of a pack attend to each other (a different, cheaper
computation: one causal mask over the whole pack), and it pads every pack to the cutoff with an attention mask
of 1 on the pads, so its ``num_input_tokens_seen`` counts those pads as tokens (every pack 256 "tokens"): its
tokens/s would not be a count of the data's tokens.

Measured for each run, the same way on both sides:

* tokens/s: the trainer's ``num_input_tokens_seen`` (non-padding tokens) ÷ ``train_runtime``; under neat
  packing the peer's collator hands transformers a 4-D float attention mask, which its ``non_padding`` count sums
  as if it were 0/1 (a large negative number): for such batches only, a ``sitecustomize`` module beside the
  torchaudio stub makes the peer count its input ids that are not the pad token, as transformers does for a
  batch without a mask (and as finetui's packed batches are counted) — nothing else of the peer changes;
* peak memory: the sum of the resident set sizes of every process of the run (each one carries a marker
  in its environment: the CLI, finetui's detached supervisor and worker, torchrun and its ranks), sampled
  every 50 ms from /proc;
* time to first step: from starting the command to the first step's log record (finetui's events.jsonl,
  LLaMA-Factory's trainer_log.jsonl), polled with the same loop;
* tokens seen at every logged step (cumulative ``num_input_tokens_seen``): printed equal, step for step,
  when both tools saw the same tokens.

Rounds alternate (A B, B A, …) so both see the same machine load; the ratios printed are medians over rounds
of finetui ÷ LLaMA-Factory.

LLaMA-Factory lives in its own virtual environment, ``.venv-lf`` (git-ignored), set up with ``--setup``:
``pip install llamafactory`` from the package registry with ``-c constraints.txt`` so that torch stays the
CPU build this project's machines install. On a CPU-only machine the registry's torchvision / torchaudio
wheels are CUDA builds whose native libraries do not load: torchvision is uninstalled (transformers works
without it), and as LLaMA-Factory imports torchaudio unconditionally (llamafactory/data/mm_plugin.py) while
this text-only job never calls it, the peer runs with a stub ``torchaudio`` module first on its PYTHONPATH
(written by this script into its temporary folder, for the peer's processes only; the installed package
is left as it is).

    python bench/peer_llamafactory.py --setup                # once: .venv-lf
    python bench/peer_llamafactory.py --rounds 3 --steps 60 --long-steps 200
    python bench/peer_llamafactory.py --columns 1proc --rounds 2 --steps 30
    python bench/peer_llamafactory.py --finetui-only --columns 1proc --rounds 3 --steps 30   # finetui's side alone

Each run also prints its peak by process (follower, supervisor, worker, torchrun, the peer's CLI): the largest
RSS seen of each kind, so a change to one of them shows where it went.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PY = sys.executable
LF_VENV = ROOT / ".venv-lf"
SAMPLE = ROOT / "engine/assets/samples/alpaca_demo.jsonl"
MARK = "FINETUI_PEER_BENCH"  # env marker of every process of one measured run

#: the job both tools run; the columns change procs / packing / steps
JOB = {"batch": 8, "max_len": 256, "lr": 3e-3, "lora_rank": 8, "lora_alpha": 16, "lora_dropout": 0.0,
       "seed": 0, "logging_steps": 1}
COLUMNS = {"1proc": {"procs": 1, "packing": False}, "2proc": {"procs": 2, "packing": False},
           "1proc-packing": {"procs": 1, "packing": True}, "long": {"procs": 1, "packing": False, "long": True}}

TORCHAUDIO_STUB = '''"""Stub for the peer benchmark (bench/peer_llamafactory.py): the registry's torchaudio is a CUDA build whose
native library does not load on a CPU-only machine; LLaMA-Factory imports it unconditionally, this text-only
job never uses it."""


def __getattr__(name):
    raise ImportError(f"torchaudio.{name}: torchaudio is stubbed out for this text-only benchmark")
'''

#: the peer's count of tokens under neat packing: its collator passes a 4-D float attention mask (0 where a token may
#: attend, the dtype's minimum elsewhere), which transformers' ``non_padding`` count sums as if it were a 0/1 mask
#: (a large negative number). For such a batch only, count the input ids that are not the pad token — the count
#: transformers itself makes when there is no mask, and the one finetui's packed batches get. Changes nothing else.
PEER_SITECUSTOMIZE = '''"""sitecustomize for the peer benchmark (bench/peer_llamafactory.py): see PEER_SITECUSTOMIZE there."""
import importlib.abc
import importlib.util
import sys


class _CountPackedTokens(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "transformers.trainer":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        load = spec.loader.exec_module

        def exec_module(module):
            load(module)
            track = module.Trainer._track_num_input_tokens

            def _track_num_input_tokens(self, inputs):
                mask = inputs.get("attention_mask")
                if mask is not None and mask.dim() == 4:
                    inputs = {k: v for k, v in inputs.items() if k != "attention_mask"}
                return track(self, inputs)

            module.Trainer._track_num_input_tokens = _track_num_input_tokens

        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, _CountPackedTokens())
'''


def finetui_toml(job: dict, model: Path, data: Path, steps: int, procs: int, packing: bool) -> str:
    return f"""name = "bench: peer LLaMA-Factory"
profile = "native"
[model]
name_or_path = "{model}"
[data]
train_path = "{data}"
format = "alpaca"
val_size = 0.0
packing = {str(packing).lower()}
[trainer]
stage = "sft"
training_type = "lora"
distributed_backend = "ddp"
[general]
batch_size = {job['batch']}
max_steps = {steps}
learning_rate = {job['lr']}
max_sequence_length = {job['max_len']}
[runtime]
mixed_precision = "none"
gradient_checkpointing = false
attention_implementation = "sdpa"
lr_warmup_steps = 0
lr_scheduler = "cosine"
optimizer = "adamw"
seed = {job['seed']}
[adapter]
lora_rank = {job['lora_rank']}
lora_alpha = {job['lora_alpha']}
lora_dropout = {job['lora_dropout']}
target_modules = ["all-linear"]
merge_adapter = false
[eval]
evaluation_strategy = "no"
checkpoint_strategy = "no"
logging_steps = {job['logging_steps']}
[launch]
device = "cpu"
procs_per_node = {procs}
[tracking]
tensorboard = false
"""


def lf_yaml(job: dict, model: Path, data_dir: Path, out: Path, steps: int, packing: bool, procs: int = 1) -> str:
    return f"""model_name_or_path: {model}
stage: sft
do_train: true
finetuning_type: lora
lora_rank: {job['lora_rank']}
lora_alpha: {job['lora_alpha']}
lora_dropout: {job['lora_dropout']}
lora_target: all
dataset: bench_alpaca
dataset_dir: {data_dir}
template: chatml
cutoff_len: {job['max_len']}
packing: {str(packing).lower()}
neat_packing: {str(packing).lower()}
overwrite_cache: true
output_dir: {out}
overwrite_output_dir: true
logging_steps: {job['logging_steps']}
save_strategy: "no"
plot_loss: false
report_to: none
per_device_train_batch_size: {job['batch']}
gradient_accumulation_steps: 1
learning_rate: {job['lr']}
max_steps: {steps}
lr_scheduler_type: cosine
warmup_steps: 0
optim: adamw_torch
bf16: false
fp16: false
seed: {job['seed']}
data_seed: {job['seed']}
disable_gradient_checkpointing: true
include_num_input_tokens_seen: non_padding
dataloader_num_workers: 0
""" + ("ddp_backend: gloo\n" if procs > 1 else "")


def job_files(tmp: Path, steps: int, procs: int, packing: bool, model: Path, tag: str) -> dict:
    """Both tools' configs of one column, written under ``tmp``: {"finetui": toml path, "lf": yaml path, ...}."""
    data_dir = tmp / "lf-data"
    data_dir.mkdir(exist_ok=True)
    data = data_dir / "alpaca.jsonl"
    if not data.exists():
        shutil.copyfile(SAMPLE, data)
        (data_dir / "dataset_info.json").write_text(json.dumps({"bench_alpaca": {"file_name": "alpaca.jsonl"}}))
    ft = tmp / f"finetui-{tag}.toml"
    ft.write_text(finetui_toml(JOB, model, data, steps, procs, packing))
    lf = tmp / f"lf-{tag}.yaml"
    lf.write_text(lf_yaml(JOB, model, data_dir, tmp / f"lf-out-{tag}", steps, packing, procs))
    return {"finetui": ft, "lf": lf, "lf_out": tmp / f"lf-out-{tag}", "data": data}


# -- measuring -------------------------------------------------------------------------------------------------
#: a process of a measured run → its part in the per-process breakdown (by its command line)
PARTS = (("tui/follow.py", "follower"), ("engine.launch.supervisor", "supervisor"), ("engine.train.worker", "worker"),
         ("tui.cli", "cli"), ("torchrun", "launcher"), ("llamafactory", "llamafactory"))


def _part(cmdline: bytes) -> str:
    text = cmdline.replace(b"\0", b" ").decode(errors="replace")
    return next((name for key, name in PARTS if key in text), text.split(" ", 1)[0].rsplit("/", 1)[-1] or "?")


def _marked_rss(marker: str, parts: dict[str, int] | None = None) -> int:
    """Sum of RSS (bytes) of live processes whose environment holds ``MARK=marker``; ``parts`` (when given) keeps
    the largest RSS seen of each kind of process (follower, supervisor, worker, ...), summed over its processes."""
    needle = f"{MARK}={marker}".encode()
    total = 0
    now: dict[str, int] = {}
    page = os.sysconf("SC_PAGE_SIZE")
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if needle not in (d / "environ").read_bytes().split(b"\0"):
                continue
            rss = int((d / "statm").read_text().split()[1]) * page
            total += rss
            if parts is not None:
                name = _part((d / "cmdline").read_bytes())
                now[name] = now.get(name, 0) + rss
        except (OSError, ValueError, IndexError):
            continue
    if parts is not None:
        for name, rss in now.items():
            parts[name] = max(parts.get(name, 0), rss)
    return total


def _first_step_seen(side: str, where: Path) -> bool:
    try:
        if side == "finetui":
            return any('"kind": "log"' in ln or '"kind":"log"' in ln
                       for ln in (where / "events.jsonl").read_text().splitlines())
        return (where / "trainer_log.jsonl").stat().st_size > 0
    except OSError:
        return False


def measure(cmd: list[str], env: dict, side: str, where: Path, timeout: float) -> dict:
    marker = uuid.uuid4().hex
    env = {**env, MARK: marker}
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak, first = 0, None
    parts: dict[str, int] = {}
    import threading

    out: list[str] = []
    reader = threading.Thread(target=lambda: out.extend(p.stdout), daemon=True)  # type: ignore[arg-type]
    reader.start()
    while True:
        rc = p.poll()
        peak = max(peak, _marked_rss(marker, parts))
        if first is None and _first_step_seen(side, where):
            first = time.perf_counter() - t0
        if rc is not None and not _marked_rss(marker):
            break
        if time.perf_counter() - t0 > timeout:
            p.kill()
            raise RuntimeError(f"{side} ran past {timeout:.0f} s")
        time.sleep(0.05)
    reader.join(5)
    wall = time.perf_counter() - t0
    if rc != 0:
        raise RuntimeError(f"{side} failed ({rc}):\n" + "".join(out)[-4000:])
    return {"peak_rss": peak, "parts": parts, "first_step_s": first, "wall": wall, "log": "".join(out)}


def finetui_metrics(run_dir: Path) -> dict:
    ev = [json.loads(x) for x in (run_dir / "events.jsonl").read_text().splitlines() if x.strip()]
    logs = [e for e in ev if e.get("kind") == "log"]
    text = (run_dir / "worker.log").read_text()
    import ast

    summary = None
    for line in reversed(text.splitlines()):
        i = line.find("{'train_runtime'")
        if i >= 0:
            summary = ast.literal_eval(line[i:line.rindex("}") + 1])
            break
    if summary is None:
        raise RuntimeError("no train_runtime summary in finetui's worker.log")
    return {"runtime": float(summary["train_runtime"]), "tokens": int(summary["num_input_tokens_seen"]),
            "per_step": {int(e["step"]): int(e.get("num_input_tokens_seen") or 0) for e in logs},
            "loss": {int(e["step"]): e.get("loss") for e in logs}}


def lf_metrics(out: Path) -> dict:
    m = json.loads((out / "train_results.json").read_text())
    logs = [json.loads(x) for x in (out / "trainer_log.jsonl").read_text().splitlines() if x.strip()]
    return {"runtime": float(m["train_runtime"]), "tokens": int(m["num_input_tokens_seen"]),
            "per_step": {int(r["current_steps"]): int(r.get("total_tokens") or 0) for r in logs},
            "loss": {int(r["current_steps"]): r["loss"] for r in logs if r.get("loss") is not None}}


def run_side(side: str, files: dict, procs: int, tmp: Path, tag: str, env: dict, timeout: float) -> dict:
    if side == "finetui":
        run_dir = tmp / f"ft-run-{tag}"
        cmd = [PY, "-m", "tui.cli", "train", str(files["finetui"]), "--run-dir", str(run_dir)]
        m = measure(cmd, env, side, run_dir, timeout)
        m.update(finetui_metrics(run_dir))
    else:
        out = files["lf_out"]
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        lf_env = {**env, "PYTHONPATH": str(tmp / "peer-stubs"), "DISABLE_VERSION_CHECK": "1",
                  "LLAMAFACTORY_VERBOSITY": "WARN", "USE_MODELSCOPE_HUB": "0", "HF_HUB_OFFLINE": "1",
                  # its launcher runs `torchrun` from PATH: the peer's own
                  "PATH": f"{LF_VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}", "VIRTUAL_ENV": str(LF_VENV)}
        if procs > 1:
            lf_env.update(FORCE_TORCHRUN="1", NNODES="1", NPROC_PER_NODE=str(procs), MASTER_ADDR="127.0.0.1",
                          MASTER_PORT=str(_free_port()))
        cmd = [str(LF_VENV / "bin/llamafactory-cli"), "train", str(files["lf"])]
        m = measure(cmd, lf_env, side, out, timeout)
        m.update(lf_metrics(out))
    m["tps"] = m["tokens"] / m["runtime"]
    return m


def _free_port() -> int:
    from engine.train.command import free_port

    return free_port()


# -- setup -----------------------------------------------------------------------------------------------------
def setup() -> int:
    if not (LF_VENV / "bin/python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(LF_VENV)], check=True)
    pip = [str(LF_VENV / "bin/python"), "-m", "pip"]
    subprocess.run([*pip, "install", "-c", str(ROOT / "constraints.txt"), "llamafactory"], check=True)
    subprocess.run([*pip, "uninstall", "-y", "torchvision"], check=False)  # a CUDA build: see the module doc
    print(f"LLaMA-Factory installed in {LF_VENV}")
    return 0


def lf_version() -> str:
    p = subprocess.run([str(LF_VENV / "bin/python"), "-m", "pip", "show", "llamafactory"], capture_output=True,
                       text=True)
    return next((ln.split(":", 1)[1].strip() for ln in p.stdout.splitlines() if ln.startswith("Version:")), "?")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--setup", action="store_true", help="create .venv-lf with LLaMA-Factory and exit")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--long-steps", type=int, default=600)
    ap.add_argument("--columns", default=",".join(COLUMNS), help=f"comma-separated, of {', '.join(COLUMNS)}")
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--finetui-only", action="store_true",
                    help="measure finetui's side only (no LLaMA-Factory needed): its figures and per-process peaks")
    a = ap.parse_args()
    if a.setup:
        return setup()
    if not a.finetui_only and not (LF_VENV / "bin/llamafactory-cli").exists():
        print(f"LLaMA-Factory is not installed in {LF_VENV}: run `python {Path(__file__).name} --setup` first",
              file=sys.stderr)
        return 2
    cols = [c.strip() for c in a.columns.split(",") if c.strip()]
    bad = [c for c in cols if c not in COLUMNS]
    if bad:
        print(f"--columns: unknown column {bad[0]!r} (one of {', '.join(COLUMNS)})", file=sys.stderr)
        return 2
    from engine.tiny import ensure_tiny_model

    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    results: dict[str, dict[str, list[dict]]] = {}
    with tempfile.TemporaryDirectory(prefix="finetui-bench-peer-") as tmp_s:
        tmp = Path(tmp_s)
        env["FINETUI_STATE_DIR"] = str(tmp / "state")
        stubs = tmp / "peer-stubs" / "torchaudio"
        stubs.mkdir(parents=True)
        (stubs / "__init__.py").write_text(TORCHAUDIO_STUB)
        (stubs.parent / "sitecustomize.py").write_text(PEER_SITECUSTOMIZE)
        model = tmp / "model"
        shutil.copytree(ensure_tiny_model(), model)  # one folder, read by both
        for col in cols:
            spec = COLUMNS[col]
            steps = a.long_steps if spec.get("long") else a.steps
            files = job_files(tmp, steps, spec["procs"], spec["packing"], model, col)
            results[col] = {"finetui": [], "lf": []}
            for r in range(a.rounds):
                order = ("finetui", "lf") if r % 2 == 0 else ("lf", "finetui")
                for side in order if not a.finetui_only else ("finetui",):
                    x = run_side(side, files, spec["procs"], tmp, f"{col}-{r}", env, a.timeout)
                    x.pop("log", None)
                    results[col][side].append(x)
                    print(f"  {col} round {r + 1} {side:<7} {x['tps']:8.0f} tokens/s  peak {x['peak_rss'] / 2**20:6.0f} MiB"
                          f"  first step {x['first_step_s']:.2f} s  ({x['tokens']} tokens in {x['runtime']:.1f} s;"
                          f" end to end {x['wall']:.1f} s)", flush=True)
                    print("    peak by process: " + ", ".join(f"{k} {v / 2**20:.0f} MiB" for k, v in
                                                            sorted(x["parts"].items(), key=lambda kv: -kv[1])))
    if a.finetui_only:
        for col in cols:
            f = results[col]["finetui"]
            print(f"{col}: finetui peak {statistics.median(x['peak_rss'] for x in f) / 2**20:.0f} MiB (median of "
                  f"{len(f)}), {statistics.median(x['tps'] for x in f):.0f} tokens/s, first step "
                  f"{statistics.median(x['first_step_s'] for x in f):.2f} s")
        return 0
    print(f"\nfinetui vs LLaMA-Factory {lf_version()} — {JOB}, {a.rounds} alternating rounds, "
          f"{a.steps} steps ({a.long_steps} in the long column); ratios are medians over rounds of finetui ÷ peer")
    head = ["", *cols]
    rows = {"tokens/s ÷": "tps", "peak memory ÷": "peak_rss", "time to first step ÷": "first_step_s"}
    table = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, key in rows.items():
        cells = []
        for col in cols:
            f, p = results[col]["finetui"], results[col]["lf"]
            cells.append(f"{statistics.median(x[key] / y[key] for x, y in zip(f, p)):.2f}")
        table.append(f"| {label} | " + " | ".join(cells) + " |")
    for label, key, fmt in (("finetui tokens/s", "tps", "{:.0f}"), ("LLaMA-Factory tokens/s", "tps", "{:.0f}"),
                            ("finetui peak MiB", "peak_rss", "{:.0f}"), ("LLaMA-Factory peak MiB", "peak_rss", "{:.0f}"),
                            ("finetui first step s", "first_step_s", "{:.2f}"),
                            ("LLaMA-Factory first step s", "first_step_s", "{:.2f}")):
        side = "finetui" if label.startswith("finetui") else "lf"
        div = 2**20 if key == "peak_rss" else 1
        table.append(f"| {label} | " + " | ".join(
            fmt.format(statistics.median(x[key] / div for x in results[c][side])) for c in cols) + " |")
    print("\n".join(table))
    for col in cols:
        f, p = results[col]["finetui"][0], results[col]["lf"][0]
        same = [s for s in f["per_step"] if s in p["per_step"] and f["per_step"][s] == p["per_step"][s]]
        print(f"  {col}: tokens seen finetui {f['tokens']} / LLaMA-Factory {p['tokens']}; cumulative tokens equal at "
              f"{len(same)} of {len(f['per_step'])} logged steps; loss at the last step {f['loss'].get(max(f['loss']))}"
              f" / {p['loss'].get(max(p['loss'])) if p['loss'] else None}")
    if a.json:
        a.json.write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
