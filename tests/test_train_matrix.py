"""The training matrix, for real on CPU with the tiny model (one rank, a few steps each).

Every run is trained once per session by ``train_matrix`` (tests/fixtures_train.py): SFT ×
(full, LoRA, T-Few, prompt tuning), pre-training, DPO × every preference loss (+ SFT mixing
and label smoothing), KTO, reward model, early stopping, a SIGKILL in the middle of a
checkpoint write and the resume after it, merge_adapter, and the error paths.  Each run
trains on one fixed batch, so its loss must fall.
"""

from __future__ import annotations

import json

import pytest

from tests.fixtures_train import PREF_LOSSES, describe_run, events, kinds, losses

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

PEFT_TYPE = {"lora": "LORA", "tfew": "IA3", "prompt": "PROMPT_TUNING"}


def _completed(d) -> list[dict]:  # noqa: ANN001
    recs = events(d)
    end = kinds(recs, "end")
    assert end and end[-1]["outcome"] == "completed", describe_run(d)
    assert not kinds(recs, "error"), describe_run(d)
    return recs


def _falls(recs: list[dict], d) -> None:  # noqa: ANN001
    ls = losses(recs)
    assert len(ls) >= 2, describe_run(d)
    assert ls[-1] < ls[0], (ls, describe_run(d))


def _adapter(d, peft_type: str, task: str = "CAUSAL_LM") -> dict:  # noqa: ANN001
    cfg = json.loads((d / "final" / "adapter_config.json").read_text())
    assert cfg["peft_type"] == peft_type and cfg["task_type"] == task
    assert (d / "final" / "adapter_model.safetensors").is_file()
    return cfg


@pytest.mark.parametrize("method", ["full", "lora", "tfew", "prompt"])
def test_sft_methods_train_and_save(train_matrix, method):
    d = train_matrix[f"sft_{method}"]
    recs = _completed(d)
    _falls(recs, d)
    start = kinds(recs, "start")[0]
    assert start["world_size"] == 1 and start["total_steps"] == 4 and start["trainer"] == "SFTTrainer"
    assert start["stage"] == "sft" and start["method"] == {"prompt": "prompt_tuning"}.get(method, method)
    log = kinds(recs, "log")
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    progress = kinds(recs, "progress")  # the step between log points (at most one a second; the first at once)
    assert progress and progress[0]["step"] == 1 and progress[0]["total_steps"] == 4
    for key in ("lr", "grad_norm", "epoch", "samples_per_s", "memory_mb", "tokens_per_s"):
        assert all(r.get(key) is not None for r in log), key
    phases = [r["phase"] for r in kinds(recs, "status")]
    for p in ("loading data", "loading model", "tokenizing", "training", "saving"):
        assert p in phases
    assert kinds(recs, "end")[-1]["final_path"] == str(d / "final")
    if method == "full":
        assert (d / "final" / "config.json").is_file() and (d / "final" / "model.safetensors").is_file()
    else:
        cfg = _adapter(d, PEFT_TYPE[method])
        if method == "lora":  # target_modules = [] → the architecture's default (llama: q_proj, v_proj)
            assert sorted(cfg["target_modules"]) == ["q_proj", "v_proj"]
        if method == "prompt":
            assert cfg["prompt_tuning_init"] == "TEXT" and cfg["num_virtual_tokens"] == 4
    trainable = next(r for r in kinds(recs, "status") if "trainable_params" in r)
    if method == "full":
        assert trainable["trainable_params"] == trainable["total_params"]
    else:
        assert 0 < trainable["trainable_params"] < trainable["total_params"] / 4


def test_packing_is_on_by_default_and_packs_rows_apart(train_matrix):
    d = train_matrix["sft_packed"]
    recs = _completed(d)
    packed = [r for r in kinds(recs, "status") if "packed_sequences" in r]
    assert len(packed) == 1, describe_run(d)
    assert packed[0]["packed_rows"] == 16 and 2 <= packed[0]["packed_sequences"] < 16
    assert 0.5 < packed[0]["packed_fill"] <= 1.0
    log = kinds(recs, "log")
    assert [r["step"] for r in log] == [1, 2, 3]
    assert all(r["tokens_per_s"] > 0 and r["loss"] > 0 for r in log)
    # the padded path: packing off, no packing status
    assert not [r for r in kinds(events(train_matrix["sft_lora"]), "status") if "packed_sequences" in r]


def test_freeze_warmup_cosine_min_lr_and_dropouts(train_matrix):
    d = train_matrix["sft_freeze"]
    recs = _completed(d)
    _falls(recs, d)
    st = kinds(recs, "status")
    # one of the two decoder layers trains (q 64x64, k/v 64x32, o 64x64, 3 MLP 64x192, 2 norms)
    assert next(r for r in st if "trainable_params" in r)["trainable_params"] == 4096 * 2 + 2048 * 2 + 3 * 64 * 192 + 128
    # Nova's dropouts: llama has attention dropout, not hidden / ffn dropout — a warning names them
    warn = [r["text"] for r in st if r.get("phase") == "warning"]
    assert warn == ["the llama architecture has no hidden dropout, ffn dropout; model.hidden_dropout, "
                    "model.ffn_dropout not applied"], warn
    lrs = [r["lr"] for r in kinds(recs, "log")]
    assert lrs[1] == pytest.approx(0.01) and lrs[2] < lrs[1] and lrs[3] < lrs[2]  # warmup 1 step, then cosine
    assert all(lr >= 0.001 - 1e-12 for lr in lrs[1:])  # down to min_lr, not below


def test_pretraining_on_a_corpus(train_matrix):
    d = train_matrix["pretrain"]
    recs = _completed(d)
    _falls(recs, d)
    assert kinds(recs, "start")[0]["stage"] == "pretrain"
    assert (d / "final" / "model.safetensors").is_file()


#: preference_loss → (TRL trainer class, the TRL loss settings it must get)
PREF_IMPL = {
    "sigmoid": ("DPOTrainer", {"loss_type": ["sigmoid"], "beta": 0.1}),
    "hinge": ("DPOTrainer", {"loss_type": ["hinge"]}),
    "ipo": ("DPOTrainer", {"loss_type": ["ipo"]}),
    "kto_pair": ("KTOTrainer", {"loss_type": "kto"}),
    "orpo": ("ORPOTrainer", {"beta": 0.1}),
    "simpo": ("CPOTrainer", {"loss_type": "simpo", "cpo_alpha": 0.0, "simpo_gamma": 0.5}),
}


@pytest.mark.parametrize("loss", PREF_LOSSES)
def test_dpo_every_preference_loss(train_matrix, loss):
    d = train_matrix[f"dpo_{loss}"]
    recs = _completed(d)
    _falls(recs, d)
    start = kinds(recs, "start")[0]
    cls, want = PREF_IMPL[loss]
    assert start["trainer"] == cls
    for k, v in want.items():
        assert start["trl"][k] == v, (k, start["trl"])
    log = kinds(recs, "log")[-1]
    assert any(k.startswith("rewards_") for k in log), sorted(log)  # TRL's preference metrics reach the events
    warn = [r["text"] for r in kinds(recs, "status") if r.get("phase") == "warning"]
    if loss in ("orpo", "kto_pair"):
        assert len(warn) == 1 and warn[0].startswith(f"preference.preference_ftx is not applied to the {loss} loss")
    else:
        assert warn == []
    _adapter(d, "LORA")


def test_dpo_sft_mixing_and_label_smoothing(train_matrix):
    d = train_matrix["dpo_sigmoid_ftx_smooth"]
    recs = _completed(d)
    _falls(recs, d)
    trl = kinds(recs, "start")[0]["trl"]
    assert trl["loss_type"] == ["sigmoid", "sft"] and trl["loss_weights"] == [1.0, 1.0]
    assert trl["label_smoothing"] == 0.1
    # the SFT term is really in the loss: sigmoid alone starts at log 2, with the NLL mixed in far above
    plain = losses(events(train_matrix["dpo_sigmoid"]))[0]
    assert abs(plain - 0.6931) < 1e-3 and losses(recs)[0] > plain + 3

    d = train_matrix["dpo_hinge_ftx"]
    recs = _completed(d)
    trl = kinds(recs, "start")[0]["trl"]
    assert trl["loss_type"] == ["hinge", "sft"] and trl["loss_weights"] == [1.0, 0.5]

    d = train_matrix["dpo_simpo_ftx"]  # SimPO's SFT term is CPO's behaviour-cloning weight
    recs = _completed(d)
    _falls(recs, d)
    trl = kinds(recs, "start")[0]["trl"]
    assert kinds(recs, "start")[0]["trainer"] == "CPOTrainer"
    assert trl["loss_type"] == "simpo" and trl["cpo_alpha"] == 0.5 and trl["simpo_gamma"] == 1.0


def test_kto_on_unpaired_rows(train_matrix):
    d = train_matrix["kto"]
    recs = _completed(d)
    _falls(recs, d)
    assert kinds(recs, "start")[0]["trainer"] == "KTOTrainer"
    _adapter(d, "LORA")


def test_reward_model(train_matrix):
    d = train_matrix["reward"]
    recs = _completed(d)
    _falls(recs, d)
    assert kinds(recs, "start")[0]["trainer"] == "RewardTrainer"
    _adapter(d, "LORA", task="SEQ_CLS")


def test_early_stopping_stops_before_the_last_step(train_matrix):
    d = train_matrix["early_stop"]
    recs = events(d)
    end = kinds(recs, "end")[-1]
    assert end["outcome"] == "early_stopped", describe_run(d)
    assert end["step"] == 2 and kinds(recs, "start")[0]["total_steps"] == 6
    assert [r["step"] for r in kinds(recs, "eval")] == [1, 2]
    assert all(r.get("loss") is not None for r in kinds(recs, "eval"))
    cks = kinds(recs, "checkpoint")
    assert [c["step"] for c in cks] == [1, 2] and all(c["complete"] for c in cks)
    assert cks[0]["best"] is True  # step 2 did not improve: checkpoint-1 stays the best
    assert (d / "final" / "adapter_config.json").is_file()


def test_resume_after_sigkill_in_the_middle_of_a_checkpoint(train_matrix):
    res = train_matrix["_results"]
    assert res["resume_killed"]["code"] == -9, res["resume_killed"]  # really SIGKILLed
    assert res["resume_again"]["code"] == 0, describe_run(train_matrix["resume_again"])
    d, ref = train_matrix["resume_again"], train_matrix["resume_ref"]
    ref_recs = _completed(ref)
    ref_loss = {r["step"]: r["loss"] for r in kinds(ref_recs, "log")}
    recs = events(d)
    starts = kinds(recs, "start")
    assert len(starts) == 2
    first = recs[: recs.index(starts[1])]
    second = recs[recs.index(starts[1]):]
    # the killed run trained steps 1–4 and died writing checkpoint-4 (no end record)
    assert [r["step"] for r in kinds(first, "log")] == [1, 2, 3, 4] and not kinds(first, "end")
    # the second run set the cut-off checkpoint-4 aside and resumed from checkpoint-3
    texts = " ".join(r.get("text", "") for r in kinds(recs, "status"))  # (before the second start record)
    assert "set aside an incomplete checkpoint (no complete trainer_state.json): incomplete-checkpoint-4" in texts
    resumed = [r for r in kinds(recs, "status") if r.get("phase") == "resuming"]
    assert resumed and resumed[-1]["checkpoint"].endswith("checkpoint-3")
    assert starts[1]["step"] == 3 and starts[1]["total_steps"] == 6  # same step count
    assert [r["step"] for r in kinds(second, "log")] == [4, 5, 6]
    assert kinds(second, "end")[-1]["outcome"] == "completed" and kinds(second, "end")[-1]["step"] == 6
    # the loss curve continues: the same losses as the uninterrupted run, before and after the kill
    for r in kinds(first, "log") + kinds(second, "log"):
        assert r["loss"] == pytest.approx(ref_loss[r["step"]], rel=1e-4, abs=1e-5), (r["step"], ref_loss)
    assert sorted(p.name for p in (d / "checkpoints").iterdir() if p.name.startswith("checkpoint-")) == \
        [f"checkpoint-{i}" for i in range(1, 7)]
    assert any(p.name.startswith("incomplete-checkpoint-4") for p in (d / "checkpoints").iterdir())
    # eval.checkpoint_limit = 2 on the reference run: the older checkpoints are rotated away
    assert sorted(p.name for p in (ref / "checkpoints").iterdir() if p.name.startswith("checkpoint-")) == \
        ["checkpoint-5", "checkpoint-6"]
    assert [c["step"] for c in kinds(ref_recs, "checkpoint")] == [1, 2, 3, 4, 5, 6]


def test_resume_from_a_checkpoint_path(train_matrix):
    d = train_matrix["resume_path"]
    recs = _completed(d)
    ref_loss = {r["step"]: r["loss"] for r in kinds(events(train_matrix["resume_ref"]), "log")}
    assert kinds(recs, "start")[0]["step"] == 5
    assert [r["step"] for r in kinds(recs, "log")] == [6]
    assert kinds(recs, "log")[0]["loss"] == pytest.approx(ref_loss[6], rel=1e-4, abs=1e-5)


def test_merge_adapter_gives_a_plain_model_that_generates(train_matrix):
    d = train_matrix["merge"]
    recs = _completed(d)
    assert "merging" in [r["phase"] for r in kinds(recs, "status")]
    final = d / "final"
    assert (final / "config.json").is_file() and (final / "model.safetensors").is_file()
    assert not (final / "adapter_config.json").exists()
    assert (d / "adapter" / "adapter_config.json").is_file()  # the adapter is kept beside it
    assert train_matrix["_results"]["gen_merge"]["code"] == 0, describe_run(d)
    gen = json.loads((final.parent / "generated.json").read_text())
    assert gen["class"] == "LlamaForCausalLM" and isinstance(gen["text"], str)


@pytest.mark.parametrize("name,cls", [("sft_full", "LlamaForCausalLM"), ("pretrain", "LlamaForCausalLM"),
                                      ("sft_tfew", "PeftModelForCausalLM"), ("sft_prompt", "PeftModelForCausalLM"),
                                      ("dpo_sigmoid", "PeftModelForCausalLM")])
def test_trained_models_load_and_generate(train_matrix, name, cls):
    d = train_matrix[name]
    assert train_matrix["_results"][f"gen_{name}"]["code"] == 0, describe_run(d)
    gen = json.loads((d / "generated.json").read_text())
    assert gen["class"] == cls and isinstance(gen["text"], str)


def test_out_of_memory_ends_with_one_line_and_the_advice(train_matrix):
    d = train_matrix["oom"]
    assert train_matrix["_results"]["oom"]["code"] == 1
    recs = events(d)
    err = kinds(recs, "error")
    assert len(err) == 1 and "\n" not in err[0]["message"]
    msg = err[0]["message"]
    assert msg.startswith("CUDA out of memory: lower general.batch_size (now 4)")
    for part in ("runtime.gradient_accumulation_steps (now 1)", "runtime.gradient_checkpointing (now off)",
                 "trainer.zero_stage = 3", "qlora (now lora)", "general.max_sequence_length is 64"):
        assert part in msg, msg
    assert "OutOfMemoryError" in err[0]["traceback"]
    assert kinds(recs, "end")[-1]["outcome"] == "failed"
    assert [r["step"] for r in kinds(recs, "log")] == [1]  # what was done before is kept


def test_a_user_error_is_one_line_naming_the_field(train_matrix):
    d = train_matrix["bad_target"]
    recs = events(d)
    err = kinds(recs, "error")
    assert len(err) == 1 and kinds(recs, "end")[-1]["outcome"] == "failed"
    assert err[0]["message"].startswith("adapter.target_modules: attn_qkv not found in the model")
    assert err[0]["traceback"] == ""
    assert "error: adapter.target_modules" in (d / "worker.log").read_text()

    recs = events(train_matrix["qlora_cpu"])  # bitsandbytes quantization needs a GPU: said before loading
    assert [r["message"] for r in kinds(recs, "error")] == [
        "trainer.training_type: QLoRA (bitsandbytes quantization) needs a CUDA GPU; use lora on CPU"]
    assert kinds(recs, "end")[-1]["outcome"] == "failed"


#: rows each example trains on, as LLaMA-Factory reads them (max_samples per dataset, KTO pairs unpaired)
COMPAT_ROWS = {"qwen3_lora_sft": 91 + 999, "qwen3_full_sft": 91 + 999, "qwen3_lora_pretrain": 300,
               "qwen3_lora_dpo": 300, "qwen3_lora_kto": 300, "qwen3_lora_reward": 300}


@pytest.mark.parametrize("name", list(COMPAT_ROWS))
def test_llamafactory_examples_train_as_imported(train_matrix, name):
    """Each compat example, imported unchanged, trains on all of its data (the tiny model in place of
    Qwen3-4B, two steps on CPU): identity,alpaca_en_demo is 1,090 rows, not identity's 91."""
    from tests.fixtures_train import COMPAT_RUNS

    assert name in COMPAT_RUNS
    d = train_matrix[f"compat_{name}"]
    recs = _completed(d)
    start = kinds(recs, "start")[0]
    assert start["train_rows"] == COMPAT_ROWS[name] and start["dropped"] == 0, start
    assert start["total_steps"] == 2 and kinds(recs, "end")[-1]["step"] == 2
    assert (d / "final").is_dir()
