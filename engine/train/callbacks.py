"""TrainerCallbacks: events (rank 0), SIGTERM stop, OCI-style early stopping."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from engine.train.checkpoints import is_complete


def memory_mb() -> float:
    try:
        import torch

        if torch.cuda.is_available() and torch.cuda.is_initialized():
            return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    except Exception:
        pass
    try:
        with open("/proc/self/statm") as fh:
            rss_pages = int(fh.read().split()[1])
        return round(rss_pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)
    except Exception:
        import resource

        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def gpu_memory() -> dict[str, Any]:
    """On CUDA, what nvidia-smi comes closer to than rank 0's allocated peak: the peaks of every rank, allocated
    (tensors) and reserved (the caching allocator's blocks, what the GPU actually holds for the process), gathered
    over the process group — so every rank must call it at the same step.  {} on CPU."""
    try:
        import torch

        if not (torch.cuda.is_available() and torch.cuda.is_initialized()):
            return {}
        mine = torch.tensor([torch.cuda.max_memory_allocated(), torch.cuda.max_memory_reserved()],
                            dtype=torch.float64, device="cuda") / 2**20
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            every = [torch.zeros_like(mine) for _ in range(dist.get_world_size())]
            dist.all_gather(every, mine)
        else:
            every = [mine]
        return memory_fields([(float(t[0]), float(t[1])) for t in every])
    except Exception:  # noqa: BLE001 - a figure, never a reason to stop
        return {}


def memory_fields(per_rank: list[tuple[float, float]]) -> dict[str, Any]:
    """(allocated, reserved) MiB of each rank → the log record's memory fields: rank 0's allocated peak
    (``memory_mb``), its reserved peak, and every rank's reserved peak (``gpu_reserved_mb``, by rank)."""
    return {"memory_mb": round(per_rank[0][0], 1), "memory_reserved_mb": round(per_rank[0][1], 1),
            "gpu_reserved_mb": [round(r, 1) for _, r in per_rank]}


class RunState:
    """Shared between the worker, the callbacks and the signal thread."""

    def __init__(self) -> None:
        self.stop_requested = False
        self.stopped = False
        self.early_stopped = False
        self.training = False


class EventCallback(TrainerCallback):
    """Writes start / log / eval / checkpoint events (rank 0 only; never waits on anything)."""

    def __init__(self, events: Any, info: dict[str, Any], ck_dir: Path):
        self.ev = events
        self.info = info
        self.ck_dir = ck_dir
        self._t = None
        self._step = 0
        self._tokens = 0
        self.started = False

    def on_train_begin(self, args, state, control, **kw):
        if not state.is_world_process_zero:
            return
        self.started = True
        self._t = time.monotonic()
        self._step = state.global_step
        self._tokens = int(getattr(state, "num_input_tokens_seen", 0) or 0)
        self.ev.emit("start", state.global_step, world_size=args.world_size, total_steps=state.max_steps,
                     num_train_epochs=args.num_train_epochs, **self.info)
        self.ev.emit("status", state.global_step, phase="training")

    def on_log(self, args, state, control, logs=None, **kw):
        # (every rank: the GPU figures are gathered; the same logs reach every rank at the same step)
        gpu = gpu_memory() if logs and "loss" in logs and not any(k.startswith("eval_") for k in logs) else {}
        if not state.is_world_process_zero or not logs:
            return
        step = state.global_step
        if any(k.startswith("eval_") for k in logs):
            rec = {k[5:] if k.startswith("eval_") else k: v for k, v in logs.items()
                   if isinstance(v, (int, float)) and k != "epoch"}
            self.ev.emit("eval", step, epoch=logs.get("epoch"), **rec)
            return
        if "loss" not in logs:
            return  # the final train_runtime summary
        now = time.monotonic()
        dt = max(now - (self._t or now), 1e-9)
        dsteps = step - self._step
        tokens = int(getattr(state, "num_input_tokens_seen", 0) or 0)
        samples = dsteps * args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
        extra = {k.replace("/", "_"): v for k, v in logs.items()
                 if k not in ("loss", "learning_rate", "grad_norm", "epoch") and isinstance(v, (int, float))}
        self.ev.emit("log", step, loss=logs.get("loss"), lr=logs.get("learning_rate"),
                     grad_norm=logs.get("grad_norm"), epoch=logs.get("epoch"),
                     tokens_per_s=round((tokens - self._tokens) / dt, 1) if tokens else None,
                     samples_per_s=round(samples / dt, 2), **({**extra, **gpu} if gpu else
                                                                {**extra, "memory_mb": memory_mb()}))
        self._t, self._step, self._tokens = now, step, tokens

    PROGRESS_EVERY_S = 1.0  # a "progress" event (the step) between log points, at most this often

    _progress_t = 0.0

    def on_step_end(self, args, state, control, **kw):
        # the step between log points (logging_steps may be hundreds of steps): the interfaces' progress and ETA
        if not state.is_world_process_zero:
            return
        now = time.monotonic()
        if now - self._progress_t >= self.PROGRESS_EVERY_S:
            self._progress_t = now
            self.ev.emit("progress", state.global_step, total_steps=state.max_steps)

    def on_save(self, args, state, control, **kw):
        if not state.is_world_process_zero:
            return
        path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        best = bool(state.best_model_checkpoint) and Path(state.best_model_checkpoint).name == path.name
        self.ev.emit("checkpoint", state.global_step, path=str(path), complete=is_complete(path), best=best,
                     best_path=state.best_model_checkpoint, best_metric=state.best_metric)


class StopCallback(TrainerCallback):
    """SIGTERM (flag set by the signal thread): all ranks agree, save when configured, stop."""

    def __init__(self, rs: RunState, save_on_stop: bool, world_size: int):
        self.rs = rs
        self.save_on_stop = save_on_stop
        self.world = world_size
        self._dev = None

    def _agreed(self) -> bool:
        flag = self.rs.stop_requested
        if self.world > 1:
            import torch
            import torch.distributed as dist

            if dist.is_available() and dist.is_initialized():
                if self._dev is None:
                    self._dev = torch.device("cuda", torch.cuda.current_device()) \
                        if dist.get_backend() == "nccl" else torch.device("cpu")
                t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=self._dev)
                dist.all_reduce(t, op=dist.ReduceOp.MAX)
                flag = bool(t.item())
        return flag

    def on_step_end(self, args, state, control, **kw):
        if self._agreed():
            self.rs.stop_requested = True
            self.rs.stopped = True
            control.should_training_stop = True
            if self.save_on_stop:
                control.should_save = True
        return control


class EarlyStopCallback(TrainerCallback):
    """OCI semantics: stop after ``patience`` evaluations without an improvement ≥ ``threshold``."""

    def __init__(self, rs: RunState, patience: int, threshold: float, metric: str = "eval_loss"):
        self.rs = rs
        self.patience = patience
        self.threshold = threshold
        self.metric = metric
        self.best: float | None = None
        self.bad = 0

    def on_evaluate(self, args, state, control, metrics=None, **kw):
        if not self.patience or not metrics or self.metric not in metrics:
            return
        v = float(metrics[self.metric])
        if self.best is None or self.best - v >= self.threshold and v < self.best:
            self.best = v
            self.bad = 0
        else:
            self.bad += 1
        if self.bad >= self.patience:
            self.rs.early_stopped = True
            control.should_training_stop = True
        return control
