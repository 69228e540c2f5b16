"""Provider rules exactly as their documents state them (issue 24): for each rule a value just inside
passes and one just outside fails with a line naming the field, under the profile that states it."""

from __future__ import annotations

import json

import pytest
import yaml

from engine import interop
from engine.schema import JobConfig
from tests.test_config import _errors, _job  # one way to build a job and read its errors


def _warnings(job):
    return [str(p) for p in job.warnings()]


NOVA_S3 = {"data__train_path": "s3://bucket/train.jsonl"}


# --------------------------------------------------------------------------------------- Nova (004)

@pytest.mark.parametrize("profile", ["nova_lora", "nova_full"])
@pytest.mark.parametrize("nodes", [6, 12, 24])
def test_nova_pro_validates_with_each_documented_replica_count(profile, nodes):
    job = _job(profile, model__name_or_path="nova-pro/prod", launch__nodes=nodes, **NOVA_S3)
    assert _errors(job) == []
    res = job.resolved()
    assert res["general.global_batch_size"] == 64 and res["general.batch_size"] == 1
    # finetui's own accumulation follows from the global batch, rounded up (said in a warning)
    assert res["runtime.gradient_accumulation_steps"] == -(-64 // nodes)


@pytest.mark.parametrize("model,inside,outside", [("nova-micro/prod", 8, 6), ("nova-lite/prod", 32, 24),
                                                  ("nova-pro/prod", 24, 8)])
def test_nova_replicas_by_model(model, inside, outside):
    assert not _errors(_job("nova_lora", model__name_or_path=model, launch__nodes=inside, **NOVA_S3))
    errs = _errors(_job("nova_lora", model__name_or_path=model, launch__nodes=outside, **NOVA_S3))
    assert any(e.startswith(f"launch.nodes: {outside} replicas are not offered for {model.split('/')[0]} in profile "
                            "nova_lora") for e in errs), errs


@pytest.mark.parametrize("profile", ["nova_lora", "nova_full"])
def test_nova_global_batch_is_the_recipes_field(profile):
    base = dict(model__name_or_path="nova-lite/prod", launch__nodes=4, **NOVA_S3)
    for gb in (16, 32, 64):
        job = _job(profile, general__global_batch_size=gb, **base)
        assert _errors(job) == [] and job.resolved()["runtime.gradient_accumulation_steps"] == gb // 4
    errs = _errors(_job(profile, general__global_batch_size=48, **base))
    assert f"general.global_batch_size: 48 is not offered in profile {profile} (allowed: 16, 32, 64)" in errs
    # accumulation set against it: one line naming it
    errs = _errors(_job(profile, general__global_batch_size=16, runtime__gradient_accumulation_steps=2, **base))
    assert any(e.startswith("runtime.gradient_accumulation_steps: batch × accumulation × ranks = 8 contradicts "
                            "general.global_batch_size = 16") for e in errs), errs
    # the native profile: no global batch unless set
    assert JobConfig("native").resolved()["general.global_batch_size"] is None


def test_nova_pro_recipe_round_trips_global_and_micro_batch(tmp_path):
    job = _job("nova_lora", model__name_or_path="nova-pro/prod", launch__nodes=24, general__global_batch_size=16,
               general__batch_size=1, general__epochs=2, **NOVA_S3)
    text, _ = interop.export_job(job, "nova")
    tc = yaml.safe_load(text)["training_config"]
    assert tc["global_batch_size"] == 16 and yaml.safe_load(text)["run"]["replicas"] == 24
    assert yaml.safe_load(text)["run"]["model_type"] == "amazon.nova-pro-v1:0:300k"
    p = tmp_path / "pro.yaml"
    p.write_text(text)
    back, _ = interop.import_file(p)
    r = back.resolved()
    assert (r["general.global_batch_size"], r["general.batch_size"], r["launch.nodes"]) == (16, 1, 24)
    assert back.problems() == []


@pytest.mark.parametrize("name,doc,recipe,follows", [
    ("general.epochs", "2", "1", "nova_full follows the real recipe (1)"),
    ("general.learning_rate", "1e-5", "5e-6", "nova_full follows the real recipe (5e-6)"),
    ("runtime.min_lr", "1e-6", "5e-7", "nova_full follows the real recipe (5e-7)"),
    ("eval.checkpoint_steps", "100000", "none", "Nova profiles keep finetui's default (500)"),
    ("eval.early_stopping_patience", "patience 2", "do not", "follow them (0, off)"),
    ("general.global_batch_size", "64", "16", "follow the document (64)"),
    ("adapter.lora_alpha", "32", "128", "follows the document (32)"),
    ("adapter.loraplus_lr_ratio", "8", "16", "follows the document (8)"),
])
def test_nova_fields_where_document_and_recipes_disagree_say_both(name, doc, recipe, follows):
    from engine.schema import FIELD_BY_NAME, JobConfig

    h = FIELD_BY_NAME[name].help
    assert doc in h and recipe in h and follows in h, h
    # and the profiles do what the help says
    full, lora = JobConfig("nova_full").resolved(), JobConfig("nova_lora").resolved()
    assert (full["general.epochs"], full["general.learning_rate"], full["runtime.min_lr"]) == (1, 5e-6, 5e-7)
    assert (lora["general.epochs"], lora["general.learning_rate"], lora["runtime.min_lr"]) == (2, 1e-5, 1e-6)
    assert full["eval.early_stopping_patience"] == lora["eval.early_stopping_patience"] == 0


@pytest.mark.parametrize("profile", ["nova_lora", "nova_full"])
@pytest.mark.parametrize("field", ["data.train_path", "data.validation_path"])
def test_nova_reads_jsonl_only_local_and_s3(profile, field):
    base = dict(model__name_or_path="nova-lite/prod", launch__nodes=4, **NOVA_S3)
    for ok in ("s3://bucket/x/train.jsonl", "s3://bucket/x/TRAIN.JSONL", "data/train.jsonl"):
        assert _errors(_job(profile, **{**base, field.replace(".", "__"): ok})) == []
    for bad in ("s3://bucket/x/train.json", "s3://bucket/x/train.zip", "s3://bucket/x/train.csv", "train.json",
                "s3://bucket/a.jsonl,s3://bucket/b.json"):
        errs = _errors(_job(profile, **{**base, field.replace(".", "__"): bad}))
        assert any(e.startswith(f"{field}: ") and "reads JSONL files only" in e and f"(profile {profile})" in e
                   and e.endswith("(allowed: .jsonl)") for e in errs), (bad, errs)
    # other profiles read json and zip
    assert not _errors(_job("native", data__train_path="s3://bucket/x/train.json"))


@pytest.mark.parametrize("profile", ["nova_lora", "nova_full"])
def test_nova_service_limitations_warn_and_export_names_them(profile):
    base = dict(model__name_or_path="nova-lite/prod", launch__nodes=4, **NOVA_S3)
    quiet = _job(profile, **base)
    assert not any("would not accept" in w for w in _warnings(quiet))
    for field, value in (("general.resume_from_checkpoint", "last"),
                         ("general.resume_from_checkpoint", "checkpoints/checkpoint-10"),
                         ("tracking.mlflow_tracking_uri", "http://mlflow:5000")):
        job = _job(profile, **base, **{field.replace(".", "__"): value})
        assert _errors(job) == []  # not an error: finetui runs it itself
        ws = _warnings(job)
        assert any(w.startswith(f"{field}: the service itself would not accept it") for w in ws), ws
    job = _job(profile, general__resume_from_checkpoint="last", **base)
    _, warnings = interop.export_job(job, "nova")
    assert any(w.startswith('general.resume_from_checkpoint = "last": a Nova recipe cannot express it') for w in
               warnings), warnings


@pytest.mark.parametrize("value,meaning", [(False, "no"), ("false", "no"), (True, "last"), ("no", "no")])
def test_resume_from_checkpoint_takes_a_bool(value, meaning):
    job = _job("fpt_studio", general__resume_from_checkpoint=value)
    assert _errors(job) == [] and job.resolved()["general.resume_from_checkpoint"] == meaning
    errs = _errors(_job("fpt_studio", general__resume_from_checkpoint=1))
    assert any(e.startswith("general.resume_from_checkpoint:") for e in errs)


# --------------------------------------------------------------------------------------- watsonx (002), FPT (000)

def test_fpt_studio_target_modules_all_linear_only():
    assert _errors(_job("fpt_studio", adapter__target_modules=["all-linear"])) == []
    errs = _errors(_job("fpt_studio", adapter__target_modules=["q_proj", "v_proj"]))
    assert 'adapter.target_modules: ["q_proj", "v_proj"] is not offered in profile fpt_studio (allowed: ' \
           '["all-linear"])' in errs, errs
    assert any(e.startswith("adapter.target_modules:") for e in _errors(_job("fpt_studio", adapter__target_modules=[])))
    # the native profile takes a list
    assert _errors(_job("native", adapter__target_modules=["q_proj", "v_proj"])) == []


def test_watsonx_lora_refuses_a_quantized_base():
    base = dict(model__name_or_path="ibm-granite/granite-3.1-8b-base", launch__device="cuda")
    assert _errors(_job("watsonx_lora", runtime__quantization_bit="none", **base)) == []
    for q in (4, 8):
        errs = _errors(_job("watsonx_lora", runtime__quantization_bit=q, **base))
        assert f"runtime.quantization_bit: {q} is not offered in profile watsonx_lora (allowed: none)" in errs, errs
    assert _errors(_job("watsonx_qlora", runtime__quantization_bit=4, **base)) == []


@pytest.mark.parametrize("profile", ["watsonx_lora", "watsonx_qlora"])
@pytest.mark.parametrize("model", ["ibm-granite/granite-3.1-8b-base", "meta-llama/Llama-3.1-8B"])
def test_watsonx_target_modules_are_the_architectures_layers(profile, model):
    base = dict(model__name_or_path=model, launch__device="cuda")
    for ok in (["all-linear"], [], ["q_proj", "v_proj"], ["down_proj", "up_proj", "gate_proj", "q_proj", "k_proj",
                                                             "v_proj", "o_proj"]):
        assert _errors(_job(profile, adapter__target_modules=ok, **base)) == [], ok
    errs = _errors(_job(profile, adapter__target_modules=["q_proj", "qkv_proj"], **base))
    arch = "granite" if "granite" in model else "llama"
    assert any(e.startswith(f"adapter.target_modules: qkv_proj: not a layer of the {arch} architecture in profile "
                            f"{profile}") for e in errs), errs
    # a model whose config cannot be read here is not checked
    assert _errors(_job(profile, adapter__target_modules=["qkv_proj"], model__name_or_path="acme/unknown-7b",
                        launch__device="cuda")) == []


# --------------------------------------------------------------------------------------- catalogs (001–004)

def _catalog_models():
    from engine.schema.profiles import PROFILES

    return sorted({m for p in PROFILES.values() for m in p.models})


@pytest.mark.parametrize("model", _catalog_models())
def test_every_catalog_model_has_a_shape_or_says_why_not(model):
    from engine import modelinfo

    try:
        info = modelinfo.describe(model)
    except modelinfo.ModelInfoError as e:
        # Amazon's Nova and IBM's granite-13b-instruct-v2 architectures are not published
        assert any(k in model for k in modelinfo.UNPUBLISHED), model
        assert "does not publish this model's architecture" in str(e)
        return
    assert info.source == "built-in catalog shape"
    assert info.layers > 0 and info.hidden > 0 and info.heads > 0 and info.kv_heads > 0 and info.vocab > 0
    assert info.context_length > 0 and info.intermediate > 0 and info.num_params > 10 ** 8


@pytest.mark.parametrize("model,params", [("meta.llama-3.3-70b-instruct", 70.55e9), ("cohere.command-r-08-2024", 32.3e9),
                                          ("cohere.command-r-16k", 34.98e9), ("google/flan-t5-xl", 2.85e9),
                                          ("ibm-granite/granite-3.1-8b-base", 8.17e9)])
def test_provider_model_ids_estimate_offline(model, params):
    from engine import modelinfo

    info = modelinfo.describe(model)
    assert abs(info.num_params - params) / params < 0.005
    assert not info.vision


# --------------------------------------------------------------------------------------- OCI (001)

@pytest.mark.parametrize("profile", ["oci_llama_lora", "oci_cohere_tfew"])
def test_oci_holds_out_nothing_and_counts_steps_as_its_document(profile):
    from engine.estimate import oci_total_training_steps, steps_for

    res = _job(profile, data__validation_path="val.jsonl").resolved()
    assert res["data.val_size"] == 0  # the document states no hold-out
    assert res["eval.evaluation_strategy"] == "steps"  # its early stopping evaluates the validation file
    st = steps_for(res, 400)
    assert st.total_steps == oci_total_training_steps(res["general.epochs"], 400, res["general.batch_size"])
    # no validation file: the run trains every epoch, and a warning says why early stopping does not act
    job = _job(profile)
    assert _errors(job) == [] and job.resolved()["eval.evaluation_strategy"] == "no"
    assert any(w.startswith(f"eval.evaluation_strategy: profile {profile} evaluates during training (early "
                            "stopping") for w in _warnings(job)), _warnings(job)
    # an explicit choice is the user's: early stopping with evaluation turned off is refused
    errs = _errors(_job(profile, eval__evaluation_strategy="no", eval__early_stopping_patience=3))
    assert any(e.startswith("eval.early_stopping_patience: early stopping needs evaluation") for e in errs)


# --------------------------------------------------------------------------------------- per-model defaults (002)

LLAMA = {"adapter.lora_alpha": 64, "runtime.gradient_accumulation_steps": 1, "general.batch_size": 8,
         "adapter.lora_dropout": 0.05, "general.learning_rate": 0.00001, "general.epochs": 5, "adapter.lora_rank": 32,
         "adapter.target_modules": ["q_proj", "v_proj"]}
GRANITE = {**LLAMA, "adapter.lora_alpha": 32, "general.epochs": 10, "adapter.lora_rank": 8,
           "adapter.target_modules": ["all-linear"]}


@pytest.mark.parametrize("profile", ["watsonx_lora", "watsonx_qlora"])
@pytest.mark.parametrize("model,table", [("meta-llama/Llama-3.1-8B", LLAMA), ("ibm-granite/granite-3.1-8b-base", GRANITE)])
def test_watsonx_lora_defaults_follow_the_base_model(profile, model, table):
    job = _job(profile, model__name_or_path=model, launch__device="cuda")
    res = job.resolved()
    assert {k: res[k] for k in table} == table
    assert _errors(job) == []
    # a value the user set is kept
    res = _job(profile, model__name_or_path=model, adapter__lora_rank=16).resolved()
    assert res["adapter.lora_rank"] == 16 and res["adapter.lora_alpha"] == table["adapter.lora_alpha"]


@pytest.mark.parametrize("model,task,expected", [
    ("google/flan-t5-xl", None, (16, 16, 0.3, 20)),
    ("google/flan-t5-xl", "summarization", (16, 16, 0.3, 20)),
    ("ibm/granite-13b-instruct-v2", "classification", (8, 32, 0.0006, 20)),
    ("ibm/granite-13b-instruct-v2", "generation", (16, 16, 0.0002, 20)),
    ("ibm/granite-13b-instruct-v2", "summarization", (8, 1, 0.0002, 40)),
])
def test_watsonx_prompt_tuning_defaults_by_model_and_task(model, task, expected):
    vals = {"model__name_or_path": model, **({"trainer__task_type": task} if task else {})}
    job = _job("watsonx_prompt_tuning", **vals)
    res = job.resolved()
    assert (res["general.batch_size"], res["runtime.gradient_accumulation_steps"], res["general.learning_rate"],
            res["general.epochs"]) == expected
    assert _errors(job) == []
    errs = _errors(_job("watsonx_prompt_tuning", **{**vals, "trainer__task_type": "translation"}))
    assert any(e.startswith("trainer.task_type: translation is not offered") for e in errs)


def test_show_writes_the_models_defaults(tmp_path):
    from typer.testing import CliRunner

    from tui.cli import app

    p = tmp_path / "llama.toml"
    p.write_text('profile = "watsonx_lora"\n[model]\nname_or_path = "meta-llama/Llama-3.1-8B"\n[data]\n'
                 'train_path = "finetui:samples/alpaca_demo.jsonl"\n')
    r = CliRunner().invoke(app, ["show", str(p)])
    assert r.exit_code == 0, r.output
    import tomllib

    shown = tomllib.loads(r.output)
    assert shown["adapter"]["lora_rank"] == 32 and shown["adapter"]["lora_alpha"] == 64
    assert shown["adapter"]["target_modules"] == ["q_proj", "v_proj"] and shown["general"]["epochs"] == 5


async def test_wizard_redefaults_untouched_fields_when_the_model_changes(make_app):
    from textual.widgets import Input

    from tui.widgets.form import widget_id

    job = JobConfig("watsonx_lora", {"model.name_or_path": "ibm-granite/granite-3.1-8b-base",
                                     "data.train_path": "finetui:samples/alpaca_demo.jsonl",
                                     "general.learning_rate": 0.00002})
    app = make_app(demo=False, job=job)
    async with app.run_test(size=(100, 40)) as pilot:
        app.goto("hyperparameters")
        await pilot.pause()
        await pilot.pause()
        assert app.query_one(f"#{widget_id('adapter.lora_rank')}", Input).value == "8"
        app.apply_edit("model.name_or_path", "meta-llama/Llama-3.1-8B")
        await pilot.pause()
        await pilot.pause()
        assert app.query_one(f"#{widget_id('adapter.lora_rank')}", Input).value == "32"
        assert app.query_one(f"#{widget_id('adapter.lora_alpha')}", Input).value == "64"
        assert app.query_one(f"#{widget_id('general.epochs')}", Input).value == "5"
        assert app.query_one(f"#{widget_id('general.learning_rate')}", Input).value == "2e-05"  # set: kept
        notes = [n.message for n in app._notifications]
        assert any(m.startswith("llama-3-1-8b's defaults (IBM watsonx.ai — LoRA) applied to the fields you have "
                                "not set:") and "lora_rank 32" in m and "epochs 5" in m
                   and "learning_rate" not in m for m in notes), notes


# --------------------------------------------------------------------------------------- FPT pipeline DPO (003)

from tests.fixtures_data import COMPAT_DATA  # noqa: E402

needs_compat = pytest.mark.skipif(not COMPAT_DATA.is_dir(), reason="compat corpus not present")


@needs_compat
def test_sharegpt_preference_pairs_read_for_dpo_and_reward():
    from engine.data.check import check

    path = str(COMPAT_DATA / "dpo_en_demo.json")  # LLaMA-Factory's `ranking: true` sharegpt data set
    for stage in ("dpo", "reward"):
        rep = check(path, "sharegpt", stage=stage)
        assert rep["ok"] and rep["rows"]["valid"] == 300, rep
    rep = check(path, "sharegpt", stage="sft")  # a pair is no SFT conversation: said per row
    assert not rep["ok"] and "a preference pair with chosen / rejected replies" in json.dumps(rep)
    # LLaMA-Factory v1 pairs (chosen_messages / rejected_messages with typed text parts)
    rep = check(str(COMPAT_DATA / "v1_dpo_demo.jsonl"), "preference", stage="dpo")
    assert rep["ok"] and rep["rows"]["valid"] == 10, rep
    rep = check(str(COMPAT_DATA / "v1_sft_demo.jsonl"), "sharegpt", stage="sft")
    assert rep["ok"] and rep["rows"]["valid"] == 500, rep


def test_fpt_pipeline_dpo_takes_sharegpt():
    base = dict(trainer__stage="dpo", model__name_or_path="Qwen/Qwen2.5-0.5B-Instruct", data__train_path="pairs.json")
    assert _errors(_job("fpt_pipeline", data__format="sharegpt", **base)) == []
    errs = _errors(_job("fpt_pipeline", data__format="alpaca", **base))
    assert "data.format: alpaca data cannot train the dpo trainer (allowed: sharegpt, sharegpt_image, preference)" in errs, errs


@needs_compat
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_dpo_trains_on_sharegpt_pairs(tmp_path_factory):
    """A real DPO run (TRL, the tiny model, three steps on CPU) on LLaMA-Factory's sharegpt pairs."""
    from tests.fixtures_train import events, kinds, losses, run_batch, session_cache, write_run

    d = tmp_path_factory.mktemp("dpo-sharegpt") / "run"
    write_run(d, **{"data.train_path": str(COMPAT_DATA / "dpo_en_demo.json"), "data.format": "sharegpt",
                    "trainer.stage": "dpo", "general.learning_rate": 0.02, "general.max_steps": 3,
                    "general.max_sequence_length": 128, "data.max_samples": 4})
    res = run_batch([{"name": "dpo_sharegpt", "run_dir": str(d), "kind": "train", "hook": None, "at": None,
                      "temperature": None}], session_cache(tmp_path_factory))
    recs = events(d)
    assert kinds(recs, "end") and kinds(recs, "end")[-1]["outcome"] == "completed", (res, (d / "worker.log").read_text()[-3000:])
    start = kinds(recs, "start")[0]
    assert start["trainer"] == "DPOTrainer" and start["train_rows"] == 4, start
    assert len(losses(recs)) == 3
    assert any(k.startswith("rewards_") for k in kinds(recs, "log")[0])


# --------------------------------------------------------------------------------------- foreign configs

EXAMPLES_V1 = COMPAT_DATA.parent / "examples_v1"


@needs_compat
@pytest.mark.parametrize("name,method,backend", [("train_lora_sft", "lora", "fsdp2"),
                                                  ("train_full_deepspeed", "full", "deepspeed")])
def test_llamafactory_v1_examples_import_model_data_adapter_length(name, method, backend):
    raw = yaml.safe_load((EXAMPLES_V1 / f"{name}.yaml").read_text())
    job, warnings = interop.import_file(EXAMPLES_V1 / f"{name}.yaml")
    assert job.problems() == [], [str(p) for p in job.problems()]
    r = job.resolved()
    assert r["model.name_or_path"] == raw["model"]
    # data: the data-set YAML's two local files, in order; alpaca_en_demo's size 500 after identity's 91 rows
    assert r["data.train_path"] == f"{COMPAT_DATA / 'identity.json'},{COMPAT_DATA / 'alpaca_en_demo.json'}"
    assert r["data.format"] == "alpaca" and r["data.max_samples"] == 91 + 500
    assert (r["general.batch_size"], r["general.max_sequence_length"], r["general.max_steps"]) == (1, 2048, 10)
    assert r["general.learning_rate"] == 1e-4 and r["trainer.stage"] == "sft"
    assert r["trainer.training_type"] == method
    if method == "lora":
        pc = raw["peft_config"]
        assert (r["adapter.lora_rank"], r["adapter.lora_alpha"], r["adapter.lora_dropout"]) == (
            pc["r"], pc["lora_alpha"], pc["lora_dropout"])
        assert r["adapter.target_modules"] == ["all-linear"]
    if backend == "fsdp2":  # finetui's own FSDP2 backend, its defaults (full shard, no offload)
        assert r["trainer.distributed_backend"] == "fsdp" and r["trainer.fsdp_sharding"] == "full_shard"
        assert not any("dist_config" in w for w in warnings), warnings  # (dcp_path: null)
    else:
        assert r["trainer.distributed_backend"] == "deepspeed" and r["trainer.zero_stage"] == 3
    assert not any("sample_backend" in w for w in warnings)  # inference settings: not the training's
    # the estimate works offline for the example's model
    from engine import modelinfo

    assert modelinfo.describe(raw["model"]).source == "built-in catalog shape"


@needs_compat
def test_llamafactory_v1_dpo_with_its_own_rows(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "pairs.yaml").write_text(
        f"pairs:\n  path: {COMPAT_DATA / 'v1_dpo_demo.jsonl'}\n  source: local\n")
    cfg = tmp_path / "dpo.yaml"
    cfg.write_text("model: Qwen/Qwen3-0.6B\npeft_config:\n  name: lora\n  r: 8\n  target_modules: q_proj,v_proj\n"
                   "optim_config:\n  name: muon\n  momentum: 0.95\ntrain_dataset: data/pairs.yaml\n"
                   "micro_batch_size: 2\nglobal_batch_size: 8\ncutoff_len: 1024\nlearning_rate: 1.0e-5\n"
                   "num_train_epochs: 2\npref_beta: 0.2\n")
    job, warnings = interop.import_file(cfg)
    r = job.resolved()
    assert job.problems() == [], [str(p) for p in job.problems()]
    assert (r["trainer.stage"], r["data.format"], r["adapter.target_modules"]) == ("dpo", "preference",
                                                                                   ["q_proj", "v_proj"])
    assert (r["general.batch_size"], r["general.global_batch_size"], r["runtime.gradient_accumulation_steps"]) == (
        2, 8, 4)
    assert r["general.epochs"] == 2 and r["preference.preference_beta"] == 0.2
    # Muon is dropped: the first warning says the job will train differently
    assert interop.training_changes(warnings) == [warnings[0]]
    assert warnings[0].startswith('optim_config.name = "muon": THE JOB WILL TRAIN DIFFERENTLY')


@pytest.mark.parametrize("text", [
    '{"hello": 1}',
    "learning_rate: 1.0e-4\nmicro_batch_size: 1\nfoo: bar\nbaz: 2\n",  # one FPT key among strangers
    "model: 3\ntrain_dataset: x\n",  # model is no name
    "- a\n- b\n",
    "{}",
])
def test_a_file_not_recognised_with_confidence_is_refused_in_one_line(tmp_path, text):
    from typer.testing import CliRunner

    from tui.cli import app

    p = tmp_path / "x.yaml"
    p.write_text(text)
    with pytest.raises(interop.InteropError) as e:
        interop.import_file(p)
    assert len(e.value.problems) == 1
    line = str(e.value)
    assert line.startswith(f"{p}: not a format finetui reads with confidence — it reads LLaMA-Factory YAML")
    assert "Nova recipes" in line and "hyperparameter JSON" in line
    r = CliRunner().invoke(app, ["import", str(p)])
    assert r.exit_code == 2 and "Traceback" not in r.output


@pytest.mark.parametrize("key,value,what", [
    ("use_galore", True, "GaLore"), ("use_badam", True, "BAdam"), ("use_apollo", True, "APOLLO"),
    ("use_muon", True, "Muon"), ("use_adam_mini", True, "Adam-mini"), ("pissa_init", True, "PiSSA"),
    ("finetuning_type", "oft", "OFT"), ("optim", "adafactor", "adafactor"),
])
def test_dropped_training_options_say_the_job_trains_differently(tmp_path, key, value, what):
    p = tmp_path / "lf.yaml"
    p.write_text(yaml.safe_dump({"model_name_or_path": "Qwen/Qwen3-0.6B", "stage": "sft", "finetuning_type": "lora",
                                 "dataset": "identity", "dataset_dir": str(COMPAT_DATA), key: value}))
    job, warnings = interop.import_file(p)
    changes = interop.training_changes(warnings)
    assert len(changes) == 1 and changes[0] == warnings[0], warnings
    assert "THE JOB WILL TRAIN DIFFERENTLY" in changes[0] and what in changes[0] and changes[0].startswith(key)
    assert getattr(changes[0], "kind") == "trains_differently"
    # a false value is no change
    if value is True:
        p.write_text(yaml.safe_dump({"model_name_or_path": "m", "stage": "sft", "dataset": "identity",
                                     "dataset_dir": str(COMPAT_DATA), key: False}))
        assert interop.training_changes(interop.import_file(p)[1]) == []


@needs_compat
async def test_launch_step_shows_that_the_imported_job_trains_differently(make_app, tmp_path):
    from textual.widgets import Static

    p = tmp_path / "galore.yaml"
    p.write_text(yaml.safe_dump({"model_name_or_path": "finetui:tiny-llama", "stage": "sft", "finetuning_type": "lora",
                                 "dataset": "identity", "dataset_dir": str(COMPAT_DATA), "use_galore": True,
                                 "cutoff_len": 64, "max_steps": 2}))
    app = make_app(demo=False)
    async with app.run_test(size=(100, 40)) as pilot:
        assert app.open_path(str(p), "import")
        await pilot.pause()
        app.goto("launch")
        await pilot.pause()
        await pilot.pause()
        assert app.job.problems() == []
        reason = app.query_one("#launch-reason", Static)
        assert "THE JOB WILL TRAIN DIFFERENTLY" in str(reason.render()), str(reason.render())
        assert "GaLore" in str(reason.tooltip)
        assert app.notes.notes[0].startswith("use_galore = true: THE JOB WILL TRAIN DIFFERENTLY")  # listed first


def test_fpt_pipeline_reads_json_and_zip_files():
    base = dict(model__name_or_path="Qwen/Qwen2.5-0.5B-Instruct")
    for ok in ("s3://bucket/train.json", "data/train.zip", "s3://bucket/prefix/", "data/folder"):
        assert _errors(_job("fpt_pipeline", data__train_path=ok, **base)) == [], ok
    for bad in ("s3://bucket/train.jsonl", "train.csv"):
        errs = _errors(_job("fpt_pipeline", data__train_path=bad, **base))
        assert f"data.train_path: {bad}: the FPT AI Factory pipeline service reads JSON / ZIP files only (profile " \
               "fpt_pipeline) (allowed: .json, .zip)" in errs, errs
    assert _errors(_job("fpt_studio", data__train_path="train.jsonl")) == []  # FPT AI Studio states no file rule


@pytest.mark.parametrize("profile,model", [("oci_llama_lora", "meta.llama-3-70b-instruct"),
                                           ("oci_cohere_tfew", "cohere.command-r-16k")])
def test_oci_deprecated_models_warn(profile, model):
    job = _job(profile, model__name_or_path=model, data__validation_path="v.jsonl")
    assert _errors(job) == []
    assert f"model.name_or_path: {model} is deprecated in profile {profile} (its document says so)" in _warnings(job)
    current = _job(profile, model__name_or_path=JobConfig(profile).resolved()["model.name_or_path"])
    assert not any("deprecated" in w for w in _warnings(current))


def test_nova_recipe_asking_for_wandb_is_told(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("run:\n  name: r\n  model_name_or_path: nova-micro/prod\n  replicas: 2\n  data_s3_path: s3://b/t.jsonl\n"
                 "training_config:\n  global_batch_size: 32\n  exp_manager:\n    create_wandb_logger: true\n"
                 "  trainer:\n    max_epochs: 1\n  model:\n    peft:\n      peft_scheme: null\n")
    job, warnings = interop.import_file(p)
    assert job.problems() == [] and job.resolved()["general.global_batch_size"] == 32
    assert job.resolved()["tracking.wandb"] is True  # finetui's own runs log to W&B
    assert any(w.startswith("exp_manager.create_wandb_logger = true: imported as tracking.wandb")
               for w in warnings), warnings
