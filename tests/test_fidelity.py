"""Provider rules exactly as their documents state them (issue 24): for each rule a value just inside
passes and one just outside fails with a line naming the field, under the profile that states it."""

from __future__ import annotations

import pytest
import yaml

from engine import interop
from engine.config import JobConfig


def _job(profile="native", **vals):
    base = {"data.train_path": "x.jsonl"}
    base.update({k.replace("__", "."): v for k, v in vals.items()})
    return JobConfig(profile, base)


def _errors(job):
    return [str(p) for p in job.problems()]


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
    from engine.config import FIELD_BY_NAME, JobConfig

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
    from engine.profiles import PROFILES

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
