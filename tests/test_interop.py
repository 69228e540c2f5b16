"""Import / export: LLaMA-Factory YAML, Nova recipes, FPT / OCI / watsonx hyperparameter JSON.

The central property: after export → import every field the job shows has the same value,
or the export named it in a warning.  Nothing is dropped silently.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from engine import interop, presets
from engine.schema import FIELDS, JobConfig
from engine.interop.common import InteropError

COMPAT = Path("/work/shared/compat")
if not COMPAT.is_dir():  # the corpus lives beside the checkout in CI
    COMPAT = Path(__file__).resolve().parent.parent.parent / "shared" / "compat"
LF_EXAMPLES = sorted((COMPAT / "llamafactory" / "examples").glob("*.yaml"))
NOVA_RECIPES = sorted((COMPAT / "nova").glob("*.yaml"))
#: a skip without the corpus (a failure under CI=true); loops over it also assert it is there, never pass empty
needs_compat = pytest.mark.skipif(not (LF_EXAMPLES and NOVA_RECIPES), reason="shared/compat corpus not present")


def roundtrip(job: JobConfig, fmt: str, tmp_path: Path) -> tuple[JobConfig, list[str], list[str]]:
    out = tmp_path / ("export" + interop.SUFFIX[fmt])
    _, export_warnings = interop.write_export(job, fmt, out)
    back, import_warnings = interop.import_file(out)
    return back, export_warnings, import_warnings


def assert_same_or_warned(job: JobConfig, back: JobConfig, warnings: list[str], ignore: set[str] = frozenset()):
    a, b = job.resolved(), back.resolved()
    lost = []
    for f in FIELDS:
        if f.name in ignore or not (f.is_visible(a) or f.name in job.values):
            continue
        if a[f.name] != b[f.name] and not any(w.startswith(f.name) for w in warnings):
            lost.append(f"{f.name}: {a[f.name]!r} → {b[f.name]!r}")
    assert not lost, "changed without a warning:\n" + "\n".join(lost)


def job_of(profile: str = "native", **values) -> JobConfig:
    return JobConfig(profile, {k.replace("__", "."): v for k, v in values.items()})


# --------------------------------------------------------------------------- LLaMA-Factory

LF_JOBS = {
    "sft_lora_zero3_offload": dict(
        model__name_or_path="Qwen/Qwen2.5-0.5B-Instruct", model__trust_remote_code=True,
        data__train_path="finetui:samples/sharegpt_demo.jsonl", data__format="sharegpt", data__val_size=0.05,
        data__max_samples=300, data__packing=True, data__group_by_length=True,
        trainer__stage="sft", trainer__training_type="lora", trainer__distributed_backend="deepspeed",
        trainer__zero_stage=3, trainer__offload_optimizer=True, trainer__offload_params=True,
        general__batch_size=4, general__epochs=5, general__learning_rate=3e-4, general__max_sequence_length=4096,
        runtime__gradient_accumulation_steps=6, runtime__mixed_precision="fp16", runtime__optimizer="adamw",
        runtime__adam_beta1=0.8, runtime__adam_beta2=0.95, runtime__adam_epsilon=1e-7, runtime__weight_decay=0.05,
        runtime__max_grad_norm=0.5, runtime__gradient_checkpointing=False,
        runtime__attention_implementation="flash_attention_2", runtime__liger_kernel=True,
        runtime__lr_warmup_steps=25, runtime__lr_scheduler="cosine", runtime__min_lr=1e-6, runtime__seed=7,
        runtime__full_determinism=True,
        adapter__lora_rank=32, adapter__lora_alpha=48, adapter__lora_dropout=0.1,
        adapter__target_modules=["q_proj", "k_proj", "v_proj"], adapter__loraplus_lr_ratio=12.0,
        eval__evaluation_strategy="steps", eval__eval_steps=40, eval__logging_steps=4,
        eval__checkpoint_strategy="steps", eval__checkpoint_steps=80, eval__checkpoint_limit=3,
        eval__save_best_checkpoint=True, eval__early_stopping_patience=4,
        tracking__tensorboard=True, launch__runs_dir="saves/x", launch__run_name="rt-sft",
        general__resume_from_checkpoint="saves/x/rt-sft/checkpoint-80",
    ),
    "dpo_simpo_full_zero2": dict(
        data__train_path="finetui:samples/preference_demo.jsonl", data__format="preference",
        trainer__stage="dpo", trainer__training_type="full", trainer__distributed_backend="deepspeed",
        trainer__zero_stage=2, general__max_steps=120, general__epochs=None, runtime__mixed_precision="bf16",
        preference__preference_loss="simpo", preference__preference_beta=0.3, preference__preference_ftx=0.5,
        preference__simpo_gamma=1.5, runtime__lr_scheduler="constant", runtime__lr_warmup_ratio=0.05,
        eval__checkpoint_strategy="epoch", general__resume_from_checkpoint="last", launch__run_name="rt-dpo",
    ),
    "dpo_sigmoid_smoothing_qlora": dict(
        data__train_path="finetui:samples/preference_demo.jsonl", data__format="preference",
        trainer__stage="dpo", trainer__training_type="qlora", runtime__quantization_bit=8,
        preference__preference_loss="sigmoid", preference__dpo_label_smoothing=0.2, runtime__mixed_precision="none",
        adapter__target_modules=["all-linear"], launch__run_name="rt-qlora", runtime__optimizer="sgd",
    ),
    "kto_lora": dict(
        data__train_path="finetui:samples/kto_demo.jsonl", data__format="kto", trainer__stage="kto",
        preference__preference_beta=0.25, runtime__mixed_precision="bf16", launch__run_name="rt-kto",
        tracking__tensorboard=False, tracking__mlflow_tracking_uri="sqlite:///mlflow.db",
    ),
    "pretrain_freeze": dict(
        data__train_path="finetui:samples/corpus_demo.jsonl", data__format="corpus", trainer__stage="pretrain",
        trainer__training_type="freeze", adapter__freeze_trainable_layers=3, runtime__mixed_precision="none",
        runtime__attention_implementation="eager", launch__run_name="rt-pt",
    ),
    "sft_two_files": dict(
        data__train_path="finetui:samples/alpaca_demo.jsonl,finetui:samples/alpaca_demo.jsonl",
        data__validation_path="finetui:samples/alpaca_demo.jsonl", launch__run_name="rt-two",
    ),
    "reward_lora": dict(
        data__train_path="finetui:samples/preference_demo.jsonl", data__format="preference",
        data__validation_path="finetui:samples/preference_demo.jsonl", trainer__stage="reward",
        eval__evaluation_strategy="epoch", runtime__mixed_precision="bf16", launch__run_name="rt-rm",
    ),
}


@pytest.mark.parametrize("name", list(LF_JOBS))
def test_llamafactory_roundtrip(name, tmp_path):
    job = job_of(**LF_JOBS[name])
    assert job.problems() == [], job.problems()
    back, ew, iw = roundtrip(job, "llamafactory", tmp_path)
    assert back.problems() == [], back.problems()
    assert_same_or_warned(job, back, ew + iw)


def test_llamafactory_every_expressible_field_is_exact(tmp_path):
    """The big job warns about nothing it sets: every field it uses is expressible, and comes back."""
    job = job_of(**LF_JOBS["sft_lora_zero3_offload"])
    back, ew, _ = roundtrip(job, "llamafactory", tmp_path)
    assert ew == [], ew
    a, b = job.resolved(), back.resolved()
    for name in job.values:
        assert a[name] == b[name], name


def test_llamafactory_export_writes_zero_config_and_dataset_info(tmp_path):
    job = job_of(**LF_JOBS["sft_lora_zero3_offload"])
    out = tmp_path / "lf" / "train.yaml"
    written, _ = interop.write_export(job, "llamafactory", out)
    names = {p.name for p in written}
    assert names == {"train.yaml", "dataset_info.json", "ds_z3_offload_config.json"}
    y = yaml.safe_load(out.read_text())
    assert y["stage"] == "sft" and y["finetuning_type"] == "lora" and y["lora_target"] == "q_proj,k_proj,v_proj"
    assert y["deepspeed"] == str(out.parent / "ds_z3_offload_config.json")
    ds = json.loads((out.parent / "ds_z3_offload_config.json").read_text())
    assert ds["zero_optimization"]["stage"] == 3
    assert ds["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
    assert ds["train_micro_batch_size_per_gpu"] == "auto"
    info = json.loads((out.parent / "dataset_info.json").read_text())
    assert info[y["dataset"]]["formatting"] == "sharegpt"
    assert Path(info[y["dataset"]]["file_name"]).is_file()
    assert y["lr_scheduler_type"] == "cosine_with_min_lr" and y["lr_scheduler_kwargs"] == {"min_lr": 1e-6}
    assert y["fp16"] is True and "bf16" not in y
    assert y["disable_gradient_checkpointing"] is True and y["flash_attn"] == "fa2"


def test_llamafactory_inexpressible_fields_warn(tmp_path):
    job = job_of(**LF_JOBS["kto_lora"])
    job.values.update({"model.hidden_dropout": 0.1, "data.allow_percentage_invalid_samples": 5.0,
                       "launch.procs_per_node": 2, "launch.device": "cuda", "adapter.merge_adapter": True,
                       "eval.evaluation_strategy": "steps", "data.val_size": 0.1,
                       "eval.early_stopping_patience": 2, "eval.early_stopping_threshold": 0.01})
    text, warnings = interop.export_job(job, "llamafactory")
    for name in ("model.hidden_dropout", "data.allow_percentage_invalid_samples", "launch.procs_per_node",
                 "launch.device", "adapter.merge_adapter", "eval.early_stopping_threshold",
                 "tracking.mlflow_tracking_uri"):
        assert any(w.startswith(name) for w in warnings), (name, warnings)
    assert "report_to: mlflow" in text


def test_llamafactory_several_training_files(tmp_path):
    """Several files → one dataset_info entry each, named in order; importing them back reads them all."""
    a, b = tmp_path / "a.jsonl", tmp_path / "b.json"
    a.write_text('{"instruction": "a", "input": "", "output": "b"}\n' * 3)
    b.write_text(json.dumps([{"instruction": "c", "input": "", "output": "d"}] * 2))
    job = job_of(data__train_path=f"{a},{b}", data__max_samples=4)
    out = tmp_path / "lf" / "train.yaml"
    _, warnings = interop.write_export(job, "llamafactory", out)
    assert any(w.startswith("data.max_samples = 4: finetui caps the rows of all training files") for w in warnings)
    y = yaml.safe_load(out.read_text())
    info = json.loads((out.parent / "dataset_info.json").read_text())
    assert y["dataset"] == "finetui_train_1,finetui_train_2"
    assert [info[n]["file_name"] for n in y["dataset"].split(",")] == [str(a), str(b)]
    back, w = interop.import_file(out)
    # LLaMA-Factory's max_samples (4 of each) is finetui's 3 + 2: the same rows
    assert back.values["data.train_path"] == f"{a},{b}" and back.values["data.max_samples"] == 5
    assert not [x for x in w if x.startswith("max_samples")]
    # an earlier dataset longer than the cap: the same count, but not the same rows — said
    y["max_samples"] = 2
    out.write_text(yaml.safe_dump(y))
    back, w = interop.import_file(out)
    assert back.values["data.max_samples"] == 4
    assert any(x.startswith("max_samples = 2:") and "a.jsonl has more than 2 rows" in x for x in w), w


@needs_compat
def test_llamafactory_datasets_of_several_formats_keep_each_its_own(tmp_path):
    """alpaca + sharegpt (tool calls) + alpaca: the sharegpt file is named with its format (path#sharegpt);
    all rows load, in order; the export writes each dataset_info entry with its own formatting."""
    from engine.data import load_rows

    data_dir = COMPAT / "llamafactory" / "data"
    (tmp_path / "mix.yaml").write_text(f"stage: sft\ndataset: identity,glaive_toolcall_en_demo,alpaca_en_demo\n"
                                       f"dataset_dir: {data_dir}\n")
    job, w = interop.import_file(tmp_path / "mix.yaml")
    assert job.values["data.train_path"] == (f"{data_dir / 'identity.json'},"
                                             f"{data_dir / 'glaive_toolcall_en_demo.json'}#sharegpt,"
                                             f"{data_dir / 'alpaca_en_demo.json'}")
    assert job.resolved()["data.format"] == "alpaca" and job.problems() == []
    rows = load_rows(job.resolved()).train
    assert len(rows) == 91 + 300 + 999 and rows[91].get("tools") is not None  # glaive's rows carry their tools
    out = tmp_path / "lf" / "train.yaml"
    interop.write_export(job, "llamafactory", out)
    info = json.loads((out.parent / "dataset_info.json").read_text())
    assert [info[n].get("formatting", "alpaca") for n in yaml.safe_load(out.read_text())["dataset"].split(",")] == [
        "alpaca", "sharegpt", "alpaca"]


def test_nova_export_of_several_training_files_warns():
    job = nova_job()
    job.values["data.train_path"] = "s3://b/a.jsonl,s3://b/c.jsonl"
    _, warnings = interop.export_job(job, "nova")
    assert any("Nova reads one training file" in w for w in warnings), warnings


def test_llamafactory_refuses_what_it_cannot_train():
    job = job_of("oci_cohere_tfew", **{"data.train_path": "finetui:samples/alpaca_demo.jsonl"})
    with pytest.raises(InteropError) as e:
        interop.export_job(job, "llamafactory")
    assert "trainer.training_type" in str(e.value) and "tfew" in str(e.value)


def test_llamafactory_zero_stage_from_referenced_json(tmp_path):
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "my_ds.json").write_text(json.dumps(
        {"zero_optimization": {"stage": 2, "offload_optimizer": {"device": "cpu"}}}))
    (tmp_path / "run.yaml").write_text("stage: sft\nfinetuning_type: lora\ndeepspeed: cfg/my_ds.json\n"
                                       "dataset: nothere\n")
    job, w = interop.import_file(tmp_path / "run.yaml")
    r = job.resolved()
    assert (r["trainer.distributed_backend"], r["trainer.zero_stage"], r["trainer.offload_optimizer"]) == \
        ("deepspeed", 2, True)
    assert any("nothere" in x for x in w)  # unknown dataset name kept, with a warning
    assert job.values["data.train_path"] == "nothere"
    # a missing file: the stage comes from its name, with a warning
    (tmp_path / "run2.yaml").write_text("stage: sft\ndeepspeed: somewhere/ds_z3_offload_config.json\n")
    job2, w2 = interop.import_file(tmp_path / "run2.yaml")
    assert job2.resolved()["trainer.zero_stage"] == 3 and job2.resolved()["trainer.offload_params"] is True
    assert any("read from its name" in x for x in w2)


def test_llamafactory_absent_keys_mean_its_defaults(tmp_path):
    (tmp_path / "min.yaml").write_text("model_name_or_path: m\nstage: sft\nfinetuning_type: lora\nlora_rank: 16\n"
                                       "dataset: x\n")
    job, _ = interop.import_file(tmp_path / "min.yaml")
    r = job.resolved()
    assert r["adapter.lora_alpha"] == 32 and r["adapter.lora_dropout"] == 0.0
    assert r["general.learning_rate"] == 5e-5 and r["general.batch_size"] == 8
    assert r["general.max_sequence_length"] == 2048 and r["eval.logging_steps"] == 500


# --------------------------------------------------------------------------- compat corpus


@needs_compat
@pytest.mark.parametrize("path", LF_EXAMPLES, ids=lambda p: p.name)
def test_compat_llamafactory_examples_import_and_validate(path):
    job, warnings = interop.import_file(path)
    assert job.problems() == [], [str(p) for p in job.problems()]
    raw = yaml.safe_load(path.read_text())
    r = job.resolved()
    stage = {"pt": "pretrain", "sft": "sft", "dpo": "dpo", "kto": "kto", "rm": "reward"}[raw["stage"]]
    assert r["trainer.stage"] == stage
    assert r["general.learning_rate"] == float(raw["learning_rate"])
    if stage == "kto" and raw["per_device_train_batch_size"] == 1:  # TRL's KTO needs 2 rows: same effective batch
        assert (r["general.batch_size"], r["runtime.gradient_accumulation_steps"]) == (2, raw[
            "gradient_accumulation_steps"] // 2)
        assert any("KTO trainer (TRL) needs 2 rows per device batch" in w and "the same effective batch" in w
                   for w in warnings), warnings
    else:
        assert r["runtime.gradient_accumulation_steps"] == raw["gradient_accumulation_steps"]
    assert r["general.max_sequence_length"] == raw["cutoff_len"]
    assert r["general.epochs"] == int(raw["num_train_epochs"])
    assert r["runtime.mixed_precision"] == "bf16" and r["runtime.lr_warmup_ratio"] == 0.1
    assert r["runtime.lr_scheduler"] == "cosine"
    # each dataset name maps to its compat data file, in the order named, and to its format
    from engine.datapaths import data_paths

    files = [Path(p) for p in data_paths(r["data.train_path"])]
    assert [f.stem for f in files] == raw["dataset"].split(",") and all(f.is_file() for f in files)
    if "," in raw["dataset"]:  # LLaMA-Factory caps each dataset; the total that takes the same rows
        assert r["data.max_samples"] == sum(min(len(json.loads(f.read_text())), raw["max_samples"]) for f in files)
    expected_format = {"pretrain": "corpus", "dpo": "preference", "reward": "preference", "kto": "kto"}.get(
        stage, "alpaca")
    assert r["data.format"] == expected_format
    if "deepspeed" in raw:
        assert r["trainer.distributed_backend"] == "deepspeed" and r["trainer.zero_stage"] == 3
    if raw.get("quantization_bit"):
        assert r["trainer.training_type"] == "qlora" and r["runtime.quantization_bit"] == 4
    if raw["finetuning_type"] == "lora":
        assert r["adapter.target_modules"] == ["all-linear"] and r["adapter.lora_rank"] == 8
    if "template" in raw:
        assert any(w.startswith("template") for w in warnings)


@needs_compat
@pytest.mark.parametrize("path", NOVA_RECIPES, ids=lambda p: p.name)
def test_compat_nova_recipes_import_and_validate(path):
    job, warnings = interop.import_file(path)
    assert job.problems() == [], [str(p) for p in job.problems()]
    raw = yaml.safe_load(path.read_text())
    tc = raw["training_config"]
    r = job.resolved()
    lora = tc["model"]["peft"]["peft_scheme"] == "lora"
    assert job.profile == ("nova_lora" if lora else "nova_full")
    assert r["launch.nodes"] == raw["run"]["replicas"]
    # the recipe's global batch is a field of its own; finetui's accumulation follows from it
    assert r["general.global_batch_size"] == tc["global_batch_size"] and r["general.batch_size"] == 1
    assert r["general.batch_size"] * r["runtime.gradient_accumulation_steps"] * r["launch.nodes"] == \
        tc["global_batch_size"]
    assert r["general.learning_rate"] == float(tc["model"]["optim"]["lr"])
    assert r["runtime.min_lr"] == float(tc["model"]["optim"]["sched"]["min_lr"])
    assert r["general.epochs"] == tc["trainer"]["max_epochs"]
    if lora:
        lt = tc["model"]["peft"]["lora_tuning"]
        assert r["adapter.lora_alpha"] == lt["alpha"] and r["adapter.loraplus_lr_ratio"] == lt["loraplus_lr_ratio"]
    assert any("data_s3_path" in w for w in warnings)  # empty in the recipe: the sample is used
    # and it goes back out in the same shape
    text, _ = interop.export_job(job, "nova")
    again = yaml.safe_load(text)
    for k in ("model_type", "model_name_or_path", "replicas", "mlflow_experiment_name"):
        assert again["run"][k] == raw["run"][k]
    for k in ("max_length", "global_batch_size"):
        assert again["training_config"][k] == tc[k]
    assert again["training_config"]["model"]["peft"] == {**tc["model"]["peft"], **(
        {"lora_tuning": {k: float(v) if k != "alpha" else v for k, v in tc["model"]["peft"]["lora_tuning"].items()}}
        if lora else {})}


@needs_compat
def test_cli_import_writes_a_valid_preset_for_every_compat_file(tmp_path):
    from tui.cli import app

    runner = CliRunner()
    assert len(LF_EXAMPLES) >= 8 and NOVA_RECIPES, "the compatibility corpus is missing files"
    for src in LF_EXAMPLES + NOVA_RECIPES:
        out = tmp_path / (src.stem + ".toml")
        r = runner.invoke(app, ["import", str(src), "-o", str(out)])
        assert r.exit_code == 0, (src.name, r.output)
        v = runner.invoke(app, ["validate", str(out)])
        assert v.exit_code == 0, (src.name, v.output)


# --------------------------------------------------------------------------- Nova


def nova_job() -> JobConfig:
    job = presets.load(presets.PRESETS_DIR / "nova_lora.toml")
    job.values.update({
        "data.train_path": "s3://bucket/train.jsonl", "data.validation_path": "s3://bucket/val.jsonl",
        "general.max_sequence_length": 8192, "general.epochs": 3, "general.learning_rate": 3e-5,
        "general.global_batch_size": 32, "launch.nodes": 4, "model.name_or_path": "nova-lite/prod",
        "model.hidden_dropout": 0.1, "model.attention_dropout": 0.05, "model.ffn_dropout": 0.15,
        "runtime.adam_epsilon": 1e-7, "runtime.weight_decay": 0.05, "runtime.adam_beta1": 0.85,
        "runtime.adam_beta2": 0.99, "runtime.lr_warmup_steps": 5, "runtime.min_lr": 2e-6,
        "adapter.lora_alpha": 64, "adapter.lora_dropout": 0.05, "adapter.loraplus_lr_ratio": 20.0,
        "eval.evaluation_strategy": "steps", "eval.eval_steps": 50, "eval.logging_steps": 5,
        "eval.checkpoint_steps": 200, "eval.checkpoint_limit": 4, "eval.early_stopping_patience": 2,
        "eval.early_stopping_threshold": 0.001, "runtime.max_grad_norm": 0.7,
        "data.allow_percentage_invalid_samples": 5.0, "tracking.mlflow_tracking_uri": "http://mlflow:5000",
        "tracking.mlflow_experiment": "exp", "launch.run_name": "nova-rt",
    })
    return job


def test_nova_roundtrip_with_every_recipe_field(tmp_path):
    job = nova_job()
    assert job.problems() == [], job.problems()
    back, ew, iw = roundtrip(job, "nova", tmp_path)
    assert back.profile == "nova_lora"
    assert back.problems() == []
    assert ew == [], ew
    assert_same_or_warned(job, back, ew + iw)


def test_nova_full_roundtrip_and_max_steps(tmp_path):
    job = presets.load(presets.PRESETS_DIR / "nova_full.toml")
    job.values.pop("general.epochs", None)
    job.values.update({"general.max_steps": 300, "launch.run_name": "full-rt", "general.learning_rate": 2e-5})
    assert job.problems() == []
    back, ew, iw = roundtrip(job, "nova", tmp_path)
    assert back.profile == "nova_full" and back.resolved()["general.max_steps"] == 300
    assert_same_or_warned(job, back, ew + iw)
    job.values.update({"tracking.tensorboard": False, "general.batch_size": 2, "general.global_batch_size": 64})
    back, ew, iw = roundtrip(job, "nova", tmp_path / "b")
    assert back.resolved()["tracking.tensorboard"] is False
    assert_same_or_warned(job, back, ew + iw)


def test_nova_export_validates_against_the_nova_profile():
    job = presets.load(presets.PRESETS_DIR / "demo.toml")
    with pytest.raises(InteropError) as e:
        interop.export_job(job, "nova")
    lines = str(e.value).splitlines()
    assert any(l.startswith("data.format:") and "nova_lora" in l for l in lines)
    assert any(l.startswith("adapter.lora_alpha:") for l in lines)


def test_nova_inexpressible_rank_warns():
    job = presets.load(presets.PRESETS_DIR / "nova_lora.toml")
    job.values["adapter.lora_rank"] = 16
    _, warnings = interop.export_job(job, "nova")
    assert any(w.startswith("adapter.lora_rank") for w in warnings)


# --------------------------------------------------------------------------- provider JSON


def fpt_job() -> JobConfig:
    job = presets.load(presets.PRESETS_DIR / "fpt_studio.toml")
    job.values.update({
        "general.batch_size": 4, "general.epochs": 2, "general.learning_rate": 5e-5,
        "general.max_sequence_length": 1024, "trainer.distributed_backend": "deepspeed", "trainer.zero_stage": 3,
        "general.resume_from_checkpoint": "last", "runtime.gradient_accumulation_steps": 2,
        "runtime.mixed_precision": "fp16", "runtime.optimizer": "sgd", "runtime.weight_decay": 0.01,
        "runtime.max_grad_norm": 0.3, "runtime.gradient_checkpointing": False,
        "runtime.attention_implementation": "flash_attention_2", "runtime.lr_warmup_ratio": 0.1,
        "runtime.lr_scheduler": "cosine", "runtime.full_determinism": True, "runtime.seed": 3,
        "trainer.stage": "dpo", "data.format": "preference", "data.train_path": "finetui:samples/preference_demo.jsonl",
        "preference.preference_loss": "simpo", "preference.preference_beta": 0.2, "preference.preference_ftx": 1.0,
        "preference.simpo_gamma": 0.8, "adapter.merge_adapter": True, "adapter.lora_alpha": 32,
        "adapter.lora_dropout": 0.2, "adapter.lora_rank": 16, "eval.checkpoint_strategy": "steps",
        "eval.checkpoint_steps": 100, "eval.evaluation_strategy": "steps", "eval.eval_steps": 20,
        "data.val_size": 0.1, "eval.checkpoint_limit": 2, "eval.logging_steps": 5,
    })
    return job


def test_fpt_studio_roundtrip(tmp_path):
    job = fpt_job()
    assert job.problems() == [], job.problems()
    text, _ = interop.export_job(job, "fpt_studio")
    d = json.loads(text)
    assert d["distributed_backend"] == "DeepSpeed" and d["training_type"] == "LoRA"
    assert d["disable_gradient_checkpointing"] is True and d["flash_attention_v2"] is True
    assert d["resume_from_checkpoint"] is True
    back, ew, iw = roundtrip(job, "fpt_studio", tmp_path)
    assert back.profile == "fpt_studio"
    assert_same_or_warned(job, back, ew + iw)


def test_fpt_studio_roundtrip_full_sigmoid(tmp_path):
    job = presets.load(presets.PRESETS_DIR / "fpt_studio.toml")
    job.values.update({"trainer.training_type": "full", "trainer.stage": "dpo", "data.format": "preference",
                       "data.train_path": "finetui:samples/preference_demo.jsonl",
                       "preference.preference_loss": "sigmoid", "preference.dpo_label_smoothing": 0.1,
                       "general.max_sequence_length": 512, "runtime.lr_warmup_steps": 10,
                       "eval.checkpoint_strategy": "epoch", "general.resume_from_checkpoint": "runs/x/checkpoint-9"})
    assert job.problems() == [], job.problems()
    back, ew, iw = roundtrip(job, "fpt_studio", tmp_path)
    assert_same_or_warned(job, back, ew + iw)
    lora = presets.load(presets.PRESETS_DIR / "fpt_studio.toml")
    lora.values["adapter.target_modules"] = ["q_proj", "v_proj"]  # FPT AI Studio offers all-linear only
    with pytest.raises(InteropError, match=r"adapter.target_modules: \["):
        interop.export_job(lora, "fpt_studio")


def test_fpt_studio_json_as_the_document_writes_it(tmp_path):
    p = tmp_path / "fpt.json"
    p.write_text(json.dumps({"batch_size": 2, "epochs": 3, "learning_rate": 0.0001, "max_sequence_length": 2048,
                             "distributed_backend": "DDP", "training_type": "Full", "resume_from_checkpoint": False,
                             "mixed_precision": "Bf16", "optimizer": "Adamw", "lr_scheduler": "Linear",
                             "quantization_bit": "None", "logging_steps": -1, "save_best_checkpoint": False}))
    job, w = interop.import_file(p)
    assert job.profile == "fpt_studio" and job.problems() == []
    r = job.resolved()
    assert (r["trainer.training_type"], r["runtime.mixed_precision"], r["eval.logging_steps"]) == ("full", "bf16", 0)
    assert any("logging_steps = -1" in x for x in w) and any(x.startswith("data.train_path") for x in w)


def oci_jobs() -> tuple[JobConfig, JobConfig]:
    lora = presets.load(presets.PRESETS_DIR / "oci_llama_lora.toml")
    lora.values.update({"general.epochs": 4, "general.learning_rate": 1e-4, "general.batch_size": 16,
                        "eval.early_stopping_patience": 5, "eval.early_stopping_threshold": 0.01,
                        "adapter.lora_rank": 64, "adapter.lora_alpha": 128, "adapter.lora_dropout": 0.2})
    tfew = presets.load(presets.PRESETS_DIR / "oci_cohere_tfew.toml")
    tfew.values.update({"general.epochs": 10, "general.learning_rate": 0.05, "general.batch_size": 32,
                        "eval.early_stopping_patience": 16, "eval.early_stopping_threshold": 0.1})
    return lora, tfew


def test_oci_roundtrip_lora_and_tfew(tmp_path):
    lora, tfew = oci_jobs()
    back, ew, iw = roundtrip(lora, "oci", tmp_path)
    assert back.profile == "oci_llama_lora" and back.problems() == []
    assert_same_or_warned(lora, back, ew + iw)
    back, ew, iw = roundtrip(tfew, "oci", tmp_path / "t")
    assert back.profile == "oci_cohere_tfew" and back.problems() == []
    assert_same_or_warned(tfew, back, ew + iw)


def test_oci_names_from_the_document(tmp_path):
    p = tmp_path / "oci.json"
    p.write_text(json.dumps({"totalTrainingEpochs": 3, "learningRate": 0.0002, "trainingBatchSize": 8,
                             "earlyStoppingPatience": 15, "earlyStoppingThreshold": 0.0001, "loraR": 8,
                             "loraAlpha": 8, "loraDropout": 0.1}))
    job, w = interop.import_file(p)
    assert job.profile == "oci_llama_lora" and job.problems() == []
    assert job.resolved()["model.name_or_path"] == "meta.llama-3.3-70b-instruct"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"totalTrainingEpochs": 3, "trainingBatchSize": 64, "loraR": 8}))
    job, _ = interop.import_file(bad)
    assert [p.field for p in job.problems()] == ["general.batch_size"]


WATSONX = ["watsonx_lora", "watsonx_qlora", "watsonx_full", "watsonx_prompt_tuning"]


def watsonx_job(preset: str) -> JobConfig:
    job = presets.load(presets.PRESETS_DIR / f"{preset}.toml")
    job.values.update({"general.epochs": 7, "runtime.gradient_accumulation_steps": 4, "general.batch_size": 4,
                       "general.learning_rate": 3e-5, "general.max_sequence_length": 2048})
    if preset in ("watsonx_lora", "watsonx_qlora"):
        job.values.update({"adapter.lora_rank": 32, "adapter.lora_alpha": 64, "adapter.lora_dropout": 0.1,
                           "adapter.target_modules": ["q_proj", "v_proj"]})
    if preset == "watsonx_prompt_tuning":
        job.values.update({"adapter.prompt_tuning_init": "text", "adapter.prompt_tuning_init_text": "Classify it."})
    return job


@pytest.mark.parametrize("preset", WATSONX)
def test_watsonx_roundtrip(preset, tmp_path):
    job = watsonx_job(preset)
    job.values["launch.procs_per_node"] = 4
    assert job.problems() == [], job.problems()
    back, ew, iw = roundtrip(job, "watsonx", tmp_path)
    assert back.profile == preset and back.problems() == []
    assert_same_or_warned(job, back, ew + iw)


def test_watsonx_parameters_as_documented(tmp_path):
    p = tmp_path / "wx.json"
    p.write_text(json.dumps({"num_epochs": 5, "accumulate_steps": 1, "batch_size": 8, "learning_rate": 0.00001,
                             "peft_parameters": {"type": "lora", "rank": 32, "alpha": 64, "dropout": 0.05,
                                                 "target_modules": ["q_proj", "v_proj"]}}))
    job, _ = interop.import_file(p)
    assert job.profile == "watsonx_lora" and job.problems() == []
    assert job.resolved()["adapter.target_modules"] == ["q_proj", "v_proj"]


# --------------------------------------------------------------------------- CLI


def test_cli_export_invalid_job_exits_2_one_line_per_problem(tmp_path):
    from tui.cli import app

    r = CliRunner().invoke(app, ["export", str(presets.PRESETS_DIR / "demo.toml"), "--to", "nova"])
    assert r.exit_code == 2
    assert "data.format: alpaca is not offered in profile nova_lora (allowed: bedrock_converse)" in r.output
    assert "Traceback" not in r.output


def test_cli_export_then_import(tmp_path):
    from tui.cli import app

    runner = CliRunner()
    out = tmp_path / "demo.yaml"
    r = runner.invoke(app, ["export", str(presets.PRESETS_DIR / "demo.toml"), "--to", "llamafactory", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "warning: launch.procs_per_node = 2" in r.output  # LLaMA-Factory takes it from its launcher
    assert (tmp_path / "dataset_info.json").is_file()
    toml_out = tmp_path / "demo.toml"
    r = runner.invoke(app, ["import", str(out), "-o", str(toml_out), "--format", "llamafactory"])
    assert r.exit_code == 0, r.output
    back = presets.load(toml_out)
    demo = presets.load(presets.PRESETS_DIR / "demo.toml")
    for name in ("data.train_path", "data.format", "general.learning_rate", "adapter.lora_rank", "eval.eval_steps"):
        assert back.resolved()[name] == demo.resolved()[name], name


def test_cli_import_unknown_format(tmp_path):
    from tui.cli import app

    p = tmp_path / "x.json"
    p.write_text('{"hello": 1}')
    r = CliRunner().invoke(app, ["import", str(p)])
    assert r.exit_code == 2 and "not a format finetui reads with confidence" in r.output


@needs_compat
def test_imported_compat_data_loads(tmp_path):
    """The dataset names of the compat examples map to files finetui's data engine reads."""
    from engine.data import load_rows

    assert len(LF_EXAMPLES) >= 8, "the compatibility corpus is missing files"
    for path in LF_EXAMPLES:
        job, _ = interop.import_file(path)
        data = load_rows(job.resolved())
        assert len(data.train) > 50 and data.dropped == 0, path.name
        if "identity,alpaca_en_demo" in path.read_text():  # LLaMA-Factory trains on 91 + 999 rows
            assert len(data.train) == 1090 and data.train[0]["messages"][0]["content"] == "hi", path.name


# --------------------------------------------------------------------------- the names table


def _paths(d, prefix=""):
    out = set()
    if isinstance(d, dict):
        for k, v in d.items():
            p = f"{prefix}.{k}" if prefix else str(k)
            out.add(p)
            out |= _paths(v, p)
    return out


def test_names_table_matches_what_the_exporters_write(tmp_path):
    """Each field's external names (Field.names, rendered in docs/parameters.md) are keys the exporters really
    write."""
    import engine.schema as N

    written: dict[str, set[str]] = {t: set() for t in N.TOOLS}
    for i, values in enumerate(LF_JOBS.values()):
        text, _ = interop.export_job(job_of(**values), "llamafactory")
        written[N.LF] |= _paths(yaml.safe_load(text))
    nova2 = nova_job()
    nova2.values.update({"general.batch_size": 2, "general.global_batch_size": 32, "general.max_steps": 9,
                         "tracking.tensorboard": False})
    nova2.values.pop("general.epochs")
    for job in (nova_job(), nova2):
        written[N.NOVA] |= _paths(yaml.safe_load(interop.export_job(job, "nova")[0]))
    written[N.FPT] |= _paths(json.loads(interop.export_job(fpt_job(), "fpt_studio")[0]))
    for job in oci_jobs():
        written[N.OCI] |= _paths(json.loads(interop.export_job(job, "oci")[0]))
    for preset in WATSONX:
        job = watsonx_job(preset)
        job.values["launch.procs_per_node"] = 2
        written[N.WX] |= _paths(json.loads(interop.export_job(job, "watsonx")[0]))
    missing = []
    for field, tools in {f.name: f.names for f in FIELDS if f.names}.items():
        for tool, name in tools.items():
            key = N.key_of(name).replace("[0]", "").replace("[1]", "")
            if ":" in key or "dataset_info" in key or key.startswith("dataset ("):
                continue  # side files, checked by test_llamafactory_export_writes_zero_config_and_dataset_info
            if key not in written[tool]:
                missing.append(f"{tool}: {field} → {key}")
    assert not missing, missing


def test_interop_and_docs_import_neither_torch_nor_textual():
    import subprocess
    import sys

    code = ("import sys, engine.interop, engine.docs\n"
            "bad = [m for m in ('torch', 'transformers', 'deepspeed', 'textual') if m in sys.modules]\n"
            "sys.exit(str(bad) if bad else 0)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=Path(__file__).resolve().parent.parent)
    assert r.returncode == 0, r.stdout + r.stderr


@needs_compat
def test_llamafactory_hub_and_multimodal_dataset_names_warn(tmp_path):
    data_dir = COMPAT / "llamafactory" / "data"
    (tmp_path / "hub.yaml").write_text(f"stage: sft\ndataset: alpaca_en\ndataset_dir: {data_dir}\n")
    job, w = interop.import_file(tmp_path / "hub.yaml")
    assert job.values["data.train_path"] == "alpaca_en"
    assert any("hub dataset (llamafactory/alpaca_en)" in x for x in w)
    (tmp_path / "mm.yaml").write_text(f"stage: sft\ndataset: mllm_demo\ndataset_dir: {data_dir}\n")
    job, w = interop.import_file(tmp_path / "mm.yaml")
    assert job.resolved()["data.format"] == "sharegpt_image"
    assert any("zip them" in x for x in w)
    (tmp_path / "tc.yaml").write_text(f"stage: sft\ndataset: glaive_toolcall_en_demo\ndataset_dir: {data_dir}\n")
    job, _ = interop.import_file(tmp_path / "tc.yaml")
    assert job.resolved()["data.format"] == "sharegpt" and Path(job.values["data.train_path"]).is_file()
    (tmp_path / "ppo.yaml").write_text("stage: ppo\n")
    with pytest.raises(InteropError, match="stage"):
        interop.import_file(tmp_path / "ppo.yaml")
