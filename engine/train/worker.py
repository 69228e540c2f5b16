"""The training worker: ``python -m engine.train.worker --run-dir DIR`` (one process per rank).

Reads ``DIR/config.toml``, builds model + tokenizer (real ``from_pretrained``), the
dataset (``engine.data``) and the TRL trainer, trains, saves ``DIR/final`` and writes
``DIR/events.jsonl`` (rank 0 only).  Errors a user can cause end as one line in the
``error`` event and on stderr.  SIGTERM: all ranks agree to stop at the next step,
save a checkpoint when checkpointing is configured, write ``end`` (stopped) and exit.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from engine.events import EVENTS_FILE
from engine.launch.rundir import CHECKPOINTS_DIR, CONFIG_FILE, FINAL_DIR

#: seconds rank 0 waits after SIGTERM for a clean stop before it writes `end` and exits anyway
STOP_GRACE_S = float(os.environ.get("FINETUI_STOP_GRACE_S", "25"))


class NullEvents:
    def emit(self, kind: str, step: int = 0, **data: Any) -> dict:
        return {}

    def close(self) -> None:
        pass


class Worker:
    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.ended = False
        self.merge_after: tuple[Path, Path] | None = None  # (adapter, final): merged once the ranks are done
        self.lock = threading.Lock()
        self.step = 0
        from engine.train.callbacks import RunState

        self.rs = RunState()
        if self.rank == 0:
            from engine.events import EventWriter

            self.ev: Any = EventWriter(run_dir / EVENTS_FILE)
        else:
            self.ev = NullEvents()

    # -- events ---------------------------------------------------------
    def status(self, phase: str, text: str = "", **kw: Any) -> None:
        self.ev.emit("status", self.step, phase=phase, text=text, **kw)

    def _reading_progress(self) -> Callable[[int, int, int], None]:
        """The first pass's progress as "preparing data" status events (as tokenizing says its own), at most every
        ``tokcache.PROGRESS_S`` seconds: bytes read of the files, rows, rows/s and the time left."""
        from engine.data.tokcache import PROGRESS_S, reading_text

        t0 = time.monotonic()
        last = [t0]

        def progress(rows: int, done: int, total: int) -> None:
            now = time.monotonic()
            if now - last[0] < PROGRESS_S or not total or done >= total:
                return
            last[0] = now
            self.status("preparing data", f"reading rows: {done / 1e9:.2f} / {total / 1e9:.2f} GB · "
                        + reading_text(rows, done, total, now - t0), fraction=round(done / total, 4),
                        rows_done=rows, bytes_done=done, bytes_total=total, rows_per_s=round(rows / (now - t0), 1))
        return progress

    def warn(self, msg: str) -> None:
        from engine.redact import redact

        msg = redact(msg)  # (a URI's user:password@ is never shown or recorded)
        self.ev.emit("status", self.step, phase="warning", text=msg, level="warning")
        print(f"warning: {msg}", file=sys.stderr, flush=True)

    def end(self, outcome: str, final_path: str | None = None, **kw: Any) -> None:
        with self.lock:
            if self.ended:
                return
            self.ended = True
            if outcome == "stopped" and self.rs.preempted and os.environ.get("FINETUI_SLURM_REQUEUE") == "1":
                # the Slurm job requeues itself and resumes this run: no end yet
                self.ev.emit("status", self.step, phase="preempted", text="SIGUSR1: stopped at a checkpoint; the "
                             "job is requeued and resumes from it")
                return
            self.ev.emit("end", self.step, outcome=outcome, final_path=final_path, **kw)

    def error(self, message: str, tb: str = "") -> None:
        message = " ".join(message.split()) or "unknown error"
        with self.lock:
            if self.ended:
                return
            self.ev.emit("error", self.step, message=message, traceback=tb[-4000:], rank=self.rank)
        print(f"error: {message}", file=sys.stderr, flush=True)
        if self.rank != 0:  # rank 0 reports what other ranks saw when it is killed while waiting on them
            try:
                d = self.run_dir / ".rank-errors"
                d.mkdir(exist_ok=True)
                (d / f"rank-{self.rank}.txt").write_text(message + "\n")
            except OSError:
                pass

    # -- signals --------------------------------------------------------
    def watch_signals(self) -> None:
        """SIGTERM/SIGINT are blocked in every thread and received here (works while the main thread
        is blocked inside a collective)."""

        def loop() -> None:
            while True:
                sig = signal.sigwait({signal.SIGTERM, signal.SIGINT, signal.SIGUSR1})
                if self.rs.stop_requested:
                    continue
                if sig == signal.SIGUSR1:  # Slurm's warning before a time limit or preemption: checkpoint, exit
                    self.rs.preempted = True
                self.rs.stop_requested = True
                print(f"received {signal.Signals(sig).name}: stopping", file=sys.stderr, flush=True)
                if not self.rs.training:
                    self._give_up(0.0 if not self.rs.training else STOP_GRACE_S)
                    return
                time.sleep(STOP_GRACE_S)
                self._give_up(0)
                return

        threading.Thread(target=loop, name="finetui-signals", daemon=True).start()

    def _give_up(self, wait: float) -> None:
        if wait:
            time.sleep(wait)
        if self.ended:
            return
        other = self._other_rank_error()
        if other:
            self.error(other)
            self.end("failed")
        else:
            self.end("stopped")
        self.ev.close()
        os._exit(0 if not other else 1)

    def _other_rank_error(self) -> str | None:
        d = self.run_dir / ".rank-errors"
        try:
            for p in sorted(d.glob("rank-*.txt")):
                return f"{p.stem}: {p.read_text().strip()}"
        except OSError:
            pass
        return None

    # -- the run --------------------------------------------------------
    def run(self) -> int:
        from engine import presets

        job = presets.load(self.run_dir / CONFIG_FILE)
        res = job.resolved()
        self.res = res
        self.job = job
        try:
            outcome, final = self._train(job, res)
            if self.merge_after is not None:
                self._merge_apart(*self.merge_after)
        except BaseException as e:  # noqa: BLE001 - every failure ends as one line + `end failed`
            if isinstance(e, SystemExit) and e.code in (0, None):
                raise
            msg, tb = describe(e, res)
            self.error(msg, tb)
            self.end("failed")
            return 1
        self.end(outcome, final)
        return 0

    def _train(self, job: Any, res: dict) -> tuple[str, str | None]:
        import torch

        from engine.train import checkpoints as C
        from engine.train.modeling import UserError, apply_method, check_runtime, dtype_summary, load_config, \
            load_model, load_tokenizer, loraplus_optimizer, upcast_trainable

        dev = res["launch.device"]
        device = "cuda" if (dev == "cuda" or (dev == "auto" and torch.cuda.is_available())) else "cpu"
        if dev == "cuda" and not torch.cuda.is_available():
            raise UserError("launch.device: cuda was asked for but no GPU is visible on this host")
        check_runtime(res, device)
        if res["trainer.distributed_backend"] != "deepspeed":
            skip_deepspeed_import()
        if device == "cuda":
            torch.cuda.set_device(self.local_rank)
        self._init_distributed(res, device)

        run_dir = self.run_dir
        ck_dir = run_dir / CHECKPOINTS_DIR
        # a requeued Slurm job (FINETUI_RESUME=last) resumes from the newest complete checkpoint of its run
        resume = C.resolve_resume(os.environ.get("FINETUI_RESUME") or str(res["general.resume_from_checkpoint"]),
                                  run_dir, ck_dir)
        if self.rank == 0:
            moved = C.set_aside_incomplete(ck_dir)
            for m in moved:
                self.warn(f"set aside an incomplete checkpoint (no complete trainer_state.json): {m.name}")
        if resume is not None:
            self.status("resuming", f"resuming from {resume.name}", checkpoint=str(resume))
        self._check_stop()

        # data (light) before the model, so a bad file fails fast
        self.status("loading data", str(res["data.train_path"]))
        from engine.data import DataError, stream_rows

        try:  # (counted and hashed here; read again from the sources, a chunk at a time, when tokenized)
            data = stream_rows(res, job.secrets or None, self._reading_progress())
        except DataError as e:
            raise UserError(str(e).strip().splitlines()[0]) from None
        self.status("loading data", f"{len(data.train)} training rows, {len(data.eval or [])} validation rows, "
                    f"{data.dropped} invalid rows dropped", rows=len(data.train),
                    eval_rows=len(data.eval or []), dropped=int(data.dropped))
        self._check_stop()

        self.status("loading model", str(res["model.name_or_path"]))
        if self.world > 1:
            from engine.tiny import TINY_NAME, TINY_VLM_NAME, ensure_tiny_model

            name = str(res["model.name_or_path"]).strip()
            if name in (TINY_NAME, TINY_VLM_NAME):
                # first use on this node: one rank builds the tiny model, the others wait and load it
                if self.local_rank == 0:
                    ensure_tiny_model(name)
                self._barrier()
        path, cfg = load_config(res, self.warn)
        tok = load_tokenizer(path, res, self.warn)
        if res["trainer.distributed_backend"] == "deepspeed" and int(res["trainer.zero_stage"]) == 3:
            # zero.Init must see the ds config while the model is built (accelerate's HfDeepSpeedConfig)
            from transformers.integrations import HfDeepSpeedConfig

            from engine.train.trainers import deepspeed_config

            ds = deepspeed_config(res, device)
            bs = int(res["general.batch_size"])
            acc = int(res["runtime.gradient_accumulation_steps"])
            ds.update(train_micro_batch_size_per_gpu=bs, gradient_accumulation_steps=acc,
                      train_batch_size=bs * acc * self.world)
            self._hf_ds = HfDeepSpeedConfig(ds)  # must stay alive while the model is built
        if res["runtime.seed"] is not None:
            from transformers import set_seed

            set_seed(int(res["runtime.seed"]))
        model = load_model(path, cfg, res, device)
        if getattr(model.config, "pad_token_id", None) is None:
            model.config.pad_token_id = tok.pad_token_id
        model = apply_method(model, res, path, device, self.warn)
        upcast_trainable(model, res)
        numel = lambda p: int(getattr(p, "ds_numel", 0) or p.numel())  # noqa: E731 - ZeRO-3: the whole, not the shard
        n_train = sum(numel(p) for p in model.parameters() if p.requires_grad)
        n_all = sum(numel(p) for p in model.parameters())
        dt = dtype_summary(model)
        held = "; ".join(f"{k.split('_')[0]} in {v}" for k, v in dt.items())
        self.status("loading model", f"{n_train:,} of {n_all:,} parameters trainable ({held})",
                    trainable_params=n_train, total_params=n_all, **dt)
        optimizer = None
        if res["trainer.training_type"] in ("lora", "qlora") and float(res["adapter.loraplus_lr_ratio"] or 0) > 0:
            optimizer = loraplus_optimizer(model, res)
        self._check_stop()

        from engine.train.callbacks import EarlyStopCallback, EventCallback, StopCallback
        from engine.train.modeling import find_unused_parameters
        from engine.train.trainers import build_trainer, common_args

        report = []
        if res["tracking.tensorboard"]:
            os.environ["TENSORBOARD_LOGGING_DIR"] = str(run_dir / "tensorboard")
            report.append("tensorboard")
        mlflow_run = None
        if res["tracking.mlflow_tracking_uri"]:
            report.append("mlflow")
            os.environ["MLFLOW_TRACKING_URI"] = str(res["tracking.mlflow_tracking_uri"])
            os.environ["MLFLOW_EXPERIMENT_NAME"] = str(res["tracking.mlflow_experiment"] or "finetui")
            if self.rank == 0:
                mlflow_run = self._mlflow_start(res)
        wandb_run = None
        if res["tracking.wandb"]:
            report.append("wandb")
            if self.rank == 0:  # the run (project, entity, name, online or offline) before the trainer's callback
                from engine.train import wandb_tracking

                wandb_run = wandb_tracking.start(res, run_dir, job.profile, self.warn)
        has_eval = bool(data.eval)
        if res["eval.evaluation_strategy"] != "no" and not has_eval:
            self.warn("evaluation is configured but there are no validation rows; evaluation is off")
        base = common_args(res, run_dir, device, has_eval, report)
        base["ddp_find_unused_parameters"] = find_unused_parameters(model)
        info = {"model": str(res["model.name_or_path"]), "stage": res["trainer.stage"],
                "method": res["trainer.training_type"], "config_hash": job.config_hash(),
                "device": device, "backend": res["trainer.distributed_backend"],
                "dropped": int(data.dropped), "train_rows": len(data.train)}
        pg_timeout = process_group_timeout()
        if pg_timeout is not None:
            info["process_group_timeout_s"] = pg_timeout
        evcb = EventCallback(self.ev, info, ck_dir)
        cbs = [evcb, StopCallback(self.rs, res["eval.checkpoint_strategy"] != "no", self.world)]
        if has_eval and int(res["eval.early_stopping_patience"] or 0) > 0:
            cbs.append(EarlyStopCallback(self.rs, int(res["eval.early_stopping_patience"]),
                                         float(res["eval.early_stopping_threshold"] or 0.0)))
        self.status("tokenizing", "preparing the dataset")
        trainer = build_trainer(res, model, tok, data.train, data.eval if has_eval else None, base, cbs,
                                optimizer, self.status)
        if res["trainer.distributed_backend"] == "fsdp":
            from engine.train.callbacks import FsdpReshardCallback

            fsdp_on_cpu(trainer)
            trainer.add_callback(FsdpReshardCallback())
        evcb.info.update(trainer_info(trainer))
        self._check_stop()

        self.rs.training = True
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
        self.rs.training = False
        self.step = int(trainer.state.global_step)
        if self.rs.stopped:
            return "stopped", None
        outcome = "early_stopped" if self.rs.early_stopped else "completed"

        self.status("saving", "writing the final model")
        final = run_dir / FINAL_DIR
        method = res["trainer.training_type"]
        merge = method in ("lora", "qlora") and bool(res["adapter.merge_adapter"])
        save_to = run_dir / "adapter" if merge else final
        plugin = getattr(trainer.accelerator.state, "fsdp_plugin", None)
        if plugin is not None:  # FSDP: the final model whole, whatever form the checkpoints take
            from engine.train.callbacks import fsdp_reshard

            fsdp_reshard(trainer.model)
            plugin.set_state_dict_type("FULL_STATE_DICT")
        trainer.save_model(str(save_to))
        if self.rank == 0:
            tok.save_pretrained(str(save_to))
        self._barrier()
        if merge:
            self.merge_after = (save_to, final)
        if mlflow_run is not None:
            self._mlflow_end(final)
        if wandb_run is not None:
            from engine.train import wandb_tracking

            wandb_tracking.finish(wandb_run, final, self.warn)
        return outcome, str(final)

    def _merge_apart(self, adapter: Path, final: Path) -> None:
        """``adapter.merge_adapter``: once every rank has saved, the process group and the ZeRO-3 context are
        taken down and the other ranks exit; rank 0 merges in a separate process (``python -m
        engine.train.merge``, what ``finetui merge`` does).  Merged on rank 0 inside the live ZeRO-3 context, the
        base loaded as empty shards; on several ranks, rank 0 entered a gather alone."""
        import gc
        import subprocess

        self._hf_ds = None  # transformers holds it by a weak reference: gone, zero.Init is off
        gc.collect()
        self._barrier()
        try:
            import torch.distributed as dist

            if dist.is_available() and dist.is_initialized():
                dist.destroy_process_group()
        except Exception:  # noqa: BLE001
            pass
        if self.rank != 0:
            return
        self.status("merging", "merging the adapter into the base model (a separate process, after the ranks)")
        env = {k: v for k, v in os.environ.items()
               if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                            "GROUP_RANK", "ROLE_RANK", "CROSS_RANK", "CROSS_SIZE")}
        from engine.launch.procs import module_argv

        p = subprocess.run(module_argv(sys.executable, "engine.train.merge", "--run-dir", str(self.run_dir),
                                       "--adapter", str(adapter), "--out", str(final)), env=env, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        sys.stderr.write(p.stdout)
        if p.returncode != 0:
            from engine.train.modeling import UserError

            last = (p.stdout.strip().splitlines() or ["no output"])[-1]
            raise UserError(f"adapter.merge_adapter: merging the adapter into the base model failed: {last} (the "
                            f"trained adapter is kept in {adapter})")

    # -- helpers --------------------------------------------------------
    def _check_stop(self) -> None:
        if self.rs.stop_requested:
            self.end("stopped")
            self.ev.close()
            os._exit(0)

    def _init_distributed(self, res: dict, device: str) -> None:
        """The process group, with the job's timeout (``runtime.ddp_timeout``: NCCL's and DeepSpeed's 10-minute
        default tripped on a long rank-0 save).  DeepSpeed needs one even on a single rank (ZeRO-3's zero.Init
        while the model is built)."""
        # (FSDP too: the Trainer refuses FSDP outside a process group, one rank or not)
        sharded_backend = res["trainer.distributed_backend"] in ("deepspeed", "fsdp")
        if self.world <= 1 and not sharded_backend:
            return
        from datetime import timedelta

        import torch.distributed as dist

        timeout = timedelta(seconds=int(res["runtime.ddp_timeout"]))
        if self.world <= 1:  # a single rank started without a launcher: its own rendezvous on loopback
            from engine.train.command import free_port

            for k, v in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1"), ("MASTER_ADDR", "127.0.0.1")):
                os.environ.setdefault(k, v)
            os.environ.setdefault("MASTER_PORT", str(free_port()))

        backend = "nccl" if device == "cuda" else "gloo"
        if device == "cpu" and not os.environ.get("OMP_NUM_THREADS"):
            # torchrun sets 1 thread per rank, the deepspeed launcher nothing (accelerate then guesses from
            # the physical cores): split this node's cores between its ranks, never oversubscribe them
            import torch

            local = int(os.environ.get("LOCAL_WORLD_SIZE") or self.world)
            n = max(1, (os.cpu_count() or 1) // max(1, local))
            os.environ["OMP_NUM_THREADS"] = str(n)
            torch.set_num_threads(n)
        if res["trainer.distributed_backend"] == "deepspeed":
            import deepspeed

            if device == "cpu" and os.environ.get("FINETUI_DS_SHM_COMM", "0") != "1":
                # DeepSpeed's CPU accelerator JIT-compiles a shared-memory all-reduce (C++, minutes on a
                # small machine, fails without a compiler) on first use; gloo's collectives do the same job
                deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
            deepspeed.init_distributed(dist_backend=backend, timeout=timeout)
        elif not dist.is_initialized():
            dist.init_process_group(backend=backend, timeout=timeout)

    def _barrier(self) -> None:
        try:
            import torch.distributed as dist

            if dist.is_available() and dist.is_initialized():
                dist.barrier()
        except Exception:
            pass

    def _mlflow_start(self, res: dict) -> Any:
        try:
            import mlflow
        except ImportError:
            from engine.train.modeling import UserError

            raise UserError("tracking.mlflow_tracking_uri: the mlflow package is not installed "
                            "(pip install 'finetui[mlflow]')") from None
        mlflow.set_tracking_uri(str(res["tracking.mlflow_tracking_uri"]))
        mlflow.set_experiment(str(res["tracking.mlflow_experiment"] or "finetui"))
        run = mlflow.start_run(run_name=self.run_dir.name)
        try:  # finetui's own view of the job, beside the trainer's arguments
            params = {f"finetui.{k}": v for k, v in sorted(res.items())
                      if v is not None and v != "" and v != []}
            params["finetui.profile"] = self.job.profile
            from engine.redact import redact

            items = [(k, redact(str(v))[:500]) for k, v in params.items()]
            for i in range(0, len(items), 100):
                mlflow.log_params(dict(items[i:i + 100]))
            cfg = self.run_dir / CONFIG_FILE
            if cfg.is_file():
                mlflow.log_artifact(str(cfg))
        except Exception as e:  # tracking must not fail the run
            self.warn(f"mlflow: could not log the job's parameters: {e}")
        return run

    def _mlflow_end(self, final: Path) -> None:
        try:
            import mlflow

            mlflow.log_param("final_path", str(final))
            mlflow.set_tag("finetui.run_dir", str(self.run_dir))
            mlflow.end_run()
        except Exception as e:  # tracking must not fail a finished run
            self.warn(f"mlflow: could not log the final path: {e}")


def process_group_timeout() -> int | None:
    """Seconds of the default process group's timeout, as its backend holds it (None: no process group)."""
    try:
        import torch
        import torch.distributed as dist
        from torch.distributed import distributed_c10d as c10d

        if not (dist.is_available() and dist.is_initialized()):
            return None
        pg = c10d._get_default_group()
        dev = torch.device("cuda" if dist.get_backend() == "nccl" else "cpu")
        return int(pg._get_backend(dev).options._timeout.total_seconds())
    except Exception:  # noqa: BLE001 - a private API: the figure is informative only
        return None


def trainer_info(trainer: Any) -> dict[str, Any]:
    """Which TRL implementation trains the run and its loss settings (for the start event)."""
    a = trainer.args
    trl = {}
    for k in ("loss_type", "loss_weights", "beta", "label_smoothing", "cpo_alpha", "simpo_gamma",
              "desirable_weight", "undesirable_weight"):
        v = getattr(a, k, None)
        if v is not None:
            trl[k] = list(v) if isinstance(v, (list, tuple)) else (v if isinstance(v, (int, float, str)) else str(v))
    return {"trainer": type(trainer).__name__, "trl": trl}


def merge_adapter(base_path: str, adapter_dir: Path, out: Path, res: dict, tok: Any) -> None:
    """Load the base in full precision, apply the saved adapter, merge, save (works after ZeRO-3 / QLoRA)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    cls = AutoModelForSequenceClassification if res["trainer.stage"] == "reward" else AutoModelForCausalLM
    kw = {"num_labels": 1} if res["trainer.stage"] == "reward" else {}
    base = cls.from_pretrained(base_path, trust_remote_code=res["model.trust_remote_code"], **kw)
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    merged.save_pretrained(str(out))
    tok.save_pretrained(str(out))


def describe(e: BaseException, res: dict) -> tuple[str, str]:
    """One line, the cause first (OOM → advice with the current values), plus the traceback tail."""
    from engine.train.checkpoints import ResumeError

    tb = "".join(traceback.format_exception(type(e), e, e.__traceback__))
    name = type(e).__name__
    text = str(e).strip().splitlines()[0] if str(e).strip() else name
    try:
        from engine.train.modeling import UserError

        user = isinstance(e, (UserError, ResumeError))
    except Exception:
        user = False
    if user:
        return text, ""
    if "out of memory" in str(e).lower() or name == "OutOfMemoryError":
        return oom_advice(res), tb
    if isinstance(e, KeyboardInterrupt):
        return "interrupted", ""
    return f"{name}: {text}", tb


def fsdp_on_cpu(trainer: Any) -> None:
    """FSDP2 on CPU ranks (gloo): accelerate keeps the FSDP plugin for accelerator devices only and would wrap the
    model in DDP instead, silently; torch's ``fully_shard`` itself runs on CPU over gloo, so the plugin the
    TrainingArguments built is put in place (the same code path as on GPUs from here on)."""
    from accelerate import PartialState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    state = trainer.accelerator.state
    if getattr(state, "fsdp_plugin", None) is None:
        state.fsdp_plugin = FullyShardedDataParallelPlugin(**trainer.args.fsdp_plugin_args)
        # (both shared states: a later AcceleratorState() copies the partial one's distributed_type over its own)
        state.distributed_type = PartialState().distributed_type = DistributedType.FSDP
        trainer.is_fsdp_enabled = True


def oom_advice(res: dict) -> str:
    gc = "on" if res["runtime.gradient_checkpointing"] else "off"
    be = res["trainer.distributed_backend"]
    zero = f"deepspeed ZeRO-{res['trainer.zero_stage']}" if be == "deepspeed" else be
    return (f"CUDA out of memory: lower general.batch_size (now {res['general.batch_size']}) and raise "
            f"runtime.gradient_accumulation_steps (now {res['runtime.gradient_accumulation_steps']}), turn on "
            f"runtime.gradient_checkpointing (now {gc}), use trainer.distributed_backend = deepspeed with "
            f"trainer.zero_stage = 3 (now {zero}), or trainer.training_type = qlora "
            f"(now {res['trainer.training_type']}); general.max_sequence_length is "
            f"{res['general.max_sequence_length']}")


def skip_deepspeed_import() -> None:
    """A run without the DeepSpeed backend does not import DeepSpeed: accelerate's model unwrapping
    (``extract_model_from_parallel``, behind every ``is_peft_model`` check) imports it whenever it is installed, and
    DeepSpeed's autotuner imports MLflow — together about 60 MB resident and seconds before the first step, for a
    ``DeepSpeedEngine`` that such a run never has."""
    try:
        import accelerate.utils.other as other
    except ImportError:
        return
    if "deepspeed" not in sys.modules and hasattr(other, "is_deepspeed_available"):
        other.is_deepspeed_available = lambda: False


def unused_clients(res: dict) -> list[str]:
    """The tracking / storage clients this job does not use: W&B without ``tracking.wandb``, MLflow without a
    tracking URI, boto3 / botocore without an s3:// path anywhere in the job."""
    out = []
    if not res.get("tracking.wandb"):
        out.append("wandb")
    if not res.get("tracking.mlflow_tracking_uri"):
        out.append("mlflow")
    if not any(isinstance(v, str) and "s3://" in v for v in res.values()):
        out += ["boto3", "botocore"]
    return out


def skip_unused_clients(res: dict) -> None:
    """A client the job does not use is not imported: transformers' ``is_wandb_available`` imports W&B to check
    it (TRL's trainers ask at import), accelerate's SageMaker config imports boto3 — about 28 MB resident in the
    worker of a run that reports to neither (1-process runs are measured against LLaMA-Factory's whole run:
    bench/RESULTS.md §3b). Marked absent in ``sys.modules``, they read as not installed (``find_spec`` is None);
    a module already imported is left alone."""
    for name in unused_clients(res):
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]


def defer_scipy() -> None:
    """transformers imports every model family's loss at import time, and the object-detection ones (DETR and kin)
    import SciPy's Hungarian matcher when SciPy is installed: 35 MB resident in a worker that trains a language or
    vision-language model, which never calls it. Those loss modules are imported here with SciPy marked absent,
    then SciPy is made importable again (and transformers' cached ``is_scipy_available`` forgotten), so anything
    that does use SciPy later imports it as usual."""
    if "scipy" in sys.modules:
        return
    sys.modules["scipy"] = None  # type: ignore[assignment]
    try:
        import transformers.loss.loss_utils  # noqa: F401
    except ImportError:
        pass
    finally:
        if sys.modules.get("scipy", 0) is None:
            del sys.modules["scipy"]
        try:
            from transformers.utils import import_utils

            import_utils.is_scipy_available.cache_clear()
        except (ImportError, AttributeError):
            pass


def lighten_imports(run_dir: Path) -> None:
    """Before anything imports transformers (the Worker's callbacks do): leave out the clients the job does not
    use, and SciPy. A job file that does not load is left to the run, which reports it."""
    from engine import presets

    try:
        res = presets.load(run_dir / CONFIG_FILE).resolved()
    except Exception:  # noqa: BLE001 - the run says what is wrong with the file
        return
    skip_unused_clients(res)
    defer_scipy()


def main(argv: list[str] | None = None) -> int:
    # block SIGTERM/SIGINT/SIGUSR1 in every thread (set before torch starts its threads); the signal thread waits
    # on them (SIGUSR1 ignored by a Slurm task's torchrun: a blocked ignored signal is dropped, so default it first)
    signal.signal(signal.SIGUSR1, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT, signal.SIGUSR1})
    ap = argparse.ArgumentParser(prog="engine.train.worker")
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--local_rank", "--local-rank", type=int, default=None)  # the deepspeed launcher passes it
    args, _unknown = ap.parse_known_args(argv)
    if args.local_rank is not None and "LOCAL_RANK" not in os.environ:
        os.environ["LOCAL_RANK"] = str(args.local_rank)
    run_dir = Path(args.run_dir).resolve()
    if not (run_dir / CONFIG_FILE).is_file():
        print(f"error: {run_dir / CONFIG_FILE} does not exist", file=sys.stderr)
        return 2
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")  # TRL's trainers phone home otherwise
    lighten_imports(run_dir)
    w = Worker(run_dir)
    w.watch_signals()
    try:
        code = w.run()
    finally:
        w.ev.close()
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    except Exception:
        pass
    return code


if __name__ == "__main__":
    sys.exit(main())
