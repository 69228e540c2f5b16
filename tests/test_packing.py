"""Sequence packing with sdpa / eager (engine/train/packing.py): bins, batches, and rows kept apart."""

from __future__ import annotations

import random

import pytest

from engine.schema import JobConfig, packs
from engine.train.packing import PackedRowsCollator, bfd_bins, collate_packed_rows, pack_rows


def test_bfd_bins_hold_every_row_once_within_capacity():
    rng = random.Random(3)
    lens = [rng.randint(1, 100) for _ in range(500)]
    bins = bfd_bins(lens, 128)
    assert sorted(i for b in bins for i in b) == list(range(500))
    assert all(sum(lens[i] for i in b) <= 128 for b in bins)
    # best-fit decreasing is within 11/9 OPT + 1: here the lower bound is sum / capacity
    lower = -(-sum(lens) // 128)
    assert len(bins) <= 11 * lower // 9 + 1
    assert sum(lens) / (len(bins) * 128) > 0.9


def test_pack_rows_concatenates_rows_and_records_their_lengths():
    rows = [{"input_ids": [1] * n, "labels": [7] * n} for n in (5, 9, 3, 12)]
    packed = pack_rows(rows, 16)
    assert sorted(sum(p["seq_lengths"]) for p in packed) == sorted(len(p["input_ids"]) for p in packed)
    assert sorted(n for p in packed for n in p["seq_lengths"]) == [3, 5, 9, 12]
    assert all(len(p["input_ids"]) <= 16 and len(p["labels"]) == len(p["input_ids"]) for p in packed)
    assert len(packed) == 2  # 12+3, 9+5


def test_collated_batch_restarts_positions_and_masks_boundaries():
    ex = [{"input_ids": [11, 12, 13, 21, 22], "labels": [11, 12, 13, 21, 22], "seq_lengths": [3, 2]},
          {"input_ids": [31, 32, 33], "labels": [-100, 32, 33]}]
    b = PackedRowsCollator(pad_token_id=0)(ex)
    assert set(b) == {"input_ids", "labels", "position_ids"}  # no attention mask: transformers builds it per row
    assert b["input_ids"].tolist() == [[11, 12, 13, 21, 22], [31, 32, 33, 0, 0]]
    assert b["position_ids"].tolist() == [[0, 1, 2, 0, 1], [0, 1, 2, 0, 1]]
    # the first label of every packed row and the padding are ignored
    assert b["labels"].tolist() == [[-100, 12, 13, -100, 22], [-100, 32, 33, -100, -100]]
    assert collate_packed_rows(ex, 0, pad_to_multiple_of=8)["input_ids"].shape == (2, 8)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_rows_see_only_themselves(attn):
    """Logits of every packed row equal those of the row alone (the Trainer runs without a KV cache)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.for_model("llama", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                               num_attention_heads=4, num_key_value_heads=2, vocab_size=100)
    cfg._attn_implementation = attn
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg).eval()
    model.config.use_cache = False  # as Trainer sets it (args.use_cache defaults to False)
    g = torch.Generator().manual_seed(1)
    rows = [{"input_ids": torch.randint(3, 100, (n,), generator=g).tolist()} for n in (5, 9, 3, 12, 7, 4)]
    bins = bfd_bins([len(r["input_ids"]) for r in rows], 16)
    b = collate_packed_rows(pack_rows(rows, 16), pad_token_id=0)
    with torch.no_grad():
        out = model(input_ids=b["input_ids"], position_ids=b["position_ids"]).logits
        worst = 0.0
        for j, members in enumerate(bins):
            start = 0
            for i in members:
                n = len(rows[i]["input_ids"])
                alone = model(input_ids=torch.tensor([rows[i]["input_ids"]])).logits[0]
                worst = max(worst, (out[j, start:start + n] - alone).abs().max().item())
                start += n
    assert worst < 1e-4


def test_packing_defaults_on_natively_off_for_providers_and_only_for_sequence_stages():
    dpo = {"trainer.stage": "dpo", "data.format": "preference", "data.train_path": "finetui:samples/preference_demo.jsonl"}
    assert packs(JobConfig("native", {}).resolved())
    assert not packs(JobConfig("native", dpo).resolved())
    assert JobConfig("native", dpo).problems() == []  # the default does not apply to DPO: no error
    explicit = JobConfig("native", {**dpo, "data.packing": True})
    assert [p.field for p in explicit.problems()] == ["data.packing"]
    from engine.schema.profiles import PROFILES

    for name in PROFILES:
        if name != "native":
            assert JobConfig(name, {}).resolved()["data.packing"] is False, name
