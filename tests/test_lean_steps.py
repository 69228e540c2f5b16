"""``trainers.lean_steps``: the per-step bookkeeping of transformers' Trainer done once, not at every step — the
same training (losses, gradient norms, FLOPs bit for bit), and the model back in training mode after every
evaluation."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _train(tmp_path, tiny_model, monkeypatch, lean: bool) -> tuple[list[dict], list, object]:
    from transformers import TrainerCallback, set_seed

    import engine.train.trainers as T
    from engine.data import load_rows
    from engine.train.modeling import apply_method, load_config, load_model, load_tokenizer
    from tests.fixtures_train import write_run

    monkeypatch.setenv("FINETUI_CACHE_DIR", str(tiny_model.parent))
    run = tmp_path / ("lean" if lean else "plain")
    values = {"data.max_samples": 24, "general.batch_size": 4, "general.max_steps": 6, "runtime.seed": 3,
              "eval.logging_steps": 1, "general.learning_rate": 0.01, "adapter.lora_dropout": 0.1,
              "data.val_size": 0.25, "eval.evaluation_strategy": "steps", "eval.eval_steps": 2,
              "runtime.max_grad_norm": 0.5}
    res = write_run(run, **values).resolved()
    data = load_rows(res, None)
    path, cfg = load_config(res, print)
    tok = load_tokenizer(path, res, print)
    set_seed(3)
    model = apply_method(load_model(path, cfg, res, "cpu"), res, path, "cpu", print)
    modes: list = []  # (training flag of every dropout at each forward, and whether the trainer was evaluating)
    drop = [m for m in model.modules() if type(m).__name__ == "Dropout"]
    assert drop, "the job's LoRA dropout"
    for m in drop:
        m.register_forward_pre_hook(lambda mod, args: modes.append(mod.training))

    class Phase(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):  # noqa: ANN001
            modes.append("step")

        def on_evaluate(self, args, state, control, **kw):  # noqa: ANN001
            modes.append("evaluated")

    with monkeypatch.context() as m:
        if not lean:
            m.setattr(T, "lean_steps", lambda tr: tr)
        tr = T.build_trainer(res, model, tok, data.train, data.eval, T.common_args(res, run, "cpu", True, []),
                             [Phase()], None, lambda *a, **k: None)
        tr.train()
    return [h for h in tr.state.log_history if "loss" in h], modes, tr


def test_same_training_with_and_without(tmp_path, tiny_model, monkeypatch):
    plain, _, a = _train(tmp_path, tiny_model, monkeypatch, False)
    lean, modes, b = _train(tmp_path, tiny_model, monkeypatch, True)
    assert "floating_point_ops" in b.__dict__ and "floating_point_ops" not in a.__dict__  # (it was on, and off)
    assert len(plain) == len(lean) == 6
    for x, y in zip(plain, lean):
        assert (x["loss"], x["grad_norm"]) == (y["loss"], y["grad_norm"])
    assert a.state.total_flos == b.state.total_flos > 0
    # after each evaluation (dropout off) the next training step has every dropout on again: each step's forward
    # (one flag per LoRA dropout) is all on
    n = sum(1 for m in b.model.modules() if type(m).__name__ == "Dropout")
    flags = "".join("s" if m == "step" else "e" if m == "evaluated" else "1" if m else "0" for m in modes)
    assert flags.count("e") == 3 and flags.count("s") == 6
    for chunk in flags.split("s")[1:]:
        assert chunk[:n] == "1" * n, flags
    assert "0" * n in flags  # (the evaluations ran with dropout off)


def test_zero_grad_is_torchs(tmp_path):
    """The lean ``zero_grad`` does what torch's does: grads of the trainable parameters set to None (or zeroed)."""
    import torch
    from transformers import Trainer, TrainingArguments

    from engine.train.trainers import lean_steps

    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 1))
    model[0].weight.requires_grad_(False)
    tr = lean_steps(Trainer(model=model, args=TrainingArguments(output_dir=str(tmp_path), use_cpu=True,
                                                                 report_to=[])))
    tr.create_optimizer_and_scheduler(num_training_steps=1)
    tr.current_gradient_accumulation_steps = 1
    x = {"input": torch.ones(2, 3)}
    model.forward = lambda **kw: {"loss": torch.nn.Sequential.forward(model, kw["input"]).sum()}
    tr.compute_loss = lambda m, inputs, **kw: m(**inputs)["loss"]
    tr.training_step(model, x)
    assert model[1].weight.grad is not None and model[0].weight.grad is None
    model.zero_grad(set_to_none=False)
    assert torch.count_nonzero(model[1].weight.grad) == 0
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())
