"""The reward model's pairs longer than max_sequence_length are truncated, not dropped.

TRL's RewardTrainer filters out every pair longer than ``max_length``; when all of them are,
training dies with an opaque "num_samples should be a positive integer value, but got
num_samples=0" from the sampler (found by bench/activations_cpu.py). finetui truncates them, as
it truncates SFT rows, and reports how many in the tokenizing status. Real tiny model, real TRL
trainer, one optimizer step.
"""

from __future__ import annotations

from pathlib import Path

from engine.schema import JobConfig
from engine.data import load_rows
from engine.train.modeling import apply_method, load_config, load_model, load_tokenizer
from engine.train.trainers import build_trainer, common_args


def test_long_reward_pairs_are_truncated_and_train(tmp_path: Path):
    max_len = 8  # shorter than every pair of the sample set with its chat template
    res = JobConfig(values={
        "data.train_path": "finetui:samples/preference_demo.jsonl", "data.format": "preference",
        "data.max_samples": 8, "trainer.stage": "reward", "launch.device": "cpu", "general.batch_size": 2,
        "general.max_sequence_length": max_len, "general.max_steps": 1, "eval.evaluation_strategy": "no",
        "eval.checkpoint_strategy": "no"}).resolved()
    warn = lambda m: None  # noqa: E731
    path, cfg = load_config(res, warn)
    tok = load_tokenizer(path, res, warn)
    model = apply_method(load_model(path, cfg, res, "cpu"), res, path, "cpu", warn)
    rows = load_rows(res, None).train
    said: list[tuple] = []
    base = common_args(res, tmp_path, "cpu", False, [])
    trainer = build_trainer(res, model, tok, rows, None, base, [], None, lambda *a, **k: said.append((a, k)))
    assert len(trainer.train_dataset) == len(rows) == 8  # none dropped
    assert all(len(ex["chosen_ids"]) <= max_len and len(ex["rejected_ids"]) <= max_len
               for ex in trainer.train_dataset)
    (stage, text), kw = said[-1]
    assert stage == "tokenizing" and kw["truncated"] == 8 and f"8 truncated to {max_len} tokens" in text
    out = trainer.train()
    assert out.global_step == 1
