#!/usr/bin/env python3
"""Packing / padding-free vs padded batches: real (non-padding) tokens per second, side by side.

A realistic SFT mix of sequence lengths (log-normal, median 180 tokens, clipped to
[8, max_len] — the shape of instruction data such as alpaca) is trained four ways, interleaved
A B C D A B C D … on the same model in the same process:

* **padded** — TRL's default: rows in random order, each batch padded to its longest row;
* **grouped** — padded, but batches drawn by length like ``group_by_length`` (transformers'
  LengthGroupedSampler: megabatches of 50 batches sorted by length);
* **padding-free** — the same rows flattened into one row without padding, ``position_ids``
  restarting per row (TRL ``padding_free``; transformers builds the block-diagonal mask);
* **packed, flattened** — rows packed best-fit-decreasing into ``max_len`` bins, then flattened
  like padding-free (TRL ``packing``, BFD strategy, which implies padding-free): finetui's packing
  with flash-attention-2, whose varlen kernels attend within each row only;
* **packed, per bin** — the same bins kept as the batch's rows (``batch × max_len``), ``position_ids``
  restarting per packed row and no attention mask, so transformers builds a block-diagonal mask per
  bin: attention costs ``max_len²`` per bin instead of ``(batch × max_len)²`` for the flattened
  batch. finetui's packing with sdpa / eager (``engine/train/packing.py``).

Prints tokens/s for each and the ratios to padded (target: packed ≥ 1.5×).

    python bench/packing.py                    # CPU: a small Llama
    python bench/packing.py --device cuda      # GPU: the Llama-3.2-1B shape in bf16
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SMALL = {"model_type": "llama", "hidden_size": 256, "intermediate_size": 768, "num_hidden_layers": 4,
         "num_attention_heads": 8, "num_key_value_heads": 4, "vocab_size": 4096,
         "max_position_embeddings": 4096, "tie_word_embeddings": True}


def lengths(n: int, max_len: int, seed: int = 0, median: float = 180, sigma: float = 0.8) -> list[int]:
    import math

    rng = random.Random(seed)
    return [max(8, min(max_len, int(rng.lognormvariate(math.log(median), sigma)))) for _ in range(n)]


def bfd(lens: list[int], cap: int) -> list[list[int]]:
    """Best-fit decreasing: indices of rows per bin of capacity ``cap`` (finetui's packing)."""
    from engine.train.packing import bfd_bins

    return bfd_bins(lens, cap)


def make_batches(lens: list[int], batch: int, max_len: int, mode: str, seed: int = 0) -> list[list[list[int]]]:
    """Each batch: a list of rows, each row a list of segment lengths."""
    rng = random.Random(seed)
    if mode in ("packed", "packed_rows"):
        bins = [[lens[i] for i in b] for b in bfd(lens, max_len)]
        rng.shuffle(bins)
        return [bins[i:i + batch] for i in range(0, len(bins), batch)]
    idx = list(range(len(lens)))
    rng.shuffle(idx)
    if mode == "grouped":  # transformers' LengthGroupedSampler: megabatches of 50 batches, sorted by length
        mega = 50 * batch
        idx = [i for k in range(0, len(idx), mega) for i in sorted(idx[k:k + mega], key=lambda i: -lens[i])]
        out = [[[lens[i]] for i in idx[k:k + batch]] for k in range(0, len(idx), batch)]
        rng.shuffle(out)
        return out
    return [[[lens[i]] for i in idx[k:k + batch]] for k in range(0, len(idx), batch)]


def to_tensors(batch: list[list[int]], mode: str, vocab: int, device: str, gen):
    import torch

    if mode in ("padded", "grouped"):
        T = max(sum(r) for r in batch)
        ids = torch.randint(4, vocab, (len(batch), T), device=device, generator=gen)
        mask = torch.zeros((len(batch), T), dtype=torch.long, device=device)
        for j, r in enumerate(batch):
            mask[j, : sum(r)] = 1
        labels = ids.masked_fill(mask == 0, -100)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}, int(mask.sum())
    if mode == "packed_rows":  # one bin per row, block-diagonal mask per row (engine/train/packing.py)
        from engine.train.packing import collate_packed_rows

        rows = []
        for r in batch:
            n = sum(r)
            ids = torch.randint(4, vocab, (n,), device=device, generator=gen).tolist()
            rows.append({"input_ids": ids, "labels": ids, "seq_lengths": r})
        out = collate_packed_rows(rows, pad_token_id=0)
        return {k: v.to(device) for k, v in out.items()}, int(sum(sum(r) for r in batch))
    segs = [L for r in batch for L in r]
    n = sum(segs)
    ids = torch.randint(4, vocab, (1, n), device=device, generator=gen)
    pos = torch.cat([torch.arange(L, device=device) for L in segs]).unsqueeze(0)
    labels = ids.clone()
    start = 0
    for L in segs:  # no loss across a segment boundary
        labels[0, start] = -100
        start += L
    return {"input_ids": ids, "position_ids": pos, "labels": labels}, n


def run(device: str = "cpu", rows: int = 256, batch: int = 8, max_len: int = 512, rounds: int = 3,
        model_cfg: dict | None = None, attn: str = "sdpa",
        modes: tuple[str, ...] = ("padded", "grouped", "padding_free", "packed", "packed_rows")) -> dict:
    """Tokens/s of each batch layout (``modes``) with the attention ``attn`` (sdpa; flash_attention_2 takes the
    flattened layouts through its varlen kernels: bench/gpu_check.py compares the two)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    cfg_d = dict(model_cfg or SMALL)
    mt = cfg_d.pop("model_type")
    cfg_d = {k: v for k, v in cfg_d.items() if not k.startswith("_") and k not in ("architectures", "dtype")}
    cfg = AutoConfig.for_model(mt, **cfg_d)
    cfg._attn_implementation = attn
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(cfg, dtype=dtype)
    model.train()
    model.config.use_cache = False  # as the Trainer sets it: with a cache, transformers skips the packed-row mask
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, foreach=True)
    lens = lengths(rows, max_len)
    plans = {m: make_batches(lens, batch, max_len, m) for m in modes}
    gen = torch.Generator(device=device).manual_seed(0)
    tok = {m: 0 for m in modes}
    secs = {m: 0.0 for m in modes}

    def step(b, m):
        inputs, n = to_tensors(b, m, cfg.vocab_size, device, gen)
        out = model(**inputs)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return n

    for m in modes:  # warm-up (kernels, allocator)
        step(plans[m][0], m)
    for _ in range(rounds):
        for m in modes:  # interleaved: every mode sees the same machine state
            if device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            for b in plans[m]:
                tok[m] += step(b, m)
            if device == "cuda":
                torch.cuda.synchronize()
            secs[m] += time.perf_counter() - t0
    tps = {m: tok[m] / secs[m] for m in modes}
    padded_tokens = sum(len(b) * max(sum(r) for r in b) for b in plans["padded"])
    return {"device": torch.cuda.get_device_name(0) if device == "cuda" else platform.processor() or "cpu",
            "threads": torch.get_num_threads(), "rows": rows, "batch": batch, "max_len": max_len,
            "mean_len": sum(lens) / len(lens), "padding_share": 1 - sum(lens) / padded_tokens,
            "packed_fill": sum(lens) / (len(bfd(lens, max_len)) * max_len),
            "grouped_padding_share": 1 - sum(lens) / sum(len(b) * max(sum(r) for r in b) for b in plans["grouped"])
            if "grouped" in plans else None,
            "tokens_per_s": tps, **{f"ratio_{m}": tps[m] / tps["padded"] for m in modes if m != "padded"},
            "attn": attn, "rounds": rounds,
            "params": sum(p.numel() for p in model.parameters())}


def report(r: dict) -> str:
    t = r["tokens_per_s"]
    return (f"packing vs padded ({r['device']}, {r['params'] / 1e6:.1f}M-param Llama, batch {r['batch']}, "
            f"max_len {r['max_len']}, {r['rows']} rows of mean {r['mean_len']:.0f} tokens, {r['rounds']} interleaved "
            f"rounds)\n"
            f"  padded        {t['padded']:10.0f} tokens/s   (padding {r['padding_share']:.0%} of the batch)\n"
            f"  grouped       {t['grouped']:10.0f} tokens/s   ratio {r['ratio_grouped']:.2f}   "
            f"(group_by_length; padding {r['grouped_padding_share']:.0%})\n"
            f"  padding-free  {t['padding_free']:10.0f} tokens/s   ratio {r['ratio_padding_free']:.2f}\n"
            f"  packed, flat  {t['packed']:10.0f} tokens/s   ratio {r['ratio_packed']:.2f}   "
            f"(BFD bins {r['packed_fill']:.0%} full, flattened: flash-attention-2's layout)\n"
            f"  packed, bins  {t['packed_rows']:10.0f} tokens/s   ratio {r['ratio_packed_rows']:.2f}   "
            f"(same bins, one per row: sdpa / eager)   target ≥ 1.5\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--rows", type=int, default=None)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--max-len", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: checks that the script runs (tests/test_bench_smoke.py); its figures mean nothing")
    a = ap.parse_args()
    if a.smoke:  # a one-layer model, a few rows
        a.rows, a.max_len, a.rounds, a.batch = a.rows or 16, a.max_len or 128, 1, 4
        r = run(a.device, a.rows, a.batch, a.max_len, a.rounds, {**SMALL, "hidden_size": 64, "intermediate_size": 128,
                                                                 "num_hidden_layers": 1, "vocab_size": 512})
    elif a.device == "cuda":
        from engine.modelinfo import CATALOG

        r = run("cuda", a.rows or 512, a.batch, a.max_len or 2048, a.rounds,
                CATALOG["meta-llama/Llama-3.2-1B"])
    else:
        r = run("cpu", a.rows or 96, a.batch, a.max_len or 512, a.rounds)
    if a.json:
        a.json.write_text(json.dumps(r, indent=2))
    print(report(r), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
