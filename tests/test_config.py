"""The schema and the profiles: every range the five documents state.

For each range in shared/spec/seed-parameters.md a value just inside passes and
a value just outside fails, under the profile that states it, with a message
that names the field, the bad value, the allowed range and the profile.
"""

from __future__ import annotations

import pytest

from engine.schema import profiles
from engine.schema import FIELD_BY_NAME, FIELDS, GROUPS, JobConfig, check_value, spec

# (profile, field, just inside, just outside, text the "allowed" part must contain)
RANGES = [
    # FPT AI Studio (000)
    ("fpt_studio", "general.batch_size", 1, 0, "1 ≤ x"),
    ("fpt_studio", "general.epochs", 1, 0, "1 ≤ x"),
    ("fpt_studio", "general.learning_rate", 0.999, 1.0, "0 < x < 1"),
    ("fpt_studio", "general.learning_rate", 1e-9, 0.0, "0 < x < 1"),
    ("fpt_studio", "general.max_sequence_length", 1, 0, "1 ≤ x"),
    ("fpt_studio", "trainer.zero_stage", 3, 4, "1, 2, 3"),
    ("fpt_studio", "trainer.training_type", "lora", "qlora", "full, lora"),
    ("fpt_studio", "trainer.distributed_backend", "deepspeed", "fsdp", "ddp, deepspeed"),
    ("fpt_studio", "runtime.gradient_accumulation_steps", 1, 0, "1 ≤ x"),
    ("fpt_studio", "runtime.mixed_precision", "fp16", "auto", "bf16, fp16, none"),
    ("fpt_studio", "runtime.quantization_bit", "none", 4, "none"),
    ("fpt_studio", "runtime.optimizer", "sgd", "lion", "adamw, sgd"),
    ("fpt_studio", "runtime.weight_decay", 0.0, -0.001, "0 ≤ x"),
    ("fpt_studio", "runtime.max_grad_norm", 0.0, -0.1, "0 ≤ x"),
    ("fpt_studio", "runtime.lr_warmup_steps", 0, -1, "0 ≤ x"),
    ("fpt_studio", "runtime.lr_warmup_ratio", 0.999, 1.0, "0 ≤ x < 1"),
    ("fpt_studio", "runtime.lr_scheduler", "constant", "polynomial", "linear, cosine, constant"),
    ("fpt_studio", "runtime.seed", 0, -1, "0 ≤ x"),
    ("fpt_studio", "preference.dpo_label_smoothing", 0.5, 0.51, "0 ≤ x ≤ 0.5"),
    ("fpt_studio", "preference.preference_beta", 1.0, 1.01, "0 ≤ x ≤ 1"),
    ("fpt_studio", "preference.preference_ftx", 10.0, 10.01, "0 ≤ x ≤ 10"),
    ("fpt_studio", "preference.preference_loss", "kto_pair", "cpo", "sigmoid, hinge, ipo, kto_pair, orpo, simpo"),
    ("fpt_studio", "preference.simpo_gamma", 1e-6, 0.0, "0 < x"),
    ("fpt_studio", "adapter.lora_alpha", 1, 0, "1 ≤ x"),
    ("fpt_studio", "adapter.lora_dropout", 1.0, 1.01, "0 ≤ x ≤ 1"),
    ("fpt_studio", "adapter.lora_rank", 1, 0, "1 ≤ x"),
    ("fpt_studio", "eval.checkpoint_strategy", "epoch", "best", "no, epoch, steps"),
    ("fpt_studio", "eval.checkpoint_steps", 1, 0, "1 ≤ x"),
    ("fpt_studio", "eval.evaluation_strategy", "steps", "always", "no, epoch, steps"),
    ("fpt_studio", "eval.eval_steps", 1, 0, "1 ≤ x"),
    ("fpt_studio", "eval.checkpoint_limit", 1, 0, "1 ≤ x"),
    ("fpt_studio", "eval.save_best_checkpoint", False, True, "false"),
    ("fpt_studio", "eval.logging_steps", 0, -1, "0 ≤ x"),
    # OCI Llama LoRA (001)
    ("oci_llama_lora", "general.epochs", 1, 0, "1 ≤ x"),
    ("oci_llama_lora", "general.learning_rate", 1.0, 1.01, "0 < x ≤ 1"),
    ("oci_llama_lora", "general.batch_size", 8, 7, "8 ≤ x ≤ 16"),
    ("oci_llama_lora", "general.batch_size", 16, 17, "8 ≤ x ≤ 16"),
    ("oci_llama_lora", "eval.early_stopping_patience", 0, -1, "0 ≤ x"),
    ("oci_llama_lora", "eval.early_stopping_threshold", 0.0, -1e-6, "0 ≤ x"),
    ("oci_llama_lora", "eval.logging_steps", 10, 11, "10"),
    ("oci_llama_lora", "adapter.lora_rank", 64, 65, "1 ≤ x ≤ 64"),
    ("oci_llama_lora", "adapter.lora_rank", 1, 0, "1 ≤ x ≤ 64"),
    ("oci_llama_lora", "adapter.lora_alpha", 128, 129, "1 ≤ x ≤ 128"),
    ("oci_llama_lora", "adapter.lora_dropout", 0.99, 1.0, "0 ≤ x < 1"),
    # OCI Cohere T-Few (001)
    ("oci_cohere_tfew", "general.epochs", 10, 11, "1 ≤ x ≤ 10"),
    ("oci_cohere_tfew", "general.learning_rate", 0.000005, 0.0000049, "5e-06 ≤ x ≤ 0.1"),
    ("oci_cohere_tfew", "general.learning_rate", 0.1, 0.11, "5e-06 ≤ x ≤ 0.1"),
    ("oci_cohere_tfew", "general.batch_size", 32, 33, "8 ≤ x ≤ 32"),
    ("oci_cohere_tfew", "general.batch_size", 8, 7, "8 ≤ x ≤ 32"),
    ("oci_cohere_tfew", "eval.early_stopping_patience", 16, 17, "0 ≤ x ≤ 16"),
    ("oci_cohere_tfew", "eval.early_stopping_threshold", 0.1, 0.11, "0.001 ≤ x ≤ 0.1"),
    ("oci_cohere_tfew", "eval.early_stopping_threshold", 0.001, 0.0009, "0.001 ≤ x ≤ 0.1"),
    ("oci_cohere_tfew", "eval.logging_steps", 1, 2, "1"),
    # watsonx prompt tuning (002)
    ("watsonx_prompt_tuning", "general.batch_size", 16, 17, "1 ≤ x ≤ 16"),
    ("watsonx_prompt_tuning", "runtime.gradient_accumulation_steps", 128, 129, "1 ≤ x ≤ 128"),
    ("watsonx_prompt_tuning", "general.learning_rate", 0.00001, 0.0000099, "1e-05 ≤ x ≤ 0.5"),
    ("watsonx_prompt_tuning", "general.learning_rate", 0.5, 0.51, "1e-05 ≤ x ≤ 0.5"),
    ("watsonx_prompt_tuning", "general.epochs", 50, 51, "1 ≤ x ≤ 50"),
    ("watsonx_prompt_tuning", "adapter.prompt_tuning_init", "text", "vocab", "random, text"),
    # watsonx LoRA / QLoRA (002)
    ("watsonx_lora", "adapter.lora_rank", 64, 65, "1 ≤ x ≤ 64"),
    ("watsonx_qlora", "adapter.lora_rank", 64, 65, "1 ≤ x ≤ 64"),
    ("watsonx_qlora", "runtime.quantization_bit", 8, "none", "4, 8"),
    # FPT AI Factory pipeline (003)
    ("fpt_pipeline", "general.learning_rate", 0.00001, 0.0000099, "1e-05 ≤ x ≤ 0.001"),
    ("fpt_pipeline", "general.learning_rate", 0.001, 0.0011, "1e-05 ≤ x ≤ 0.001"),
    ("fpt_pipeline", "trainer.training_type", "full", "tfew", "lora, full"),
    ("fpt_pipeline", "trainer.zero_stage", 1, 0, "1, 2, 3"),
    # Amazon Nova (004)
    ("nova_lora", "general.max_sequence_length", 65536, 65537, "1 ≤ x ≤ 65536"),
    ("nova_full", "general.max_sequence_length", 65536, 65537, "1 ≤ x ≤ 65536"),
    ("nova_lora", "general.epochs", 5, 6, "1 ≤ x ≤ 5"),
    ("nova_full", "general.epochs", 5, 6, "1 ≤ x ≤ 5"),
    ("nova_lora", "model.hidden_dropout", 1.0, 1.01, "0 ≤ x ≤ 1"),
    ("nova_lora", "model.attention_dropout", 0.0, -0.01, "0 ≤ x ≤ 1"),
    ("nova_full", "model.ffn_dropout", 1.0, 1.01, "0 ≤ x ≤ 1"),
    ("nova_full", "general.learning_rate", 1e-6, 9.9e-7, "1e-06 ≤ x ≤ 0.001"),
    ("nova_full", "general.learning_rate", 1e-3, 1.01e-3, "1e-06 ≤ x ≤ 0.001"),
    ("nova_lora", "general.learning_rate", 1.0, 1.01, "0 < x ≤ 1"),
    ("nova_lora", "runtime.weight_decay", 1.0, 1.01, "0 ≤ x ≤ 1"),
    ("nova_lora", "runtime.lr_warmup_steps", 20, 21, "1 ≤ x ≤ 20"),
    ("nova_lora", "runtime.lr_warmup_steps", 1, 0, "1 ≤ x ≤ 20"),
    ("nova_lora", "runtime.min_lr", 0.0, -0.1, "0 ≤ x ≤ 1"),
    ("nova_lora", "runtime.adam_beta1", 1.0, 1.01, "0 ≤ x ≤ 1"),
    ("nova_lora", "adapter.lora_alpha", 192, 193, "32, 64, 96, 128, 160, 192"),
    ("nova_lora", "adapter.loraplus_lr_ratio", 100.0, 100.5, "0 ≤ x ≤ 100"),
    ("nova_lora", "adapter.lora_dropout", 1.0, 1.01, "0 ≤ x ≤ 1"),
    ("nova_lora", "runtime.optimizer", "adamw", "sgd", "adamw"),
]


@pytest.mark.parametrize("profile,name,inside,outside,allowed", RANGES,
                         ids=[f"{r[0]}-{r[1]}-{r[3]}" for r in RANGES])
def test_digest_range_inside_passes_outside_fails(profile, name, inside, outside, allowed):
    assert check_value(name, inside, profile) is None
    p = check_value(name, outside, profile)
    assert p is not None, f"{name}={outside!r} should fail under {profile}"
    line = str(p)
    assert line.startswith(f"{name}: ")
    assert allowed in line, line
    assert f"profile {profile}" in line, line
    # the bad value is named
    assert str(outside).lower().replace("e-0", "e-0") in line.lower() or f"{outside:g}" in line


def test_message_format_matches_design():
    p = check_value("general.learning_rate", 2.0, "fpt_pipeline")
    assert str(p) == "general.learning_rate: 2 is out of range in profile fpt_pipeline (allowed: 1e-05 ≤ x ≤ 0.001)"


def test_native_is_wide():
    assert check_value("general.batch_size", 1000) is None
    assert check_value("adapter.lora_rank", 1024) is None
    assert check_value("general.learning_rate", 0.5) is None
    p = check_value("general.learning_rate", 0, None)
    assert p and "allowed: 0 < x < 1" in str(p) and "profile" not in p.message


@pytest.mark.parametrize("value,msg", [("abc", "'abc' is not a number"), ("1.5", "1.5 is not an integer"),
                                       (True, "True is not an integer")])
def test_type_errors_are_one_line(value, msg):
    p = check_value("general.batch_size", value)
    assert p is not None and msg in str(p) and "\n" not in str(p)


def test_profile_defaults_from_documents():
    res = JobConfig("oci_llama_lora").resolved()
    assert (res["general.batch_size"], res["adapter.lora_rank"], res["adapter.lora_alpha"]) == (8, 8, 8)
    assert (res["eval.early_stopping_patience"], res["eval.early_stopping_threshold"]) == (15, 0.0001)
    assert res["general.learning_rate"] == 0.0002 and res["general.epochs"] == 3
    res = JobConfig("oci_cohere_tfew").resolved()
    assert (res["general.epochs"], res["general.learning_rate"], res["general.batch_size"]) == (1, 0.01, 16)
    assert (res["eval.early_stopping_patience"], res["eval.early_stopping_threshold"]) == (10, 0.001)
    res = JobConfig("fpt_pipeline").resolved()
    assert res["general.learning_rate"] == 1e-5 and res["runtime.gradient_accumulation_steps"] == 4
    assert res["eval.checkpoint_steps"] == 1000 and res["general.max_sequence_length"] == 2048
    assert res["trainer.training_type"] == "lora" and res["trainer.zero_stage"] == 1
    res = JobConfig("watsonx_prompt_tuning").resolved()
    assert (res["general.batch_size"], res["runtime.gradient_accumulation_steps"], res["general.learning_rate"],
            res["general.epochs"]) == (16, 16, 0.3, 20)
    res = JobConfig("watsonx_lora").resolved()
    assert (res["adapter.lora_alpha"], res["adapter.lora_rank"], res["general.epochs"]) == (32, 8, 10)
    res = JobConfig("nova_lora").resolved()
    assert res["adapter.loraplus_lr_ratio"] == 8.0 and res["data.allow_percentage_invalid_samples"] == 10
    assert JobConfig("native").resolved()["data.allow_percentage_invalid_samples"] == 0


def _job(profile="native", **vals):
    base = {"data.train_path": "x.jsonl"}
    base.update({k.replace("__", "."): v for k, v in vals.items()})
    return JobConfig(profile, base)


def _errors(job):
    return [str(p) for p in job.problems()]


def test_zero_stage_only_with_deepspeed():
    errs = _errors(_job(trainer__zero_stage=3))
    assert any(e.startswith("trainer.zero_stage: only applies when trainer.distributed_backend is deepspeed")
               for e in errs)
    assert not _errors(_job(trainer__zero_stage=3, trainer__distributed_backend="deepspeed"))
    assert not JobConfig("native").visible("trainer.zero_stage")
    # the S3 connection shows when any data file is in a bucket
    assert not _job(data__train_path="a.jsonl,b.jsonl").visible("data.s3_region")
    assert _job(data__train_path="a.jsonl, s3://bucket/b.jsonl").visible("data.s3_region")
    assert _job(data__validation_path="s3://bucket/v.jsonl").visible("data.s3_access_key_env")
    assert _job(trainer__distributed_backend="deepspeed").visible("trainer.zero_stage")


def test_quantization_only_with_lora():
    errs = _errors(_job(trainer__training_type="full", runtime__quantization_bit=4))
    assert any(e.startswith("runtime.quantization_bit:") and "only applies to LoRA" in e for e in errs)
    # LoRA on a quantized model is QLoRA: one line says so (it trained unquantized after demanding bitsandbytes)
    errs = _errors(_job(trainer__training_type="lora", runtime__quantization_bit=4))
    assert errs == ['runtime.quantization_bit: LoRA on a 4-bit quantized model is QLoRA: set trainer.training_type = '
                    '"qlora" (allowed: none with lora, or trainer.training_type = "qlora")'], errs
    assert not _errors(_job(trainer__training_type="qlora", runtime__quantization_bit=8))
    assert _job(trainer__training_type="qlora").resolved()["runtime.quantization_bit"] == 4


def test_simpo_gamma_and_label_smoothing_rules():
    j = _job(trainer__stage="dpo", data__format="preference", preference__simpo_gamma=1.0)
    assert any("simpo_gamma: only applies when preference.preference_loss is simpo" in e for e in _errors(j))
    j.set("preference.preference_loss", "simpo")
    assert not _errors(j)
    j = _job(trainer__stage="dpo", data__format="preference", preference__preference_loss="hinge",
             preference__dpo_label_smoothing=0.1)
    assert any("dpo_label_smoothing: only applies when preference.preference_loss is sigmoid" in e for e in _errors(j))
    assert not _job(trainer__stage="dpo", preference__preference_loss="hinge").visible("preference.dpo_label_smoothing")


def test_best_checkpoint_needs_evaluation():
    errs = _errors(_job(eval__save_best_checkpoint=True))
    assert any(e.startswith("eval.save_best_checkpoint: tracking the best checkpoint needs evaluation") for e in errs)
    assert not _errors(_job(eval__save_best_checkpoint=True, eval__evaluation_strategy="epoch", data__val_size=0.1,
                            eval__checkpoint_strategy="epoch"))


def test_eval_steps_defaults_to_logging_steps():
    assert _job(eval__logging_steps=7).resolved()["eval.eval_steps"] == 7
    assert _job(eval__logging_steps=7, eval__eval_steps=3).resolved()["eval.eval_steps"] == 3


def test_warmup_not_both():
    errs = _errors(_job(runtime__lr_warmup_steps=10, runtime__lr_warmup_ratio=0.1))
    assert any("warmup steps and warmup ratio cannot both be set" in e for e in errs)


def test_nova_max_steps_and_epochs_not_both():
    base = dict(launch__nodes=2)
    j = _job("nova_lora", general__max_steps=100, general__epochs=2, **base)
    assert any(e.startswith("general.max_steps: set max_steps or epochs, not both (profile nova_lora)")
               for e in _errors(j))
    assert not _errors(_job("nova_lora", general__max_steps=100, **base))
    # native: max_steps simply takes precedence
    assert not _errors(_job(general__max_steps=100, general__epochs=2))


def test_nova_learning_rate_depends_on_method():
    base = dict(launch__nodes=4)
    assert any("general.learning_rate" in e for e in _errors(_job("nova_full", general__learning_rate=0.01, **base)))
    assert not _errors(_job("nova_lora", general__learning_rate=0.01, launch__nodes=2))


def test_nova_replicas_per_model_size():
    j = _job("nova_lora", model__name_or_path="nova-lite/prod", launch__nodes=2)
    assert any(e.startswith("launch.nodes: 2 replicas are not offered for nova-lite") and "4, 8, 16, 32" in e
               for e in _errors(j))


def test_trainer_decides_data_formats():
    errs = _errors(_job(trainer__stage="pretrain", data__format="alpaca"))
    assert any(e == "data.format: alpaca data cannot train the pretrain trainer (allowed: corpus)" for e in errs)
    errs = _errors(_job(trainer__stage="dpo", data__format="alpaca"))
    assert any("allowed: preference, sharegpt" in e for e in errs)
    assert not _errors(_job(trainer__stage="dpo", data__format="sharegpt"))  # conversations + chosen / rejected
    assert not _errors(_job(trainer__stage="sft", data__format="sharegpt"))


def test_fp16_refused_on_cpu():
    errs = _errors(_job(runtime__mixed_precision="fp16", launch__device="cpu"))
    assert any(e.startswith("runtime.mixed_precision: fp16 mixed precision needs a GPU") for e in errs)
    assert not _errors(_job(runtime__mixed_precision="fp16", launch__device="cuda"))


def test_unknown_field_has_suggestion():
    j = _job()
    j.values["general.learnig_rate"] = 0.1
    assert any("did you mean `general.learning_rate`" in e for e in _errors(j))


def test_every_field_is_fully_declared():
    groups = {g for g, _ in GROUPS}
    for f in FIELDS:
        assert f.group in groups and f.label and f.help, f.name
        assert check_value(f.name, f.default) is None or f.name in ("data.train_path",), f.name
    for p in profiles.PROFILES:
        for name in profiles.PROFILES[p].fields:
            assert name in FIELD_BY_NAME, (p, name)
            sp = spec(name, p)
            if sp.default is not None:
                assert check_value(name, sp.default, p) is None, (p, name, sp.default)


def test_unknown_profile_is_clear():
    j = JobConfig("nova_lorra", {"data.train_path": "x"})
    assert _errors(j) == ["profile: unknown profile 'nova_lorra'; did you mean `nova_lora`? (allowed: "
                          + ", ".join(profiles.PROFILES) + ")"]


def test_best_checkpoint_needs_checkpoints_at_evaluations():
    ok = dict(eval__evaluation_strategy="steps", eval__eval_steps=10, eval__save_best_checkpoint=True,
              eval__checkpoint_strategy="steps", eval__checkpoint_steps=20, data__val_size=0.1)
    assert not _errors(_job(**ok))
    errs = _errors(_job(**{**ok, "eval__checkpoint_steps": 25}))
    assert any(e.startswith("eval.checkpoint_steps: 25 is not a multiple of eval.eval_steps (10)") for e in errs), errs
    errs = _errors(_job(**{**ok, "eval__checkpoint_strategy": "epoch"}))
    assert any(e.startswith("eval.checkpoint_strategy: keeping the best checkpoint") and "(allowed: steps)" in e
               for e in errs), errs


def test_master_address_is_checked_and_shown_only_for_several_nodes():
    from engine.schema import FIELD_BY_NAME, JobConfig

    f = FIELD_BY_NAME["launch.master_addr"]
    assert not f.is_visible(JobConfig().resolved())
    two = {"launch.hosts": ["a", "b"], "launch.nodes": 2}
    assert f.is_visible(JobConfig(values=dict(two)).resolved())
    for bad in ("user@host", "10.0.0.1 10.0.0.2", "http://x", ""):
        probs = [p for p in JobConfig(values={**two, "launch.master_addr": bad}).problems()
                 if p.field == "launch.master_addr"]
        assert probs and "is not a host name or IP address" in probs[0].message, bad
    for good in ("10.0.0.5", "node-0.cluster.local", "fe80::1"):
        assert not [p for p in JobConfig(values={**two, "launch.master_addr": good}).problems()
                    if p.field == "launch.master_addr"], good


def test_kto_needs_two_rows_per_device_batch():
    errs = _errors(_job(trainer__stage="kto", data__format="kto", general__batch_size=1))
    assert any(e.startswith("general.batch_size: the kto trainer needs at least 2 rows per device batch") for e in errs)
    assert not _errors(_job(trainer__stage="kto", data__format="kto", general__batch_size=2))
    assert not _errors(_job(trainer__stage="dpo", data__format="preference", general__batch_size=1))


def test_qlora_on_cpu_is_refused_where_the_device_is_chosen():
    errs = _errors(_job(trainer__training_type="qlora", runtime__quantization_bit=4, launch__device="cpu"))
    assert any(e.startswith("trainer.training_type: QLoRA (bitsandbytes quantization) needs a CUDA GPU") for e in errs)
    assert not _errors(_job(trainer__training_type="qlora", runtime__quantization_bit=4, launch__device="auto"))
