"""The estimator's activations part against what autograd really saves, tensor by tensor.

The tiny model is built, wrapped for the tuning method exactly as the worker does it
(``engine.train.modeling.load_model`` / ``apply_method``), and run forward once in training mode
(under CPU autocast for bf16, as Accelerate runs the worker's forward). Every tensor autograd
saves for the backward pass while a decoder layer or the final norm runs is recorded by storage
(views and tensors shared between modules counted once; parameters left out). Their bytes must be
the ``activations`` part of ``engine.estimate.estimate`` for the same job, from config.json only.

This is what bench/activations_cpu.py measures on two larger shapes through the resident set;
here, exact bytes and every tuning method, in seconds.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from engine.schema import JobConfig
from engine.estimate import estimate
from engine.tiny import ensure_tiny_model

BATCH, SEQ = 2, 48
ALL = ["all-linear"]
CASES = [  # (method, mixed precision, extra values)
    ("full", "none", {}),
    ("full", "bf16", {}),
    ("freeze", "none", {"adapter.freeze_trainable_layers": 1}),
    ("freeze", "bf16", {"adapter.freeze_trainable_layers": 1}),
    ("lora", "none", {"adapter.target_modules": ALL, "adapter.lora_dropout": 0.0}),
    ("lora", "bf16", {"adapter.target_modules": ALL, "adapter.lora_dropout": 0.0}),
    ("lora", "none", {"adapter.target_modules": ["q_proj", "v_proj"], "adapter.lora_dropout": 0.0}),
    ("lora", "none", {"adapter.target_modules": ALL, "adapter.lora_dropout": 0.1}),
    ("lora", "bf16", {"adapter.target_modules": ["q_proj", "o_proj", "down_proj"], "adapter.lora_dropout": 0.1}),
    ("tfew", "none", {}),
    ("tfew", "bf16", {}),
    ("prompt_tuning", "none", {}),
    ("prompt_tuning", "bf16", {}),
    ("full", "none", {"runtime.attention_implementation": "eager"}),
    ("lora", "bf16", {"adapter.target_modules": ALL, "adapter.lora_dropout": 0.0,
                      "runtime.attention_implementation": "eager"}),
    ("lora", "none", {"adapter.target_modules": ["o_proj", "gate_proj"], "adapter.lora_dropout": 0.0,
                      "runtime.attention_implementation": "eager"}),
    ("tfew", "bf16", {"adapter.target_modules": ["q_proj", "v_proj", "down_proj"]}),
    ("freeze", "bf16", {"adapter.freeze_trainable_layers": 2}),
    # the first layer keeps nothing before its first trained module (no gradient flows into its input)
    ("lora", "none", {"adapter.target_modules": ["up_proj"], "adapter.lora_dropout": 0.0}),
    ("lora", "bf16", {"adapter.target_modules": ["gate_proj", "down_proj"], "adapter.lora_dropout": 0.1}),
    ("tfew", "none", {"adapter.target_modules": ["down_proj"]}),
]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """The tiny model as built (float32) and saved again in bfloat16 (a checkpoint's usual dtype)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    fp32 = ensure_tiny_model()
    bf16 = tmp_path_factory.mktemp("tiny-bf16")
    AutoModelForCausalLM.from_pretrained(fp32, dtype=torch.bfloat16).save_pretrained(bf16)
    AutoTokenizer.from_pretrained(fp32).save_pretrained(bf16)
    assert json.loads((bf16 / "config.json").read_text())["dtype"] == "bfloat16"
    return {"float32": fp32, "bfloat16": bf16}


#: other architectures, random weights from config (the tiny tokenizer's 512 ids): Qwen3's q/k norms and the
#: mixture-of-experts blocks of transformers 5 (router, fused experts, Qwen2-MoE's shared expert)
SMALL = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
         "num_key_value_heads": 2, "vocab_size": 512, "max_position_embeddings": 256, "head_dim": 16}
ARCHS = {
    "qwen3": {"model_type": "qwen3"},
    "mixtral": {"model_type": "mixtral", "num_local_experts": 4, "num_experts_per_tok": 2},
    "qwen3_moe": {"model_type": "qwen3_moe", "num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 96},
    "qwen2_moe": {"model_type": "qwen2_moe", "num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 96,
                  "shared_expert_intermediate_size": 128},
}
ARCH_CASES = [(arch, method, mp, extra) for arch in ARCHS for method, mp, extra in (
    ("full", "none", {}),
    ("full", "bf16", {}),
    ("lora", "bf16", {"adapter.target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"], "adapter.lora_dropout": 0.0}),
)]


@pytest.fixture(scope="module")
def arch_checkpoints(tmp_path_factory) -> dict[str, Path]:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(ensure_tiny_model())
    out = {}
    for name, a in ARCHS.items():
        d = tmp_path_factory.mktemp(name)
        cfg = AutoConfig.for_model(a["model_type"], **SMALL, **{k: v for k, v in a.items() if k != "model_type"},
                                   pad_token_id=1, bos_token_id=0, eos_token_id=2)
        torch.manual_seed(0)
        AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).save_pretrained(d)
        tok.save_pretrained(d)
        out[name] = d
    return out


def saved_bytes(model, ids, autocast: bool) -> int:
    """Bytes of the distinct storages autograd saves inside the decoder layers and the final norm."""
    names = {m: n for n, m in model.named_modules()}
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    stack: list[str] = []
    seen: dict[int, int] = {}

    def pack(t):
        st = t.untyped_storage()
        where = stack[-1] if stack else ""
        if st.data_ptr() not in params and (re.search(r"layers\.\d+", where) or where.endswith(".norm")):
            seen.setdefault(st.data_ptr(), st.nbytes())
        return t

    hooks = [torch.nn.modules.module.register_module_forward_pre_hook(lambda m, a: stack.append(names.get(m, ""))),
             torch.nn.modules.module.register_module_forward_hook(lambda m, a, o: (stack.pop(), None)[1])]
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), \
                torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            model(input_ids=ids)
    finally:
        for h in hooks:
            h.remove()
    return sum(seen.values())


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("method,mp,extra", CASES, ids=[f"{m}-{p}-{i}" for i, (m, p, _) in enumerate(CASES)])
def test_activations_are_what_autograd_saves(checkpoints, dtype, method, mp, extra):
    check(checkpoints[dtype], method, mp, extra, rel=0.005)


@pytest.mark.parametrize("arch,method,mp,extra", ARCH_CASES,
                         ids=[f"{a}-{m}-{p}-{i % 3}" for i, (a, m, p, _) in enumerate(ARCH_CASES)])
def test_other_architectures(arch_checkpoints, arch, method, mp, extra):
    # the MoE router's bookkeeping (indices, counts) is priced per token and expert as measured here
    check(arch_checkpoints[arch], method, mp, extra, rel=0.01)


def check(path: Path, method: str, mp: str, extra: dict, rel: float) -> None:
    from engine.train.modeling import apply_method, load_config, load_model

    values = {"model.name_or_path": str(path), "data.train_path": "x.jsonl", "launch.device": "cpu",
              "trainer.training_type": method, "runtime.mixed_precision": mp,
              "runtime.gradient_checkpointing": False, "runtime.attention_implementation": "sdpa",
              "general.batch_size": BATCH, "general.max_sequence_length": SEQ, **extra}
    res = JobConfig(values=values).resolved()
    warn = lambda m: None  # noqa: E731
    p, cfg = load_config(res, warn)
    torch.manual_seed(0)
    model = apply_method(load_model(p, cfg, res, "cpu"), res, p, "cpu", warn)
    model.train()
    ids = torch.randint(3, cfg.vocab_size, (BATCH, SEQ))
    real = saved_bytes(model, ids, autocast=mp == "bf16")
    config = json.loads((Path(path) / "config.json").read_text())
    predicted = estimate(res, model_config=config).part("activations").bytes
    assert predicted == pytest.approx(real, rel=rel), f"predicted {predicted:,.0f} B, autograd saved {real:,} B"


@pytest.mark.parametrize("arch", list(ARCHS))
@pytest.mark.parametrize("targets", [["all-linear"], []], ids=["all-linear", "default"])
def test_lora_on_other_architectures_trains_what_the_estimate_counts(arch, targets):
    """The default LoRA job (all-linear, dropout 0.05) on a mixture-of-experts model.

    PEFT 0.21's all-linear also wraps transformers 5's fused expert tensors, which refuse dropout
    ("lora.ParamWrapper does not work with lora_dropout != 0": the default job failed); and PEFT has
    no default targets for Qwen2-MoE / Qwen3-MoE. The worker trains the Linear layers only.
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    from engine.train.modeling import apply_method

    a = ARCHS[arch]
    cfg = AutoConfig.for_model(a["model_type"], **SMALL, **{k: v for k, v in a.items() if k != "model_type"})
    res = JobConfig(values={"model.name_or_path": "x", "data.train_path": "x.jsonl", "launch.device": "cpu",
                            "trainer.training_type": "lora", "adapter.target_modules": targets}).resolved()
    assert res["adapter.lora_dropout"] > 0
    model = apply_method(AutoModelForCausalLM.from_config(cfg), res, "x", "cpu", lambda m: None)
    real = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert estimate(res, model_config={**SMALL, **a}).trainable_params == real


def test_qlora_on_a_moe_model_warns_that_the_experts_stay_unquantized():
    from transformers import AutoConfig, AutoModelForCausalLM

    from engine.train.modeling import apply_method

    said: list[str] = []
    a = ARCHS["mixtral"]
    cfg = AutoConfig.for_model(a["model_type"], **SMALL, **{k: v for k, v in a.items() if k != "model_type"})
    res = JobConfig(values={"model.name_or_path": "x", "data.train_path": "x.jsonl", "launch.device": "cuda",
                            "trainer.training_type": "qlora"}).resolved()
    apply_method(AutoModelForCausalLM.from_config(cfg), res, "x", "cpu", said.append)
    assert any("fused experts stay unquantized" in m for m in said), said
    said.clear()
    dense = AutoConfig.for_model("llama", **{k: v for k, v in SMALL.items()})
    apply_method(AutoModelForCausalLM.from_config(dense), res, "x", "cpu", said.append)
    assert not any("experts" in m for m in said)
