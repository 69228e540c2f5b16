"""Run many single-rank training runs with one heavy import (used by the training tests).

``python tests/train_runner.py SPEC.json`` where SPEC is a list of
``{"name", "run_dir", "kind": "train" | "generate", "hook": null | "kill_in_checkpoint" | "oom",
"at": N}`` (``generate`` loads the run's final model and writes ``generated.json``).
The parent imports torch / transformers / TRL / PEFT and the worker once, then
forks one child per run, which runs the real worker entry
(``engine.train.worker.main``) on that run directory.  Each run is isolated in
its own process (a SIGKILL, an ``os._exit`` or global state stays there) and
starts in well under a second instead of paying the imports again.

Hooks simulate faults inside the real worker process:

* ``kill_in_checkpoint``: when ``checkpoint-<at>`` is being written, half of its
  ``trainer_state.json`` is written and the process SIGKILLs itself — a kill in
  the middle of a checkpoint write.
* ``oom``: the training step at ``at`` raises ``torch.OutOfMemoryError`` with the
  message CUDA prints.
* ``dtypes``: when ``at`` optimizer steps are done, the dtypes of the trained model's parameters
  (trainable, frozen, ZeRO-3 partitions) and of the optimizer's state tensors are written to
  ``RUN_DIR/dtypes.json`` (an observation, the run goes on).

A spec's ``env`` (a dict) is set in the run's process before the worker starts.

Prints one JSON line per spec: ``{"name", "run_dir", "code", "seconds"}`` (code < 0: killed by
that signal).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("OMP_NUM_THREADS", "1")  # no intra-op threads: fork-safe and fast on a busy 2-core box
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")


def _preload() -> None:
    import warnings

    warnings.filterwarnings("ignore")
    import datasets  # noqa: F401
    import deepspeed  # noqa: F401  (transformers / TRL import it when installed, even for DDP runs)
    import peft  # noqa: F401
    import torch  # noqa: F401
    import transformers  # noqa: F401
    import trl  # noqa: F401
    from trl import DPOTrainer, KTOTrainer, RewardTrainer, SFTTrainer  # noqa: F401
    from trl.experimental.cpo import CPOTrainer  # noqa: F401
    from trl.experimental.orpo import ORPOTrainer  # noqa: F401

    import engine.data  # noqa: F401
    import engine.train.callbacks  # noqa: F401
    import engine.train.modeling  # noqa: F401
    import engine.train.trainers  # noqa: F401
    import engine.train.worker  # noqa: F401
    from engine.tiny import ensure_tiny_model

    ensure_tiny_model()


def _optimizer_state_dtypes(opt) -> list[str]:  # noqa: ANN001
    """dtypes of every state tensor of a (wrapped) optimizer: accelerate's, DeepSpeed's, torch's."""
    import torch

    seen, out = set(), set()
    stack = [opt]
    while stack:
        o = stack.pop()
        if o is None or id(o) in seen:
            continue
        seen.add(id(o))
        for st in (getattr(o, "state", None) or {}).values() if isinstance(getattr(o, "state", None), dict) else []:
            for v in (st.values() if isinstance(st, dict) else []):
                if isinstance(v, torch.Tensor) and v.numel() > 1:
                    out.add(str(v.dtype).replace("torch.", ""))
        for name in ("optimizer", "fp32_partitioned_groups_flat", "single_partition_of_fp32_groups"):
            v = getattr(o, name, None)
            if isinstance(v, list):
                out.update(str(t.dtype).replace("torch.", "") for t in v if isinstance(t, torch.Tensor))
            elif v is not None:
                stack.append(v)
    return sorted(out)


def _install_hook(hook: str | None, at: int, run_dir: str = "") -> None:
    if not hook:
        return
    if hook == "dtypes":
        from transformers import Trainer

        orig_step = Trainer.training_step

        def training_step(self, model, *a, **kw):  # noqa: ANN001
            if self.state.global_step == at and not Path(run_dir, "dtypes.json").exists():
                names = lambda ps: sorted({str(p.dtype).replace("torch.", "") for p in ps})  # noqa: E731
                ps = list(self.model.parameters())
                out = {"step": self.state.global_step, "trainable": names([p for p in ps if p.requires_grad]),
                       "frozen": names([p for p in ps if not p.requires_grad]),
                       "partitions": names([p.ds_tensor for p in ps if getattr(p, "ds_tensor", None) is not None]),
                       "optimizer_states": _optimizer_state_dtypes(self.optimizer)}
                Path(run_dir, "dtypes.json").write_text(json.dumps(out))
            return orig_step(self, model, *a, **kw)

        Trainer.training_step = training_step
        return
    if hook == "kill_in_checkpoint":
        from transformers.trainer_callback import TrainerState

        orig = TrainerState.save_to_json

        def save_to_json(self, json_path):  # noqa: ANN001
            if Path(json_path).parent.name == f"checkpoint-{at}":
                text = json.dumps({"global_step": self.global_step, "log_history": self.log_history}, indent=2)
                with open(json_path, "w") as fh:
                    fh.write(text[: len(text) // 2])
                    fh.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            return orig(self, json_path)

        TrainerState.save_to_json = save_to_json
    elif hook == "oom":
        import torch
        from transformers import Trainer

        orig_step = Trainer.training_step

        def training_step(self, *a, **kw):  # noqa: ANN001
            if self.state.global_step + 1 >= at:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.11 GiB "
                                             "total capacity; 77.50 GiB already allocated)")
            return orig_step(self, *a, **kw)

        Trainer.training_step = training_step
    else:
        raise SystemExit(f"unknown hook {hook}")


def _generate(spec: dict) -> int:
    """Load the run's final model the way ``finetui generate`` does; write ``generated.json``."""
    from engine.train.generate import generate, load

    model, _tok, _res = load(spec["run_dir"], "cpu")
    text = generate(spec["run_dir"], spec.get("prompt") or "Reverse the word.\napple", max_new_tokens=8,
                    min_new_tokens=2, temperature=float(spec.get("temperature") or 0.0), seed=1)
    out = {"text": text, "class": type(model).__name__}
    Path(spec["run_dir"], "generated.json").write_text(json.dumps(out))
    return 0


def _child(spec: dict) -> None:
    code = 1
    try:
        with open(Path(spec["run_dir"]) / "worker.log", "a") as log:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
        if spec.get("kind") == "generate":
            code = _generate(spec)
        else:
            os.environ.update({k: str(v) for k, v in (spec.get("env") or {}).items()})
            _install_hook(spec.get("hook"), int(spec.get("at") or 0), spec["run_dir"])
            from engine.train.worker import main

            code = main(["--run-dir", spec["run_dir"]])
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:  # noqa: BLE001
        import traceback

        traceback.print_exc()
        code = 3
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def main() -> int:
    specs = json.loads(Path(sys.argv[1]).read_text())
    t0 = time.monotonic()
    _preload()
    print(json.dumps({"preload_seconds": round(time.monotonic() - t0, 2)}), flush=True)
    for spec in specs:
        t = time.monotonic()
        pid = os.fork()
        if pid == 0:
            _child(spec)
        _, status = os.waitpid(pid, 0)
        out = {"name": spec.get("name", spec["run_dir"]), "run_dir": spec["run_dir"], "code": os.waitstatus_to_exitcode(status),
               "seconds": round(time.monotonic() - t, 2)}
        print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
