"""Model and tokenizer loading, tuning methods (full, LoRA, QLoRA, T-Few, prompt tuning, freeze)."""

from __future__ import annotations

import importlib.util
from typing import Any, Callable

from engine.schema import ALL_LINEAR_LLAMA, DEFAULT_TARGET_MODULES
from engine.errors import FinetuiError
from engine.tiny import resolve_model_path


class UserError(FinetuiError, RuntimeError):
    """A problem the user can fix: ``str()`` is one line naming the field."""


#: schema dropout field → config attributes that architectures use for it
DROPOUT_ATTRS = {
    "model.hidden_dropout": ("hidden_dropout", "hidden_dropout_prob", "resid_pdrop", "resid_dropout", "dropout"),
    "model.attention_dropout": ("attention_dropout", "attention_probs_dropout_prob", "attn_pdrop", "attn_dropout"),
    "model.ffn_dropout": ("ffn_dropout", "activation_dropout", "mlp_dropout", "ffn_dropout_prob"),
}
FFN_NAMES = ("down_proj", "fc2", "w2", "dense_4h_to_h", "c_proj", "fc_out")


def load_config(res: dict, warn: Callable[[str], None]) -> tuple[str, Any]:
    from transformers import AutoConfig

    from engine.hub import not_cached_hint, offline_if_unreachable

    path = resolve_model_path(res["model.name_or_path"])
    note = offline_if_unreachable(path)
    if note:
        warn(note)
    try:
        cfg = AutoConfig.from_pretrained(path, trust_remote_code=res["model.trust_remote_code"])
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__
        raise UserError(f"model.name_or_path: cannot load {res['model.name_or_path']!r}: {first}"
                        f"{not_cached_hint(path)}") from None
    lacking = []
    for name, attrs in DROPOUT_ATTRS.items():
        v = res.get(name)
        if v is None:
            continue
        hit = [a for a in attrs if hasattr(cfg, a)]
        if hit:
            setattr(cfg, hit[0], float(v))
        else:
            lacking.append(name)
    if lacking:
        warn(f"the {getattr(cfg, 'model_type', 'model')} architecture has no "
             f"{', '.join(n.split('.')[1].replace('_', ' ') for n in lacking)}; "
             f"{', '.join(lacking)} not applied")
    return path, cfg


def load_tokenizer(path: str, res: dict, warn: Callable[[str], None]) -> Any:
    from transformers import AutoTokenizer

    from engine.data.tokenize import prepare_tokenizer

    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=res["model.trust_remote_code"])
    prepare_tokenizer(tok, res["trainer.stage"], warn)  # the data check's preview does the same
    return tok


def check_runtime(res: dict, device: str) -> None:
    """Clear one-line errors for missing optional packages / hardware."""
    if res["runtime.attention_implementation"] == "flash_attention_2":
        if device != "cuda":
            raise UserError("runtime.attention_implementation: flash_attention_2 needs a GPU (allowed: sdpa, eager)")
        if importlib.util.find_spec("flash_attn") is None:
            raise UserError("runtime.attention_implementation: flash_attention_2 needs the flash-attn package, "
                            "which is not installed (pip install flash-attn, or use sdpa)")
    if res["trainer.training_type"] == "qlora" or res.get("runtime.quantization_bit") not in (None, "none"):
        if device != "cuda":
            raise UserError("trainer.training_type: QLoRA (bitsandbytes quantization) needs a CUDA GPU; "
                            "use lora on CPU")
        if importlib.util.find_spec("bitsandbytes") is None:
            raise UserError("runtime.quantization_bit: QLoRA needs the bitsandbytes package, which is not "
                            "installed (pip install bitsandbytes)")
    if res["runtime.liger_kernel"] and device == "cuda" and importlib.util.find_spec("liger_kernel") is None:
        raise UserError("runtime.liger_kernel: the liger-kernel package is not installed (pip install liger-kernel)")
    if res["runtime.mixed_precision"] == "fp16" and device != "cuda":
        raise UserError("runtime.mixed_precision: fp16 needs a GPU; it is refused on CPU (allowed: bf16, none)")
    if device == "cuda":
        check_gpus(res)


def check_gpus(res: dict) -> None:
    """The GPUs of this node against the job, with torch (the launch checked with nvidia-smi where it could):
    one rank per visible GPU, bf16 and flash-attention-2 on Ampere (compute capability 8.0) or newer."""
    import os

    import torch

    from engine.gpus import problems

    n = torch.cuda.device_count()
    ranks = int(os.environ.get("LOCAL_WORLD_SIZE") or res.get("launch.procs_per_node") or 1)
    if ranks > n:
        raise UserError(f"launch.procs_per_node: {ranks} ranks on this node but it has {n} visible GPU"
                        f"{'s' if n != 1 else ''} (one rank per GPU; allowed: 1–{max(n, 1)})")
    from engine.gpus import Gpu

    gpus = []
    for i in range(min(n, ranks)):
        p = torch.cuda.get_device_properties(i)
        gpus.append(Gpu(i, "", p.name, p.total_memory / 2**20, (p.major, p.minor)))
    for field, msg, allowed in problems({**res, "launch.procs_per_node": len(gpus)}, gpus, "this node"):
        raise UserError(f"{field}: {msg} (allowed: {allowed})")


def load_model(path: str, cfg: Any, res: dict, device: str) -> Any:
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoModelForSequenceClassification

    kw: dict[str, Any] = {"config": cfg, "trust_remote_code": res["model.trust_remote_code"],
                          "attn_implementation": res["runtime.attention_implementation"]}
    q = quantization(res, device)
    if q is not None:
        kw["quantization_config"], kw["dtype"] = q
    else:
        kw["dtype"] = load_dtype(res, device)
    if res["trainer.stage"] == "reward":
        cfg.num_labels = 1
        model = AutoModelForSequenceClassification.from_pretrained(path, **kw)
    elif hasattr(cfg, "vision_config"):  # a vision-language model (LLaVA, Qwen2-VL, ...): its image-text class
        model = AutoModelForImageTextToText.from_pretrained(path, **kw)
    else:
        model = AutoModelForCausalLM.from_pretrained(path, **kw)
    return model


def quantization(res: dict, device: str) -> tuple[Any, Any] | None:
    """QLoRA's (BitsAndBytesConfig, compute dtype); None for an unquantized job.  Under ZeRO-3 the 4-bit weights
    are stored in the compute dtype (``bnb_4bit_quant_storage``): ZeRO-3 partitions every parameter alike, and
    uint8 storage beside bf16 weights cannot be sharded (PEFT's DeepSpeed ZeRO-3 QLoRA recipe)."""
    import torch

    q = res.get("runtime.quantization_bit")
    if res["trainer.training_type"] != "qlora" or q in (None, "none"):
        return None
    from transformers import BitsAndBytesConfig

    compute = torch.bfloat16 if _bf16(res, device) else torch.float16
    if int(q) == 4:
        extra = {"bnb_4bit_quant_storage": compute} if zero3(res) else {}
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute,
                                  bnb_4bit_use_double_quant=True, **extra), compute
    return BitsAndBytesConfig(load_in_8bit=True), compute


def _bf16(res: dict, device: str) -> bool:
    mp = res["runtime.mixed_precision"]
    if mp == "bf16":
        return True
    if mp == "auto" and device == "cuda":
        import torch

        # (counting emulation, torch says yes on a T4 / V100: bf16 there is emulated, slow, and refused by kernels)
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    return False


def precision(res: dict, device: str) -> tuple[bool, bool]:
    """(bf16, fp16) for the TrainingArguments."""
    if device != "cuda":
        if res["runtime.mixed_precision"] == "bf16":
            return True, False  # CPU autocast in bf16, asked for explicitly
        return False, False
    bf = _bf16(res, device)
    return bf, (res["runtime.mixed_precision"] == "fp16" or (res["runtime.mixed_precision"] == "auto" and not bf))


def zero3(res: dict) -> bool:
    return res["trainer.distributed_backend"] == "deepspeed" and int(res["trainer.zero_stage"] or 0) == 3


def load_dtype(res: dict, device: str) -> Any:
    """The dtype the (unquantized) weights are loaded in.  Without mixed precision: float32 (a bf16 checkpoint
    trained as stored is pure bf16: most small updates round away).  Mixed precision: the compute dtype, as
    LLaMA-Factory loads (frozen weights and the base under adapters take half the memory; the trainable ones are
    upcast to float32 after loading, :func:`upcast_trainable`); full fine-tuning loads float32 directly (every
    weight is a master weight), except under ZeRO-3, where DeepSpeed partitions in the compute dtype and keeps
    float32 master partitions itself."""
    import torch

    bf16, fp16 = precision(res, device)
    if not (bf16 or fp16):
        return torch.float32
    if res["trainer.training_type"] == "full" and not zero3(res):
        return torch.float32
    return torch.bfloat16 if bf16 else torch.float16


def upcast_trainable(model: Any, res: dict) -> int:
    """Trainable half-precision parameters → float32 (the master weights mixed precision needs: AdamW states in
    the parameter's dtype and bf16 updates at 1e-5 round to nothing; fp16 gradients cannot be unscaled).  Not
    under ZeRO-3 (DeepSpeed's float32 partitions are the master weights there).  → parameters upcast."""
    import torch

    if zero3(res):
        return 0
    n = 0
    for p in model.parameters():
        if p.requires_grad and p.dtype in (torch.bfloat16, torch.float16):
            p.data = p.data.float()
            n += p.numel()
    return n


def dtype_summary(model: Any) -> dict[str, str]:
    """The dtypes the model trains with: trainable and frozen parameters, and ZeRO-3's partitions
    (``ds_tensor``) where the parameters are sharded."""
    def names(ps: list) -> str:
        return ", ".join(sorted({str(p.dtype).replace("torch.", "") for p in ps}))

    ps = list(model.parameters())
    out = {"trainable_dtype": names([p for p in ps if p.requires_grad]),
           "frozen_dtype": names([p for p in ps if not p.requires_grad])}
    shards = [p.ds_tensor for p in ps if getattr(p, "ds_tensor", None) is not None]
    if shards:
        out["partition_dtype"] = names(shards)
    return {k: v for k, v in out.items() if v}


def linear_names(model: Any) -> list[str]:
    import torch.nn as nn

    names = set()
    for n, m in model.named_modules():
        cls = type(m).__name__
        if isinstance(m, nn.Linear) or cls in ("Linear4bit", "Linear8bitLt", "Conv1D"):
            leaf = n.rsplit(".", 1)[-1]
            if leaf not in ("lm_head", "score", "classifier", "embed_out", "output"):
                names.add(leaf)
    return sorted(names)


_ROUTERS = ("gate", "router", "shared_expert_gate")  # MoE routing Linears: all-linear leaves them frozen


def _moe(model: Any) -> bool:
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    return any(getattr(cfg, k, None) for k in ("num_local_experts", "num_experts", "n_routed_experts"))


def find_unused_parameters(model: Any) -> bool | None:
    """DDP's ``find_unused_parameters`` for the model: a mixture-of-experts model leaves the experts a batch did
    not route to without gradients (on: known); a vision-language model's choice is TRL's (None: on unless
    reentrant checkpointing); a dense text model uses every trainable weight in each step (off: the extra pass
    over the graph is wasted)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if _moe(base):
        return True
    if hasattr(base.config, "vision_config"):
        return None
    return False


def target_modules(res: dict, model: Any) -> Any:
    tm = list(res.get("adapter.target_modules") or [])
    mt = getattr(model.config, "model_type", "")
    if tm == [] or tm is None:
        if DEFAULT_TARGET_MODULES.get(mt):
            return DEFAULT_TARGET_MODULES[mt]
        from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as PEFT_DEFAULTS

        if mt not in PEFT_DEFAULTS and {"q_proj", "v_proj"} <= set(linear_names(model)):
            return ["q_proj", "v_proj"]  # PEFT knows no default (Qwen2-MoE, Qwen3-MoE): q and v, as the estimate
        return None  # peft's own default for the architecture
    if tm == ["all-linear"] or "all-linear" in tm:
        if _moe(model):
            # PEFT's all-linear also wraps a mixture-of-experts model's fused expert tensors (target_parameters):
            # they refuse LoRA dropout ("ParamWrapper does not work with lora_dropout != 0", the default job
            # failed) and multiply the adapter; finetui trains the Linear layers (attention, a shared expert) and
            # leaves the experts and the router frozen, as the estimate counts them
            return [n for n in linear_names(model) if n not in _ROUTERS]
        return "all-linear"
    known = set(linear_names(model))
    missing = [t for t in tm if t not in known and not any(k.endswith(t) for k in known)]
    if missing:
        raise UserError(f"adapter.target_modules: {', '.join(missing)} not found in the model "
                        f"(allowed: all-linear, or some of {', '.join(sorted(known)) or ', '.join(ALL_LINEAR_LLAMA)})")
    return tm


def apply_method(model: Any, res: dict, tokenizer_path: str, device: str,
                 warn: Callable[[str], None]) -> Any:
    """Wrap / freeze the model for the tuning method; returns the model to train."""
    method = res["trainer.training_type"]
    stage = res["trainer.stage"]
    task = "SEQ_CLS" if stage == "reward" else "CAUSAL_LM"
    gc = bool(res["runtime.gradient_checkpointing"])
    if method == "full":
        return model
    if method == "freeze":
        layers = _decoder_layers(model)
        if layers is None:
            raise UserError("trainer.training_type: freeze needs a decoder-layer list; this architecture has none "
                            "that finetui recognises (use lora or full)")
        n = int(res["adapter.freeze_trainable_layers"])
        if n > len(layers):
            warn(f"adapter.freeze_trainable_layers = {n} but the model has {len(layers)} layers; training all")
            n = len(layers)
        for p in model.parameters():
            p.requires_grad_(False)
        for layer in list(layers)[-n:]:
            for p in layer.parameters():
                p.requires_grad_(True)
        if stage == "reward":
            for n_, p in model.named_parameters():
                if n_.startswith(("score", "classifier")):
                    p.requires_grad_(True)
        if gc:
            model.enable_input_require_grads()
        return model
    import peft

    if method == "qlora" and not zero3(res):
        # (not under ZeRO-3: it upcasts every unquantized parameter to float32 beside the bf16-stored 4-bit ones,
        # which ZeRO-3 then shards unevenly — PEFT's ZeRO-3 QLoRA recipe leaves it out)
        if _moe(model):
            warn("trainer.training_type: QLoRA quantizes Linear layers only; this mixture-of-experts model's fused "
                 "experts stay unquantized and become fp32 (prepare_model_for_kbit_training): little memory is "
                 "saved — `finetui estimate` shows how much")
        model = peft.prepare_model_for_kbit_training(model, use_gradient_checkpointing=gc,
                                                     gradient_checkpointing_kwargs={"use_reentrant": False})
    if method in ("lora", "qlora"):
        cfg = peft.LoraConfig(r=int(res["adapter.lora_rank"]), lora_alpha=int(res["adapter.lora_alpha"]),
                              lora_dropout=float(res["adapter.lora_dropout"]),
                              target_modules=target_modules(res, model), task_type=task)
    elif method == "tfew":
        tm = target_modules(res, model)
        if tm == "all-linear":
            tm = linear_names(model)
        if tm is None:
            cfg = peft.IA3Config(task_type=task)
        else:
            ff = [t for t in tm if t in FFN_NAMES]
            cfg = peft.IA3Config(target_modules=tm, feedforward_modules=ff, task_type=task)
    elif method == "prompt_tuning":
        init = res["adapter.prompt_tuning_init"]
        kw: dict[str, Any] = {"task_type": task, "num_virtual_tokens": int(res["adapter.num_virtual_tokens"])}
        if init == "text":
            kw.update(prompt_tuning_init=peft.PromptTuningInit.TEXT,
                      prompt_tuning_init_text=res["adapter.prompt_tuning_init_text"],
                      tokenizer_name_or_path=tokenizer_path)
        else:
            kw["prompt_tuning_init"] = peft.PromptTuningInit.RANDOM
        cfg = peft.PromptTuningConfig(**kw)
    else:
        raise UserError(f"trainer.training_type: unknown method {method!r}")
    if gc and (method != "qlora" or zero3(res)):
        model.enable_input_require_grads()
    return peft.get_peft_model(model, cfg)


def _decoder_layers(model: Any) -> Any:
    import torch.nn as nn

    best = None
    for n, m in model.named_modules():
        if isinstance(m, nn.ModuleList) and n.rsplit(".", 1)[-1] in ("layers", "h", "blocks", "layer"):
            if best is None or len(m) > len(best):
                best = m
    return best


def loraplus_optimizer(model: Any, res: dict) -> Any:
    """LoRA+ (peft.optimizers.create_loraplus_optimizer): B matrices learn ratio × faster."""
    import torch
    from peft.optimizers import create_loraplus_optimizer

    lr = float(res["general.learning_rate"])
    if res["runtime.optimizer"] == "sgd":
        return create_loraplus_optimizer(model, torch.optim.SGD, lr=lr,
                                         loraplus_lr_ratio=float(res["adapter.loraplus_lr_ratio"]),
                                         weight_decay=float(res["runtime.weight_decay"]))
    return create_loraplus_optimizer(model, torch.optim.AdamW, lr=lr,
                                     loraplus_lr_ratio=float(res["adapter.loraplus_lr_ratio"]),
                                     betas=(float(res["runtime.adam_beta1"]), float(res["runtime.adam_beta2"])),
                                     eps=float(res["runtime.adam_epsilon"]),
                                     weight_decay=float(res["runtime.weight_decay"]))
