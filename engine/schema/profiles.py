"""Provider profiles: data only.

Each profile overlays the ranges, enums and defaults its provider's document
states (see ``shared/spec/seed-parameters.md``) on the native schema in
``engine/schema/fields.py``: a field's override is an :class:`Override` (any of its
bounds, choices and default); a rule is written once, as the override of the field it
limits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.schema.fields import FIELD_BY_NAME, FORMATS_BY_STAGE, METHODS, STAGES, Range
from engine.schema.problems import ConfigError, Problem, suggest


class _Keep:
    def __repr__(self) -> str:
        return "KEEP"


#: an :class:`Override` attribute left as the field declares it
KEEP: Any = _Keep()


@dataclass(frozen=True)
class Override:
    """What a profile changes in one field: any of its bounds, its choices and its default; what is not given
    stays as the field declares it.  A bound that is given drops the field's exclusivity of that bound unless
    restated."""

    min: float | None = KEEP
    max: float | None = KEEP
    min_exclusive: bool = KEEP
    max_exclusive: bool = KEEP
    choices: tuple[Any, ...] = KEEP
    default: Any = KEEP

    @property
    def sets_default(self) -> bool:
        return self.default is not KEEP

    @property
    def limits(self) -> bool:
        """It changes the field's range or choices (what a value may be)."""
        return any(v is not KEEP for v in (self.min, self.max, self.min_exclusive, self.max_exclusive, self.choices))

    def range(self, base: Range | None) -> Range | None:
        """The field's range ``base`` under this override."""
        if all(v is KEEP for v in (self.min, self.max, self.min_exclusive, self.max_exclusive)):
            return base
        base = base or Range()

        def pick(v: Any, keep: Any) -> Any:
            return keep if v is KEEP else v

        return Range(pick(self.min, base.min), pick(self.max, base.max),
                     pick(self.min_exclusive, base.min_exclusive if self.min is KEEP else False),
                     pick(self.max_exclusive, base.max_exclusive if self.max is KEEP else False))

    def choices_of(self, base: tuple[Any, ...] | None) -> tuple[Any, ...] | None:
        return base if self.choices is KEEP else tuple(self.choices)


O = Override


@dataclass(frozen=True)
class ModelDefaults:
    """Defaults a profile gives one model family (its document's per-model table), over the profile's own.

    ``match``: lower-case parts of the model id, any of which selects it (a family name such as ``llama``, or
    an id); ``task_type``: the table's column when it is keyed by task too (None: any task)."""

    match: tuple[str, ...]
    label: str  # the model as the document names it
    fields: dict[str, Any]
    task_type: str | None = None

    def applies(self, model: str, task: str | None) -> bool:
        m = model.lower()
        if m.startswith("finetui:"):  # the built-in demo model is no provider's model
            return False
        return any(k in m for k in self.match) and (self.task_type is None or self.task_type == task)


@dataclass(frozen=True)
class Profile:
    name: str
    title: str
    source: str  # which document
    description: str
    fields: dict[str, Override] = field(default_factory=dict)
    stages: tuple[str, ...] = STAGES
    formats_by_stage: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(FORMATS_BY_STAGE))
    max_steps_epochs_exclusive: bool = False
    replicas_by_model: dict[str, tuple[int, ...]] = field(default_factory=dict)
    models: tuple[str, ...] = ()  # the provider's catalog
    allow_own_models: bool = True
    #: file suffixes the service reads data from (a rule of the service: other files are errors)
    data_suffixes: tuple[str, ...] = ()
    #: a data format the service reads from these file suffixes only (FPT pipeline: ShareGPT_Image is a zip)
    format_suffixes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: limitations of the service's own infrastructure that finetui does not share when it runs the job:
    #: field → why the service would not accept a value other than the profile's default (a warning)
    service_limitations: dict[str, str] = field(default_factory=dict)
    #: the layer names the document allows in target_modules, by model architecture (config.json model_type);
    #: checked when the model's config can be read without downloading
    layers_by_architecture: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: catalog models the document marks deprecated (a warning)
    deprecated_models: tuple[str, ...] = ()
    #: per-model defaults, first match wins; fields the user set are never touched
    model_defaults: tuple[ModelDefaults, ...] = ()

    @property
    def methods(self) -> tuple[str, ...]:
        """The tuning methods the profile offers: its choices of trainer.training_type."""
        ov = self.fields.get("trainer.training_type")
        return ov.choices_of(METHODS) if ov is not None else METHODS

    def default(self, name: str) -> Any:
        """The default of field ``name`` in this profile: its override, else the field's own."""
        ov = self.fields.get(name)
        return ov.default if ov is not None and ov.sets_default else FIELD_BY_NAME[name].default

    def defaults_for(self, model: str, task: str | None = None) -> ModelDefaults | None:
        return next((d for d in self.model_defaults if d.applies(str(model or ""), task)), None)


# (the provider's list says "Llama-3.2-8B-Instruct", a model Meta never released: the 8B instruct is Llama-3.1's)
FPT_PIPELINE_MODELS = (
    "meta-llama/Llama-3.1-8B", "meta-llama/Llama-3.2-1B", "meta-llama/Llama-3.1-8B-Instruct",
    "meta-llama/Llama-3.2-11B-Vision-Instruct", "meta-llama/Llama-3.3-70B-Instruct",
    "meta-llama/Meta-Llama-3-8B-Instruct", "Qwen/Qwen2-0.5B-Instruct", "Qwen/Qwen2-VL-7B-Instruct",
    "Qwen/Qwen2-VL-72B", "Qwen/Qwen2-VL-72B-Instruct", "Qwen/Qwen2.5-0.5B-Instruct",
    "Qwen/Qwen2.5-14B-Instruct", "Qwen/Qwen2.5-32B-Instruct", "Qwen/Qwen2.5-VL-72B-Instruct",
    "mistralai/Mixtral-8x7B-v0.1", "mistralai/Mixtral-8x22B-v0.1", "mistralai/Mixtral-8x22B-Instruct-v0.1",
    "deepseek-ai/DeepSeek-R1", "deepseek-ai/DeepSeek-R1-Distill-Llama-70B", "deepseek-ai/DeepSeek-V3-0324",
)

_FPT_STUDIO_FIELDS: dict[str, Override] = {
    "general.batch_size": O(min=1),
    "general.epochs": O(min=1),
    "general.learning_rate": O(min=0, min_exclusive=True, max=1, max_exclusive=True),
    "general.max_sequence_length": O(min=1),
    "trainer.training_type": O(choices=("full", "lora")),
    "trainer.distributed_backend": O(choices=("ddp", "deepspeed")),  # (FPT: DDP or DeepSpeed, no FSDP)
    "trainer.zero_stage": O(choices=(1, 2, 3)),
    "runtime.gradient_accumulation_steps": O(min=1),
    "runtime.mixed_precision": O(choices=("bf16", "fp16", "none"), default="bf16"),
    "runtime.quantization_bit": O(choices=("none",)),
    "runtime.optimizer": O(choices=("adamw", "sgd")),
    "runtime.weight_decay": O(min=0),
    "runtime.max_grad_norm": O(min=0),
    "runtime.lr_warmup_steps": O(min=0),
    "runtime.lr_warmup_ratio": O(min=0, max=1, max_exclusive=True),
    "runtime.seed": O(min=0),
    "preference.dpo_label_smoothing": O(min=0, max=0.5),
    "preference.preference_beta": O(min=0, max=1),
    "preference.preference_ftx": O(min=0, max=10),
    "preference.simpo_gamma": O(min=0, min_exclusive=True),
    "adapter.lora_alpha": O(min=1),
    "adapter.lora_dropout": O(min=0, max=1),
    "adapter.lora_rank": O(min=1),
    # "target_modules: string, all-linear" is the only value the document offers
    "adapter.target_modules": O(choices=(["all-linear"],), default=["all-linear"]),
    "eval.checkpoint_steps": O(min=1),
    "eval.eval_steps": O(min=1),
    "eval.checkpoint_limit": O(min=1),
    "eval.save_best_checkpoint": O(choices=(False,)),
    "eval.logging_steps": O(min=0),
}

_NOVA_COMMON: dict[str, Override] = {
    "general.max_sequence_length": O(min=1, max=65536, default=32768),
    "general.epochs": O(min=1, max=5, default=2),
    "general.batch_size": O(default=1),
    "general.global_batch_size": O(choices=(16, 32, 64), default=64),
    "model.hidden_dropout": O(min=0, max=1, default=0.0),
    "model.attention_dropout": O(min=0, max=1, default=0.0),
    "model.ffn_dropout": O(min=0, max=1, default=0.0),
    "runtime.optimizer": O(choices=("adamw",)),
    "runtime.adam_epsilon": O(default=1e-6),
    "runtime.adam_beta1": O(min=0, max=1, default=0.9),
    "runtime.adam_beta2": O(min=0, max=1, default=0.999),
    "runtime.weight_decay": O(min=0, max=1, default=0.0),
    "runtime.lr_warmup_steps": O(min=1, max=20, default=10),
    "runtime.lr_warmup_ratio": O(choices=(0.0,)),
    "runtime.lr_scheduler": O(choices=("cosine",), default="cosine"),
    "runtime.min_lr": O(min=0, max=1, default=1e-6),
    "runtime.max_grad_norm": O(default=1.0),
    "runtime.mixed_precision": O(default="auto"),
    "data.format": O(choices=("bedrock_converse",), default="bedrock_converse"),
    "data.allow_percentage_invalid_samples": O(default=10.0),
    "eval.logging_steps": O(default=1),
    "eval.checkpoint_limit": O(default=10),
    "tracking.tensorboard": O(default=True),
    "launch.nodes": O(default=2),
}

#: The Nova document's "limitations" (SFT and PEFT sections): the service's, not finetui's.
NOVA_LIMITATIONS = {
    "general.resume_from_checkpoint": "the Nova service keeps only the last checkpoint and cannot resume from an "
                                      "intermediate one",
    "tracking.mlflow_tracking_uri": "the Nova document says the service publishes no metrics to MLflow (the "
                                    "newer real recipes carry MLflow fields)",
}

#: watsonx "Layers by architecture": every layer a LoRA adapter may target (the default targets q_proj, v_proj).
WATSONX_LAYERS = {a: ("down_proj", "up_proj", "gate_proj", "q_proj", "k_proj", "v_proj", "o_proj")
                  for a in ("llama", "granite")}

#: watsonx "LoRA fine-tuning experiment defaults", one column per base model (granite's are the profile's own).
_WX_LORA_GRANITE = {"adapter.lora_alpha": 32, "runtime.gradient_accumulation_steps": 1, "general.batch_size": 8,
                    "adapter.lora_dropout": 0.05, "general.learning_rate": 0.00001, "general.epochs": 10,
                    "adapter.lora_rank": 8, "adapter.target_modules": ["all-linear"]}
WATSONX_LORA_DEFAULTS = (
    ModelDefaults(("granite",), "granite-3-1-8b-base", _WX_LORA_GRANITE),
    ModelDefaults(("llama",), "llama-3-1-8b", {**_WX_LORA_GRANITE, "adapter.lora_alpha": 64, "general.epochs": 5,
                                               "adapter.lora_rank": 32, "adapter.target_modules": ["q_proj", "v_proj"]}),
)
#: watsonx prompt tuning: flan-t5-xl-3b's defaults, and granite-13b-instruct-v2's by task type.
_WX_PT_FLAN = {"general.batch_size": 16, "runtime.gradient_accumulation_steps": 16, "general.learning_rate": 0.3,
               "general.epochs": 20, "adapter.prompt_tuning_init": "random"}
WATSONX_PT_DEFAULTS = (
    ModelDefaults(("flan-t5",), "flan-t5-xl-3b", _WX_PT_FLAN),
    *(ModelDefaults(("granite-13b-instruct-v2",), f"granite-13b-instruct-v2 ({task})",
                    {"general.batch_size": b, "runtime.gradient_accumulation_steps": a, "general.learning_rate": lr,
                     "general.epochs": e}, task)
      for task, b, a, lr, e in (("classification", 8, 32, 0.0006, 20), ("generation", 16, 16, 0.0002, 20),
                                ("summarization", 8, 1, 0.0002, 40))),
)

NOVA_REPLICAS = {"nova-micro": (2, 4, 8), "nova-lite": (4, 8, 16, 32), "nova-pro": (6, 12, 24)}

#: what every Nova recipe shares besides its field overrides (its data, stages, replicas, models, limits)
_NOVA_RECIPE: dict[str, Any] = dict(
    stages=("sft",),
    formats_by_stage={"sft": ("bedrock_converse",)},
    max_steps_epochs_exclusive=True,
    replicas_by_model=NOVA_REPLICAS,
    data_suffixes=(".jsonl",),
    service_limitations=NOVA_LIMITATIONS,
    models=("nova-micro/prod", "nova-lite/prod", "nova-pro/prod"),
)

PROFILES: dict[str, Profile] = {
    p.name: p
    for p in [
        Profile(
            "native", "finetui native", "—",
            "Wide ranges and sensible defaults; every trainer, method and backend.",
        ),
        Profile(
            "fpt_studio", "FPT AI Studio", "000",
            "FPT AI Studio's five hyperparameter groups: Full or LoRA, DDP or DeepSpeed, no on-the-fly "
            "quantization and no best-checkpoint tracking (today).",
            fields=_FPT_STUDIO_FIELDS,
            stages=("pretrain", "sft", "dpo"),
        ),
        Profile(
            "fpt_pipeline", "FPT AI Factory pipeline", "003",
            "FPT AI Factory's fine-tuning pipeline: its base-model catalog (own models allowed), the "
            "trainer→format table, and its defaults (lr 1e-5, accumulation 4, checkpoint every 1000 steps).",
            fields={
                "general.learning_rate": O(min=1e-5, max=1e-3, default=1e-5),
                "general.batch_size": O(default=1),
                "general.epochs": O(default=1),
                "runtime.gradient_accumulation_steps": O(default=4),
                "eval.checkpoint_strategy": O(default="steps"),
                "eval.checkpoint_steps": O(default=1000),
                "general.max_sequence_length": O(default=2048),
                "trainer.training_type": O(choices=("lora", "full"), default="lora"),
                "trainer.distributed_backend": O(choices=("ddp", "deepspeed"), default="ddp"),
                "trainer.zero_stage": O(default=1),
                "data.format": O(choices=("alpaca", "corpus", "sharegpt", "sharegpt_image", "preference")),
            },
            stages=("pretrain", "sft", "dpo"),
            data_suffixes=(".json", ".zip"),  # its data-format table: json, zip (sharegpt_image: a zip)
            format_suffixes={"sharegpt_image": (".zip",)},  # "zip: train.json + images folder"
            formats_by_stage={
                "pretrain": ("corpus",),
                "sft": ("alpaca", "sharegpt", "sharegpt_image"),
                # The pipeline's table lists ShareGPT / ShareGPT_Image for DPO: sharegpt conversations with
                # chosen / rejected replies (finetui's `preference` reads them too); ShareGPT_Image: the same with
                # images (a zip: train.json + images), trained on a vision-language model
                "dpo": ("sharegpt", "sharegpt_image", "preference"),
            },
            models=FPT_PIPELINE_MODELS,
        ),
        Profile(
            "oci_llama_lora", "OCI Generative AI — Llama LoRA", "001",
            "OCI fine-tuning of meta.llama-3.x-70b-instruct with LoRA.",
            fields={
                "general.epochs": O(min=1, default=3),
                "general.learning_rate": O(min=0, min_exclusive=True, max=1.0, default=0.0002),
                "general.batch_size": O(min=8, max=16, default=8),
                "eval.early_stopping_patience": O(min=0, default=15),
                "eval.early_stopping_threshold": O(min=0, default=0.0001),
                "eval.logging_steps": O(choices=(10,), default=10),
                "eval.evaluation_strategy": O(default="steps"),
                "adapter.lora_rank": O(min=1, max=64, default=8),
                "adapter.lora_alpha": O(min=1, max=128, default=8),
                "adapter.lora_dropout": O(min=0, max=1, max_exclusive=True, default=0.1),
                "trainer.training_type": O(choices=("lora",), default="lora"),
            },
            stages=("sft",),
            models=("meta.llama-3.3-70b-instruct", "meta.llama-3.1-70b-instruct", "meta.llama-3-70b-instruct"),
            deprecated_models=("meta.llama-3-70b-instruct",),
        ),
        Profile(
            "oci_cohere_tfew", "OCI Generative AI — Cohere T-Few", "001",
            "OCI fine-tuning of cohere.command-r-08-2024 with T-Few (PEFT IA3).",
            fields={
                "general.epochs": O(min=1, max=10, default=1),
                "general.learning_rate": O(min=0.000005, max=0.1, default=0.01),
                "general.batch_size": O(min=8, max=32, default=16),
                "eval.early_stopping_patience": O(min=0, max=16, default=10),
                "eval.early_stopping_threshold": O(min=0.001, max=0.1, default=0.001),
                "eval.logging_steps": O(choices=(1,), default=1),
                "eval.evaluation_strategy": O(default="steps"),
                "trainer.training_type": O(choices=("tfew",), default="tfew"),
            },
            stages=("sft",),
            models=("cohere.command-r-08-2024", "cohere.command-r-16k"),
            deprecated_models=("cohere.command-r-16k",),
        ),
        Profile(
            "watsonx_prompt_tuning", "IBM watsonx.ai — prompt tuning", "002",
            "watsonx.ai prompt tuning (deprecated there): defaults of flan-t5-xl-3b, and of granite-13b-instruct-v2 "
            "by task type.",
            fields={
                "general.batch_size": O(min=1, max=16, default=16),
                "runtime.gradient_accumulation_steps": O(min=1, max=128, default=16),
                "general.learning_rate": O(min=0.00001, max=0.5, default=0.3),
                "general.epochs": O(min=1, max=50, default=20),
                "adapter.prompt_tuning_init": O(default="random"),
                "trainer.training_type": O(choices=("prompt_tuning",), default="prompt_tuning"),
                "trainer.task_type": O(default="generation"),
            },
            stages=("sft",),
            models=("google/flan-t5-xl", "ibm/granite-13b-instruct-v2"),
            model_defaults=WATSONX_PT_DEFAULTS,
        ),
        Profile(
            "watsonx_lora", "IBM watsonx.ai — LoRA", "002",
            "watsonx.ai LoRA on non-quantized models: granite-3-1-8b-base's starting values, llama-3-1-8b's for "
            "Llama models.",
            fields={
                "adapter.lora_rank": O(min=1, max=64, default=8),
                "adapter.lora_alpha": O(default=32),
                "adapter.lora_dropout": O(default=0.05),
                "adapter.target_modules": O(default=["all-linear"]),
                "runtime.gradient_accumulation_steps": O(default=1),
                "general.batch_size": O(default=8),
                "general.learning_rate": O(default=0.00001),
                "general.epochs": O(default=10),
                "trainer.training_type": O(choices=("lora",), default="lora"),
                # type lora: non-quantized models only (a quantized base is qlora)
                "runtime.quantization_bit": O(choices=("none",), default="none"),
            },
            stages=("sft",),
            models=("ibm-granite/granite-3.1-8b-base", "meta-llama/Llama-3.1-8B"),
            layers_by_architecture=WATSONX_LAYERS,
            model_defaults=WATSONX_LORA_DEFAULTS,
        ),
        Profile(
            "watsonx_qlora", "IBM watsonx.ai — QLoRA", "002",
            "watsonx.ai QLoRA (quantized models only).",
            fields={
                "adapter.lora_rank": O(min=1, max=64, default=8),
                "adapter.lora_alpha": O(default=32),
                "adapter.lora_dropout": O(default=0.05),
                "runtime.gradient_accumulation_steps": O(default=1),
                "general.batch_size": O(default=8),
                "general.learning_rate": O(default=0.00001),
                "general.epochs": O(default=10),
                "trainer.training_type": O(choices=("qlora",), default="qlora"),
                "runtime.quantization_bit": O(choices=(4, 8), default=4),
            },
            stages=("sft",),
            layers_by_architecture=WATSONX_LAYERS,
            model_defaults=WATSONX_LORA_DEFAULTS,
        ),
        Profile(
            "watsonx_full", "IBM watsonx.ai — full fine-tuning", "002",
            "watsonx.ai full fine-tuning (peft type none, its default).",
            fields={
                "runtime.gradient_accumulation_steps": O(default=1),
                "general.batch_size": O(default=8),
                "general.learning_rate": O(default=0.00001),
                "general.epochs": O(default=5),
                "trainer.training_type": O(choices=("full",), default="full"),
            },
            stages=("sft",),
        ),
        Profile(
            "nova_lora", "Amazon Nova (HyperPod) — LoRA SFT", "004",
            "Amazon Nova parameter-efficient SFT recipe: LoRA with LoRA+, Bedrock Converse data.",
            fields={
                **_NOVA_COMMON,
                "general.learning_rate": O(min=0, min_exclusive=True, max=1, default=1e-5),
                "adapter.lora_alpha": O(choices=(32, 64, 96, 128, 160, 192), default=32),
                "adapter.lora_rank": O(default=32),
                "adapter.lora_dropout": O(min=0, max=1, default=0.01),
                "adapter.loraplus_lr_ratio": O(min=0, max=100, default=8.0),
                "trainer.training_type": O(choices=("lora",), default="lora"),
            },
            **_NOVA_RECIPE,
        ),
        Profile(
            "nova_full", "Amazon Nova (HyperPod) — full-rank SFT", "004",
            "Amazon Nova full-rank SFT recipe: lr 1e-6–1e-3 (1e-6–1e-4 advised), Bedrock Converse data.",
            fields={
                **_NOVA_COMMON,
                "general.learning_rate": O(min=1e-6, max=1e-3, default=5e-6),
                "runtime.min_lr": O(min=0, max=1, default=5e-7),
                "general.epochs": O(min=1, max=5, default=1),
                "launch.nodes": O(default=4),
                "trainer.training_type": O(choices=("full",), default="full"),
            },
            **_NOVA_RECIPE,
        ),
    ]
}


# Packing is finetui's own speed-up, on by default in the native profile (2.03× by bench/packing.py). The
# providers train one example per sequence and count steps per example (OCI's and watsonx's step formulas),
# so their profiles keep it off by default; a user may still turn it on.
for _p in PROFILES.values():
    if _p.name != "native":
        _p.fields.setdefault("data.packing", Override(default=False))


def get(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ConfigError([Problem("profile", f"unknown profile {name!r}{suggest(name, PROFILES)}",
                                   ", ".join(PROFILES))]) from None
