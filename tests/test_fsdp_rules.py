"""FSDP2 as a backend without training: the fields and their cross-field rules (one line each, exit 2 from
`finetui validate`), the Trainer arguments the job turns into, the estimate's FSDP figures and suggestions."""

from __future__ import annotations

import subprocess
import sys

import pytest

from engine.schema import JobConfig
from engine.estimate import GIB, estimate
from engine.modelinfo import CATALOG, param_breakdown
from tests.fixtures_train import ROOT
from tests.test_estimate import LLAMA_8B, est

BASE = {"data.train_path": "x.jsonl", "launch.procs_per_node": 2}


def problems(**values) -> list:
    job = JobConfig(profile="native", values={**BASE, **values})
    return [p for p in job.problems() if p.severity == "error"]


def test_fsdp_with_lora_or_full_is_valid():
    for method in ("full", "lora", "freeze"):
        assert problems(**{"trainer.distributed_backend": "fsdp", "trainer.training_type": method,
                           "trainer.fsdp_cpu_offload": True, "trainer.fsdp_state_dict": "sharded",
                           "trainer.fsdp_sharding": "shard_grad_op"}) == []


@pytest.mark.parametrize("values,field,words", [
    ({"trainer.training_type": "qlora", "runtime.quantization_bit": 4}, "trainer.distributed_backend",
     "fsdp cannot shard a quantized (QLoRA) model"),
    ({"trainer.zero_stage": 3}, "trainer.zero_stage", "only applies when trainer.distributed_backend is deepspeed"),
    ({"trainer.offload_optimizer": True}, "trainer.offload_optimizer", "only applies when"),
    ({"launch.launcher": "deepspeed"}, "launch.launcher", "the deepspeed launcher needs"),
])
def test_fsdp_refuses_what_does_not_combine(values, field, words):
    got = problems(**{"trainer.distributed_backend": "fsdp", **values})
    assert len(got) == 1 and got[0].field == field and words in got[0].message, got


@pytest.mark.parametrize("backend", ["ddp", "deepspeed"])
@pytest.mark.parametrize("name,value", [("trainer.fsdp_cpu_offload", True), ("trainer.fsdp_state_dict", "sharded"),
                                        ("trainer.fsdp_sharding", "shard_grad_op")])
def test_fsdp_fields_need_the_fsdp_backend(backend, name, value):
    got = problems(**{"trainer.distributed_backend": backend, name: value})
    assert [(p.field, p.message) for p in got] == [(name, "only applies when trainer.distributed_backend is fsdp")]


def test_validate_cli_one_line_exit_2(tmp_path):
    p = tmp_path / "job.toml"
    p.write_text('profile = "native"\n[data]\ntrain_path = "x.jsonl"\n[trainer]\ndistributed_backend = "fsdp"\n'
                 'training_type = "qlora"\n[runtime]\nquantization_bit = 4\n[launch]\nprocs_per_node = 2\n')
    r = subprocess.run([sys.executable, "-m", "tui.cli", "validate", str(p)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2, r
    lines = [ln for ln in (r.stdout + r.stderr).splitlines() if "trainer.distributed_backend" in ln]
    assert len(lines) == 1 and "fsdp cannot shard" in lines[0] and "Traceback" not in r.stderr


def test_trainer_arguments_for_fsdp():
    from engine.train.trainers import fsdp_config

    res = JobConfig(profile="native", values={**BASE, "trainer.distributed_backend": "fsdp",
                                              "runtime.gradient_checkpointing": True}).resolved()
    assert fsdp_config(res) == {"version": 2, "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
                                "reshard_after_forward": True, "cpu_offload": False,
                                "state_dict_type": "FULL_STATE_DICT", "activation_checkpointing": True}
    res.update({"trainer.fsdp_sharding": "shard_grad_op", "trainer.fsdp_cpu_offload": True,
                "trainer.fsdp_state_dict": "sharded"})
    cfg = fsdp_config(res)
    assert (cfg["reshard_after_forward"], cfg["cpu_offload"], cfg["state_dict_type"]) == \
        (False, True, "SHARDED_STATE_DICT")
    # what transformers 5.25 makes of it: the accelerate FSDP2 plugin's arguments
    from transformers import TrainingArguments

    a = TrainingArguments(output_dir="/tmp/x", fsdp=True, fsdp_config=fsdp_config(res), use_cpu=True)
    assert a.fsdp_plugin_args["fsdp_version"] == 2 and a.fsdp_plugin_args["reshard_after_forward"] is False
    assert a.fsdp_plugin_args["state_dict_type"] == "SHARDED_STATE_DICT" and a.fsdp_plugin_args["cpu_offload"]


def test_estimate_fsdp_shards_weights_gradients_optimizer_over_ranks():
    kw = dict(trainer__training_type="full", launch__procs_per_node=4)
    ddp = est(LLAMA_8B, trainer__distributed_backend="ddp", **kw)
    fs = est(LLAMA_8B, trainer__distributed_backend="fsdp", **kw)
    for part in ("weights", "gradients", "optimizer states"):
        assert fs.part(part).bytes == pytest.approx(ddp.part(part).bytes / 4), part
    assert "÷ 4 ranks (FSDP" in fs.part("weights").formula
    # Llama-3.1-8B, full fine-tuning, bf16, 4 ranks: 8.03 B params × 4 B ÷ 4 = 7.48 GiB of weights a GPU
    assert fs.part("weights").bytes / GIB == pytest.approx(7.479, abs=0.01)
    layer = param_breakdown(LLAMA_8B)["per_layer"]
    assert "gathered layers (FSDP) 2×layer×2 B" in fs.part("framework overhead").formula
    assert "DDP buckets" not in fs.part("framework overhead").formula
    # the all-gathered layers in flight: two decoder layers in bf16 (218 M parameters each: 832 MiB)
    assert fs.part("framework overhead").bytes - 512 * 2**20 - fs.part("optimizer states").bytes / 2 == \
        pytest.approx(2 * layer * 2)
    assert fs.total_bytes / GIB == pytest.approx(68.72, abs=0.05) and ddp.total_bytes / GIB > 2 * 68.72
    assert fs.backend == "fsdp full_shard, 4 ranks"

    grad_op = est(LLAMA_8B, trainer__distributed_backend="fsdp", trainer__fsdp_sharding="shard_grad_op", **kw)
    assert grad_op.total_bytes > fs.total_bytes  # every layer gathered from forward to backward
    assert "32×layer×2 B" in grad_op.part("framework overhead").formula

    off = est(LLAMA_8B, trainer__distributed_backend="fsdp", trainer__fsdp_cpu_offload=True, **kw)
    assert [off.part(p).bytes for p in ("weights", "gradients", "optimizer states")] == [0.0, 0.0, 0.0]
    assert off.cpu_offload_bytes == pytest.approx(sum(fs.part(p).bytes for p in ("weights", "gradients",
                                                                                   "optimizer states")))
    assert off.total_bytes < fs.total_bytes and "+CPU offload" in off.backend

    # one rank: nothing to shard over
    one = est(LLAMA_8B, trainer__distributed_backend="fsdp", trainer__training_type="full")
    solo = est(LLAMA_8B, trainer__distributed_backend="ddp", trainer__training_type="full")
    assert one.part("weights").bytes == solo.part("weights").bytes


def test_fit_check_suggests_fsdp_and_its_changes_validate():
    from tests.test_estimate import res

    r = res(trainer__training_type="full", launch__procs_per_node=8)
    e = estimate(r, model_config=LLAMA_8B, gpu_memory_gb=80)
    assert not e.fits
    fsdp = [s for s in e.suggestions if s.title == "FSDP2 full shard"]
    assert fsdp and fsdp[0].fits and fsdp[0].changes == {"trainer.distributed_backend": "fsdp"}, e.suggestions
    job = JobConfig(profile="native", values={"data.train_path": "x.jsonl", "trainer.training_type": "full",
                                              "launch.procs_per_node": 8, **fsdp[0].changes})
    assert [p for p in job.problems() if p.severity == "error"] == []
    # already FSDP and still too big: CPU offload is offered, ZeRO-3 is not
    r2 = res(trainer__training_type="full", launch__procs_per_node=2, trainer__distributed_backend="fsdp")
    e2 = estimate(r2, model_config=CATALOG["meta-llama/Llama-3.1-8B"], gpu_memory_gb=40)
    titles = [s.title for s in e2.suggestions]
    assert "FSDP CPU offload" in titles and not any("ZeRO" in t for t in titles), titles
    # QLoRA cannot be sharded by FSDP: never suggested with it
    r3 = res(trainer__training_type="qlora", runtime__quantization_bit=4, launch__procs_per_node=4,
             general__batch_size=64, general__max_sequence_length=8192)
    e3 = estimate(r3, model_config=LLAMA_8B, gpu_memory_gb=24)
    assert not any("FSDP" in s.title for s in e3.suggestions)


# --------------------------------------------------------------------------------------- import / export


def test_llamafactory_v1_fsdp2_options_import(tmp_path):
    from engine import interop

    cfg = tmp_path / "fsdp.yaml"
    cfg.write_text("model: Qwen/Qwen3-0.6B\npeft_config:\n  name: lora\n  r: 8\n"
                   "dist_config:\n  name: fsdp2\n  reshard_after_forward: false\n  offload_params: true\n"
                   "  dcp_path: /ckpt/dcp\n"
                   f"train_dataset: {ROOT / 'engine'}\nmicro_batch_size: 2\ncutoff_len: 512\n")
    try:
        job, warnings = interop.import_file(cfg)
    except interop.InteropError:  # (the data-set path above is not one: only the distribution matters here)
        pytest.skip("v1 import needs a data set")
    r = job.resolved()
    assert (r["trainer.distributed_backend"], r["trainer.fsdp_sharding"], r["trainer.fsdp_cpu_offload"]) == (
        "fsdp", "shard_grad_op", True)
    assert any(str(w).startswith("dist_config.dcp_path = /ckpt/dcp") for w in warnings), warnings


def test_llamafactory_export_writes_an_accelerate_fsdp2_config_that_reads_back(tmp_path):
    import yaml

    from engine import interop
    from engine.interop.llamafactory import fsdp_from

    job = JobConfig(profile="native", values={"data.train_path": "finetui:samples/alpaca_demo.jsonl",
                                              "trainer.distributed_backend": "fsdp", "launch.procs_per_node": 4,
                                              "trainer.fsdp_cpu_offload": True, "trainer.fsdp_state_dict": "sharded",
                                              "runtime.mixed_precision": "bf16",
                                              "runtime.gradient_checkpointing": True})
    out = tmp_path / "lf" / "train.yaml"
    written, warnings = interop.write_export(job, "llamafactory", out)
    assert {p.name for p in written} == {"train.yaml", "dataset_info.json", "fsdp_config.yaml"}
    acc = yaml.safe_load((out.parent / "fsdp_config.yaml").read_text())
    assert acc["distributed_type"] == "FSDP" and acc["num_processes"] == 4 and acc["mixed_precision"] == "bf16"
    assert acc["fsdp_config"] == {"fsdp_version": 2, "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
                                  "fsdp_reshard_after_forward": True, "fsdp_offload_params": True,
                                  "fsdp_state_dict_type": "SHARDED_STATE_DICT",
                                  "fsdp_activation_checkpointing": True, "fsdp_cpu_ram_efficient_loading": True}
    assert any("accelerate launch --config_file fsdp_config.yaml" in str(w) for w in warnings), warnings
    assert "deepspeed" not in yaml.safe_load(out.read_text())
    # accelerate's fsdp_* keys read back onto a job: the same settings
    back = JobConfig(profile="native", values={"data.train_path": "x.jsonl"})
    notes: list = []
    fsdp_from(acc["fsdp_config"], back, "fsdp_config", notes)
    r = back.resolved()
    assert (r["trainer.distributed_backend"], r["trainer.fsdp_sharding"], r["trainer.fsdp_cpu_offload"],
            r["trainer.fsdp_state_dict"]) == ("fsdp", "full_shard", True, "sharded") and notes == []


# --------------------------------------------------------------------------------------- the trainer step


async def test_trainer_step_offers_fsdp_with_its_fields(make_app):
    from tests.test_tui_wizard import SIZE, goto, row

    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await goto(pilot, "trainer")
        backends = app.query_one("#choice-backend")
        assert not backends.get_option("fsdp").disabled
        assert not row(app, "trainer.fsdp_sharding").display
        app.apply_edit("trainer.distributed_backend", "fsdp")
        await pilot.pause()
        for name in ("trainer.fsdp_sharding", "trainer.fsdp_cpu_offload", "trainer.fsdp_state_dict"):
            assert row(app, name).display, name
        assert not app.query_one("#zero-box").display and not row(app, "trainer.offload_optimizer").display
        assert app.job.problems() == []
        # QLoRA rules FSDP out, and says why; the problem line names the field
        app.apply_edit("trainer.training_type", "qlora")
        app.apply_edit("runtime.quantization_bit", 4)
        await pilot.pause()
        assert "not with QLoRA" in str(backends.get_option("fsdp").prompt) and backends.get_option("fsdp").disabled
        assert "trainer.distributed_backend: fsdp cannot shard" in str(app.query_one("#trainer-problems").render())


def test_fsdp_on_one_rank_warns_that_it_shards_nothing():
    job = JobConfig(profile="native", values={"data.train_path": "x.jsonl", "trainer.distributed_backend": "fsdp"})
    ws = [p for p in job.problems(include_warnings=True) if p.severity == "warning"
          and p.field == "trainer.distributed_backend"]
    assert len(ws) == 1 and "shards nothing" in ws[0].message
    two = JobConfig(profile="native", values={**BASE, "trainer.distributed_backend": "fsdp"})
    assert not [p for p in two.problems(include_warnings=True) if p.field == "trainer.distributed_backend"]
