"""The estimator (engine/estimate.py): steps arithmetic, memory parts, suggestions, time, CLI.

Fast: arithmetic on config.json shapes only, except one test that builds small random models
to check the exact parameter counts the memory parts start from. No training here — accuracy
against real tensors and real GPU memory is measured by bench/estimator_cpu.py and
bench/gpu_memory.py.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from engine.schema import JobConfig
from engine.estimate import GIB, estimate, oci_total_training_steps, steps_for
from engine.modelinfo import CATALOG

LLAMA_8B = CATALOG["meta-llama/Llama-3.1-8B"]
LLAMA_1B = CATALOG["meta-llama/Llama-3.2-1B"]
PARTS = ["weights", "gradients", "optimizer states", "activations", "logits", "framework overhead"]


def res(**values) -> dict:
    """A resolved job (native profile) with dotted values given as keyword names with __ for dots."""
    v = {"data.train_path": "x.jsonl", "launch.device": "cuda", "launch.procs_per_node": 1,
         "trainer.distributed_backend": "ddp", "runtime.mixed_precision": "bf16",
         "runtime.gradient_checkpointing": False, "general.batch_size": 4,
         "general.max_sequence_length": 1024, "general.epochs": 1}
    v.update({k.replace("__", "."): x for k, x in values.items()})
    return JobConfig(values=v).resolved()


def est(model=LLAMA_8B, **values):
    return estimate(res(**values), model_config=model)


# --------------------------------------------------------------------------
# Steps: OCI's formula and watsonx's worked examples (spec/seed-parameters.md)
# --------------------------------------------------------------------------


@pytest.mark.parametrize("epochs,size,batch", [(3, 1000, 8), (1, 1600, 16), (10, 4096, 32), (2, 800, 16)])
def test_oci_total_training_steps(epochs, size, batch):
    # totalTrainingSteps = (totalTrainingEpochs * size(trainingDataset)) / trainingBatchSize
    expected = epochs * size / batch
    assert oci_total_training_steps(epochs, size, batch) == expected
    st = steps_for(res(general__epochs=epochs, general__batch_size=batch), size)
    assert st.total_steps == expected  # sizes divisible by the batch: no rounding to ignore


def test_oci_formula_rounding_ignored_vs_ceil():
    # 1001 rows, batch 8: OCI's formula says 125.125 per epoch, a trainer runs the last partial batch
    st = steps_for(res(general__epochs=3, general__batch_size=8), 1001)
    assert oci_total_training_steps(3, 1001, 8) == pytest.approx(375.375)
    assert st.total_steps == 3 * 126


def test_watsonx_worked_examples():
    # 1,000 examples with batch 10 → 100 batches per epoch
    st = steps_for(res(general__batch_size=10, general__epochs=1), 1000)
    assert st.batches_per_epoch == 100 and st.updates_per_epoch == 100
    # accumulate 10 → 10 weight updates per epoch instead of 100
    st = steps_for(res(general__batch_size=10, runtime__gradient_accumulation_steps=10, general__epochs=1), 1000)
    assert st.batches_per_epoch == 100 and st.updates_per_epoch == 10
    # 20 epochs → 2,000 batches processed
    st = steps_for(res(general__batch_size=10, runtime__gradient_accumulation_steps=10, general__epochs=20), 1000)
    assert st.total_batches == 2000 and st.total_steps == 200


def test_steps_batch_accumulation_ranks_epochs():
    r = res(general__batch_size=4, runtime__gradient_accumulation_steps=2, launch__procs_per_node=2,
            launch__nodes=2, general__epochs=3)
    st = steps_for(r, 1000)
    assert st.ranks == 4 and st.effective_batch == 4 * 2 * 4
    assert st.batches_per_epoch == math.ceil(1000 / (4 * 4)) == 63
    assert st.updates_per_epoch == math.ceil(63 / 2) == 32
    assert st.total_steps == 96 and st.total_batches == 189
    assert st.tokens_per_step == 4 * 1024 * 2 * 4
    assert any("4 × 2 × 4 = 32" in f for f in st.formulas)


def test_steps_max_steps_val_size_max_samples_unknown():
    assert steps_for(res(general__max_steps=50, general__epochs=3), 1000).total_steps == 50
    st = steps_for(res(data__val_size=0.1, general__batch_size=10), 1000)
    assert st.train_examples == 900 and st.batches_per_epoch == 90
    st = steps_for(res(data__max_samples=200, general__batch_size=10), 1000)
    assert st.train_examples == 200 and st.total_steps == 20
    st = steps_for(res(general__epochs=2), None)
    assert st.total_steps is None and any("--examples" in f for f in st.formulas)


def test_steps_packing_counts_packed_sequences():
    st = steps_for(res(data__packing=True, general__batch_size=4, general__max_sequence_length=1024), 1000,
                   tokens_per_example=256)
    assert st.train_examples == 250 and st.batches_per_epoch == math.ceil(250 / 4)


# --------------------------------------------------------------------------
# Memory: every part for every method × backend × precision
# --------------------------------------------------------------------------

METHODS = ["full", "lora", "qlora", "tfew", "prompt_tuning"]
BACKENDS = {
    "ddp": {"trainer__distributed_backend": "ddp"},
    "zero1": {"trainer__distributed_backend": "deepspeed", "trainer__zero_stage": 1},
    "zero2": {"trainer__distributed_backend": "deepspeed", "trainer__zero_stage": 2},
    "zero3": {"trainer__distributed_backend": "deepspeed", "trainer__zero_stage": 3},
    "zero3-offload": {"trainer__distributed_backend": "deepspeed", "trainer__zero_stage": 3,
                      "trainer__offload_optimizer": True, "trainer__offload_params": True},
}


@pytest.mark.parametrize("precision", ["bf16", "fp16", "none"])
@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize("method", METHODS)
def test_parts_present_with_one_line_formulas(method, backend, precision):
    e = est(LLAMA_1B, trainer__training_type=method, runtime__mixed_precision=precision,
            launch__procs_per_node=4, **BACKENDS[backend])
    assert [p.name for p in e.parts] == PARTS
    for p in e.parts:
        assert p.bytes >= 0, p
        assert p.formula and "\n" not in p.formula, p
    b = {p.name: p.bytes for p in e.parts}
    if backend == "ddp":  # one micro-batch a step: the gradients meet the activations' place, not them
        assert b["weights"] + b["optimizer states"] + max(b["activations"] + b["logits"], b["gradients"]) \
            <= e.total_bytes < sum(b.values())
        assert "max(activations + logits" in e.total_formula and ", gradients" in e.total_formula
    else:  # DeepSpeed keeps gradient partitions and buckets
        assert e.total_bytes == pytest.approx(sum(b.values())) and "every part summed" in e.total_formula
    assert e.total_formula in e.to_text()
    assert 0 < e.trainable_params <= e.num_params
    if method != "full":
        assert e.trainable_params < e.num_params / 10
    assert e.part("activations").bytes > 0 and e.part("logits").bytes > 0
    if backend == "zero3-offload":
        assert e.part("weights").bytes == 0 and e.part("optimizer states").bytes == 0
        assert e.cpu_offload_bytes > 0
    text = e.to_text()
    for name in PARTS:
        assert name in text


def test_precision_changes_bytes():
    # a float32 checkpoint: fp32 computes in 4 B, bf16 (DeepSpeed casts the model) in 2 B
    f32 = {**LLAMA_8B, "dtype": "float32"}
    fp32 = est(f32, runtime__mixed_precision="none", trainer__distributed_backend="deepspeed", trainer__zero_stage=2,
               launch__procs_per_node=2)
    bf16 = est(f32, runtime__mixed_precision="bf16", trainer__distributed_backend="deepspeed", trainer__zero_stage=2,
               launch__procs_per_node=2)
    # a bf16 checkpoint without mixed precision trains in float32 (the worker loads float32: pure bf16 rounded
    # most small updates away)
    assert est(trainer__training_type="full", runtime__mixed_precision="none").part("activations").bytes > \
        est(trainer__training_type="full", runtime__mixed_precision="bf16").part("activations").bytes
    assert fp32.part("activations").bytes > bf16.part("activations").bytes
    assert fp32.part("weights").bytes > bf16.part("weights").bytes


def test_gradients_take_the_activations_place_with_one_micro_batch_a_step():
    # full fine-tuning of Llama-3.1-8B in bf16 under DDP (fp32 master weights): the backward pass frees the
    # activations as it allocates the gradients (32 GB here), and AdamW's step temporaries come after both
    e = est(trainer__training_type="full")
    b = {p.name: p.bytes for p in e.parts}
    tmp, ctx = 4 * e.num_params, 512 * 2 ** 20  # one fp32 sqrt(v) copy; the CUDA context
    assert b["framework overhead"] == pytest.approx(ctx + tmp)
    # (the fp32 LM head takes the fused head's gradient buffer as its gradient: counted with the gradients)
    assert e.total_bytes == pytest.approx(b["weights"] + b["optimizer states"] + ctx
                                          + max(b["activations"] + b["logits"], b["gradients"] + tmp))
    # gradient accumulation keeps the gradients through the next micro-batch's forward pass: every part summed
    acc = est(trainer__training_type="full", runtime__gradient_accumulation_steps=4)
    assert acc.total_bytes == pytest.approx(sum(p.bytes for p in acc.parts))
    assert "accumulation" in acc.total_formula and acc.total_bytes > e.total_bytes


def test_full_fp32_checkpoint_arithmetic():
    # a float32 checkpoint, DDP, one rank: 4 B weights + 4 B grads + 8 B AdamW per parameter
    cfg = {**LLAMA_1B, "dtype": "float32"}
    e = est(cfg, trainer__training_type="full")
    P = e.num_params
    assert e.part("weights").bytes == 4 * P
    assert e.part("gradients").bytes == 4 * P
    assert e.part("optimizer states").bytes == 8 * P


@pytest.mark.parametrize("method", ["lora", "tfew", "prompt_tuning"])
def test_adapters_add_to_the_base_parameters(method):
    # bench/estimator_cpu.py found LoRA weights 7 % low when the adapters were taken out of the base count
    cfg = {**LLAMA_1B, "dtype": "float32"}
    e = est(cfg, trainer__training_type=method, runtime__mixed_precision="none")
    assert e.part("weights").bytes == 4 * (e.num_params + e.trainable_params)
    assert e.part("gradients").bytes == 4 * e.trainable_params
    assert e.part("optimizer states").bytes == 8 * e.trainable_params


def test_tfew_follows_the_target_modules():
    # IA3: one vector per target module — out features, in features for down_proj (a feed-forward module)
    h, kv, i, L = 2048, 8 * 64, 8192, 16
    allv = est(LLAMA_1B, trainer__training_type="tfew", adapter__target_modules=["all-linear"])
    assert allv.trainable_params == L * (h + kv + kv + h + i + i + i)
    qv = est(LLAMA_1B, trainer__training_type="tfew", adapter__target_modules=["q_proj", "v_proj"])
    assert qv.trainable_params == L * (h + kv)
    assert qv.part("activations").bytes < allv.part("activations").bytes


@pytest.mark.parametrize("method", ["full", "lora"])
def test_zero3_below_zero1_per_gpu_with_ranks(method):
    kw = dict(trainer__training_type=method, trainer__distributed_backend="deepspeed", launch__procs_per_node=4)
    z1, z2, z3 = (est(trainer__zero_stage=z, **kw).total_bytes for z in (1, 2, 3))
    assert z3 < z1 and z2 <= z1
    if method == "full":
        assert z3 < z2 < z1
    off = est(trainer__zero_stage=3, trainer__offload_optimizer=True, trainer__offload_params=True, **kw)
    assert off.total_bytes < z3


def test_zero_needs_ranks_to_save():
    kw = dict(trainer__training_type="full", trainer__distributed_backend="deepspeed", launch__procs_per_node=1)
    z1, z3 = (est(trainer__zero_stage=z, **kw) for z in (1, 3))
    assert z3.part("optimizer states").bytes == z1.part("optimizer states").bytes


def test_qlora_below_lora_below_full():
    full, lora, qlora = (est(trainer__training_type=m) for m in ("full", "lora", "qlora"))
    assert qlora.total_bytes < lora.total_bytes < full.total_bytes
    assert qlora.part("weights").bytes < lora.part("weights").bytes / 2  # 4-bit linear layers
    assert lora.part("optimizer states").bytes < full.part("optimizer states").bytes / 50
    assert "4-bit" in qlora.part("weights").formula


def test_qlora_leaves_fused_moe_experts_unquantized():
    # transformers 5 keeps a mixture-of-experts model's experts as 3-D tensors, not nn.Linear: bitsandbytes does
    # not quantize them and peft's prepare_model_for_kbit_training makes them fp32
    mixtral = CATALOG["mistralai/Mixtral-8x7B-v0.1"]
    q = est(mixtral, trainer__training_type="qlora")
    h, i, E, L = 4096, 14336, 8, 32
    experts = L * E * 3 * h * i
    assert q.part("weights").bytes > experts * 4
    assert "experts stay unquantized" in " ".join(q.notes)
    # a dense model's MLPs are Linear layers: quantized
    assert "experts" not in " ".join(est(trainer__training_type="qlora").notes)


def test_peft_methods_keep_fewer_activations_than_full():
    acts = {m: est(trainer__training_type=m, adapter__lora_dropout=0.0, adapter__target_modules=[])
            .part("activations").bytes for m in METHODS}  # targets: the architecture's default (q_proj, v_proj)
    assert acts["prompt_tuning"] < acts["tfew"] < acts["full"]
    assert acts["lora"] <= acts["full"]
    # LoRA dropout keeps one dropped-out copy of each target's input (and its mask)
    drop = est(trainer__training_type="lora", adapter__lora_dropout=0.1).part("activations").bytes
    assert drop > acts["lora"]


@pytest.mark.parametrize("method", METHODS)
def test_gradient_checkpointing_lowers_activations(method):
    off = est(trainer__training_type=method, runtime__gradient_checkpointing=False)
    on = est(trainer__training_type=method, runtime__gradient_checkpointing=True)
    assert on.part("activations").bytes < off.part("activations").bytes / 2
    assert "checkpointing" in on.part("activations").formula
    # each estimate also reports the other setting's activations
    assert on.activations_other_bytes == pytest.approx(off.part("activations").bytes)
    assert off.activations_other_bytes == pytest.approx(on.part("activations").bytes)


def test_activations_and_logits_scale_with_batch_and_sequence():
    # (full fine-tuning without mixed precision: no autocast weight copies, whose bytes do not depend on the tokens)
    a, b, c = (est(trainer__training_type="full", general__batch_size=bs, general__max_sequence_length=sl,
                   runtime__mixed_precision="none") for bs, sl in ((2, 512), (4, 512), (2, 1024)))
    assert b.part("activations").bytes == pytest.approx(2 * a.part("activations").bytes)
    assert c.part("activations").bytes == pytest.approx(2 * a.part("activations").bytes)  # sdpa: no s² term
    # a stage whose trainer materializes the logits: they scale with the tokens too
    a, b, c = (est(trainer__stage="dpo", preference__preference_loss="orpo", general__batch_size=bs,
                   general__max_sequence_length=sl)
               for bs, sl in ((2, 512), (4, 512), (2, 1024)))
    assert b.part("logits").bytes == pytest.approx(2 * a.part("logits").bytes)
    assert c.part("logits").bytes == pytest.approx(2 * a.part("logits").bytes)
    sdpa, eager = (est(trainer__training_type="full", general__batch_size=2, general__max_sequence_length=1024,
                       runtime__attention_implementation=impl) for impl in ("sdpa", "eager"))
    assert eager.part("activations").bytes > sdpa.part("activations").bytes


@pytest.mark.parametrize("stage", ["sft", "pretrain"])
def test_sft_logits_are_the_fused_lm_heads_tiles_not_the_whole_logits(stage):
    # TRL's SFTTrainer never builds the [tokens, vocab] logits (trl.kernels.chunked_logprob): a
    # 4096 × 32768 tile, the hidden states' copy and fp32 gradient, the head's fp32 gradient
    # when it trains. Llama-3.1-8B, bf16, 4 × 1024 tokens, LoRA: 6.8 GiB of logits before, 0.34 GiB now
    n, h, v = 4 * 1023, 4096, 128256
    lora = est(trainer__stage=stage, trainer__training_type="lora").part("logits")
    assert lora.bytes == n * 32768 * 2 + n * h * (2 + 4)
    assert "fused LM head" in lora.formula and "tile 4092 × 32768 × 2 B" in lora.formula
    full = est(trainer__stage=stage, trainer__training_type="full").part("logits")
    # full fine-tuning: fp32 master weights, so the hidden states' copy is fp32 and the fp32 head takes the
    # buffer as its gradient (counted with the gradients)
    assert full.bytes == n * 32768 * 2 + n * h * (4 + 4) and v * h * 4 > 0
    old = 4 * 1024 * v * (2 + 4 + 4 + 4)
    assert lora.bytes < old / 19 and full.bytes < old / 2
    # the tile stops growing at 4096 tokens; on CPU, torch folds it with fp32 temporaries
    big = est(trainer__stage=stage, trainer__training_type="lora", general__batch_size=16).part("logits")
    assert big.bytes == 4096 * 32768 * 2 + 16 * 1023 * h * 6
    cpu = est(trainer__stage=stage, trainer__training_type="lora", launch__device="cpu").part("logits")
    assert cpu.bytes == lora.bytes + 7 * n * 32768 * 4
    small_vocab = dict(LLAMA_8B, vocab_size=8192)  # on CPU only the written columns of the buffer are resident
    cpu = estimate(res(trainer__stage=stage, trainer__training_type="lora", launch__device="cpu"),
                   model_config=small_vocab).part("logits")
    assert cpu.bytes == n * 8192 * 2 + n * h * 6 + 7 * n * 8192 * 4


def test_ddp_buckets_only_with_ranks():
    one = est(trainer__training_type="full", launch__procs_per_node=1)
    two = est(trainer__training_type="full", launch__procs_per_node=2)
    assert "DDP buckets" not in one.part("framework overhead").formula
    assert "DDP buckets" in two.part("framework overhead").formula
    assert "CUDA context" in one.part("framework overhead").formula
    cpu = est(trainer__training_type="full", launch__device="cpu", runtime__mixed_precision="none")
    assert "CUDA context" not in cpu.part("framework overhead").formula and cpu.on_cpu


# --------------------------------------------------------------------------
# Suggestions, time to finish
# --------------------------------------------------------------------------


def test_suggestions_when_over_gpu_memory():
    e = estimate(res(trainer__training_type="full", general__batch_size=8, launch__procs_per_node=2),
                 model_config=LLAMA_8B, gpu_memory_gb=40)
    assert e.fits is False
    assert e.suggestions
    titles = " | ".join(s.title for s in e.suggestions)
    for want in ("gradient checkpointing", "ZeRO-3", "QLoRA"):  # (a smaller batch saves nothing here: the fp32
        # gradients kept through accumulation outweigh the activations it saves)
        assert want in titles, titles
    for s in e.suggestions:
        assert s.total_bytes < e.total_bytes and s.changes
        again = estimate({**res(trainer__training_type="full", general__batch_size=8, launch__procs_per_node=2),
                          **s.changes}, model_config=LLAMA_8B, gpu_memory_gb=40, suggest=False)
        assert again.total_bytes == pytest.approx(s.total_bytes)  # each carries its own new estimate
        assert s.fits == (s.total_bytes <= 40 * GIB - again.margin_bytes)
    assert any(s.fits for s in e.suggestions)
    assert e.suggestions == sorted(e.suggestions, key=lambda s: (not s.fits, s.total_bytes))
    assert "does NOT fit" in e.to_text() and "To fit" in e.to_text()


def test_no_suggestions_when_it_fits():
    e = estimate(res(trainer__training_type="lora"), model_config=LLAMA_1B, gpu_memory_gb=80)
    assert e.fits is True and e.suggestions == []
    assert estimate(res(), model_config=LLAMA_1B).fits is None


def test_time_to_finish_from_measured_throughput():
    r = res(general__batch_size=4, general__max_sequence_length=512, runtime__gradient_accumulation_steps=2,
            launch__procs_per_node=2, general__epochs=2)
    e = estimate(r, model_config=LLAMA_1B, num_examples=1600, throughput_tokens_per_s=8192)
    # 1600 ÷ (4 × 2) = 200 batches, ÷ 2 = 100 steps per epoch, 200 steps × 4·512·2·2 tokens
    assert e.steps.total_steps == 200
    assert e.seconds == pytest.approx(200 * 8192 / 8192)
    assert "3 min 20 s" in e.time_formula
    assert estimate(r, model_config=LLAMA_1B, num_examples=1600).seconds is None


# --------------------------------------------------------------------------
# The parameter counts the parts start from are exact (a real model from the same config)
# --------------------------------------------------------------------------


def test_param_counts_exact_against_real_models():
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from engine.modelinfo import param_breakdown

    small = {"hidden_size": 64, "intermediate_size": 160, "num_hidden_layers": 2, "num_attention_heads": 4,
             "num_key_value_heads": 2, "vocab_size": 300}
    cfgs = [{"model_type": "llama", **small, "tie_word_embeddings": False},
            {"model_type": "llama", **small, "tie_word_embeddings": True, "attention_bias": True},
            {"model_type": "qwen2", **small, "tie_word_embeddings": True},
            {"model_type": "mistral", **small},
            {"model_type": "mixtral", **small, "num_local_experts": 4, "num_experts_per_tok": 2},
            # experts narrower than the dense MLP; Qwen2-MoE's shared expert and gate; dense layers between
            {"model_type": "qwen3_moe", **small, "moe_intermediate_size": 48, "num_experts": 8, "num_experts_per_tok": 2,
             "head_dim": 16},
            {"model_type": "qwen3_moe", **small, "num_hidden_layers": 4, "moe_intermediate_size": 48, "num_experts": 4,
             "mlp_only_layers": [0], "decoder_sparse_step": 2},
            {"model_type": "qwen2_moe", **small, "moe_intermediate_size": 48, "shared_expert_intermediate_size": 96,
             "num_experts": 4, "num_experts_per_tok": 2}]
    cfgs.append({k: v for k, v in CATALOG["Qwen/Qwen3-4B-Instruct-2507"].items() if k not in ("architectures", "dtype")})
    for c in cfgs:
        d = {k: v for k, v in c.items() if k != "model_type"}
        with torch.device("meta"):
            m = AutoModelForCausalLM.from_config(AutoConfig.for_model(c["model_type"], **d))
        assert param_breakdown(c)["total"] == sum(p.numel() for p in m.parameters()), c


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------


def _cli(*args):
    from typer.testing import CliRunner

    from tui.cli import app

    return CliRunner().invoke(app, ["estimate", *map(str, args)])


def test_cli_demo_preset(repo_root):
    r = _cli(repo_root / "presets" / "demo.toml")
    assert r.exit_code == 0, r.output
    for want in PARTS + ["total", "batches per epoch", "total steps", "effective batch = batch × accumulation × "
                         "ranks = 8 × 1 × 2 = 16", "examples counted"]:
        assert want in r.output, want


def test_cli_json_gpu_memory_and_time(repo_root):
    r = _cli(repo_root / "presets" / "demo.toml", "--json", "--gpu-memory", "0.001", "--examples", "1000",
             "--tokens-per-s", "1000")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert [p["name"] for p in d["parts"]] == PARTS
    assert d["fits"] is False and d["suggestions"] is not None
    assert d["steps"]["examples"] == 1000 and d["seconds"] > 0


def _one_line_exit_2(r) -> str:
    assert r.exit_code == 2, r.output
    lines = [x for x in r.output.splitlines() if x.strip()]
    assert len(lines) == 1, r.output
    assert "Traceback" not in r.output
    return lines[0]


def test_cli_bad_files(tmp_path: Path):
    assert "nope.toml" in _one_line_exit_2(_cli(tmp_path / "nope.toml"))
    bad = tmp_path / "bad.toml"
    bad.write_text("[model\nname_or_path = 1\n")
    assert "bad.toml" in _one_line_exit_2(_cli(bad))
    unknown = tmp_path / "unknown.toml"
    unknown.write_text('[model]\nname_or_path = "/nonexistent/model"\n[data]\ntrain_path = "x.jsonl"\n')
    assert _one_line_exit_2(_cli(unknown)).startswith("model.name_or_path:")


def test_cli_bad_options(repo_root):
    demo = repo_root / "presets" / "demo.toml"
    assert "--gpu-memory" in _one_line_exit_2(_cli(demo, "--gpu-memory", "0"))
    assert "--examples" in _one_line_exit_2(_cli(demo, "--examples", "0"))
    assert "--tokens-per-s" in _one_line_exit_2(_cli(demo, "--tokens-per-s", "-1"))
    assert "--tokens-per-example" in _one_line_exit_2(_cli(demo, "--tokens-per-example", "0"))


def test_tokens_per_step_follow_packing_and_the_row_length():
    # packed sequences are full; unpacked ones hold one example (capped at max length); unknown: max length
    assert steps_for(res(general__batch_size=4, general__max_sequence_length=512), 100, 120.4).tokens_per_step == 4 * 512
    unpacked = res(data__packing=False, general__batch_size=4, general__max_sequence_length=512)
    assert steps_for(unpacked, 100, 120.4).tokens_per_step == 4 * 121
    assert steps_for(unpacked, 100, 900).tokens_per_step == 4 * 512
    assert steps_for(unpacked, 100).tokens_per_step == 4 * 512
    est = estimate(unpacked, model_config=LLAMA_1B, num_examples=100, throughput_tokens_per_s=1000)
    assert any("upper bound" in n and "--tokens-per-example" in n for n in est.notes)


def test_cli_measures_tokens_per_example_for_packing(repo_root, tmp_path):
    """With a local tokenizer and data file, the packed step count comes from measured row lengths."""
    from engine.tiny import ensure_tiny_model

    ensure_tiny_model()
    p = tmp_path / "packed.toml"
    p.write_text('[model]\nname_or_path = "finetui:tiny-llama"\n[data]\ntrain_path = "finetui:samples/alpaca_demo.jsonl"'
                 '\nformat = "alpaca"\n[general]\nbatch_size = 4\nepochs = 2\nmax_sequence_length = 256\n')
    r = _cli(p, "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    # the worker packs these 400 rows into 38 sequences of 256 tokens (tests/test_train_matrix.py's sft_packed
    # packs 16 of them); the estimate, from a measured mean length, must land within a few sequences
    packed = next(f for f in d["steps"]["formulas"] if f.startswith("packed sequences"))
    n = int(packed.rsplit("=", 1)[1])
    assert 34 <= n <= 42, packed
    given = _cli(p, "--tokens-per-example", "64", "--json")
    assert json.loads(given.stdout)["steps"]["batches_per_epoch"] == -(-(-(-400 * 64 // 256)) // 4)


def test_launch_screen_estimate_uses_the_last_data_check_of_this_data():
    """The TUI's estimate: rows and mean row length from the last data check of the same data, else rows
    counted in the local file; a check of other data (or another max length) is not used."""
    from engine.schema import JobConfig
    from tui.app import FinetuiApp, _estimate

    job = JobConfig("native", {"model.name_or_path": "finetui:tiny-llama",
                               "data.train_path": "finetui:samples/alpaca_demo.jsonl", "data.format": "alpaca",
                               "general.batch_size": 4, "general.epochs": 2, "general.max_sequence_length": 256})
    app = FinetuiApp(job=job, autosave=False, offer_restore=False)
    assert app.data_hints(job) == {}
    counted = _estimate(job)  # no check yet: the rows are counted, packing is an upper bound
    assert counted.steps.examples == 400 and counted.steps.updates_per_epoch == 100
    app.remember_data_report(job, {"rows": {"valid": 398}, "tokens": {"mean_trained_length": 23.4}})
    hints = app.data_hints(job)
    assert hints == {"num_examples": 398, "tokens_per_example": 23.4}
    est = _estimate(job, **hints)
    assert any(f == "packed sequences = ceil(398 × 23.4 tokens ÷ 256) = 37" for f in est.steps.formulas)
    assert est.steps.updates_per_epoch == 10 and est.steps.total_steps == 20
    other = job.copy()
    other.values["general.max_sequence_length"] = 512
    assert app.data_hints(other) == {}


def test_row_counts_are_remembered_until_the_file_changes(tmp_path):
    from engine.data import sources

    f = tmp_path / "d.jsonl"
    f.write_text('{"a": 1}\n{"a": 2}\n')
    assert sources.count_examples(str(f)) == 2
    calls = []
    orig = sources._count
    sources._count = lambda files: calls.append(files) or orig(files)
    try:
        assert sources.count_examples(str(f)) == 2 and calls == []  # remembered
        f.write_text('{"a": 1}\n{"a": 2}\n{"a": 3}\n')  # changed: size (and time) differ
        assert sources.count_examples(str(f)) == 3 and len(calls) == 1
    finally:
        sources._count = orig


# --------------------------------------------------------------------------
# Stages: what each TRL trainer puts in a micro-batch and keeps besides
# --------------------------------------------------------------------------


def test_time_to_finish_counts_both_sequences_of_a_pair():
    # the run's tokens/s counts every non-padding input token: a DPO pair's chosen and rejected sequences both
    kw = dict(general__batch_size=4, general__max_sequence_length=512, general__epochs=1)
    sft = estimate(res(**kw), model_config=LLAMA_1B, num_examples=400, throughput_tokens_per_s=1000)
    dpo = estimate(res(trainer__stage="dpo", data__format="preference", **kw), model_config=LLAMA_1B,
                   num_examples=400, throughput_tokens_per_s=1000)
    assert dpo.steps.total_steps == sft.steps.total_steps == 100
    assert dpo.seconds == pytest.approx(2 * sft.seconds)
    assert "× 2 sequences (chosen, rejected)" in dpo.time_formula
    kto = estimate(res(trainer__stage="kto", data__format="kto", **kw), model_config=LLAMA_1B, num_examples=400,
                   throughput_tokens_per_s=1000)
    assert kto.seconds == pytest.approx(sft.seconds)  # unpaired rows


def test_dpo_puts_chosen_and_rejected_in_one_micro_batch():
    sft, dpo = (est(trainer__training_type="lora", trainer__stage=st, data__format="preference" if st == "dpo"
                    else "alpaca") for st in ("sft", "dpo"))
    assert dpo.part("activations").bytes == pytest.approx(2 * sft.part("activations").bytes, rel=1e-3)
    assert "2 × 4" not in dpo.part("activations").formula and "8192 tokens" in dpo.part("activations").formula
    assert "8 sequences a micro-batch" in " ".join(dpo.notes)
    # both trainers project through TRL's fused LM head: the tile is the same, the saved hidden states double
    assert "fused LM head" in dpo.part("logits").formula
    # LoRA: the reference is a frozen copy of the adapters (TRL adds it to a PEFT model), not of the model
    assert dpo.part("weights").bytes == sft.part("weights").bytes + 4 * dpo.trainable_params
    assert "reference adapters" in dpo.part("weights").formula


@pytest.mark.parametrize("stage,loss", [("dpo", "sigmoid"), ("kto", None), ("dpo", "kto_pair")])
def test_full_preference_training_loads_a_reference_model(stage, loss):
    kw = dict(trainer__training_type="full", trainer__stage=stage, data__format="kto" if stage == "kto" else "preference")
    if loss:
        kw["preference__preference_loss"] = loss
    e, sft = est(**kw), est(trainer__training_type="full")
    P = e.num_params
    assert e.part("weights").bytes == pytest.approx(sft.part("weights").bytes + 4 * P)  # a copy of the fp32 policy
    assert "reference model" in e.part("weights").formula
    # KTO trains on unpaired rows: no doubling
    if stage == "kto" or loss == "kto_pair":
        assert e.part("activations").bytes == pytest.approx(sft.part("activations").bytes)
    # ZeRO-3 shards the reference model like the policy
    z3 = est(**kw, trainer__distributed_backend="deepspeed", trainer__zero_stage=3, launch__procs_per_node=4)
    assert "reference model" in z3.part("weights").formula and "÷ 4 ranks" in z3.part("weights").formula


def test_orpo_and_simpo_materialize_the_logits_without_a_reference():
    for loss in ("orpo", "simpo"):
        e = est(trainer__training_type="full", trainer__stage="dpo", data__format="preference",
                preference__preference_loss=loss)
        assert "vocab" in e.part("logits").formula and "fused" not in e.part("logits").formula
        assert "8192 tokens" in e.part("logits").formula  # chosen + rejected
        assert "reference" not in e.part("weights").formula


def test_reward_model_has_a_score_head_instead_of_the_lm_head():
    sft = est(trainer__training_type="full")
    rm = est(trainer__training_type="full", trainer__stage="reward", data__format="preference")
    h, vocab = LLAMA_8B["hidden_size"], LLAMA_8B["vocab_size"]
    assert rm.num_params == sft.num_params - vocab * h + h  # Llama-3.1-8B's LM head is untied
    assert rm.part("logits").formula.startswith("score head input 8192 tokens")
    assert rm.part("logits").bytes == 8192 * h * 4  # (full fine-tuning: fp32 master weights, an fp32 stream)
    lora = est(trainer__training_type="lora", trainer__stage="reward", data__format="preference")
    assert "score head copy" in lora.parts[0].note


def test_fits_keeps_a_stated_safety_margin():
    """CUDA context, NCCL buffers (several ranks) and the allocator's headroom are kept free, and said."""
    from engine.estimate import gpu_margin

    m, text = gpu_margin(80, 2)
    assert m == pytest.approx((0.75 + 0.5 + 4.0) * GIB)
    assert text == "usable 74.8 GiB: 80 − 0.75 CUDA context − 0.5 NCCL buffers − 4.0 allocator headroom (5%)"
    assert "NCCL" not in gpu_margin(80, 1)[1]
    e = estimate(res(trainer__training_type="lora"), model_config=LLAMA_1B, gpu_memory_gb=80)
    assert "fits in 80 GB per GPU (usable 75.2 GiB: 80 − 0.75 CUDA context − 4.0 allocator headroom (5%))" in \
        e.to_text()
    # a job just under the GPU's size but inside the margin does not fit
    gb = e.total_bytes / GIB + 0.5
    assert estimate(res(trainer__training_type="lora"), model_config=LLAMA_1B, gpu_memory_gb=gb).fits is False
