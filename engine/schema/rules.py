"""Cross-field rules of a job: what no single value's range can say."""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any, Callable

from engine.datapaths import data_paths, split_format
from engine.schema import profiles as P
from engine.schema.fields import FORMATS, FORMATS_BY_STAGE, LORA_METHODS, SAMPLES_PREFIX, SLURM_TIME_RE, _num
from engine.redact import has_credentials
from engine.schema.problems import Problem

if TYPE_CHECKING:
    from engine.schema.job import JobConfig

# --------------------------------------------------------------------------
# Cross-field rules
# --------------------------------------------------------------------------


def cross_field_problems(job: JobConfig, res: dict[str, Any]) -> list[Problem]:
    """Every rule of :data:`RULES` on a job whose values each pass their own check (``res``: resolved)."""
    out: list[Problem] = []

    def err(name: str, msg: str, allowed: str = "") -> None:
        out.append(Problem(name, msg, allowed))

    def warn(name: str, msg: str) -> None:
        out.append(Problem(name, msg, severity="warning"))

    ctx = {"job": job, "res": res, "prof": P.get(job.profile), "explicit": job.values, "stage": res["trainer.stage"],
           "method": res["trainer.training_type"], "err": err, "warn": warn, "out": out}
    for rule in RULES:
        rule(**ctx)
    return out


# Each rule takes what it needs of: job, res (resolved values), prof (the profile), explicit (the values set),
# stage, method, err(field, message, allowed) / warn(field, message), out (the problems so far).


def _mlflow_credentials(*, res, warn, **_: Any) -> None:
    if has_credentials(res.get("tracking.mlflow_tracking_uri")):
        warn("tracking.mlflow_tracking_uri", "its user name and password are never written (presets, run files, "
                                             "exports): runs get them in their environment, as "
                                             "MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD")


def _training_data_required(*, res, err, **_: Any) -> None:
    if not str(res["data.train_path"] or "").strip():
        err("data.train_path", "a training data file is required",
            f"a .json/.jsonl/.zip file, a folder, s3://bucket/key or {SAMPLES_PREFIX}<file>")


def _backend_options(*, res, explicit, method, err, **_: Any) -> None:
    # zero_stage only with DeepSpeed
    if res["trainer.distributed_backend"] != "deepspeed":
        for n in ("trainer.zero_stage", "trainer.offload_optimizer", "trainer.offload_params"):
            if n in explicit and explicit[n] not in (None, False):
                err(n, "only applies when trainer.distributed_backend is deepspeed",
                    "set trainer.distributed_backend = \"deepspeed\" or remove it")
    if res["trainer.distributed_backend"] != "fsdp":
        for n in ("trainer.fsdp_sharding", "trainer.fsdp_cpu_offload", "trainer.fsdp_state_dict"):
            if n in explicit and explicit[n] not in (None, False):
                err(n, "only applies when trainer.distributed_backend is fsdp",
                    "set trainer.distributed_backend = \"fsdp\" or remove it")
    elif method == "qlora":
        err("trainer.distributed_backend", "fsdp cannot shard a quantized (QLoRA) model: its 4/8-bit weights are "
            "not plain tensors FSDP2 can split", "ddp or deepspeed, or trainer.training_type = lora")
    if res["runtime.optimizer"] == "sgd" and res["trainer.distributed_backend"] == "deepspeed" \
            and res["trainer.offload_optimizer"]:
        err("runtime.optimizer", "sgd with trainer.offload_optimizer would train with Adam: the offloaded optimizer "
            "is DeepSpeed's CPU Adam, which accelerate puts in place of any other", "adamw, or offload_optimizer = "
            "false")


def _quantization(*, res, method, err, **_: Any) -> None:
    # quantization only with LoRA
    q = res["runtime.quantization_bit"]
    if q != "none" and method not in LORA_METHODS:
        err("runtime.quantization_bit", f"quantization ({q}-bit) only applies to LoRA / QLoRA, not {method}",
            "none")
    if method == "qlora" and q == "none":
        err("runtime.quantization_bit", "qlora needs a quantized base model", "4, 8")
    if method == "lora" and q != "none":  # (it trained unquantized after demanding bitsandbytes)
        err("runtime.quantization_bit", f"LoRA on a {q}-bit quantized model is QLoRA: set trainer.training_type "
            f"= \"qlora\"", "none with lora, or trainer.training_type = \"qlora\"")


def _preference_loss_options(*, res, explicit, stage, err, **_: Any) -> None:
    # preference fields by loss
    loss = res["preference.preference_loss"]
    if "preference.simpo_gamma" in explicit and not (stage == "dpo" and loss == "simpo"):
        err("preference.simpo_gamma", "only applies when preference.preference_loss is simpo",
            "remove it, or set preference_loss = \"simpo\"")
    if (res["preference.dpo_label_smoothing"] or 0) > 0 and not (stage == "dpo" and loss == "sigmoid"):
        err("preference.dpo_label_smoothing", "only applies when preference.preference_loss is sigmoid",
            "0, or set preference_loss = \"sigmoid\"")


def _best_checkpoint(*, res, err, **_: Any) -> None:
    # best checkpoint needs evaluation
    if res["eval.save_best_checkpoint"] and res["eval.evaluation_strategy"] == "no":
        err("eval.save_best_checkpoint", "tracking the best checkpoint needs evaluation",
            "set eval.evaluation_strategy to epoch or steps")
    elif res["eval.save_best_checkpoint"]:
        ev, ck = res["eval.evaluation_strategy"], res["eval.checkpoint_strategy"]
        es = res["eval.eval_steps"] or 1
        if ck != ev:
            err("eval.checkpoint_strategy", f"keeping the best checkpoint needs a checkpoint at each evaluation "
                f"({ev})", ev)
        elif ev == "steps" and res["eval.checkpoint_steps"] % es:
            err("eval.checkpoint_steps", f"{res['eval.checkpoint_steps']} is not a multiple of eval.eval_steps "
                f"({es}); keeping the best checkpoint needs a checkpoint at evaluations", f"a multiple of {es}")


def _evaluation_data(*, job, res, prof, err, warn, **_: Any) -> None:
    eval_waits = job.evaluation_waits(res)
    if res["eval.early_stopping_patience"] > 0 and res["eval.evaluation_strategy"] == "no" \
            and not eval_waits:
        err("eval.early_stopping_patience", "early stopping needs evaluation",
            "0, or set eval.evaluation_strategy to epoch or steps")
    if eval_waits:
        pat = res["eval.early_stopping_patience"]
        warn("eval.evaluation_strategy", f"profile {prof.name} evaluates during training"
             + (f" (early stopping, patience {pat})" if pat else "") + ", but there is no validation data: set "
             "data.validation_path (the document states no hold-out); until then the run trains every epoch")
    if res["eval.evaluation_strategy"] != "no" and not res["data.validation_path"] and not res["data.val_size"]:
        err("eval.evaluation_strategy", "evaluation needs validation data",
            "set data.validation_path or data.val_size > 0")


def _warmup(*, res, err, **_: Any) -> None:
    # warmup steps and ratio not both
    if res["runtime.lr_warmup_steps"] > 0 and res["runtime.lr_warmup_ratio"] > 0:
        err("runtime.lr_warmup_ratio", "warmup steps and warmup ratio cannot both be set",
            "set one of runtime.lr_warmup_steps / runtime.lr_warmup_ratio to 0")


def _epochs_or_steps(*, res, prof, explicit, err, **_: Any) -> None:
    # epochs / max_steps
    if res["general.epochs"] is None and res["general.max_steps"] is None:
        err("general.epochs", "either epochs or max_steps must be set", "an integer ≥ 1")
    if prof.max_steps_epochs_exclusive and explicit.get("general.max_steps") is not None \
            and explicit.get("general.epochs") is not None:
        err("general.max_steps", f"set max_steps or epochs, not both (profile {prof.name})",
            "unset general.epochs or general.max_steps")


def _min_lr_below_lr(*, res, err, **_: Any) -> None:
    # min_lr below lr
    if res["runtime.lr_scheduler"] == "cosine" and res["runtime.min_lr"] >= res["general.learning_rate"]:
        err("runtime.min_lr", "must be below the learning rate",
            f"0 ≤ x < {_num(res['general.learning_rate'])}")


def _data_formats(*, res, prof, stage, err, **_: Any) -> None:
    # trainer decides the data formats
    allowed = prof.formats_by_stage.get(stage, FORMATS_BY_STAGE[stage])
    if res["data.format"] not in allowed:
        err("data.format", f"{res['data.format']} data cannot train the {stage} trainer", ", ".join(allowed))
    for name in ("data.train_path", "data.validation_path"):  # a source in a format of its own: path#format
        for path, own in map(split_format, data_paths(res.get(name))):
            if own is not None and own not in allowed:
                err(name, f"{path}#{own}: " + (f"{own} data cannot train the {stage} trainer" if own in FORMATS
                                                else f"`{own}` is not a data format"), ", ".join(allowed))


def _data_suffixes(*, res, prof, err, **_: Any) -> None:
    # the service reads these files only (Nova: JSONL), local and S3 alike
    service = prof.title.split(' (')[0].split(' — ')[0]
    for name in ("data.train_path", "data.validation_path"):
        for path, own in map(split_format, data_paths(res.get(name))):
            tail = path.rstrip("/").rsplit("/", 1)[-1]
            fmt = own or res["data.format"]
            # the files the service reads (a format of its own may be narrower: FPT's ShareGPT_Image is a zip)
            want, what = (prof.format_suffixes[fmt], f"{fmt} data from ") if fmt in prof.format_suffixes \
                else (prof.data_suffixes, "")
            if want and "." in tail and not tail.lower().endswith(want):
                err(name, f"{path}: the {service} service reads {what}"
                    f"{' / '.join(s.lstrip('.').upper() for s in want)} files only (profile {prof.name})",
                    ", ".join(want))


def _layers_by_architecture(*, res, prof, method, err, **_: Any) -> None:
    # the layer names the document allows, by architecture, when the model's config can be read here
    tm = res["adapter.target_modules"]
    if prof.layers_by_architecture and method in ("lora", "qlora", "tfew") and isinstance(tm, list) \
            and tm and tm != ["all-linear"]:
        arch = _model_type(str(res["model.name_or_path"]))
        layers = prof.layers_by_architecture.get(arch or "")
        bad = [m for m in tm if layers is not None and m not in layers]
        if bad:
            err("adapter.target_modules", f"{', '.join(bad)}: not a layer of the {arch} architecture in profile "
                f"{prof.name}", ", ".join(layers) + ", all-linear, or [] for the default (q_proj, v_proj)")


def _service_limitations(*, res, prof, warn, **_: Any) -> None:
    # limitations of the service's infrastructure: finetui runs the job itself, so a warning only
    for name, why in prof.service_limitations.items():
        if res[name] != prof.default(name):
            warn(name, f"the service itself would not accept it: {why}; finetui runs it when it runs the job "
                 f"(profile {prof.name})")


def _device(*, res, method, err, **_: Any) -> None:
    # fp16 on CPU
    if res["runtime.mixed_precision"] == "fp16" and res["launch.device"] == "cpu":
        err("runtime.mixed_precision", "fp16 mixed precision needs a GPU; it is refused on CPU", "bf16, none")
    if res["runtime.attention_implementation"] == "flash_attention_2" and res["launch.device"] == "cpu":
        err("runtime.attention_implementation", "flash-attention-2 needs a GPU", "sdpa, eager")
    elif res["runtime.attention_implementation"] == "flash_attention_2" and res["runtime.mixed_precision"] == "none":
        err("runtime.attention_implementation", "flash-attention-2 computes in bf16 or fp16 only, and "
            "runtime.mixed_precision = none trains in float32", "sdpa, eager, or mixed_precision bf16 / fp16 / auto")
    if res["launch.device"] == "cpu" and (method == "qlora" or res["runtime.quantization_bit"] != "none"):
        err("trainer.training_type", "QLoRA (bitsandbytes quantization) needs a CUDA GPU; it is refused on CPU",
            "lora on CPU, or launch.device = cuda / auto")


def _prompt_init_text(*, res, method, err, **_: Any) -> None:
    # prompt tuning init text
    if method == "prompt_tuning" and res["adapter.prompt_tuning_init"] == "text" \
            and not res["adapter.prompt_tuning_init_text"]:
        err("adapter.prompt_tuning_init_text", "init = text needs the initialisation text", "a non-empty string")


def _kto_batch(*, res, stage, err, **_: Any) -> None:
    if stage == "kto" and res["general.batch_size"] < 2:
        err("general.batch_size", "the kto trainer needs at least 2 rows per device batch: it estimates its KL "
            "term from the batch's other rows (TRL)", "2 or more; lower runtime.gradient_accumulation_steps "
            "to keep the effective batch")


def _offered_methods_and_stages(*, prof, stage, method, err, **_: Any) -> None:
    # tuning method / stage restrictions
    if method in ("prompt_tuning",) and stage in ("dpo", "kto", "reward"):
        err("trainer.training_type", f"prompt tuning is not available for the {stage} trainer",
            "full, lora, qlora, tfew, freeze")
    if stage not in prof.stages:
        err("trainer.stage", f"{stage} is not offered in profile {prof.name}", ", ".join(prof.stages))


def _launcher_and_nodes(*, res, err, warn, out, **_: Any) -> None:
    # deepspeed launcher needs deepspeed backend
    if res["launch.launcher"] == "deepspeed" and res["trainer.distributed_backend"] != "deepspeed":
        err("launch.launcher", "the deepspeed launcher needs trainer.distributed_backend = deepspeed",
            "torchrun")
    hosts = res["launch.hosts"]
    if hosts and len(hosts) != res["launch.nodes"]:
        err("launch.hosts", f"{len(hosts)} hosts named but launch.nodes is {res['launch.nodes']}",
            f"{res['launch.nodes']} hosts, or set launch.nodes = {len(hosts)}")
    if res["launch.launcher"] == "slurm":
        out.extend(slurm_problems(res))
    elif res["launch.nodes"] > 1 and not hosts:
        warn("launch.nodes", "several nodes need launch.hosts (one per node) to launch")


def _packing(*, job, stage, method, err, **_: Any) -> None:
    # packing is for text data
    if job.values.get("data.packing") and stage in ("dpo", "kto", "reward"):
        err("data.packing", f"packing applies to pre-training and SFT, not {stage}", "false")
    elif job.values.get("data.packing") and method == "prompt_tuning":
        err("data.packing", "packing cannot be used with prompt tuning: PEFT drops the position ids that keep "
            "packed rows apart", "false")


def _replicas_by_model(*, res, prof, err, **_: Any) -> None:
    # Nova replicas per model size
    if prof.replicas_by_model:
        model = str(res["model.name_or_path"]).lower()
        for key, counts in prof.replicas_by_model.items():
            if key in model and res["launch.nodes"] not in counts:
                err("launch.nodes", f"{res['launch.nodes']} replicas are not offered for {key} in profile {prof.name}",
                    ", ".join(map(str, counts)))


def _global_batch(*, res, explicit, err, warn, **_: Any) -> None:
    # global batch: a field of its own (Nova recipes: 16 / 32 / 64, checked as the field's choices); when set,
    # accumulation follows from it
    gb = res["general.global_batch_size"]
    if gb is not None:
        per_step = res["general.batch_size"] * total_ranks(res)
        acc = res["runtime.gradient_accumulation_steps"]
        if "runtime.gradient_accumulation_steps" in explicit and per_step * acc != gb:
            err("runtime.gradient_accumulation_steps", f"batch × accumulation × ranks = {per_step * acc} contradicts "
                f"general.global_batch_size = {gb}", "unset one of them")
        elif per_step * acc != gb:
            warn("general.global_batch_size", f"{gb} is not a multiple of batch × ranks ({per_step}): finetui "
                 f"accumulates {acc} micro-batches, {per_step * acc} examples per step")


def _catalog(*, res, prof, err, warn, **_: Any) -> None:
    # catalog
    if res["model.name_or_path"] in prof.deprecated_models:
        warn("model.name_or_path", f"{res['model.name_or_path']} is deprecated in profile {prof.name} (its document "
             "says so)")
    if prof.models and res["model.name_or_path"] not in prof.models:
        if prof.allow_own_models:
            warn("model.name_or_path", f"{res['model.name_or_path']} is not in the {prof.name} catalog")
        else:
            err("model.name_or_path", f"{res['model.name_or_path']} is not offered in profile {prof.name}",
                ", ".join(prof.models))


def _start_at(*, res, err, **_: Any) -> None:
    # start_at format
    if res["launch.start_at"]:
        from datetime import datetime
        try:
            datetime.strptime(res["launch.start_at"], "%Y-%m-%d %H:%M")
        except ValueError:
            err("launch.start_at", f"{res['launch.start_at']!r} is not a time", "YYYY-mm-dd HH:MM")


def _network(*, res, err, **_: Any) -> None:
    addr = res["launch.master_addr"]
    if addr is not None and (not str(addr).strip() or any(c in str(addr) for c in " /\t@")):
        err("launch.master_addr", f"{addr!r} is not a host name or IP address", "a host name or an IP address")
    for name in ("launch.gloo_socket_ifname", "launch.nccl_socket_ifname"):
        v = res[name]
        if v is not None and not re.match(r"^[\^=]?[\w.:-]+(,[\w.:-]+)*$", str(v).strip()):
            err(name, f"{v!r} is not a network interface name", "a name like eth0 or ib0, a comma list, ^ to exclude")


def _resume(*, res, err, **_: Any) -> None:
    ck = res["general.resume_from_checkpoint"]
    if not isinstance(ck, str) or not ck.strip():
        err("general.resume_from_checkpoint", "must be no, last or a checkpoint path", "no, last, a path")


def _performance_warnings(*, res, method, warn, **_: Any) -> None:
    # --- warnings ---
    if res["trainer.distributed_backend"] == "fsdp" and total_ranks(res) == 1:
        warn("trainer.distributed_backend", "fsdp on one rank shards nothing (it trains, with FSDP's checkpoints "
             "and CPU offload): raise launch.procs_per_node or launch.nodes to divide the memory")
    if res["trainer.distributed_backend"] == "deepspeed" and method == "qlora" and res["trainer.zero_stage"] == 3:
        warn("trainer.zero_stage", "QLoRA with ZeRO-3 needs bitsandbytes ≥ 0.43 and a recent accelerate")
    if res["data.padding_free"] and res["runtime.attention_implementation"] != "flash_attention_2":
        warn("data.padding_free", "padding-free batches without flash-attention-2: rows are kept apart by a dense "
             "block mask, so attention costs grow with the square of the whole batch's length")


def _streaming(*, res, stage, err, **_: Any) -> None:
    """Streaming needs a step count, and text rows of pre-training / SFT."""
    if res.get("data.streaming") and stage not in ("pretrain", "sft"):
        err("data.streaming", f"streaming applies to pre-training and SFT, not {stage}", "false")
    elif res.get("data.streaming") and not res["general.max_steps"]:
        err("data.streaming", "streaming needs general.max_steps: the rows are read while training, not counted "
            "into epochs", "false, or set general.max_steps")


#: the cross-field rules, in the order their problems are listed
RULES: list[Callable[..., None]] = [
    _mlflow_credentials, _training_data_required, _backend_options, _quantization, _preference_loss_options,
    _best_checkpoint, _evaluation_data, _warmup, _epochs_or_steps, _min_lr_below_lr, _data_formats, _data_suffixes,
    _layers_by_architecture, _service_limitations, _device, _prompt_init_text, _kto_batch,
    _offered_methods_and_stages, _launcher_and_nodes, _packing, _replicas_by_model, _global_batch, _catalog,
    _start_at, _network, _resume, _performance_warnings, _streaming,
]


def _model_type(name: str) -> str | None:
    """The model's architecture when its config.json can be read without downloading, else None: ``engine.model_type``
    (engine/__init__.py), reached through the package at call time — the schema reads no model files itself."""
    import engine

    return engine.model_type(name)


def packs(res: dict[str, Any]) -> bool:
    """Whether the job packs rows: ``data.packing`` on, a stage that trains on plain sequences, and a
    method that keeps the position ids (PEFT's prompt tuning drops them)."""
    return bool(res.get("data.packing")) and res.get("trainer.stage") in ("pretrain", "sft") \
        and res.get("trainer.training_type") != "prompt_tuning"


def accumulation_for(res: dict[str, Any]) -> int | None:
    """Gradient accumulation that makes ``general.global_batch_size`` (rounded up), or None when unset."""
    gb = res.get("general.global_batch_size")
    try:
        per_step = int(res["general.batch_size"]) * total_ranks(res)
        return max(1, math.ceil(int(gb) / per_step)) if gb is not None else None
    except (TypeError, ValueError, KeyError, ZeroDivisionError):
        return None


#: sbatch options finetui writes itself (a Slurm run's contract), refused in launch.slurm_extra
SLURM_OWN_OPTIONS = ("--output", "-o", "--error", "-e", "--chdir", "-D", "--open-mode", "--parsable", "--signal",
                     "--requeue", "--no-requeue", "--nodes", "-N", "--ntasks", "-n", "--ntasks-per-node", "--wrap",
                     "--array", "-a", "--job-name", "-J")


def slurm_problems(res: dict[str, Any]) -> list[Problem]:
    """launch.launcher = slurm: the Slurm fields, one problem per bad value."""
    out: list[Problem] = []
    if res["launch.hosts"]:
        out.append(Problem("launch.hosts", "a Slurm job gets its nodes from the allocation; launch.hosts is for SSH "
                           "launches", "empty (launch.nodes sets --nodes; launch.host is the login node)"))
    t = res["launch.slurm_time"]
    if t is not None and not re.match(SLURM_TIME_RE, str(t).strip()):
        out.append(Problem("launch.slurm_time", f"{t!r} is not a Slurm time limit",
                           "minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS"))
    m = res["launch.slurm_mem"]
    if m is not None and not re.match(r"^\d+[KMGT]?B?$", str(m).strip(), re.I):
        out.append(Problem("launch.slurm_mem", f"{m!r} is not a memory size", "a number with K, M, G or T, e.g. 64G"))
    for name in ("launch.slurm_partition", "launch.slurm_account", "launch.slurm_qos", "launch.slurm_constraint"):
        v = res[name]
        if v is not None and (not str(v).strip() or any(c.isspace() for c in str(v))):
            out.append(Problem(name, f"{v!r} is not a Slurm name", "a name without spaces, or unset"))
    for i, line in enumerate(res["launch.slurm_extra"] or []):
        text = str(line).strip()
        opt = text.split("=", 1)[0].split()[0] if text else ""
        if not text.startswith("-") or "\n" in text or "\r" in text:
            out.append(Problem(f"launch.slurm_extra[{i}]", f"{line!r} is not an sbatch option",
                               "one option per entry, e.g. --exclusive or --reservation=name"))
        elif opt in SLURM_OWN_OPTIONS:
            out.append(Problem(f"launch.slurm_extra[{i}]", f"{opt} is set by finetui for every Slurm run",
                               "other sbatch options (nodes: launch.nodes; requeue: launch.slurm_requeue; "
                               "signal: launch.slurm_signal_grace)"))
    return out


def total_ranks(res: dict[str, Any]) -> int:
    """Data-parallel ranks: processes per node × nodes (× torchrun agents per node on Slurm)."""
    per_node = int(res.get("launch.slurm_tasks_per_node") or 1) if res.get("launch.launcher") == "slurm" else 1
    return int(res["launch.procs_per_node"]) * int(res["launch.nodes"]) * per_node
