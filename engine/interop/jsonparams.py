"""Hyperparameter JSON of the hosted services ↔ finetui job.

* ``fpt_studio`` — FPT AI Studio's "toggle JSON": the snake_case names of its five groups
  (batch_size, epochs, …, distributed_backend DDP/DeepSpeed, training_type Full/LoRA, …,
  disable_gradient_checkpointing, flash_attention_v2, …) → profile ``fpt_studio``.
* ``oci`` — OCI Generative AI fine-tuning hyperparameters (totalTrainingEpochs, learningRate,
  trainingBatchSize, earlyStoppingPatience, earlyStoppingThreshold,
  logModelMetricsIntervalInSteps, loraR, loraAlpha, loraDropout; trainingConfigType) →
  ``oci_llama_lora`` (LoRA) or ``oci_cohere_tfew`` (T-Few: no LoRA keys).
* ``watsonx`` — watsonx.ai tuning parameters (num_epochs, accumulate_steps, batch_size,
  learning_rate, max_seq_length, peft_parameters{type, rank, alpha, dropout, target_modules},
  init_method / init_text for prompt tuning, base_model.model_id, gpu.num) →
  ``watsonx_lora`` / ``watsonx_qlora`` / ``watsonx_full`` / ``watsonx_prompt_tuning``.

These files hold hyperparameters only: the model and the data are chosen elsewhere in those
services.  On import the profile's first catalog model (when it has a catalog) and a bundled
sample file of the right format are filled in, each with a warning, so the preset validates.
"""

from __future__ import annotations

import json
from typing import Any

from engine.schema import profiles
from engine.schema import FPT, OCI, SAMPLES_PREFIX, WX, JobConfig, names_in, spec
from engine.interop.common import fail, leftovers, set_value, validate_for

SAMPLE = {"alpaca": f"{SAMPLES_PREFIX}alpaca_demo.jsonl", "preference": f"{SAMPLES_PREFIX}preference_demo.jsonl"}
VAL_SAMPLE = {"alpaca": f"{SAMPLES_PREFIX}alpaca_val_demo.jsonl"}
TITLES = {"fpt_studio": "FPT AI Studio hyperparameters", "oci": "OCI hyperparameters",
          "watsonx": "watsonx.ai tuning parameters"}

# ---------------------------------------------------------------- FPT AI Studio
FPT_SPECIAL = ("distributed_backend", "training_type", "resume_from_checkpoint", "disable_gradient_checkpointing",
               "flash_attention_v2", "target_modules")
_PREF = ("dpo_label_smoothing", "preference_beta", "preference_ftx", "preference_loss", "simpo_gamma")
_LORA = ("merge_adapter", "lora_alpha", "lora_dropout", "lora_rank", "target_modules")
WATSONX_PROFILE = {"lora": "watsonx_lora", "qlora": "watsonx_qlora", "none": "watsonx_full"}


# The key maps come from the fields' declared names (Field.names), derived when asked: a field declared with an
# FPT, OCI or watsonx name is read and written under it with nothing written here.
def _fpt_simple() -> dict[str, str]:
    """FPT name → finetui field, for the fields that map one to one (the fields' FPT names, the special ones aside)."""
    return {k: n for k, n in names_in(FPT).items() if k not in FPT_SPECIAL}


def _oci_keys() -> dict[str, str]:
    return {k: n for k, n in names_in(OCI).items() if k != "trainingConfigType"}  # (the method: read by hand)


def _watsonx_keys() -> dict[str, str]:
    """watsonx's top-level keys read one to one (the prompt-tuning ones and the nested ones are read by hand)."""
    return {k: n for k, n in names_in(WX).items() if "." not in k and k not in ("task_id", "init_method", "init_text")}


def _watsonx_peft() -> dict[str, str]:
    return {k.split(".", 1)[1]: n for k, n in names_in(WX).items() if k.startswith("peft_parameters.")}


def _known_keys(service: str) -> set[str]:
    """Every top-level key the service's file may hold (what finetui reads, and what it names in a warning)."""
    if service == "oci":
        return set(_oci_keys()) | {"trainingConfigType"}
    if service == "watsonx":
        return set(_watsonx_keys()) | {"peft_parameters", "tuning_type", "init_method", "init_text", "base_model",
                                       "gpu", "task_id"}
    return set(_fpt_simple()) | set(FPT_SPECIAL)


def _markers(service: str) -> set[str]:
    """Keys only that service writes (one of them names the service)."""
    if service == "oci":
        return set(_oci_keys()) | {"trainingConfigType"}
    if service == "watsonx":
        return {"peft_parameters", "num_epochs", "accumulate_steps", "init_method", "tuning_type"}
    return _known_keys("fpt_studio") - set(_watsonx_keys())


_DERIVED = {"FPT_SIMPLE": _fpt_simple, "FPT_KEYS": lambda: _known_keys("fpt_studio"), "OCI_KEYS": _oci_keys,
            "WATSONX_KEYS": _watsonx_keys, "WATSONX_PEFT": _watsonx_peft}


def __getattr__(name: str) -> Any:
    if name in _DERIVED:
        return _DERIVED[name]()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def detect(data: Any) -> str | None:
    """A service's hyperparameter file, when recognised with confidence: one of its own keys, and at least three
    in four of the file's keys known to it; None otherwise."""
    if not isinstance(data, dict) or not data:
        return None
    keys = set(data)
    for name in ("oci", "watsonx", "fpt_studio"):
        known = keys & _known_keys(name)
        if keys & _markers(name) and len(known) * 4 >= len(keys) * 3:
            return name
    return None


def _fill_model_and_data(job: JobConfig, warnings: list[str], fmt_: str = "alpaca") -> None:
    prof = profiles.get(job.profile)
    if "model.name_or_path" not in job.values and prof.models:
        set_value(job, "model.name_or_path", prof.models[0])
        warnings.append(f"model.name_or_path set to {prof.models[0]} (the first model of the {prof.name} catalog); "
                        f"the hyperparameter file does not name the base model")
    if "data.train_path" not in job.values:
        set_value(job, "data.train_path", SAMPLE[fmt_])
        set_value(job, "data.format", fmt_)
        warnings.append(f"data.train_path set to the bundled sample {SAMPLE[fmt_]}; the hyperparameter file does not "
                        f"name the data — point it at yours")
        if fmt_ in VAL_SAMPLE and "data.validation_path" not in job.values \
                and spec("eval.evaluation_strategy", job.profile).default != "no":
            set_value(job, "data.validation_path", VAL_SAMPLE[fmt_])
            warnings.append(f"data.validation_path set to the bundled sample {VAL_SAMPLE[fmt_]} ({prof.name} evaluates "
                            f"for early stopping and holds out nothing) — point it at your validation data")


# -------------------------------------------------------------------------------- import


def import_fpt(d: dict[str, Any]) -> tuple[JobConfig, list[str]]:
    job = JobConfig(profile="fpt_studio", name="Imported FPT AI Studio hyperparameters")
    warnings: list[str] = []
    tt = str(d.get("training_type", "LoRA")).lower()
    set_value(job, "trainer.training_type", tt)
    db = str(d.get("distributed_backend", "DDP")).lower()
    set_value(job, "trainer.distributed_backend", db)
    simple = _fpt_simple()
    pref_set = {k: d[k] for k in _PREF if k in d and d[k] != spec(simple[k], "fpt_studio").default}
    stage = "dpo" if pref_set else "sft"
    set_value(job, "trainer.stage", stage)
    loss = str(d.get("preference_loss", "sigmoid")).lower()
    for k, name in simple.items():
        if k not in d or d[k] is None:
            continue
        v = d[k]
        if k in _PREF and stage != "dpo":
            continue
        if k == "simpo_gamma" and loss != "simpo":
            continue
        if k == "dpo_label_smoothing" and loss != "sigmoid":
            continue
        if k in _LORA and tt != "lora":
            continue
        if k == "zero_stage" and db != "deepspeed":
            continue
        if k == "eval_steps" and str(d.get("evaluation_strategy", "no")).lower() != "steps":
            continue
        if isinstance(v, str) and k in ("mixed_precision", "optimizer", "lr_scheduler", "preference_loss",
                                          "checkpoint_strategy", "evaluation_strategy", "quantization_bit"):
            v = v.lower()
        if k == "logging_steps" and v == -1:
            v = 0
            warnings.append("logging_steps = -1: read as 0 (every step)")
        set_value(job, name, v)
    if "target_modules" in d and tt == "lora":
        tm = d["target_modules"]
        set_value(job, "adapter.target_modules", [tm] if isinstance(tm, str) else tm)
    rc = d.get("resume_from_checkpoint")
    if rc is not None:
        if rc is False or str(rc).lower() in ("false", "no", ""):
            set_value(job, "general.resume_from_checkpoint", "no")
        elif rc is True or str(rc).lower() in ("true", "last", "last checkpoint"):
            set_value(job, "general.resume_from_checkpoint", "last")
        else:
            set_value(job, "general.resume_from_checkpoint", str(rc))
    if "disable_gradient_checkpointing" in d:
        set_value(job, "runtime.gradient_checkpointing", not bool(d["disable_gradient_checkpointing"]))
    if "flash_attention_v2" in d:
        set_value(job, "runtime.attention_implementation", "flash_attention_2" if d["flash_attention_v2"] else "sdpa")
    unknown = sorted(k for k in d if k not in _known_keys("fpt_studio"))
    if unknown:
        warnings.append("ignored (not FPT AI Studio hyperparameters): " + ", ".join(unknown))
    _fill_model_and_data(job, warnings, "preference" if stage == "dpo" else "alpaca")
    return job, warnings


def import_oci(d: dict[str, Any]) -> tuple[JobConfig, list[str]]:
    warnings: list[str] = []
    ct = str(d.get("trainingConfigType", "")).upper()
    has_lora = any(k in d for k in ("loraR", "loraAlpha", "loraDropout"))
    tfew = "TFEW" in ct or (not has_lora and "LORA" not in ct)
    prof = "oci_cohere_tfew" if tfew else "oci_llama_lora"
    job = JobConfig(profile=prof, name="Imported OCI hyperparameters")
    set_value(job, "trainer.stage", "sft")
    set_value(job, "trainer.training_type", "tfew" if tfew else "lora")
    model = d.get("baseModel") or d.get("baseModelId") or d.get("modelId")
    if model:
        set_value(job, "model.name_or_path", str(model))
    oci_keys = _oci_keys()
    for k, name in oci_keys.items():
        if k in d and d[k] is not None:
            if tfew and name.startswith("adapter."):
                warnings.append(f"{k}: T-Few has no LoRA parameters; ignored")
                continue
            set_value(job, name, d[k])
    unknown = sorted(k for k in d if k not in oci_keys and k not in ("trainingConfigType", "baseModel",
                                                                       "baseModelId", "modelId"))
    if unknown:
        warnings.append("ignored (not OCI hyperparameters): " + ", ".join(unknown))
    _fill_model_and_data(job, warnings)
    return job, warnings


def import_watsonx(d: dict[str, Any]) -> tuple[JobConfig, list[str]]:
    warnings: list[str] = []
    peft = d.get("peft_parameters")
    pt = str(d.get("tuning_type", "")).lower() == "prompt_tuning" or ("init_method" in d and peft is None)
    if pt:
        prof, method = "watsonx_prompt_tuning", "prompt_tuning"
    else:
        typ = str((peft or {}).get("type", "none")).lower()
        if typ not in WATSONX_PROFILE:
            raise fail("peft_parameters.type", f"{typ!r} is not a watsonx tuning type", "lora, qlora, none")
        prof, method = WATSONX_PROFILE[typ], ("full" if typ == "none" else typ)
    job = JobConfig(profile=prof, name="Imported watsonx.ai tuning parameters")
    set_value(job, "trainer.stage", "sft")
    set_value(job, "trainer.training_type", method)
    bm = d.get("base_model")
    if isinstance(bm, dict) and bm.get("model_id"):
        set_value(job, "model.name_or_path", str(bm["model_id"]))
    elif isinstance(bm, str):
        set_value(job, "model.name_or_path", bm)
    for k, name in _watsonx_keys().items():
        if k in d and d[k] is not None:
            set_value(job, name, d[k])
    if method in ("lora", "qlora"):
        for k, name in _watsonx_peft().items():
            if k in (peft or {}):
                set_value(job, name, peft[k])
    if pt:
        if "init_method" in d:
            set_value(job, "adapter.prompt_tuning_init", str(d["init_method"]).lower())
        if d.get("init_text"):
            set_value(job, "adapter.prompt_tuning_init_text", str(d["init_text"]))
        if d.get("task_id"):
            set_value(job, "trainer.task_type", str(d["task_id"]).lower())
    gpu = d.get("gpu")
    if isinstance(gpu, dict) and gpu.get("num"):
        set_value(job, "launch.procs_per_node", gpu["num"])
    known = _known_keys("watsonx")
    unknown = sorted(k for k in d if k not in known)
    if unknown:
        warnings.append("ignored (not used by finetui): " + ", ".join(unknown))
    _fill_model_and_data(job, warnings)
    return job, warnings


# -------------------------------------------------------------------------------- export


def _dump(d: dict[str, Any]) -> str:
    return json.dumps(d, indent=2, ensure_ascii=False) + "\n"


def export_fpt(job: JobConfig) -> tuple[str, list[str]]:
    validate_for(job, "fpt_studio")
    res = job.resolved()
    used = {"trainer.stage", "trainer.training_type", "trainer.distributed_backend", "general.resume_from_checkpoint",
            "runtime.gradient_checkpointing", "runtime.attention_implementation", "adapter.target_modules"}
    tt = res["trainer.training_type"]
    out: dict[str, Any] = {}
    ck = res["general.resume_from_checkpoint"]
    simple = _fpt_simple()
    for k in ("batch_size", "epochs", "learning_rate", "max_sequence_length"):
        out[k] = res[simple[k]]
    out["distributed_backend"] = "DeepSpeed" if res["trainer.distributed_backend"] == "deepspeed" else "DDP"
    if res["trainer.distributed_backend"] == "deepspeed":
        out["zero_stage"] = res["trainer.zero_stage"]
    out["training_type"] = "LoRA" if tt == "lora" else "Full"
    out["resume_from_checkpoint"] = False if ck == "no" else (True if ck == "last" else ck)
    for k in ("gradient_accumulation_steps", "mixed_precision", "quantization_bit", "optimizer", "weight_decay",
              "max_grad_norm"):
        out[k] = res[simple[k]]
    out["disable_gradient_checkpointing"] = not res["runtime.gradient_checkpointing"]
    out["flash_attention_v2"] = res["runtime.attention_implementation"] == "flash_attention_2"
    for k in ("lr_warmup_steps", "lr_warmup_ratio", "lr_scheduler", "full_determinism", "seed"):
        out[k] = res[simple[k]]
    if res["trainer.stage"] == "dpo":
        for k in _PREF:
            out[k] = res[simple[k]]
    if tt == "lora":
        for k in ("merge_adapter", "lora_alpha", "lora_dropout", "lora_rank"):
            out[k] = res[simple[k]]
        tm = res["adapter.target_modules"]
        out["target_modules"] = tm[0] if len(tm) == 1 else tm
    for k in ("checkpoint_strategy", "checkpoint_steps", "evaluation_strategy", "eval_steps", "checkpoint_limit",
              "save_best_checkpoint", "logging_steps"):
        if res[simple[k]] is not None:
            out[k] = res[simple[k]]
    for k, name in simple.items():  # a field FPT names one to one that nothing above wrote
        if k not in out and k not in _PREF + _LORA + ("zero_stage",) and res[name] is not None:
            out[k] = res[name]
    used |= set(simple.values())
    warnings = [w for w in leftovers(job, used, "fpt_studio", TITLES["fpt_studio"])]
    return _dump(out), warnings


def export_oci(job: JobConfig) -> tuple[str, list[str]]:
    res = job.resolved()
    tfew = res["trainer.training_type"] == "tfew"
    prof = job.profile if job.profile.startswith("oci_") else ("oci_cohere_tfew" if tfew else "oci_llama_lora")
    validate_for(job, prof)
    out: dict[str, Any] = {"trainingConfigType": "TFEW_TRAINING_CONFIG" if tfew else "LORA_TRAINING_CONFIG"}
    used = {"trainer.stage", "trainer.training_type"}
    for k, name in _oci_keys().items():
        if tfew and name.startswith("adapter."):
            continue
        out[k] = res[name]
        used.add(name)
    warnings = leftovers(job, used, prof, TITLES["oci"])
    return _dump(out), warnings


def export_watsonx(job: JobConfig) -> tuple[str, list[str]]:
    res = job.resolved()
    method = res["trainer.training_type"]
    prof = job.profile if job.profile.startswith("watsonx_") else {
        "lora": "watsonx_lora", "qlora": "watsonx_qlora", "full": "watsonx_full",
        "prompt_tuning": "watsonx_prompt_tuning"}.get(method, "watsonx_full")
    validate_for(job, prof)
    out: dict[str, Any] = {"base_model": {"model_id": res["model.name_or_path"]}}
    used = {"trainer.stage", "trainer.training_type", "model.name_or_path", "data.train_path", "data.format"}
    if method == "prompt_tuning":
        out["tuning_type"] = "prompt_tuning"
    for k, name in _watsonx_keys().items():
        out[k] = res[name]
        used.add(name)
    if method == "prompt_tuning":
        out["init_method"] = res["adapter.prompt_tuning_init"]
        used.add("adapter.prompt_tuning_init")
        if res["adapter.prompt_tuning_init_text"]:
            out["init_text"] = res["adapter.prompt_tuning_init_text"]
        if res["trainer.task_type"]:
            out["task_id"] = res["trainer.task_type"]
        used.update(("adapter.prompt_tuning_init_text", "trainer.task_type"))
    else:
        peft: dict[str, Any] = {"type": "none" if method == "full" else method}
        if method in ("lora", "qlora"):
            for k, name in _watsonx_peft().items():
                peft[k] = res[name]
                used.add(name)
        out["peft_parameters"] = peft
    if res["launch.procs_per_node"] != 1:
        out["gpu"] = {"num": res["launch.procs_per_node"]}
    used.add("launch.procs_per_node")
    warnings = leftovers(job, used, prof, TITLES["watsonx"])
    return _dump(out), warnings


IMPORTERS = {"fpt_studio": import_fpt, "oci": import_oci, "watsonx": import_watsonx}
EXPORTERS = {"fpt_studio": export_fpt, "oci": export_oci, "watsonx": export_watsonx}
