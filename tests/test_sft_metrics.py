"""finetui's SFTTrainer (TRL's, with its per-token metrics read at logging steps only) trains exactly as TRL's:
the same loss at every step on the same seed, and the same entropy / token accuracy / tokens seen in the logs."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _train(tmp_path, tiny_model, monkeypatch, trl_own: bool, logging_steps: int, method: str = "lora",
           packing: bool = False) -> list[dict]:
    import engine.train.trainers as T
    from tests.fixtures_train import write_run

    monkeypatch.setenv("FINETUI_CACHE_DIR", str(tiny_model.parent))
    run = tmp_path / f"{'trl' if trl_own else 'finetui'}-{logging_steps}"
    job = write_run(run, **{"data.max_samples": 24, "general.batch_size": 4, "general.max_steps": 6,
                            "runtime.seed": 3, "eval.logging_steps": logging_steps, "data.packing": packing,
                            "general.learning_rate": 0.01, "trainer.training_type": method})
    res = job.resolved()
    with monkeypatch.context() as m:  # (TRL's own trainer for this run only)
        if trl_own:
            from trl import SFTTrainer

            m.setattr(T, "sft_trainer_class", lambda: SFTTrainer)
        return _run(res, run)


def _run(res: dict, run) -> list[dict]:
    from transformers import set_seed

    import engine.train.trainers as T
    from engine.data import load_rows
    from engine.train.modeling import apply_method, load_config, load_model, load_tokenizer

    data = load_rows(res, None)
    path, cfg = load_config(res, print)
    tok = load_tokenizer(path, res, print)
    set_seed(3)
    model = apply_method(load_model(path, cfg, res, "cpu"), res, path, "cpu", print)
    tr = T.build_trainer(res, model, tok, data.train, None, T.common_args(res, run, "cpu", False, []), [], None,
                         lambda *a, **k: None)
    assert type(tr).__name__ == "SFTTrainer"
    tr.train()
    return [h for h in tr.state.log_history if "loss" in h]


@pytest.mark.parametrize("logging_steps", [1, 3])
def test_same_losses_and_metrics_as_trl(tmp_path, tiny_model, monkeypatch, logging_steps):
    """TRL's fused LM head (a large batch × vocabulary): bit for bit; the loss from the full logits (a small one, as
    the tiny model's): the same figures to float rounding."""
    theirs = _train(tmp_path, tiny_model, monkeypatch, True, logging_steps)
    monkeypatch.setenv("FINETUI_SMALL_LOGITS", "0")  # (every batch through the fused head)
    fused = _train(tmp_path / "fused", tiny_model, monkeypatch, False, logging_steps)
    monkeypatch.delenv("FINETUI_SMALL_LOGITS")
    import engine.train.trainers as T

    calls, real = [], T._nll_from_logits
    monkeypatch.setattr(T, "_nll_from_logits", lambda *a: (calls.append(1), real(*a))[1])
    plain = _train(tmp_path / "plain", tiny_model, monkeypatch, False, logging_steps)
    assert len(calls) == 6  # (each step's loss from its logits)
    _compare(fused, plain, theirs, logging_steps)


def _compare(fused: list[dict], plain: list[dict], theirs: list[dict], logging_steps: int) -> None:
    assert len(fused) == len(plain) == len(theirs) == 6 // logging_steps
    for a, p, b in zip(fused, plain, theirs):
        assert a["loss"] == b["loss"] and a["grad_norm"] == b["grad_norm"]  # the same ops: bit for bit
        assert p["loss"] == pytest.approx(b["loss"], rel=1e-5) and p["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-4)
        for x in (a, p):
            assert x["entropy"] == pytest.approx(b["entropy"], rel=1e-5)
            assert x["mean_token_accuracy"] == pytest.approx(b["mean_token_accuracy"], rel=1e-6)
            assert x["num_tokens"] == b["num_tokens"] and x["num_input_tokens_seen"] == b["num_input_tokens_seen"]


def test_which_batches_compute_the_loss_from_their_logits():
    import torch

    from engine.train.trainers import SMALL_LOGITS, small_logits

    assert small_logits(torch.zeros(8, 256), 512)  # the tiny model's batches
    assert not small_logits(torch.zeros(8, 2048), 151_936)  # Qwen's vocabulary: the fused LM head
    assert small_logits(torch.zeros(1, SMALL_LOGITS), 1) and not small_logits(torch.zeros(1, SMALL_LOGITS + 1), 1)
    assert not small_logits(None, 512) and not small_logits(torch.zeros(2, 2), None)


def test_prompt_tuning_loss_from_the_logits_is_trls(tmp_path, tiny_model, monkeypatch):
    """Prompt tuning puts virtual tokens before the text: the logits are longer than the labels."""
    theirs = _train(tmp_path, tiny_model, monkeypatch, True, 1, "prompt_tuning")
    monkeypatch.setenv("FINETUI_SMALL_LOGITS", "0")
    fused = _train(tmp_path / "fused", tiny_model, monkeypatch, False, 1, "prompt_tuning")
    monkeypatch.delenv("FINETUI_SMALL_LOGITS")
    plain = _train(tmp_path / "plain", tiny_model, monkeypatch, False, 1, "prompt_tuning")
    _compare(fused, plain, theirs, 1)


def test_packed_batches_count_their_tokens(tmp_path, tiny_model, monkeypatch):
    """A packed batch (rows × longest, no attention mask) logs as ``num_tokens`` the tokens it holds, as
    ``num_input_tokens_seen`` does — not TRL's padding-free count (the length of one flat row), 1/rows of it."""
    logs = _train(tmp_path, tiny_model, monkeypatch, False, 1, packing=True)
    assert len(logs) == 6
    for x in logs:
        assert x["num_tokens"] == x["num_input_tokens_seen"] > 0
