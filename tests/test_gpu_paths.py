"""The GPU paths that trained wrongly without a word, shown on CPU with the real worker.

* Mixed precision keeps float32 master weights: full and freeze fine-tuning of a bf16 or fp16
  checkpoint train float32 parameters with float32 AdamW states (transformers 5 loads a checkpoint
  in its own dtype; pure bf16 rounds most 1e-5 updates away), and the weights move at lr 1e-5.
* ZeRO-3 partitions in the job's precision (the config alive while the model is built had
  ``bf16: auto``, which DeepSpeed reads as off: a bf16 job was partitioned and trained in float32),
  with DeepSpeed's float32 master partitions; the process group has the job's timeout.
* Without mixed precision a half-precision checkpoint trains in float32.

One runner process trains every run (tests/train_runner.py), single CPU rank, a few steps.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fixtures_train import describe_run, events, kinds, run_batch, session_cache, write_run

slow = pytest.mark.slow

LR = 1e-5
COMMON = {"general.learning_rate": LR, "general.max_steps": 4, "runtime.mixed_precision": "bf16",
          "runtime.lr_scheduler": "constant", "data.packing": False}


def _checkpoint(tiny: Path, out: Path, dtype: str) -> Path:
    """The tiny model saved in ``dtype`` (a half-precision checkpoint, as Hub models are stored)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not (out / "config.json").exists():
        m = AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32)
        m.to(getattr(torch, dtype)).save_pretrained(out)
        AutoTokenizer.from_pretrained(tiny).save_pretrained(out)
    return out


def _weights(path: Path) -> dict:
    from safetensors.torch import load_file

    return {k: v.float() for k, v in load_file(str(path / "model.safetensors")).items()}


def test_a_non_finite_figure_is_written_as_null_and_does_not_end_the_run(tmp_path):
    """fp16's loss scaler logs an infinite grad norm on the steps it skips; a diverged loss is NaN."""
    from engine.events import EventWriter

    with EventWriter(tmp_path / "events.jsonl") as ev:
        ev.emit("log", 3, loss=float("nan"), grad_norm=float("inf"), memory={"gpus": [1.5, float("-inf")]})
    rec = json.loads((tmp_path / "events.jsonl").read_text())
    assert rec["loss"] is None and rec["grad_norm"] is None and rec["memory"] == {"gpus": [1.5, None]}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("gpu-paths")
    bf16 = _checkpoint(tiny_model, base / "ckpt-bf16", "bfloat16")
    fp16 = _checkpoint(tiny_model, base / "ckpt-fp16", "float16")
    jobs = {
        "full_bf16": {"model.name_or_path": str(bf16), "trainer.training_type": "full"},
        "full_fp16": {"model.name_or_path": str(fp16), "trainer.training_type": "full"},
        "freeze_bf16": {"model.name_or_path": str(bf16), "trainer.training_type": "freeze",
                        "adapter.freeze_trainable_layers": 1},
        "lora_fp32_from_bf16": {"model.name_or_path": str(bf16), "runtime.mixed_precision": "none",
                                "general.max_steps": 2},
        "zero3_bf16": {"model.name_or_path": str(bf16), "trainer.training_type": "full",
                       "trainer.distributed_backend": "deepspeed", "trainer.zero_stage": 3,
                       "runtime.ddp_timeout": 4321, "general.max_steps": 2},
        "zero3_lora_merge": {"trainer.distributed_backend": "deepspeed", "trainer.zero_stage": 3,
                             "adapter.merge_adapter": True, "general.max_steps": 2, "general.learning_rate": 0.01,
                             "runtime.mixed_precision": "none"},
    }
    specs = []
    for name, vals in jobs.items():
        write_run(base / name, **{**COMMON, **vals})
        specs.append({"name": name, "run_dir": str(base / name), "hook": "dtypes", "at": 1})
    results = run_batch(specs, session_cache(tmp_path_factory))
    out = {name: base / name for name in jobs}
    for name, d in out.items():
        assert results[name]["code"] == 0, describe_run(d)
    out["ckpt-bf16"], out["ckpt-fp16"] = bf16, fp16
    return out


def _dtypes(d: Path) -> dict:
    return json.loads((d / "dtypes.json").read_text())


def _loading_status(d: Path) -> dict:
    return [r for r in kinds(events(d), "status") if r.get("trainable_params")][-1]


@slow
@pytest.mark.parametrize("name,ckpt", [("full_bf16", "ckpt-bf16"), ("full_fp16", "ckpt-fp16")])
def test_full_fine_tuning_of_a_half_precision_checkpoint_keeps_float32_master_weights(runs, name, ckpt):
    got = _dtypes(runs[name])
    assert got["trainable"] == ["float32"] and got["optimizer_states"] == ["float32"], got
    st = _loading_status(runs[name])
    assert st["trainable_dtype"] == "float32" and "trainable in float32" in st["text"], st
    # lr 1e-5 for 4 steps moves the decoder weights (pure bf16 left 84.5 % of them unchanged)
    before, after = _weights(runs[ckpt]), _weights(runs[name] / "final")
    layers = [k for k in before if k.startswith("model.layers.")]
    changed = sum(int((before[k] != after[k]).sum()) for k in layers)
    total = sum(before[k].numel() for k in layers)
    assert changed / total > 0.9, f"only {changed / total:.1%} of the decoder weights changed"


@slow
def test_freeze_upcasts_the_trained_layers_only(runs):
    got = _dtypes(runs["freeze_bf16"])
    assert got["trainable"] == ["float32"] and got["frozen"] == ["bfloat16"], got
    assert got["optimizer_states"] == ["float32"], got
    st = _loading_status(runs["freeze_bf16"])
    assert "trainable in float32; frozen in bfloat16" in st["text"], st


@slow
def test_no_mixed_precision_trains_a_bf16_checkpoint_in_float32(runs):
    got = _dtypes(runs["lora_fp32_from_bf16"])
    assert got["trainable"] == ["float32"] and got["frozen"] == ["float32"], got


@slow
def test_zero3_partitions_in_the_jobs_precision_with_the_jobs_timeout(runs):
    d = runs["zero3_bf16"]
    got = _dtypes(d)
    assert got["partitions"] == ["bfloat16"], got  # was float32: bf16 "auto" read as off by zero.Init
    assert "float32" in got["optimizer_states"], got  # DeepSpeed's float32 master partitions
    st = _loading_status(d)
    assert st["partition_dtype"] == "bfloat16", st
    start = kinds(events(d), "start")[0]
    assert start["process_group_timeout_s"] == 4321, start
    assert kinds(events(d), "end")[-1]["outcome"] == "completed"


@slow
def test_merge_after_zero3_runs_apart_from_the_ranks_and_gives_a_whole_model(runs):
    """The merge ran on rank 0 inside the live ZeRO-3 context: the base loaded as empty shards."""
    d = runs["zero3_lora_merge"]
    end = kinds(events(d), "end")[-1]
    assert end["outcome"] == "completed" and end["final_path"] == str(d / "final"), describe_run(d)
    assert not (d / "final" / "adapter_config.json").exists()
    w = _weights(d / "final")
    assert w["model.embed_tokens.weight"].shape == (512, 64) and all(v.numel() for v in w.values())
    merging = [r for r in kinds(events(d), "status") if r.get("phase") == "merging"]
    assert merging and "separate process" in merging[0]["text"], merging


def _qlora_res(zero: bool) -> dict:
    from engine.schema import JobConfig

    vals = {"model.name_or_path": "finetui:tiny-llama", "data.train_path": "finetui:samples/alpaca_demo.jsonl",
            "trainer.training_type": "qlora", "runtime.mixed_precision": "bf16", "launch.device": "cuda"}
    if zero:
        vals.update({"trainer.distributed_backend": "deepspeed", "trainer.zero_stage": 3})
    return JobConfig(profile="native", values=vals).resolved()


def test_qlora_under_zero3_follows_pefts_recipe(tiny_model):
    """4-bit weights stored in the compute dtype, and no prepare_model_for_kbit_training (its float32 upcast of the
    unquantized parameters): ZeRO-3 shards every parameter alike.  (bitsandbytes needs CUDA: the quantization
    config and the preparation of a bf16 model are what CPU can show.)"""
    import torch
    from transformers import AutoModelForCausalLM

    from engine.train.modeling import apply_method, quantization

    cfg, compute = quantization(_qlora_res(True), "cuda")
    assert compute == torch.bfloat16 and cfg.bnb_4bit_quant_storage == torch.bfloat16 and cfg.load_in_4bit
    assert quantization(_qlora_res(False), "cuda")[0].bnb_4bit_quant_storage == torch.uint8  # (bitsandbytes' own)

    def frozen_dtypes(zero: bool) -> set:
        m = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.bfloat16)
        m = apply_method(m, _qlora_res(zero), str(tiny_model), "cuda", lambda _m: None)
        return {p.dtype for p in m.parameters() if not p.requires_grad}

    assert frozen_dtypes(True) == {torch.bfloat16}
    assert frozen_dtypes(False) == {torch.float32}  # prepare_model_for_kbit_training, without ZeRO-3


def test_ddp_looks_for_unused_parameters_where_a_model_leaves_some(tiny_model):
    """Forced off, a mixture-of-experts full fine-tune fails in DDP (the experts a batch did not reach get no
    gradient); a dense text model uses every weight (off, no extra pass); a vision-language model: TRL's choice."""
    import torch
    from transformers import AutoModelForCausalLM, MixtralConfig, MixtralForCausalLM

    from engine.train.modeling import find_unused_parameters

    dense = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    assert find_unused_parameters(dense) is False
    moe = MixtralForCausalLM(MixtralConfig(vocab_size=64, hidden_size=32, intermediate_size=32, num_hidden_layers=1,
                                           num_attention_heads=2, num_key_value_heads=1, num_local_experts=4,
                                           num_experts_per_tok=1))
    assert find_unused_parameters(moe) is True
    import peft

    lora = peft.get_peft_model(moe, peft.LoraConfig(r=2, target_modules=["q_proj"]))
    assert find_unused_parameters(lora) is True
