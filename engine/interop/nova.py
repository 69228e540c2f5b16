"""Amazon Nova (SageMaker HyperPod) fine-tuning recipe ↔ finetui job (profiles nova_lora / nova_full).

The recipe shape is that of the two Nova 1.0 recipes in ``shared/compat/nova`` (``run`` +
``training_config`` with ``trainer``, ``model.optim.sched`` and ``model.peft``).  Keys of the
longer recipe the Nova document shows (``micro_batch_size``, ``save_steps``,
``allow_percentage_invalid_samples``, ``exp_manager`` checkpoint / early-stopping params,
``trainer.max_steps`` / ``log_every_n_steps`` / ``val_check_interval`` / ``gradient_clip_val``)
are read too, and written only when the job differs from the profile's default.

Mapping decisions:

* ``global_batch_size`` ↔ ``general.global_batch_size`` and ``micro_batch_size`` ↔ ``general.batch_size``, as
  the recipe has them: the global batch does not grow with replicas (finetui derives its own gradient
  accumulation from it when it runs the job).
* ``run.name`` (and ``mlflow_run_name``) ↔ ``launch.run_name``; ``replicas`` ↔ ``launch.nodes``.
* ``model_type`` is derived from the model on export (nova-micro → amazon.nova-micro-v1:0:128k, …).
* An empty ``data_s3_path`` imports as the bundled Bedrock Converse sample, with a warning.
* LoRA rank is not a recipe key (Nova sets it): a rank other than the profile's 32 is warned about.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from engine import redact
from engine.schema import FIELD_BY_NAME, NOVA, SAMPLES_PREFIX, JobConfig, names_in, spec, total_ranks
from engine.datapaths import data_paths
from engine.interop.common import fail, fmt, leftovers, set_value, table, validate_for

TARGET = NOVA
SAMPLE = f"{SAMPLES_PREFIX}bedrock_converse_demo.jsonl"
MODEL_TYPES = {"nova-micro": "amazon.nova-micro-v1:0:128k", "nova-lite": "amazon.nova-lite-v1:0:300k",
               "nova-pro": "amazon.nova-pro-v1:0:300k"}


#: fields whose Nova key the exporter and importer handle themselves (a condition, a conversion, a default of the
#: profile); every other field with a Nova name (``Field.names``, a dotted key path) is written and read under it
FIELDS_BY_HAND = {
    "model.name_or_path", "model.hidden_dropout", "model.attention_dropout", "model.ffn_dropout", "data.train_path",
    "data.validation_path", "data.allow_percentage_invalid_samples", "general.batch_size", "general.global_batch_size",
    "general.epochs", "general.max_steps", "general.learning_rate", "general.max_sequence_length",
    "runtime.adam_beta1", "runtime.adam_beta2", "runtime.adam_epsilon", "runtime.weight_decay",
    "runtime.max_grad_norm", "runtime.lr_warmup_steps", "runtime.min_lr", "adapter.lora_alpha",
    "adapter.lora_dropout", "adapter.loraplus_lr_ratio", "eval.eval_steps", "eval.logging_steps",
    "eval.checkpoint_steps", "eval.checkpoint_limit", "eval.early_stopping_patience",
    "eval.early_stopping_threshold", "tracking.tensorboard", "tracking.mlflow_tracking_uri",
    "tracking.mlflow_experiment", "launch.run_name", "launch.nodes",
}


def _one_to_one() -> dict[str, str]:
    """Nova key path → field, for the fields Nova names that nothing here handles by hand."""
    return {k: n for k, n in names_in(TARGET).items() if n not in FIELDS_BY_HAND and "[" not in k}


def profile_for(job: JobConfig) -> str:
    if job.profile in ("nova_lora", "nova_full"):
        return job.profile
    return "nova_full" if job.resolved()["trainer.training_type"] in ("full", "freeze") else "nova_lora"


def looks_like(data: Any) -> bool:
    return isinstance(data, dict) and isinstance(data.get("run"), dict) and "training_config" in data


# --------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------


def export(job: JobConfig) -> tuple[str, list[str]]:
    prof = profile_for(job)
    validate_for(job, prof)
    res = job.resolved()
    warnings: list[str] = []
    used: set[str] = set()

    def take(*names: str) -> None:
        used.update(names)

    def differs(name: str) -> bool:
        return res[name] != spec(name, prof).default

    model = str(res["model.name_or_path"])
    mtype = next((t for k, t in MODEL_TYPES.items() if k in model.lower()), None)
    if mtype is None:
        mtype = ""
        warnings.append(f"model.name_or_path = {fmt(model)}: not a Nova model; run.model_type left empty")
    name = res["launch.run_name"] or "finetui-run"
    train = str(res["data.train_path"] or "")
    if len(data_paths(train)) > 1:
        warnings.append(f"data.train_path = {fmt(train)}: Nova reads one training file; join them into one and "
                        f"set run.data_s3_path")
    elif train and not train.startswith("s3://"):
        warnings.append(f"data.train_path = {fmt(train)}: Nova reads training data from S3; upload it and set "
                        f"run.data_s3_path")
    run: dict[str, Any] = {
        "name": name,
        "model_type": mtype,
        "model_name_or_path": model,
        "replicas": res["launch.nodes"],
        "data_s3_path": train,
    }
    if res["data.validation_path"]:
        run["validation_data_s3_path"] = str(res["data.validation_path"])
    run["output_s3_path"] = ""
    run["mlflow_tracking_uri"] = redact.strip(res["tracking.mlflow_tracking_uri"] or "")
    if redact.has_credentials(res["tracking.mlflow_tracking_uri"]):
        warnings.append("tracking.mlflow_tracking_uri: its user name and password are not written into the recipe; "
                        "give them to the job as MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD")
    run["mlflow_experiment_name"] = res["tracking.mlflow_experiment"]
    run["mlflow_run_name"] = name
    take("launch.run_name", "model.name_or_path", "launch.nodes", "data.train_path", "data.validation_path",
         "tracking.mlflow_tracking_uri", "tracking.mlflow_experiment")
    for s3 in ("data.s3_endpoint_url", "data.s3_region", "data.s3_access_key_env", "data.s3_secret_key_env"):
        take(s3)

    tc: dict[str, Any] = {"max_length": res["general.max_sequence_length"]}
    gb = res["general.global_batch_size"]
    if gb is None:
        gb = res["general.batch_size"] * res["runtime.gradient_accumulation_steps"] * total_ranks(res)
    tc["global_batch_size"] = gb
    if res["general.batch_size"] != 1:
        tc["micro_batch_size"] = res["general.batch_size"]
    take("general.max_sequence_length", "general.batch_size", "general.global_batch_size",
         "runtime.gradient_accumulation_steps", "launch.procs_per_node")
    if res["launch.procs_per_node"] != spec("launch.procs_per_node", prof).default:
        warnings.append(f"launch.procs_per_node = {res['launch.procs_per_node']}: Nova sets the GPUs per node; "
                        f"only the global batch ({gb}) is written")
    if differs("eval.checkpoint_steps") and res["eval.checkpoint_strategy"] == "steps":
        tc["save_steps"] = res["eval.checkpoint_steps"]
        take("eval.checkpoint_steps")
    if differs("data.allow_percentage_invalid_samples"):
        tc["allow_percentage_invalid_samples"] = res["data.allow_percentage_invalid_samples"]
    take("data.allow_percentage_invalid_samples", "data.format")

    exp: dict[str, Any] = {}
    if differs("eval.checkpoint_limit") and res["eval.checkpoint_limit"] is not None:
        exp["checkpoint_callback_params"] = {"save_top_k": res["eval.checkpoint_limit"]}
        take("eval.checkpoint_limit")
    elif res["eval.checkpoint_limit"] == spec("eval.checkpoint_limit", prof).default:
        take("eval.checkpoint_limit")
    if res["eval.early_stopping_patience"] > 0:
        exp["create_early_stopping_callback"] = True
        exp["early_stopping_callback_params"] = {"min_delta": res["eval.early_stopping_threshold"], "mode": "min",
                                                 "monitor": "val_loss",
                                                 "patience": res["eval.early_stopping_patience"]}
        take("eval.early_stopping_patience", "eval.early_stopping_threshold")
    if differs("tracking.tensorboard"):
        exp["create_tensorboard_logger"] = bool(res["tracking.tensorboard"])
    take("tracking.tensorboard")
    if exp:
        tc["exp_manager"] = exp

    trainer: dict[str, Any] = {}
    if res["general.max_steps"] is not None:
        trainer["max_steps"] = res["general.max_steps"]
    if res["general.epochs"] is not None and res["general.max_steps"] is None:
        trainer["max_epochs"] = res["general.epochs"]
    take("general.epochs", "general.max_steps")
    if differs("eval.logging_steps"):
        trainer["log_every_n_steps"] = max(1, res["eval.logging_steps"])
    take("eval.logging_steps")
    if res["eval.evaluation_strategy"] == "steps" and res["data.validation_path"]:
        trainer["val_check_interval"] = res["eval.eval_steps"]
        take("eval.eval_steps", "eval.evaluation_strategy")
    elif res["eval.evaluation_strategy"] == "no":
        take("eval.evaluation_strategy", "eval.eval_steps")
    if differs("runtime.max_grad_norm"):
        trainer["gradient_clip_val"] = res["runtime.max_grad_norm"]
    take("runtime.max_grad_norm")
    tc["trainer"] = trainer

    m: dict[str, Any] = {
        "hidden_dropout": res["model.hidden_dropout"] if res["model.hidden_dropout"] is not None else 0.0,
        "attention_dropout": res["model.attention_dropout"] if res["model.attention_dropout"] is not None else 0.0,
        "ffn_dropout": res["model.ffn_dropout"] if res["model.ffn_dropout"] is not None else 0.0,
    }
    take("model.hidden_dropout", "model.attention_dropout", "model.ffn_dropout")
    m["optim"] = {
        "lr": res["general.learning_rate"],
        "name": "distributed_fused_adam",
        "adam_w_mode": True,
        "eps": res["runtime.adam_epsilon"],
        "weight_decay": res["runtime.weight_decay"],
        "betas": [res["runtime.adam_beta1"], res["runtime.adam_beta2"]],
        "sched": {"warmup_steps": res["runtime.lr_warmup_steps"], "constant_steps": 0,
                  "min_lr": res["runtime.min_lr"]},
    }
    take("general.learning_rate", "runtime.optimizer", "runtime.adam_epsilon", "runtime.weight_decay",
         "runtime.adam_beta1", "runtime.adam_beta2", "runtime.lr_warmup_steps", "runtime.lr_warmup_ratio",
         "runtime.lr_scheduler", "runtime.min_lr", "trainer.stage", "trainer.training_type")
    if res["trainer.training_type"] in ("lora", "qlora"):
        m["peft"] = {"peft_scheme": "lora", "lora_tuning": {
            "loraplus_lr_ratio": res["adapter.loraplus_lr_ratio"],
            "alpha": res["adapter.lora_alpha"],
            "adapter_dropout": res["adapter.lora_dropout"],
        }}
        take("adapter.loraplus_lr_ratio", "adapter.lora_alpha", "adapter.lora_dropout")
    else:
        m["peft"] = {"peft_scheme": None}
    tc["model"] = m

    recipe = {"run": run, "training_config": tc}
    for path, name in _one_to_one().items():  # a field Nova names one to one
        if res[name] is not None and (name in job.values or FIELD_BY_NAME[name].is_visible(res)):
            *parents, key = path.split(".")
            node = recipe
            for part in parents:
                node = node.setdefault(part, {})
            node[key] = res[name]
            take(name)

    from engine.schema.profiles import NOVA_LIMITATIONS

    for name, why in NOVA_LIMITATIONS.items():  # what the service itself cannot do, said apart from the rest
        if name not in used and res[name] != spec(name, prof).default:
            warnings.append(f"{name} = {fmt(res[name])}: a Nova recipe cannot express it ({why}); not written")
            used.add(name)
    warnings.extend(leftovers(job, used, prof, TARGET))
    text = "## Run config\n" + yaml.safe_dump({"run": run}, sort_keys=False, width=1000)
    text += "\n## Training specific configs\n" + yaml.safe_dump({"training_config": tc}, sort_keys=False, width=1000)
    return text, warnings


# --------------------------------------------------------------------------------------------
# Import
# --------------------------------------------------------------------------------------------


def _num(v: Any) -> Any:
    """YAML 1.1 reads ``1e-5`` (no dot) as text."""
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return v
    return v


def import_data(raw: dict[str, Any], source: str = "") -> tuple[JobConfig, list[str]]:
    run = raw.get("run") or {}
    tc = raw.get("training_config") or {}
    if not isinstance(run, dict) or not isinstance(tc, dict):
        raise fail(source or "recipe", "not a Nova recipe (run and training_config must be mappings)")
    model = table(tc, "model", "training_config.")
    optim = table(model, "optim", "training_config.model.")
    sched = table(optim, "sched", "training_config.model.optim.")
    peft = table(model, "peft", "training_config.model.")
    trainer = table(tc, "trainer", "training_config.")
    exp = table(tc, "exp_manager", "training_config.")
    warnings: list[str] = []

    scheme = peft.get("peft_scheme")
    lora = str(scheme).lower() == "lora" if scheme is not None else False
    if scheme is not None and not lora:
        raise fail("training_config.model.peft.peft_scheme", f"{scheme!r} is not a Nova scheme", "null, lora")
    prof = "nova_lora" if lora else "nova_full"
    job = JobConfig(profile=prof)
    job.name = str(run.get("name") or f"Imported Nova recipe {Path(source).name}")
    set_value(job, "trainer.stage", "sft")
    set_value(job, "trainer.training_type", "lora" if lora else "full")
    set_value(job, "data.format", "bedrock_converse")

    if run.get("name"):
        set_value(job, "launch.run_name", str(run["name"]))
    mrn = run.get("mlflow_run_name")
    if mrn and mrn != run.get("name"):
        warnings.append(f"run.mlflow_run_name = {mrn}: finetui names the MLflow run after the run ({run.get('name')})")
    mp = run.get("model_name_or_path")
    if mp:
        set_value(job, "model.name_or_path", str(mp))
    mt = run.get("model_type")
    if mt and mp and not any(k in str(mp) and v == mt for k, v in MODEL_TYPES.items()):
        if mt not in MODEL_TYPES.values():
            warnings.append(f"run.model_type = {mt}: not a known Nova model type")
    if run.get("replicas") is not None:
        set_value(job, "launch.nodes", run["replicas"])
    data = str(run.get("data_s3_path") or "")
    if data:
        set_value(job, "data.train_path", data)
    else:
        set_value(job, "data.train_path", SAMPLE)
        warnings.append(f"run.data_s3_path is empty: data.train_path set to the bundled sample {SAMPLE}; point it "
                        f"at your Bedrock Converse data")
    if run.get("validation_data_s3_path"):
        set_value(job, "data.validation_path", str(run["validation_data_s3_path"]))
    if run.get("output_s3_path"):
        warnings.append(f"run.output_s3_path = {run['output_s3_path']}: finetui writes to its run directory "
                        f"(launch.runs_dir); not imported")
    if run.get("mlflow_tracking_uri"):
        set_value(job, "tracking.mlflow_tracking_uri", str(run["mlflow_tracking_uri"]))
    if run.get("mlflow_experiment_name"):
        set_value(job, "tracking.mlflow_experiment", str(run["mlflow_experiment_name"]))

    if "max_length" in tc:
        set_value(job, "general.max_sequence_length", tc["max_length"])
    set_value(job, "general.batch_size", tc.get("micro_batch_size", 1) or 1)
    if "global_batch_size" in tc:
        set_value(job, "general.global_batch_size", tc["global_batch_size"])
    if "save_steps" in tc:
        set_value(job, "eval.checkpoint_steps", tc["save_steps"])
        set_value(job, "eval.checkpoint_strategy", "steps")
    if "allow_percentage_invalid_samples" in tc:
        set_value(job, "data.allow_percentage_invalid_samples", tc["allow_percentage_invalid_samples"])
    cb = table(exp, "checkpoint_callback_params", "training_config.exp_manager.")
    if "save_top_k" in cb:
        set_value(job, "eval.checkpoint_limit", cb["save_top_k"])
    if exp.get("create_early_stopping_callback"):
        es = table(exp, "early_stopping_callback_params", "training_config.exp_manager.")
        set_value(job, "eval.early_stopping_patience", es.get("patience", 2))
        if "min_delta" in es:
            set_value(job, "eval.early_stopping_threshold", _num(es["min_delta"]))
    if "create_tensorboard_logger" in exp:
        set_value(job, "tracking.tensorboard", bool(exp["create_tensorboard_logger"]))
    if exp.get("create_wandb_logger"):
        set_value(job, "tracking.wandb", True)
        warnings.append("exp_manager.create_wandb_logger = true: imported as tracking.wandb — finetui's own runs "
                        "log to W&B (project finetui: set tracking.wandb_project); the Nova document says the "
                        "service itself publishes no metrics to W&B")

    me = trainer.get("max_epochs")
    ms = trainer.get("max_steps")
    if ms is not None and int(ms) > 0:
        set_value(job, "general.max_steps", ms)
        if me is not None and int(me) > 0:
            warnings.append("trainer: max_steps and max_epochs are both set; finetui keeps max_steps")
    elif me is not None:
        set_value(job, "general.epochs", me)
    if "log_every_n_steps" in trainer:
        set_value(job, "eval.logging_steps", trainer["log_every_n_steps"])
    if trainer.get("val_check_interval"):
        set_value(job, "eval.eval_steps", trainer["val_check_interval"])
        set_value(job, "eval.evaluation_strategy", "steps")
        if not run.get("validation_data_s3_path"):
            set_value(job, "data.val_size", 0.1)
            warnings.append("trainer.val_check_interval without validation_data_s3_path: data.val_size = 0.1 "
                            "holds out validation rows")
    if "gradient_clip_val" in trainer:
        set_value(job, "runtime.max_grad_norm", _num(trainer["gradient_clip_val"]))

    for k, n in (("hidden_dropout", "model.hidden_dropout"), ("attention_dropout", "model.attention_dropout"),
                 ("ffn_dropout", "model.ffn_dropout")):
        if k in model:
            set_value(job, n, _num(model[k]))
    if "lr" in optim:
        set_value(job, "general.learning_rate", _num(optim["lr"]))
    if optim.get("name") not in (None, "distributed_fused_adam"):
        warnings.append(f"optim.name = {optim['name']}: finetui uses AdamW")
    if optim.get("adam_w_mode") is False:
        warnings.append("optim.adam_w_mode = false: finetui always uses decoupled weight decay (AdamW)")
    set_value(job, "runtime.optimizer", "adamw")
    if "eps" in optim:
        set_value(job, "runtime.adam_epsilon", _num(optim["eps"]))
    if "weight_decay" in optim:
        set_value(job, "runtime.weight_decay", _num(optim["weight_decay"]))
    betas = optim.get("betas")
    if isinstance(betas, (list, tuple)) and len(betas) == 2:
        set_value(job, "runtime.adam_beta1", _num(betas[0]))
        set_value(job, "runtime.adam_beta2", _num(betas[1]))
    set_value(job, "runtime.lr_scheduler", "cosine")
    if "warmup_steps" in sched:
        set_value(job, "runtime.lr_warmup_steps", sched["warmup_steps"])
    if "min_lr" in sched:
        set_value(job, "runtime.min_lr", _num(sched["min_lr"]))
    if sched.get("constant_steps"):
        warnings.append(f"sched.constant_steps = {sched['constant_steps']}: finetui's cosine schedule has no "
                        f"constant phase; ignored")
    if sched.get("name") not in (None, "CosineAnnealing"):
        warnings.append(f"sched.name = {sched['name']}: imported as cosine")
    for path, name in _one_to_one().items():  # a field Nova names one to one
        node: Any = raw
        for part in path.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            set_value(job, name, node)
    if lora:
        lt = table(peft, "lora_tuning", "training_config.model.peft.")
        if "loraplus_lr_ratio" in lt:
            set_value(job, "adapter.loraplus_lr_ratio", _num(lt["loraplus_lr_ratio"]))
        if "alpha" in lt:
            set_value(job, "adapter.lora_alpha", lt["alpha"])
        if "adapter_dropout" in lt:
            set_value(job, "adapter.lora_dropout", _num(lt["adapter_dropout"]))
    return job, warnings
