"""LLaMA-Factory training YAML ↔ finetui job.

LLaMA-Factory's own argument names (``src/llamafactory/hparams``) are used as they are.
Mapping decisions:

* ``finetuning_type: lora`` with ``quantization_bit`` is finetui's ``qlora``.
* ``lora_target: all`` is ``["all-linear"]``; a comma list is a list.
* Absent keys mean LLaMA-Factory's defaults; where one differs from finetui's (lora_dropout 0,
  lora_alpha = 2 × rank, cutoff_len 2048, learning_rate 5e-5, batch 8, logging_steps 500, …)
  the import writes LLaMA-Factory's value explicitly, so the job trains as it would there.
* ``dataset`` names are looked up in ``<dataset_dir>/dataset_info.json`` (dataset_dir is relative
  to LLaMA-Factory's working directory; the YAML's folder and its parents are tried); a local
  ``file_name`` becomes ``data.train_path`` and the entry's formatting/columns give
  ``data.format``. Export writes a ``dataset_info.json`` beside the YAML.
* ``deepspeed`` names a JSON config: its ``zero_optimization.stage`` / offload blocks give the
  ZeRO settings (found relative to the YAML, its parents, or by file name); export writes the
  generated ZeRO config beside the YAML as ``ds_z<stage>[_offload]_config.json``.
* FSDP: LLaMA-Factory v1's ``dist_config: {name: fsdp2}`` (with ``reshard_after_forward`` /
  ``offload_params``, or accelerate's ``fsdp_*`` keys) is finetui's ``distributed_backend = "fsdp"``;
  the classic YAML takes FSDP from accelerate, so export writes an accelerate FSDP2 config
  ``fsdp_config.yaml`` beside the YAML (``accelerate launch --config_file fsdp_config.yaml``).
* ``template`` is not used: finetui applies the tokenizer's chat template (LLaMA-Factory does the
  same when no template is given, so export leaves it out).
* ``report_to: mlflow`` takes its URI from ``MLFLOW_TRACKING_URI`` (not a YAML key): import uses
  MLflow's default ``sqlite:///mlflow.db``; export names the variable in a warning.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import yaml

from engine import userfiles
from engine.schema import FIELD_BY_NAME, LF, SAMPLES_PREFIX, JobConfig, Problem, names_in, total_ranks
from engine.data.sources import count_examples, local_data_files
from engine.datapaths import any_s3, data_paths, join_paths, split_format
from engine.dsconfig import deepspeed_config
from engine.redact import has_credentials
from engine.interop.common import (InteropError, TrainingChange, fail, fmt, kind_of, leftovers, real_path,
                                   sample_or_path, set_value, validate_for)

TARGET = LF
#: the most datasets one imported `dataset:` may name (each becomes a source of the data path)
MAX_DATASETS = 1000

STAGE_TO_LF = {"pretrain": "pt", "sft": "sft", "dpo": "dpo", "kto": "kto", "reward": "rm"}
STAGE_FROM_LF = {v: k for k, v in STAGE_TO_LF.items()}
ATTN_TO_LF = {"sdpa": "sdpa", "eager": "disabled", "flash_attention_2": "fa2"}
ATTN_FROM_LF = {"sdpa": "sdpa", "disabled": "eager", "fa2": "flash_attention_2", "auto": "sdpa", "fa3": "flash_attention_2"}
OPTIM_FROM_LF = {"adamw_torch": "adamw", "adamw_hf": "adamw", "adamw_torch_fused": "adamw", "adamw": "adamw",
                 "sgd": "sgd"}
MLFLOW_DEFAULT_URI = "sqlite:///mlflow.db"

#: LLaMA-Factory / transformers defaults that differ from finetui's native ones, applied on import
#: when the key is absent (finetui name → (LF key, LF default)).
LF_DEFAULTS: dict[str, tuple[str, Any]] = {
    "general.batch_size": ("per_device_train_batch_size", 8),
    "general.learning_rate": ("learning_rate", 5e-5),
    "general.max_sequence_length": ("cutoff_len", 2048),
    "eval.logging_steps": ("logging_steps", 500),
    "adapter.lora_dropout": ("lora_dropout", 0.0),
}

# keys that only tune LLaMA-Factory's own machinery; ignored on import (listed in one warning)
IGNORED_QUIET = {"do_train", "do_eval", "do_predict"}

#: LLaMA-Factory options that change the training itself and that finetui does not have: a true value is
#: dropped with a :class:`TrainingChange` warning (key → what it is)
TRAINING_CHANGES: dict[str, str] = {
    "use_galore": "GaLore (gradient low-rank projection)", "use_apollo": "the APOLLO optimizer",
    "use_badam": "BAdam (block-coordinate Adam)", "use_adam_mini": "the Adam-mini optimizer",
    "use_muon": "the Muon optimizer", "pissa_init": "PiSSA LoRA initialisation", "pissa_convert": "PiSSA conversion",
    "use_dora": "DoRA (weight-decomposed LoRA)", "use_rslora": "rank-stabilised LoRA scaling",
    "neftune_noise_alpha": "NEFTune embedding noise", "use_llama_pro": "LLaMA Pro block expansion",
    "shift_attn": "LongLoRA shifted sparse attention", "train_on_prompt": "the loss on prompt tokens",
    "mask_history": "the loss on the last turn only", "mixture_of_depths": "mixture of depths",
    "rope_scaling": "RoPE scaling of the context", "additional_target": "training extra modules beside LoRA",
    "freeze_extra_modules": "training extra modules beside the frozen layers", "use_kt": "KTransformers",
    "loraplus_lr_embedding": "a LoRA+ learning rate for embeddings", "ld_alpha": "LD-DPO length weighting",
    "use_ref_model": "a separate reference model", "oft_rank": "OFT", "oft_block_size": "OFT",
}
#: finetuning types finetui does not have, read as LoRA with a TrainingChange warning
OTHER_METHODS = {"oft": "OFT (orthogonal fine-tuning)"}

#: fields whose LLaMA-Factory key the importer reads itself (a condition, a conversion, a default of its own);
#: every other field LLaMA-Factory names one to one (``Field.names``) is read and written under that name
FIELDS_BY_HAND = {
    "model.name_or_path", "model.trust_remote_code", "data.validation_path", "data.packing", "data.group_by_length",
    "general.epochs", "general.max_steps", "runtime.quantization_bit", "runtime.liger_kernel", "runtime.lr_scheduler",
    "runtime.full_determinism", "preference.preference_loss", "preference.preference_beta",
    "preference.preference_ftx", "preference.dpo_label_smoothing", "preference.simpo_gamma", "adapter.lora_rank",
    "adapter.lora_alpha", "adapter.lora_dropout", "adapter.loraplus_lr_ratio", "adapter.freeze_trainable_layers",
    "eval.evaluation_strategy", "eval.save_best_checkpoint",
}
#: the keys the importer reads by hand (with those of the fields LLaMA-Factory names: :func:`known_keys`)
KEYS_BY_HAND = {
    "quantization_method", "flash_attn", "stage", "finetuning_type", "lora_target", "deepspeed", "dataset",
    "dataset_dir", "template", "output_dir", "overwrite_output_dir", "report_to", "run_name", "lr_scheduler_kwargs",
    "bf16", "fp16", "pure_bf16", "optim", "disable_gradient_checkpointing", "resume_from_checkpoint",
    "evaluation_strategy", "metric_for_best_model",
} | IGNORED_QUIET


def known_keys() -> set[str]:
    """The keys finetui reads: those of the fields LLaMA-Factory names (derived when asked: a field declared later
    counts), and the ones the importer reads by hand."""
    return set(names_in(TARGET)) | KEYS_BY_HAND


def __getattr__(name: str) -> Any:
    if name == "KNOWN":  # (the same, as a value)
        return known_keys()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: the export's sections (comments in the YAML) by field group, for the fields written one to one
SECTION_OF_GROUP = {"model": "model", "data": "dataset", "trainer": "method", "adapter": "method",
                    "preference": "method", "general": "train", "runtime": "train", "eval": "eval",
                    "tracking": "output", "launch": "output"}


# --------------------------------------------------------------------------------------------
# DeepSpeed config
# --------------------------------------------------------------------------------------------


FSDP_FILE = "fsdp_config.yaml"


def accelerate_fsdp_config(res: dict[str, Any]) -> dict[str, Any]:
    """The job's FSDP2 settings as an accelerate config file (``accelerate launch --config_file``)."""
    prec = res["runtime.mixed_precision"]
    return {"compute_environment": "LOCAL_MACHINE", "distributed_type": "FSDP",
            "mixed_precision": prec if prec in ("bf16", "fp16") else "no",
            "num_machines": int(res["launch.nodes"]), "num_processes": total_ranks(res),
            "fsdp_config": {"fsdp_version": 2, "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
                            "fsdp_reshard_after_forward": res["trainer.fsdp_sharding"] != "shard_grad_op",
                            "fsdp_offload_params": bool(res["trainer.fsdp_cpu_offload"]),
                            "fsdp_state_dict_type": "SHARDED_STATE_DICT" if res["trainer.fsdp_state_dict"] == "sharded"
                            else "FULL_STATE_DICT",
                            "fsdp_activation_checkpointing": bool(res["runtime.gradient_checkpointing"]),
                            "fsdp_cpu_ram_efficient_loading": True}}


def fsdp_from(opts: dict[str, Any], job: JobConfig, where: str, warnings: list[str]) -> None:
    """FSDP settings (LLaMA-Factory v1's dist_config, or accelerate's ``fsdp_*`` keys) onto the job."""
    o = {(k[5:] if k.startswith("fsdp_") else k): v for k, v in opts.items()}
    set_value(job, "trainer.distributed_backend", "fsdp")
    if int(o.get("version", 2) or 2) == 1:
        warnings.append(f"{where}: FSDP1 is imported as FSDP2 (the same sharding; transformers deprecates FSDP1)")
    raf = o.get("reshard_after_forward", o.get("sharding_strategy"))
    if raf is not None:
        grad_op = raf is False or str(raf).lower() in ("false", "shard_grad_op", "2")
        set_value(job, "trainer.fsdp_sharding", "shard_grad_op" if grad_op else "full_shard")
    off = o.get("offload_params", o.get("cpu_offload"))
    if off is not None:
        set_value(job, "trainer.fsdp_cpu_offload", str(off).lower() in ("true", "1"))
    sd = str(o.get("state_dict_type") or "").upper()
    if sd:
        set_value(job, "trainer.fsdp_state_dict", "sharded" if sd.startswith("SHARDED") else "full")
    if o.get("dcp_path"):
        warnings.append(f"{where}.dcp_path = {o['dcp_path']}: a DCP checkpoint to start from is not read; the "
                        f"model loads from model.name_or_path")


def deepspeed_file_name(stage: int, offload: bool) -> str:
    return f"ds_z{stage}{'_offload' if offload else ''}_config.json"


# --------------------------------------------------------------------------------------------
# dataset_info.json entries
# --------------------------------------------------------------------------------------------


def dataset_entry(path: str, fmt_: str, stage: str | None = None) -> dict[str, Any]:
    e: dict[str, Any] = {"file_name": path}
    if fmt_ in ("sharegpt", "sharegpt_image") and stage in ("dpo", "reward"):  # pairs: `ranking: true` sharegpt
        e.update(ranking=True, formatting="sharegpt",
                 columns={"messages": "conversations", "chosen": "chosen", "rejected": "rejected",
                          **({"images": "images"} if fmt_ == "sharegpt_image" else {})})
        return e
    if fmt_ == "corpus":
        e["columns"] = {"prompt": "text"}
    elif fmt_ == "sharegpt":
        e.update(formatting="sharegpt", columns={"messages": "conversations"})
    elif fmt_ == "sharegpt_image":
        e.update(formatting="sharegpt", columns={"messages": "conversations", "images": "images"})
    elif fmt_ == "preference":
        e.update(ranking=True, formatting="sharegpt",
                 columns={"messages": "conversations", "chosen": "chosen", "rejected": "rejected"})
    elif fmt_ == "kto":
        e.update(formatting="sharegpt", columns={"messages": "messages", "kto_tag": "label"},
                 tags={"role_tag": "role", "content_tag": "content", "user_tag": "user",
                       "assistant_tag": "assistant"})
    return e


def format_of_entry(e: dict[str, Any], stage: str) -> str:
    cols = e.get("columns") or {}
    if e.get("ranking"):  # (with images: LLaMA-Factory's multimodal pairs, e.g. RLHF-V)
        return "sharegpt_image" if "images" in cols else "preference"
    if "kto_tag" in cols:
        return "kto"
    if e.get("formatting") == "sharegpt":
        return "sharegpt_image" if "images" in cols else "sharegpt"
    if stage == "pretrain" or (cols and set(cols) == {"prompt"}):
        return "corpus"
    return "alpaca"


def default_format(stage: str) -> str:
    return {"pretrain": "corpus", "dpo": "preference", "reward": "preference", "kto": "kto"}.get(stage, "alpaca")


# --------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------


def export(job: JobConfig, path: Path | None = None) -> tuple[str, dict[str, str], list[str]]:
    """(YAML text, side files {file name: text} written beside the YAML, warnings)."""
    validate_for(job, job.profile)
    res = job.resolved()
    method = res["trainer.training_type"]
    if method not in ("full", "lora", "qlora", "freeze"):
        raise fail("trainer.training_type", f"{method} cannot be expressed in {TARGET}",
                   "full, lora, qlora, freeze")
    warnings: list[str] = []
    used: set[str] = set()
    side: dict[str, str] = {}
    stage = res["trainer.stage"]

    def take(*names: str) -> None:
        used.update(names)

    model: dict[str, Any] = {"model_name_or_path": res["model.name_or_path"]}
    take("model.name_or_path")
    if str(res["model.name_or_path"]).startswith("finetui:"):
        warnings.append(f"model.name_or_path = {fmt(res['model.name_or_path'])}: the built-in demo model is not "
                        f"known to {TARGET}; written as is")
    if res["model.trust_remote_code"]:
        model["trust_remote_code"] = True
    take("model.trust_remote_code")
    lora = method in ("lora", "qlora")
    q = res["runtime.quantization_bit"]
    if lora and q != "none":
        model["quantization_bit"] = q
        model["quantization_method"] = "bnb"
    take("runtime.quantization_bit")
    model["flash_attn"] = ATTN_TO_LF[res["runtime.attention_implementation"]]
    take("runtime.attention_implementation")
    if res["runtime.liger_kernel"]:
        model["enable_liger_kernel"] = True
    take("runtime.liger_kernel")

    meth: dict[str, Any] = {"stage": STAGE_TO_LF[stage], "do_train": True,
                            "finetuning_type": "lora" if lora else method}
    take("trainer.stage", "trainer.training_type")
    if lora:
        meth["lora_rank"] = res["adapter.lora_rank"]
        meth["lora_alpha"] = res["adapter.lora_alpha"]
        meth["lora_dropout"] = res["adapter.lora_dropout"]
        tm = res["adapter.target_modules"]
        if tm == ["all-linear"]:
            meth["lora_target"] = "all"
        elif not tm:
            meth["lora_target"] = "q_proj,v_proj"
            warnings.append("adapter.target_modules = []: the architecture default is written as q_proj,v_proj "
                            "(the llama/granite/qwen default)")
        else:
            meth["lora_target"] = ",".join(tm)
        if res["adapter.loraplus_lr_ratio"] > 0:
            meth["loraplus_lr_ratio"] = res["adapter.loraplus_lr_ratio"]
        take("adapter.lora_rank", "adapter.lora_alpha", "adapter.lora_dropout", "adapter.target_modules",
             "adapter.loraplus_lr_ratio")
    if method == "freeze":
        meth["freeze_trainable_layers"] = res["adapter.freeze_trainable_layers"]
        take("adapter.freeze_trainable_layers")
    if stage in ("dpo", "kto"):
        meth["pref_beta"] = res["preference.preference_beta"]
        take("preference.preference_beta")
    if stage == "dpo":
        loss = res["preference.preference_loss"]
        meth["pref_loss"] = loss
        meth["pref_ftx"] = res["preference.preference_ftx"]
        take("preference.preference_loss", "preference.preference_ftx")
        if loss == "sigmoid":
            meth["dpo_label_smoothing"] = res["preference.dpo_label_smoothing"]
            take("preference.dpo_label_smoothing")
        if loss == "simpo":
            meth["simpo_gamma"] = res["preference.simpo_gamma"]
            take("preference.simpo_gamma")
    take("trainer.distributed_backend")
    if res["trainer.distributed_backend"] == "deepspeed":
        zs = int(res["trainer.zero_stage"])
        off_o = bool(res["trainer.offload_optimizer"])
        off_p = bool(res["trainer.offload_params"]) and zs == 3
        name = deepspeed_file_name(zs, off_o or off_p)
        side[name] = json.dumps(deepspeed_config(zs, off_o, off_p), indent=2) + "\n"
        meth["deepspeed"] = str(path.parent / name) if path is not None else name
        take("trainer.zero_stage", "trainer.offload_optimizer", "trainer.offload_params")
    elif res["trainer.distributed_backend"] == "fsdp":
        side[FSDP_FILE] = yaml.safe_dump(accelerate_fsdp_config(res), sort_keys=False)
        warnings.append(f"trainer.distributed_backend = fsdp: LLaMA-Factory takes FSDP from accelerate, not from the "
                        f"YAML: run it with `accelerate launch --config_file {FSDP_FILE} src/train.py <this yaml>`")
        take("trainer.fsdp_sharding", "trainer.fsdp_cpu_offload", "trainer.fsdp_state_dict")

    data: dict[str, Any] = {}
    info: dict[str, Any] = {}
    fmt_ = res["data.format"]
    take("data.format", "data.train_path", "data.validation_path")
    for key, fname, entry in (("dataset", "data.train_path", "finetui_train"),
                              ("eval_dataset", "data.validation_path", "finetui_eval")):
        parts = data_paths(res[fname])
        if not parts:
            continue
        if any_s3(res[fname]):
            warnings.append(f"{fname} = {fmt(res[fname])}: {TARGET} reads local files only; download it and fix "
                            f"dataset_info.json")
        if fmt_ == "bedrock_converse":
            warnings.append(f"data.format = \"bedrock_converse\": {TARGET} has no reader for it; the dataset "
                            f"entry is written as alpaca and will not load")
        if fmt_ == "sharegpt_image":
            warnings.append("data.format = \"sharegpt_image\": unzip the archive; dataset_info.json names its "
                            "train.json")
        entries = [entry] if len(parts) == 1 else [f"{entry}_{j}" for j in range(1, len(parts) + 1)]
        for e, (p, own) in zip(entries, map(split_format, parts)):
            info[e] = dataset_entry(real_path(p), own or fmt_, res["trainer.stage"])
        data[key] = ",".join(entries)
    if info:
        side["dataset_info.json"] = json.dumps(info, indent=2, ensure_ascii=False) + "\n"
        data["dataset_dir"] = str(path.parent) if path is not None else "."
    data["cutoff_len"] = res["general.max_sequence_length"]
    take("general.max_sequence_length")
    if res["data.max_samples"] is not None:
        data["max_samples"] = res["data.max_samples"]
        if len(data_paths(res["data.train_path"])) > 1:
            warnings.append(f"data.max_samples = {res['data.max_samples']}: finetui caps the rows of all training "
                            f"files together, {TARGET} each dataset's; lower it to the cap one file should have")
    take("data.max_samples")
    if res["data.val_size"]:
        data["val_size"] = res["data.val_size"]
    take("data.val_size")
    if res["trainer.stage"] in ("pretrain", "sft"):  # explicit: the two tools' defaults differ
        data["packing"] = bool(res["data.packing"])
    take("data.packing")
    for s3 in ("data.s3_endpoint_url", "data.s3_region", "data.s3_access_key_env", "data.s3_secret_key_env"):
        take(s3)  # covered by the s3:// warning above

    out: dict[str, Any] = {}
    run_name = res["launch.run_name"] or "finetui"
    out["output_dir"] = f"{str(res['launch.runs_dir']).rstrip('/')}/{run_name}"
    take("launch.runs_dir", "launch.run_name")
    out["logging_steps"] = max(1, int(res["eval.logging_steps"]))
    take("eval.logging_steps")
    out["save_strategy"] = res["eval.checkpoint_strategy"]
    take("eval.checkpoint_strategy")
    if res["eval.checkpoint_strategy"] == "steps":
        out["save_steps"] = res["eval.checkpoint_steps"]
    take("eval.checkpoint_steps")
    if res["eval.checkpoint_limit"] is not None:
        out["save_total_limit"] = res["eval.checkpoint_limit"]
    take("eval.checkpoint_limit")
    ck = res["general.resume_from_checkpoint"]
    out["overwrite_output_dir"] = ck != "last"
    report = []
    if res["tracking.tensorboard"]:
        report.append("tensorboard")
    if res["tracking.mlflow_tracking_uri"]:
        report.append("mlflow")
        warnings.append(f"tracking.mlflow_tracking_uri = {fmt(res['tracking.mlflow_tracking_uri'])}: {TARGET} "
                        f"reads it from the environment; set MLFLOW_TRACKING_URI (and MLFLOW_EXPERIMENT_NAME="
                        f"{res['tracking.mlflow_experiment']}) before training"
                        + (" — without the user name and password, which go in MLFLOW_TRACKING_USERNAME / "
                           "MLFLOW_TRACKING_PASSWORD" if has_credentials(res["tracking.mlflow_tracking_uri"]) else ""))
    if res["tracking.wandb"]:
        report.append("wandb")
        if res["tracking.wandb_run_name"]:
            out["run_name"] = res["tracking.wandb_run_name"]
        env = " ".join(f"{v}={res[k]}" for k, v in (("tracking.wandb_project", "WANDB_PROJECT"),
                                                    ("tracking.wandb_entity", "WANDB_ENTITY")) if res[k])
        warnings.append(f"tracking.wandb: {TARGET} reads the W&B project and entity from the environment; set "
                        f"{env} (and WANDB_API_KEY) before training")
    take("tracking.tensorboard", "tracking.mlflow_tracking_uri", "tracking.mlflow_experiment", "tracking.wandb",
         "tracking.wandb_project", "tracking.wandb_entity", "tracking.wandb_run_name", "tracking.wandb_mode")
    out["report_to"] = ",".join(report) if report else "none"

    tr: dict[str, Any] = {
        "per_device_train_batch_size": res["general.batch_size"],
        "gradient_accumulation_steps": res["runtime.gradient_accumulation_steps"],
        "learning_rate": res["general.learning_rate"],
    }
    take("general.batch_size", "runtime.gradient_accumulation_steps", "general.learning_rate")
    if res["general.epochs"] is not None:
        tr["num_train_epochs"] = float(res["general.epochs"])
    if res["general.max_steps"] is not None:
        tr["max_steps"] = res["general.max_steps"]
    take("general.epochs", "general.max_steps")
    sched = res["runtime.lr_scheduler"]
    warm_steps, warm_ratio = res["runtime.lr_warmup_steps"], res["runtime.lr_warmup_ratio"]
    if sched == "cosine" and res["runtime.min_lr"] > 0:
        tr["lr_scheduler_type"] = "cosine_with_min_lr"
        tr["lr_scheduler_kwargs"] = {"min_lr": res["runtime.min_lr"]}
    elif sched == "constant" and (warm_steps or warm_ratio):
        tr["lr_scheduler_type"] = "constant_with_warmup"
    else:
        tr["lr_scheduler_type"] = sched
    take("runtime.lr_scheduler", "runtime.min_lr")
    if warm_ratio:
        tr["warmup_ratio"] = warm_ratio
    else:
        tr["warmup_steps"] = warm_steps
    take("runtime.lr_warmup_steps", "runtime.lr_warmup_ratio")
    mp = res["runtime.mixed_precision"]
    if mp in ("bf16", "auto"):
        tr["bf16"] = True
        if mp == "auto":
            warnings.append("runtime.mixed_precision = \"auto\": written as bf16 (LLaMA-Factory has no automatic "
                            "choice); set fp16 or none for GPUs without bf16")
    elif mp == "fp16":
        tr["fp16"] = True
    take("runtime.mixed_precision")
    tr["optim"] = "adamw_torch" if res["runtime.optimizer"] == "adamw" else "sgd"
    take("runtime.optimizer")
    if res["runtime.optimizer"] == "adamw":
        tr["adam_beta1"] = res["runtime.adam_beta1"]
        tr["adam_beta2"] = res["runtime.adam_beta2"]
        tr["adam_epsilon"] = res["runtime.adam_epsilon"]
    take("runtime.adam_beta1", "runtime.adam_beta2", "runtime.adam_epsilon")
    tr["weight_decay"] = res["runtime.weight_decay"]
    tr["max_grad_norm"] = res["runtime.max_grad_norm"]
    take("runtime.weight_decay", "runtime.max_grad_norm")
    if not res["runtime.gradient_checkpointing"]:
        tr["disable_gradient_checkpointing"] = True
    take("runtime.gradient_checkpointing")
    tr["seed"] = res["runtime.seed"]
    tr["ddp_timeout"] = res["runtime.ddp_timeout"]
    take("runtime.seed", "runtime.ddp_timeout")
    if res["runtime.full_determinism"]:
        tr["full_determinism"] = True
    take("runtime.full_determinism")
    if res["data.group_by_length"]:
        tr["group_by_length"] = True
    take("data.group_by_length")
    tr["resume_from_checkpoint"] = ck if ck not in ("no", "last") else None
    take("general.resume_from_checkpoint")

    ev: dict[str, Any] = {"eval_strategy": res["eval.evaluation_strategy"]}
    take("eval.evaluation_strategy")
    if res["eval.evaluation_strategy"] == "steps":
        ev["eval_steps"] = res["eval.eval_steps"]
    take("eval.eval_steps")
    patience = res["eval.early_stopping_patience"]
    if res["eval.save_best_checkpoint"] or patience > 0:
        ev["load_best_model_at_end"] = True
        ev["metric_for_best_model"] = "eval_loss"
        if not res["eval.save_best_checkpoint"]:
            warnings.append("eval.early_stopping_patience: LLaMA-Factory's early stopping needs "
                            "load_best_model_at_end, so the best checkpoint is also tracked")
    if patience > 0:
        ev["early_stopping_steps"] = patience
    take("eval.save_best_checkpoint", "eval.early_stopping_patience")

    sections = {"model": model, "method": meth, "dataset": data, "output": out, "train": tr, "eval": ev}
    for lf, name in names_in(TARGET).items():  # a field named one to one that nothing above wrote
        f = FIELD_BY_NAME[name]
        if name not in used and res[name] is not None and (name in job.values or f.is_visible(res)):
            sections[SECTION_OF_GROUP[f.group]][lf] = res[name]
            take(name)

    warnings.extend(leftovers(job, used, "native", TARGET))
    text = "".join(_section(t, sections[t]) for t in ("model", "method", "dataset", "output", "train", "eval")
                   if sections[t])
    return text, side, warnings


def _section(title: str, d: dict[str, Any]) -> str:
    return f"### {title}\n" + yaml.safe_dump(d, sort_keys=False, allow_unicode=True, width=1000) + "\n"


# --------------------------------------------------------------------------------------------
# Import
# --------------------------------------------------------------------------------------------


def looks_like(data: Any) -> bool:
    return isinstance(data, dict) and ("stage" in data or "finetuning_type" in data
                                       or ("model_name_or_path" in data and "dataset" in data))


def _find_file(rel: str, base: Path) -> Path | None:
    p = Path(rel).expanduser()
    if p.is_absolute():
        return p if p.exists() else None
    for d in [base, *base.parents][:4]:
        if (d / p).exists():
            return d / p
    if (Path.cwd() / p).exists():
        return Path.cwd() / p
    for d in [base, *base.parents][:4]:
        if (d / p.name).exists():
            return d / p.name
    return None


def _zero_from(raw_path: str, base: Path, job: JobConfig, warnings: list[str]) -> None:
    found = _find_file(raw_path, base)
    stage = None
    off_o = off_p = False
    if found is not None:
        try:
            cfg = json.loads(userfiles.read_text(found, error=fail))
            z = cfg.get("zero_optimization") or {}
            stage = int(z.get("stage", 0))
            off_o = str((z.get("offload_optimizer") or {}).get("device", "none")) in ("cpu", "nvme")
            off_p = str((z.get("offload_param") or {}).get("device", "none")) in ("cpu", "nvme")
        except (ValueError, OSError, AttributeError, TypeError, RecursionError) as e:
            raise fail("deepspeed", f"{found}: not a DeepSpeed JSON config ({e.__class__.__name__})") from None
    else:
        m = re.search(r"z(?:ero)?[_-]?(\d)", Path(raw_path).name)
        if not m:
            raise fail("deepspeed", f"{raw_path}: file not found and its name does not tell the ZeRO stage")
        stage = int(m.group(1))
        off_o = off_p = "offload" in Path(raw_path).name
        warnings.append(f"deepspeed = {raw_path}: file not found; ZeRO stage {stage} read from its name")
    if stage == 0:
        warnings.append(f"deepspeed = {raw_path}: ZeRO stage 0 is plain data parallelism; imported as ddp")
        set_value(job, "trainer.distributed_backend", "ddp")
        return
    set_value(job, "trainer.distributed_backend", "deepspeed")
    set_value(job, "trainer.zero_stage", stage)
    if off_o:
        set_value(job, "trainer.offload_optimizer", True)
    if off_p and stage == 3:
        set_value(job, "trainer.offload_params", True)


def _datasets(raw: dict[str, Any], base: Path, stage: str, job: JobConfig, warnings: list[str]) -> None:
    ddir = str(raw.get("dataset_dir", "data"))
    info_dir = None
    p = Path(ddir).expanduser()
    cands = [p] if p.is_absolute() else [d / p for d in [base, *base.parents][:4]] + [Path.cwd() / p]
    for c in cands:
        if (c / "dataset_info.json").is_file():
            info_dir = c
            break
    info: dict[str, Any] = {}
    if info_dir is not None:
        info_file = info_dir / "dataset_info.json"
        try:
            info = json.loads(userfiles.read_text(info_file, error=fail))
        except InteropError as e:
            warnings.append(f"{e.lines()[0]}; dataset names kept as they are")
        except (RecursionError, ValueError) as e:  # bad JSON, nested too deeply, an integer too long
            warnings.append(f"{info_file}: {userfiles.parse_reason(e) or 'not valid JSON'}; dataset names kept as "
                            "they are")
        if not isinstance(info, dict):
            warnings.append(f"{info_file}: expected a table of datasets, found {kind_of(info)}; dataset names kept "
                            "as they are")
            info = {}
    fmt_set = False
    for key, field in (("dataset", "data.train_path"), ("eval_dataset", "data.validation_path")):
        names = raw.get(key)
        if not names:
            continue
        names = [s for s in (str(n).strip() for n in (names if isinstance(names, list) else str(names).split(",")))
                 if s]
        if len(names) > MAX_DATASETS:
            raise fail(key, f"{len(names)} datasets; finetui reads at most {MAX_DATASETS} sources in one job")
        paths: list[str] = []
        first_fmt = None
        for name in names:
            path, fmt_ = _dataset_path(name, key, field, info, info_dir, ddir, stage, warnings)
            if first_fmt is None:
                first_fmt = fmt_
            elif fmt_ is not None and fmt_ != first_fmt:
                path += f"#{fmt_}"  # a format of its own (data.format is the first dataset's)
            paths.append(path)
        set_value(job, field, join_paths(paths))
        if not fmt_set and first_fmt is not None:
            set_value(job, "data.format", first_fmt)
            fmt_set = True
        if key == "dataset" and len(paths) > 1 and raw.get("max_samples"):
            _max_samples_of_several(int(raw["max_samples"]), paths, job, warnings)
    if not fmt_set:
        set_value(job, "data.format", default_format(stage))


def _dataset_path(name: str, key: str, field: str, info: dict[str, Any], info_dir: Path | None, ddir: str,
                  stage: str, warnings: list[str]) -> tuple[str, str | None]:
    """One LLaMA-Factory dataset name → (finetui data path, its format or None when unknown)."""
    entry = info.get(name)
    if entry is not None and not isinstance(entry, dict):
        raise fail(f"{info_dir / 'dataset_info.json' if info_dir else 'dataset_info.json'}: {name}",
                   f"expected a table describing the dataset, found {kind_of(entry)}")
    if entry is None:
        where = f"{info_dir / 'dataset_info.json'}" if info_dir else f"{ddir}/dataset_info.json (not found)"
        warnings.append(f"{key} = {name}: not described in {where}; the name is kept in {field} — point it at "
                        f"the data file")
        return name, None
    fmt_ = format_of_entry(entry, stage)
    if fmt_ == "sharegpt_image":
        warnings.append(f"{key} = {name}: sharegpt_image data is read from a zip with train.json and its "
                        f"images folder; zip them and set {field}")
    if "file_name" not in entry:
        hub = entry.get("hf_hub_url") or entry.get("ms_hub_url") or entry.get("om_hub_url") or "?"
        warnings.append(f"{key} = {name}: a hub dataset ({hub}); finetui reads local files and S3 — download "
                        f"it and set {field}")
        return name, fmt_
    if not isinstance(entry["file_name"], str) or not entry["file_name"]:
        raise fail(f"{info_dir / 'dataset_info.json' if info_dir else 'dataset_info.json'}: {name}.file_name",
                   f"expected a file name, found {kind_of(entry['file_name'])}")
    fp = Path(entry["file_name"])
    full = fp if fp.is_absolute() else info_dir / fp  # type: ignore[operator]
    if not userfiles.exists(full):
        warnings.append(f"{key} = {name}: {full} does not exist")
    return sample_or_path(full), fmt_


def _kto_batch(job: JobConfig, warnings: list[str]) -> None:
    """LLaMA-Factory's KTO trains one row per device (its KL term comes from mismatched rows it builds); TRL's
    needs two, the KL term coming from the batch's other rows: 2 rows, half the accumulation, the same
    effective batch where it divides."""
    r = job.resolved()
    b, ga = int(r["general.batch_size"]), int(r["runtime.gradient_accumulation_steps"])
    if b >= 2:
        return
    ga2 = ga // 2 if ga % 2 == 0 else ga
    set_value(job, "general.batch_size", 2)
    set_value(job, "runtime.gradient_accumulation_steps", ga2)
    same = "the same effective batch" if ga2 * 2 == b * ga else f"an effective batch of {2 * ga2} (was {b * ga})"
    warnings.append(f"per_device_train_batch_size = {b}: finetui's KTO trainer (TRL) needs 2 rows per device batch; "
                    f"imported as batch size 2 with gradient accumulation {ga2} ({same})")


def _max_samples_of_several(cap: int, paths: list[str], job: JobConfig, warnings: list[str]) -> None:
    """LLaMA-Factory's max_samples caps each dataset; finetui's caps the total of the files in order.  The
    total that takes the same rows: the sum of each file's rows up to the cap, exact when no file but the
    last has more rows than the cap."""
    counts = [count_examples(p) for p in paths]
    if any(c is None for c in counts):
        warnings.append(f"max_samples = {cap}: LLaMA-Factory takes up to {cap} rows of each dataset, finetui up "
                        f"to {cap} in all (the files' rows could not be counted here)")
        return
    total = sum(min(c, cap) for c in counts)  # type: ignore[type-var]
    set_value(job, "data.max_samples", total)
    over = [Path(p).name for p, c in zip(paths[:-1], counts) if c > cap]  # type: ignore[operator]
    if over:
        warnings.append(f"max_samples = {cap}: LLaMA-Factory takes up to {cap} rows of each dataset; finetui "
                        f"caps the total at {total} (the same number), but {', '.join(over)} has more than {cap} "
                        f"rows, so more of it and less of the later files are used")


def import_data(raw: dict[str, Any], base: Path, source: str = "") -> tuple[JobConfig, list[str]]:
    job = JobConfig(profile="native")
    warnings: list[str] = []
    job.name = f"Imported from LLaMA-Factory {Path(source).name}" if source else "Imported from LLaMA-Factory"
    probs: list[Problem] = []

    stage_lf = str(raw.get("stage", "sft"))
    if stage_lf not in STAGE_FROM_LF:
        raise fail("stage", f"LLaMA-Factory stage {stage_lf!r} has no finetui trainer", ", ".join(STAGE_FROM_LF))
    stage = STAGE_FROM_LF[stage_lf]
    set_value(job, "trainer.stage", stage)
    ft = str(raw.get("finetuning_type", "lora"))
    q = raw.get("quantization_bit")
    if ft in OTHER_METHODS:
        warnings.append(TrainingChange("finetuning_type", ft, OTHER_METHODS[ft], "imported as LoRA"))
        ft = "lora"
    if ft == "lora":
        method = "qlora" if q not in (None, "none") else "lora"
    elif ft in ("full", "freeze"):
        method = ft
    else:
        raise fail("finetuning_type", f"{ft!r} has no finetui tuning method", "lora, full, freeze")
    set_value(job, "trainer.training_type", method)
    if q not in (None, "none"):
        set_value(job, "runtime.quantization_bit", q)
        qm = raw.get("quantization_method", "bnb")
        if qm != "bnb":
            warnings.append(f"quantization_method = {qm}: finetui quantizes with bitsandbytes (bnb)")

    if "model_name_or_path" in raw:
        set_value(job, "model.name_or_path", str(raw["model_name_or_path"]))
    trust = raw.get("trust_remote_code")
    if trust is True or str(trust).strip().lower() in ("true", "1", "yes"):
        set_value(job, "model.trust_remote_code", True)
        warnings.append(f"trust_remote_code = true: imported as model.trust_remote_code = true — the Python code that "
                        f"comes with {fmt(raw.get('model_name_or_path') or 'the model')} runs on the training "
                        f"machine when it is loaded; keep it only for a model repository you trust")
    if "flash_attn" in raw:
        fa = str(raw["flash_attn"])
        set_value(job, "runtime.attention_implementation", ATTN_FROM_LF.get(fa, fa))
        if fa in ("auto", "fa3"):
            warnings.append(f"flash_attn = {fa}: imported as {ATTN_FROM_LF[fa]}")
    if raw.get("enable_liger_kernel"):
        set_value(job, "runtime.liger_kernel", True)

    if method in ("lora", "qlora"):
        rank = raw.get("lora_rank", 8)
        set_value(job, "adapter.lora_rank", rank)
        set_value(job, "adapter.lora_alpha", raw.get("lora_alpha") or int(rank) * 2)
        set_value(job, "adapter.lora_dropout", raw.get("lora_dropout", 0.0))
        tgt = raw.get("lora_target", "all")
        tl = [t.strip() for t in (tgt if isinstance(tgt, list) else str(tgt).split(",")) if t.strip()]
        set_value(job, "adapter.target_modules", ["all-linear"] if tl == ["all"] else tl)
        if raw.get("loraplus_lr_ratio") is not None:
            set_value(job, "adapter.loraplus_lr_ratio", raw["loraplus_lr_ratio"])
    if method == "freeze":
        set_value(job, "adapter.freeze_trainable_layers", raw.get("freeze_trainable_layers", 2))
    for lf, name in (("pref_beta", "preference.preference_beta"), ("pref_loss", "preference.preference_loss"),
                     ("pref_ftx", "preference.preference_ftx"),
                     ("dpo_label_smoothing", "preference.dpo_label_smoothing"),
                     ("simpo_gamma", "preference.simpo_gamma")):
        if lf in raw and raw[lf] is not None:
            if lf == "simpo_gamma" and not (stage == "dpo" and raw.get("pref_loss") == "simpo"):
                continue  # only meaningful for simpo; finetui refuses it otherwise
            if lf == "dpo_label_smoothing" and not raw[lf]:
                continue
            if stage not in ("dpo", "kto") or (stage == "kto" and lf != "pref_beta"):
                warnings.append(f"{lf} = {raw[lf]}: only used by the dpo trainer; ignored")
                continue
            set_value(job, name, raw[lf])
    if raw.get("deepspeed"):
        _zero_from(str(raw["deepspeed"]), base, job, warnings)

    if raw.get("template"):
        warnings.append(f"template = {raw['template']}: finetui applies the tokenizer's own chat template")
    simple = {lf: name for lf, name in names_in(TARGET).items() if name not in FIELDS_BY_HAND}
    for lf, name in simple.items():
        if lf in raw and raw[lf] is not None:
            set_value(job, name, raw[lf])
    _datasets(raw, base, stage, job, warnings)  # after max_samples: several datasets change what it means
    if stage == "kto":
        _kto_batch(job, warnings)
    if raw.get("packing") is not None:
        set_value(job, "data.packing", bool(raw["packing"]))
    elif job.resolved()["trainer.stage"] in ("pretrain", "sft"):
        # LLaMA-Factory packs only in pre-training unless told (finetui's native default packs always)
        set_value(job, "data.packing", job.resolved()["trainer.stage"] == "pretrain")
    if raw.get("group_by_length"):
        set_value(job, "data.group_by_length", True)
    if raw.get("full_determinism"):
        set_value(job, "runtime.full_determinism", True)
    if raw.get("disable_gradient_checkpointing"):
        set_value(job, "runtime.gradient_checkpointing", False)
    es = raw.get("eval_strategy", raw.get("evaluation_strategy"))
    if es is not None:
        set_value(job, "eval.evaluation_strategy", es)
    if raw.get("load_best_model_at_end"):
        set_value(job, "eval.save_best_checkpoint", True)
        m = raw.get("metric_for_best_model", "eval_loss")
        if m not in ("eval_loss", "loss"):
            warnings.append(f"metric_for_best_model = {m}: finetui tracks the lowest evaluation loss")
    # epochs / steps
    if "num_train_epochs" in raw:
        ep = float(raw["num_train_epochs"])
        if not math.isfinite(ep) or ep > 1e6:
            raise fail("num_train_epochs", f"{raw['num_train_epochs']} is not a number of epochs")
        if not ep.is_integer():
            warnings.append(f"num_train_epochs = {raw['num_train_epochs']}: finetui counts whole epochs; "
                            f"using {math.ceil(ep)}")
        set_value(job, "general.epochs", int(math.ceil(ep)))
    if raw.get("max_steps") not in (None, -1) and int(raw["max_steps"]) > 0:
        set_value(job, "general.max_steps", raw["max_steps"])
        if "num_train_epochs" not in raw:
            job.values["general.epochs"] = None  # max_steps decides; LLaMA-Factory ignores its epochs default
    # schedule
    st = raw.get("lr_scheduler_type")
    if st is not None:
        st = str(st)
        kw = raw.get("lr_scheduler_kwargs") or {}
        if isinstance(kw, str):
            try:
                kw = json.loads(kw)
            except ValueError:
                kw = {}
        if st == "cosine_with_min_lr":
            set_value(job, "runtime.lr_scheduler", "cosine")
            if "min_lr" in kw:
                set_value(job, "runtime.min_lr", kw["min_lr"])
            elif "min_lr_rate" in kw:
                lr = float(raw.get("learning_rate", 5e-5))
                set_value(job, "runtime.min_lr", lr * float(kw["min_lr_rate"]))
        elif st == "constant_with_warmup":
            set_value(job, "runtime.lr_scheduler", "constant")
        elif st in ("linear", "cosine", "constant"):
            set_value(job, "runtime.lr_scheduler", st)
        else:
            warnings.append(f"lr_scheduler_type = {st}: finetui offers linear, cosine, constant; using cosine")
            set_value(job, "runtime.lr_scheduler", "cosine")
    if raw.get("warmup_steps") and raw.get("warmup_ratio"):
        warnings.append("warmup_steps and warmup_ratio are both set; finetui keeps warmup_steps")
        job.values.pop("runtime.lr_warmup_ratio", None)
    # precision
    if raw.get("bf16") or raw.get("pure_bf16"):
        set_value(job, "runtime.mixed_precision", "bf16")
        if raw.get("pure_bf16"):
            warnings.append("pure_bf16: imported as bf16 mixed precision")
    elif raw.get("fp16"):
        set_value(job, "runtime.mixed_precision", "fp16")
    else:
        set_value(job, "runtime.mixed_precision", "none")
    if "optim" in raw:
        o = str(raw["optim"])
        if o in OPTIM_FROM_LF:
            set_value(job, "runtime.optimizer", OPTIM_FROM_LF[o])
        else:
            warnings.append(TrainingChange("optim", o, f"{o} optimizer", "AdamW is used instead"))
            set_value(job, "runtime.optimizer", "adamw")
    # output / resume
    if raw.get("output_dir"):
        od = str(raw["output_dir"]).rstrip("/")
        parent, _, last = od.rpartition("/")
        set_value(job, "launch.runs_dir", parent or ".")
        set_value(job, "launch.run_name", last)
    rc = raw.get("resume_from_checkpoint")
    if rc not in (None, False, "", "false", "False"):
        set_value(job, "general.resume_from_checkpoint", "last" if rc is True or rc == "true" else str(rc))
    elif raw.get("overwrite_output_dir") is False:
        set_value(job, "general.resume_from_checkpoint", "last")
    # tracking
    rt = raw.get("report_to", "none")
    rts = [r.strip() for r in (rt if isinstance(rt, list) else str(rt).split(",")) if r.strip()]
    if rts in (["all"],):
        rts = ["tensorboard", "mlflow"]
    set_value(job, "tracking.tensorboard", "tensorboard" in rts)
    if "mlflow" in rts:
        set_value(job, "tracking.mlflow_tracking_uri", MLFLOW_DEFAULT_URI)
        warnings.append(f"report_to mlflow: the tracking URI comes from MLFLOW_TRACKING_URI there; imported as "
                        f"MLflow's default {MLFLOW_DEFAULT_URI} — set tracking.mlflow_tracking_uri")
    if "wandb" in rts:  # the project and entity come from WANDB_PROJECT / WANDB_ENTITY there
        set_value(job, "tracking.wandb", True)
        warnings.append("report_to wandb: the W&B project and entity come from WANDB_PROJECT / WANDB_ENTITY there; "
                        "imported with project finetui — set tracking.wandb_project and tracking.wandb_entity")
        if raw.get("run_name"):
            set_value(job, "tracking.wandb_run_name", str(raw["run_name"]))
    for other in rts:
        if other not in ("tensorboard", "mlflow", "wandb", "none"):
            warnings.append(f"report_to {other}: not supported by finetui (TensorBoard, MLflow and W&B are)")

    # LLaMA-Factory defaults for absent keys that differ from finetui's
    for name, (lf, default) in LF_DEFAULTS.items():
        if lf not in raw and name not in job.values:
            if name.startswith("adapter.") and method not in ("lora", "qlora"):
                continue
            set_value(job, name, default)
    if "eval_steps" not in raw and job.values.get("eval.evaluation_strategy") == "steps":
        pass  # unset eval_steps = logging_steps in both tools
    if "val_size" in raw and not raw.get("eval_strategy") and raw.get("val_size"):
        pass

    warnings[:0] = _training_changes(raw)  # first: they matter most
    known = known_keys()
    unknown = sorted(k for k in raw if k not in known and k not in TRAINING_CHANGES)
    if unknown:
        warnings.append("ignored (no finetui equivalent): " + ", ".join(unknown))
    if probs:
        raise InteropError(probs)
    return job, warnings


def _training_changes(raw: dict[str, Any]) -> list[str]:
    return [TrainingChange(k, raw[k], what) for k, what in TRAINING_CHANGES.items()
            if raw.get(k) not in (None, False, 0, "", "none", [])]


# --------------------------------------------------------------------------------------------
# Import of LLaMA-Factory's newer (v1) configuration format
# --------------------------------------------------------------------------------------------

#: keys only the v1 format has (``model:`` names the model there, ``model_name_or_path:`` in the classic one)
V1_MARKERS = {"train_dataset", "peft_config", "dist_config", "model_class", "micro_batch_size", "kernel_config",
              "quant_config", "optim_config", "lr_scheduler_config", "init_config", "batching_strategy"}
V1_KNOWN = V1_MARKERS | {
    "model", "trust_remote_code", "flash_attn", "eval_dataset", "output_dir", "global_batch_size", "cutoff_len",
    "learning_rate", "num_train_epochs", "max_steps", "max_grad_norm", "bf16", "enable_activation_checkpointing",
    "batching_workers", "seed", "full_determinism", "resume_from_checkpoint", "save_steps", "save_epochs",
    "save_total_limit", "logging_steps", "pref_loss", "pref_beta", "pref_ftx", "simpo_gamma", "dpo_label_smoothing",
    "dp_size", "cp_size", "cp_mode", "mp_replicate_size", "mp_shard_size", "dist_timeout", "save_ckpt_as_hf",
    "custom_chat_template",
}
#: inference / export settings of the v1 file: not part of training, ignored quietly
V1_QUIET = {"sample_backend", "max_new_tokens", "batching_workers", "dist_timeout", "save_ckpt_as_hf"}
#: v1 data converters → finetui formats (none: v1's own rows, messages with typed parts / chosen_messages)
V1_CONVERTERS = {"alpaca": "alpaca", "sharegpt": "sharegpt", "pair": "preference"}
V1_ATTN = {"sdpa": "sdpa", "eager": "eager", "flash_attention_2": "flash_attention_2", "fa2": "flash_attention_2",
           "auto": "sdpa"}
#: v1 defaults that differ from finetui's native ones (finetui name → (v1 key, v1 default))
V1_DEFAULTS: dict[str, tuple[str, Any]] = {
    "general.batch_size": ("micro_batch_size", 1), "general.max_sequence_length": ("cutoff_len", 2048),
    "general.learning_rate": ("learning_rate", 1e-4), "eval.logging_steps": ("logging_steps", 1),
}


def looks_like_v1(data: Any) -> bool:
    """The v1 format: ``model:`` names the model (a string) and one of the keys only v1 has is there."""
    return isinstance(data, dict) and isinstance(data.get("model"), str) and bool(set(data) & V1_MARKERS) \
        and "model_name_or_path" not in data


def _plugin(raw: dict[str, Any], key: str) -> dict[str, Any] | None:
    v = raw.get(key)
    if v is None:
        return None
    if isinstance(v, str):
        return {"name": v}
    if not isinstance(v, dict):
        raise fail(key, f"expected a mapping with name:, not {type(v).__name__}")
    return v


def _v1_dataset(spec_: str, key: str, field: str, base: Path, warnings: list[str]
                ) -> tuple[list[str], list[str | None], list[int | None]]:
    """A v1 ``train_dataset`` / ``eval_dataset`` → (finetui paths, their formats, their sizes).  It names a
    data-set YAML (entries with path, source, converter, size) or a data file."""
    found = _find_file(spec_, base)
    if found is None or found.suffix not in (".yaml", ".yml"):
        if found is None:
            warnings.append(f"{key} = {spec_}: not found here (a hub data set or a path on the training machine); "
                            f"kept in {field} — point it at the data file")
            return [spec_], [None], [None]
        return [sample_or_path(found)], [None], [None]
    try:
        infos = yaml.safe_load(found.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as e:
        raise fail(key, f"{found}: not a readable data-set YAML ({e.__class__.__name__})") from None
    if not isinstance(infos, dict) or not all(isinstance(v, dict) and "path" in v for v in infos.values()):
        raise fail(key, f"{found}: not a LLaMA-Factory data-set YAML (entries with path:)")
    paths, fmts, sizes = [], [], []
    for name, e in infos.items():
        conv = e.get("converter")
        fmt_ = V1_CONVERTERS.get(conv) if conv else None
        if conv and fmt_ is None:
            warnings.append(f"{key}: {name} uses the {conv} converter, which finetui does not have; its rows are read "
                            f"in data.format")
        if e.get("source", "hf_hub") != "local":
            warnings.append(f"{key}: {name} is a hub data set ({e['path']}); finetui reads local files and S3 — "
                            f"download it and set {field}")
            paths.append(str(e["path"]))
        else:
            f = _find_file(str(e["path"]), found.parent)
            if f is None:
                warnings.append(f"{key}: {name}: {e['path']} does not exist")
            paths.append(sample_or_path(f) if f is not None else str(e["path"]))
        fmts.append(fmt_)
        sizes.append(int(e["size"]) if e.get("size") else None)
        if e.get("weight"):
            warnings.append(f"{key}: {name} weight = {e['weight']}: LLaMA-Factory resamples it; finetui reads each "
                            f"row once")
    return paths, fmts, sizes


def _v1_rows_format(path: str) -> str:
    """v1's own rows (no converter): messages with typed parts → sharegpt; chosen_messages → preference."""
    rec: Any = None
    try:
        files = local_data_files(path) or []
        if files and files[0].suffix == ".jsonl":
            with files[0].open(encoding="utf-8") as fh:
                rec = json.loads(next((line for line in fh if line.strip()), "null"))
        elif files:
            data = json.loads(files[0].read_text(encoding="utf-8"))
            rec = data[0] if isinstance(data, list) and data else None
    except (OSError, ValueError):
        rec = None
    return "preference" if isinstance(rec, dict) and ("chosen_messages" in rec or "chosen" in rec) else "sharegpt"


def import_v1(raw: dict[str, Any], base: Path, source: str = "") -> tuple[JobConfig, list[str]]:
    """LLaMA-Factory's v1 configuration (``model:``, ``peft_config:``, ``dist_config:``, ``train_dataset:`` …)."""
    job = JobConfig(profile="native")
    job.name = f"Imported from LLaMA-Factory (v1) {Path(source).name}" if source else "Imported from LLaMA-Factory (v1)"
    warnings: list[str] = []
    set_value(job, "model.name_or_path", str(raw["model"]))
    if raw.get("trust_remote_code"):
        set_value(job, "model.trust_remote_code", True)
    if raw.get("model_class", "llm") not in ("llm", None):
        warnings.append(f"model_class = {raw['model_class']}: finetui reads the model class from its config")
    if raw.get("flash_attn") is not None:
        fa = str(raw["flash_attn"]).lower()
        set_value(job, "runtime.attention_implementation", V1_ATTN.get(fa, "sdpa"))
        if fa not in V1_ATTN or fa == "auto":
            warnings.append(f"flash_attn = {fa}: imported as {V1_ATTN.get(fa, 'sdpa')}")
    if raw.get("custom_chat_template"):
        warnings.append("custom_chat_template: finetui applies the tokenizer's own chat template")

    # tuning method: peft_config (none: full), quant_config
    peft = _plugin(raw, "peft_config")
    quant = _plugin(raw, "quant_config")
    pname = str(peft.get("name", "lora")).lower() if peft else "full"
    if pname in OTHER_METHODS:
        warnings.append(TrainingChange("peft_config.name", pname, OTHER_METHODS[pname], "imported as LoRA"))
        pname = "lora"
    if pname not in ("lora", "freeze", "full"):
        raise fail("peft_config.name", f"{pname!r} has no finetui tuning method", "lora, freeze (none: full)")
    q = quant.get("quantization_bit") if quant else None
    method = "qlora" if pname == "lora" and q not in (None, "none") else pname
    set_value(job, "trainer.training_type", method)
    if method == "qlora":
        set_value(job, "runtime.quantization_bit", int(q))
        if str(quant.get("name", "bnb")) not in ("bnb", "auto"):  # type: ignore[union-attr]
            warnings.append(f"quant_config.name = {quant['name']}: finetui quantizes with bitsandbytes")  # type: ignore[index]
    elif quant:
        warnings.append(f"quant_config: quantization applies to LoRA only in finetui; ignored for {method}")
    if method in ("lora", "qlora"):
        rank = int(peft.get("r", peft.get("lora_rank", 8)))  # type: ignore[union-attr]
        set_value(job, "adapter.lora_rank", rank)
        set_value(job, "adapter.lora_alpha", peft.get("lora_alpha") or rank * 2)  # type: ignore[union-attr]
        set_value(job, "adapter.lora_dropout", peft.get("lora_dropout", 0.0))  # type: ignore[union-attr]
        tgt = peft.get("target_modules", "all")  # type: ignore[union-attr]
        tl = [t.strip() for t in (tgt if isinstance(tgt, list) else str(tgt).split(",")) if t.strip()]
        set_value(job, "adapter.target_modules", ["all-linear"] if tl in (["all"], ["all-linear"]) else tl)
        for k in ("use_dora", "use_rslora", "pissa_init", "init_lora_weights"):
            if peft.get(k) not in (None, False, True if k == "init_lora_weights" else None):  # type: ignore[union-attr]
                warnings.append(TrainingChange(f"peft_config.{k}", peft[k], TRAINING_CHANGES.get(k, k)))  # type: ignore[index]
    if method == "freeze":
        set_value(job, "adapter.freeze_trainable_layers", peft.get("freeze_trainable_layers", 2))  # type: ignore[union-attr]
        mods = peft.get("freeze_trainable_modules", "all")  # type: ignore[union-attr]
        if mods not in (None, "all"):
            warnings.append(TrainingChange("peft_config.freeze_trainable_modules", mods,
                                           "choice of modules inside the trained layers", "all of them are trained"))
        if peft.get("freeze_extra_modules"):  # type: ignore[union-attr]
            warnings.append(TrainingChange("peft_config.freeze_extra_modules", peft["freeze_extra_modules"],  # type: ignore[index]
                                           TRAINING_CHANGES["freeze_extra_modules"]))

    # distribution: DeepSpeed (its config file), FSDP2
    dist = _plugin(raw, "dist_config")
    if dist:
        dn = str(dist.get("name", "")).lower()
        if dn == "deepspeed":
            if dist.get("config_file"):
                _zero_from(str(dist["config_file"]), base, job, warnings)
            else:
                set_value(job, "trainer.distributed_backend", "deepspeed")
        elif dn.startswith("fsdp"):
            fsdp_from({k: v for k, v in dist.items() if k != "name"}, job, "dist_config", warnings)
        else:
            warnings.append(f"dist_config.name = {dn}: not a finetui backend; DDP is used")
    for k in ("cp_size", "mp_replicate_size"):
        if raw.get(k) not in (None, 1):
            warnings.append(f"{k} = {raw[k]}: finetui parallelises over data only (DDP / ZeRO); ignored")
    if raw.get("mp_shard_size") is not None or raw.get("dp_size") is not None:
        warnings.append("dp_size / mp_shard_size: finetui takes the ranks from launch.procs_per_node × launch.nodes")
    kern = _plugin(raw, "kernel_config")
    if kern and str(kern.get("name", "")).lower() not in ("auto", "none", ""):
        warnings.append(f"kernel_config.name = {kern['name']}: finetui uses its attention setting "
                        f"(runtime.attention_implementation, runtime.liger_kernel)")

    # optimizer and schedule
    opt = _plugin(raw, "optim_config")
    if opt:
        on = str(opt.get("name", "adamw")).lower()
        if on in ("adamw", "adamw_torch", "adam"):
            if isinstance(opt.get("betas"), (list, tuple)) and len(opt["betas"]) == 2:
                set_value(job, "runtime.adam_beta1", opt["betas"][0])
                set_value(job, "runtime.adam_beta2", opt["betas"][1])
            for k, n in (("eps", "runtime.adam_epsilon"), ("weight_decay", "runtime.weight_decay"),
                         ("wd", "runtime.weight_decay")):
                if opt.get(k) is not None:
                    set_value(job, n, opt[k])
        elif on == "sgd":
            set_value(job, "runtime.optimizer", "sgd")
        else:
            warnings.append(TrainingChange("optim_config.name", on, f"{on} optimizer", "AdamW is used instead"))
    sch = _plugin(raw, "lr_scheduler_config")
    if sch:
        sn = str(sch.get("name", "cosine")).lower()
        set_value(job, "runtime.lr_scheduler", sn if sn in ("linear", "cosine", "constant") else "cosine")
        if sn not in ("linear", "cosine", "constant"):
            warnings.append(TrainingChange("lr_scheduler_config.name", sn, f"{sn} schedule", "cosine is used"))
        for k, n in (("warmup_steps", "runtime.lr_warmup_steps"), ("warmup_ratio", "runtime.lr_warmup_ratio"),
                     ("min_lr", "runtime.min_lr")):
            if sch.get(k) is not None:
                set_value(job, n, sch[k])

    # data
    fmts_seen: list[str] = []
    for key, field in (("train_dataset", "data.train_path"), ("eval_dataset", "data.validation_path")):
        if not raw.get(key):
            continue
        paths, fmts, sizes = _v1_dataset(str(raw[key]), key, field, base, warnings)
        fmts = [f or (_v1_rows_format(p) if Path(p).is_file() or p.startswith(SAMPLES_PREFIX) else None)
                for p, f in zip(paths, fmts)]
        first = next((f for f in fmts if f), None) or "alpaca"
        parts = [p + (f"#{f}" if f and f != first else "") for p, f in zip(paths, fmts)]
        set_value(job, field, join_paths(parts))
        if key == "train_dataset":
            fmts_seen = [f for f in fmts if f]
            set_value(job, "data.format", first)
            if any(sizes):
                if all(s is None for s in sizes[:-1]):
                    counts = [count_examples(p) for p in paths[:-1]]
                    if all(c is not None for c in counts):
                        total = sum(counts) + int(sizes[-1])  # type: ignore[arg-type]
                        set_value(job, "data.max_samples", total)
                warnings.append("size: LLaMA-Factory draws that many rows of a data set at random (with replacement); "
                                "finetui takes its first rows" + ("" if all(s is None for s in sizes[:-1]) else
                                                                  " — only the last data set's size can be kept"))
    stage = "dpo" if "preference" in fmts_seen else "sft"
    set_value(job, "trainer.stage", stage)
    if stage == "dpo":
        warnings.append("the trainer is the llamafactory-cli command (sft / dpo / rm), not in the file: dpo, from "
                        "its pair data")

    # batch, length, steps
    simple = {"micro_batch_size": "general.batch_size", "global_batch_size": "general.global_batch_size",
              "cutoff_len": "general.max_sequence_length", "learning_rate": "general.learning_rate",
              "max_grad_norm": "runtime.max_grad_norm", "seed": "runtime.seed", "logging_steps": "eval.logging_steps",
              "save_total_limit": "eval.checkpoint_limit", "pref_beta": "preference.preference_beta",
              "pref_loss": "preference.preference_loss", "pref_ftx": "preference.preference_ftx"}
    for k, n in simple.items():
        if raw.get(k) is not None and (not n.startswith("preference.") or stage == "dpo"):
            set_value(job, n, raw[k])
    if stage == "dpo" and raw.get("pref_loss") == "simpo" and raw.get("simpo_gamma") is not None:
        set_value(job, "preference.simpo_gamma", raw["simpo_gamma"])
    if stage == "dpo" and raw.get("dpo_label_smoothing"):
        set_value(job, "preference.dpo_label_smoothing", raw["dpo_label_smoothing"])
    if raw.get("max_steps"):
        set_value(job, "general.max_steps", raw["max_steps"])
        if "num_train_epochs" not in raw:
            job.values["general.epochs"] = None  # max_steps decides
    if raw.get("num_train_epochs") is not None:
        set_value(job, "general.epochs", int(math.ceil(float(raw["num_train_epochs"]))))
    elif not raw.get("max_steps"):
        set_value(job, "general.epochs", 3)  # v1's default
    if raw.get("save_steps"):
        set_value(job, "eval.checkpoint_strategy", "steps")
        set_value(job, "eval.checkpoint_steps", raw["save_steps"])
    elif raw.get("save_epochs"):
        set_value(job, "eval.checkpoint_strategy", "epoch")
    set_value(job, "runtime.mixed_precision", "bf16" if raw.get("bf16", True) else "none")
    if raw.get("enable_activation_checkpointing") is False:
        set_value(job, "runtime.gradient_checkpointing", False)
    if raw.get("full_determinism"):
        set_value(job, "runtime.full_determinism", True)
    bs = str(raw.get("batching_strategy", "normal")).lower()
    if bs in ("padding_free", "dynamic_padding_free"):
        set_value(job, "data.padding_free", True)
    if bs.startswith("dynamic"):
        warnings.append(f"batching_strategy = {bs}: finetui batches a fixed number of rows (general.batch_size)")
    if stage == "sft":
        set_value(job, "data.packing", False)  # v1 does not pack
    rc = raw.get("resume_from_checkpoint")
    if rc:
        set_value(job, "general.resume_from_checkpoint", "last" if str(rc) == "auto" else str(rc))
    if raw.get("output_dir"):
        od = str(raw["output_dir"]).rstrip("/")
        parent, _, last = od.rpartition("/")
        set_value(job, "launch.runs_dir", parent or ".")
        set_value(job, "launch.run_name", last)
    for name, (k, default) in V1_DEFAULTS.items():
        if k not in raw and name not in job.values:
            set_value(job, name, default)
    set_value(job, "tracking.tensorboard", False)  # v1 reports to no tracker unless told
    warnings[:0] = _training_changes(raw)
    unknown = sorted(k for k in raw if k not in V1_KNOWN | V1_QUIET and k not in TRAINING_CHANGES)
    if unknown:
        warnings.append("ignored (no finetui equivalent): " + ", ".join(unknown))
    return job, warnings
