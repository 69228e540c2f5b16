"""bench/peer_llamafactory.py builds the identical job for finetui and LLaMA-Factory (no LLaMA-Factory needed)."""

from __future__ import annotations

import importlib.util
import json
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


def _bench():
    spec = importlib.util.spec_from_file_location("peer_llamafactory", ROOT / "bench" / "peer_llamafactory.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("column", ["1proc", "2proc", "1proc-packing", "long"])
def test_both_tools_get_the_same_job(tmp_path, column):
    B = _bench()
    spec = B.COLUMNS[column]
    steps = 600 if spec.get("long") else 60
    model = tmp_path / "model"
    files = B.job_files(tmp_path, steps, spec["procs"], spec["packing"], model, column)
    ft = tomllib.loads(files["finetui"].read_text())
    lf = yaml.safe_load(files["lf"].read_text())
    # the same model folder and the same rows
    assert ft["model"]["name_or_path"] == lf["model_name_or_path"] == str(model)
    info = json.loads((Path(lf["dataset_dir"]) / "dataset_info.json").read_text())[lf["dataset"]]
    assert Path(ft["data"]["train_path"]) == Path(lf["dataset_dir"]) / info["file_name"]
    assert files["data"].read_bytes() == B.SAMPLE.read_bytes() and ft["data"]["format"] == "alpaca"
    assert ft["data"]["val_size"] == 0.0 and "val_size" not in lf
    # the same training
    assert ft["trainer"]["stage"] == lf["stage"] == "sft"
    assert (ft["trainer"]["training_type"], lf["finetuning_type"]) == ("lora", "lora")
    assert ft["adapter"]["lora_rank"] == lf["lora_rank"] == 8
    assert ft["adapter"]["lora_alpha"] == lf["lora_alpha"] and ft["adapter"]["lora_dropout"] == lf["lora_dropout"]
    assert (ft["adapter"]["target_modules"], lf["lora_target"]) == (["all-linear"], "all")  # every linear layer
    assert ft["general"]["batch_size"] == lf["per_device_train_batch_size"] and lf["gradient_accumulation_steps"] == 1
    assert ft["general"]["max_sequence_length"] == lf["cutoff_len"]
    assert ft["general"]["max_steps"] == lf["max_steps"] == steps
    assert ft["general"]["learning_rate"] == lf["learning_rate"]
    assert ft["runtime"]["lr_scheduler"] == lf["lr_scheduler_type"] == "cosine"
    assert ft["runtime"]["lr_warmup_steps"] == lf["warmup_steps"] == 0
    assert (ft["runtime"]["optimizer"], lf["optim"]) == ("adamw", "adamw_torch")
    assert ft["runtime"]["seed"] == lf["seed"] == lf["data_seed"]
    assert ft["runtime"]["gradient_checkpointing"] is False and lf["disable_gradient_checkpointing"] is True
    assert ft["runtime"]["mixed_precision"] == "none" and lf["bf16"] is False and lf["fp16"] is False
    assert ft["data"]["packing"] is lf["packing"] is spec["packing"]
    # finetui's packed rows never attend to each other: LLaMA-Factory's neat packing (block-diagonal attention)
    assert lf["neat_packing"] is spec["packing"]
    assert ft["launch"]["procs_per_node"] == spec["procs"]
    assert ("ddp_backend" in lf) == (spec["procs"] > 1)
    assert ft["eval"]["logging_steps"] == lf["logging_steps"] == 1
    assert ft["eval"]["evaluation_strategy"] == "no" and "eval_strategy" not in lf and "val_size" not in lf
    assert ft["eval"]["checkpoint_strategy"] == "no" and lf["save_strategy"] == "no"
    assert lf["include_num_input_tokens_seen"] == "non_padding"  # finetui counts the same way (trainers.py)
    assert lf["template"] == "chatml"  # the tiny model's own template: ChatML (engine/tiny.py)


def test_finetui_side_is_a_valid_job(tmp_path):
    from engine import presets

    B = _bench()
    files = B.job_files(tmp_path, 60, 1, False, tmp_path / "model", "x")
    res = presets.load(files["finetui"]).resolved()
    assert res["trainer.stage"] == "sft" and res["general.max_steps"] == 60
    assert res["adapter.lora_dropout"] == 0.0 and res["launch.procs_per_node"] == 1


def test_the_torchaudio_stub_refuses_use(tmp_path):
    B = _bench()
    ns: dict = {}
    exec(B.TORCHAUDIO_STUB, ns)
    with pytest.raises(ImportError, match="stubbed out"):
        ns["__getattr__"]("load")
