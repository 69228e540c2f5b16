"""finetui's SFTTrainer (TRL's, with its per-token metrics read at logging steps only) trains exactly as TRL's:
the same loss at every step on the same seed, and the same entropy / token accuracy / tokens seen in the logs."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _train(tmp_path, tiny_model, monkeypatch, trl_own: bool, logging_steps: int) -> list[dict]:
    from transformers import set_seed

    import engine.train.trainers as T
    from engine.data import load_rows
    from engine.train.modeling import apply_method, load_config, load_model, load_tokenizer
    from tests.fixtures_train import write_run

    monkeypatch.setenv("FINETUI_CACHE_DIR", str(tiny_model.parent))
    run = tmp_path / f"{'trl' if trl_own else 'finetui'}-{logging_steps}"
    job = write_run(run, **{"data.max_samples": 24, "general.batch_size": 4, "general.max_steps": 6,
                            "runtime.seed": 3, "eval.logging_steps": logging_steps, "data.packing": False,
                            "general.learning_rate": 0.01})
    res = job.resolved()
    if trl_own:
        from trl import SFTTrainer

        monkeypatch.setattr(T, "sft_trainer_class", lambda: SFTTrainer)
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
    ours = _train(tmp_path, tiny_model, monkeypatch, False, logging_steps)
    theirs = _train(tmp_path, tiny_model, monkeypatch, True, logging_steps)
    assert len(ours) == len(theirs) == 6 // logging_steps
    for a, b in zip(ours, theirs):
        assert a["loss"] == b["loss"] and a["grad_norm"] == b["grad_norm"]  # the same ops: bit for bit
        assert a["entropy"] == pytest.approx(b["entropy"], rel=1e-6)
        assert a["mean_token_accuracy"] == pytest.approx(b["mean_token_accuracy"], rel=1e-6)
        assert a["num_tokens"] == b["num_tokens"] and a["num_input_tokens_seen"] == b["num_input_tokens_seen"]
