"""Sequence packing that stays fast with sdpa / eager attention.

TRL's BFD packing flattens every batch into one row (padding-free): with flash-attention-2's
varlen kernels each packed row attends only to itself, but with sdpa or eager attention
transformers keeps the rows apart through a dense block-diagonal mask over the *whole
flattened batch*, so attention costs ``(batch × max_len)²`` and eats the saving
(bench/packing.py: 0.77–0.81× padded batches on CPU, slower than padding).

Here the same best-fit-decreasing bins stay the rows of the batch (``batch × max_len``).
``position_ids`` restart at every packed row and no attention mask is passed, so transformers
(``masking_utils.find_packed_sequence_indices``) builds a block-diagonal mask *per bin*:
attention costs ``max_len²`` per bin, as a padded batch of long rows would, while the bins
are ~98 % real tokens instead of ~50 %. Rows never see each other, and the first label of
every packed row is ignored so no token is predicted across a row boundary (as TRL does).

The worker uses this for pre-training / SFT with ``data.packing`` unless the attention is
flash-attention-2, where TRL's own flattened BFD packing is the faster layout.
"""

from __future__ import annotations

import bisect
from pathlib import Path
from typing import Any, Callable


def _bfd(lengths: Any, order: Any, capacity: int, assign: Callable[[int, int], None]) -> int:
    """Best-fit decreasing over the rows in ``order`` (longest first): ``assign(row, bin)`` for each; → bins made."""
    free: list[tuple[int, int]] = []  # (space left, bin index), ascending
    n_bins = 0
    for i in order:
        i = int(i)
        n = int(lengths[i])
        k = bisect.bisect_left(free, (n, -1))
        if k < len(free):
            space, b = free.pop(k)
            assign(i, b)
            bisect.insort(free, (space - n, b))
        else:
            assign(i, n_bins)
            bisect.insort(free, (capacity - n, n_bins))
            n_bins += 1
    return n_bins


def bfd_bins(lengths: list[int], capacity: int) -> list[list[int]]:
    """Best-fit decreasing: the indices of the rows in each bin of at most ``capacity`` tokens.

    Bins come out in creation order; rows within a bin longest first. Rows longer than the
    capacity must have been truncated before.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    bins: list[list[int]] = []

    def assign(i: int, b: int) -> None:
        if b == len(bins):
            bins.append([])
        bins[b].append(i)

    _bfd(lengths, order, capacity, assign)
    return bins


class _Column:
    """A list column of a (memory-mapped) Arrow table read row by row as numpy views of its chunks: gathering rows
    from anywhere touches only their pages (Arrow's ``take`` on a chunked column first concatenates every chunk)."""

    def __init__(self, col: Any):
        import numpy as np

        self.vals = [c.values.to_numpy(zero_copy_only=False) for c in col.chunks]
        self.offs = [c.offsets.to_numpy(zero_copy_only=False) for c in col.chunks]
        self.starts = np.cumsum([0] + [len(c) for c in col.chunks])

    def gather(self, rows: Any) -> Any:
        import numpy as np

        which = np.searchsorted(self.starts, rows, side="right") - 1
        parts = []
        for r, c in zip(rows.tolist(), which.tolist()):
            i = r - int(self.starts[c])
            parts.append(self.vals[c][self.offs[c][i]:self.offs[c][i + 1]])
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)


#: rows binned together by :func:`pack_arrow`: best-fit decreasing within each window of this many consecutive rows
#: (the whole data when smaller: then exactly :func:`pack_rows`); its numpy arrays (~60 bytes a row) stay bounded
PACK_WINDOW = 1_000_000


def pack_arrow(ds: Any, max_len: int, dest: Path, bins_per_batch: int = 2048,
               window: int | None = None) -> tuple[int, int]:
    """:func:`pack_rows` for a tokenized Arrow ``datasets.Dataset`` (the tokenize-once cache), written as an Arrow
    stream file ``dest``: the same bins, rows and ``seq_lengths`` (for data of up to :data:`PACK_WINDOW` rows;
    larger data is binned window by window), built a batch of bins at a time from views of the mapped columns
    (memory: a few numpy arrays of one number per row of a window, never the rows).  → (packed rows, tokens)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    table = ds.data.table if hasattr(ds.data, "table") else ds.data
    cols = {name: _Column(table.column(name)) for name in ("input_ids", "labels")}
    all_lengths = pc.list_value_length(table.column("input_ids")).to_numpy(zero_copy_only=False).astype(np.int32, copy=False)
    window = window or PACK_WINDOW
    schema = pa.schema([("input_ids", pa.list_(pa.int32())), ("labels", pa.list_(pa.int32())),
                        ("seq_lengths", pa.list_(pa.int32()))])
    total_bins = tokens = 0
    with open(dest, "wb") as fh, pa.ipc.new_stream(fh, schema) as w:
        for w0 in range(0, len(all_lengths), window):
            lengths = all_lengths[w0:w0 + window]
            n = len(lengths)
            order = np.lexsort((np.arange(n), -lengths.astype(np.int64)))  # longest first, then by index
            bin_of = np.empty(n, dtype=np.int32)
            n_bins = _bfd(lengths, order, max_len, bin_of.__setitem__)
            pos = np.empty(n, dtype=np.int32)
            pos[order] = np.arange(n, dtype=np.int32)  # (rank in the order: a bin's rows, longest first)
            del order
            members = np.lexsort((pos, bin_of))  # rows bin by bin, in their bin's order
            starts = np.concatenate([[0], np.cumsum(np.bincount(bin_of, minlength=n_bins))])
            del bin_of, pos
            for b0 in range(0, n_bins, bins_per_batch):
                b1 = min(n_bins, b0 + bins_per_batch)
                idx = members[starts[b0]:starts[b1]]
                lens = lengths[idx].astype(np.int64)
                row_off = (starts[b0:b1 + 1] - starts[b0]).astype(np.int32)
                tok_off = np.concatenate([[0], np.cumsum(lens)])[row_off].astype(np.int32)
                arrays = [pa.ListArray.from_arrays(pa.array(tok_off),
                                                   pa.array(cols[name].gather(idx + w0).astype(np.int32)))
                          for name in ("input_ids", "labels")]
                arrays.append(pa.ListArray.from_arrays(pa.array(row_off), pa.array(lens.astype(np.int32))))
                w.write_batch(pa.RecordBatch.from_arrays(arrays, schema=schema))
                tokens += int(lens.sum())
            total_bins += n_bins
    return total_bins, tokens


def pack_rows(rows: list[dict[str, Any]], max_len: int) -> list[dict[str, Any]]:
    """Pack tokenized rows (``input_ids``, ``labels``) into bins of at most ``max_len`` tokens.

    Each packed row has ``input_ids`` and ``labels`` concatenated and ``seq_lengths``, the
    length of each original row in order.
    """
    bins = bfd_bins([len(r["input_ids"]) for r in rows], max_len)
    out = []
    for b in bins:
        ids: list[int] = []
        labels: list[int] = []
        for i in b:
            ids.extend(rows[i]["input_ids"])
            labels.extend(rows[i].get("labels", rows[i]["input_ids"]))
        out.append({"input_ids": ids, "labels": labels, "seq_lengths": [len(rows[i]["input_ids"]) for i in b]})
    return out


def collate_packed_rows(examples: list[dict[str, Any]], pad_token_id: int,
                        pad_to_multiple_of: int | None = None) -> dict[str, Any]:
    """A ``batch × longest`` batch with per-segment ``position_ids`` and no attention mask.

    Rows without ``seq_lengths`` are one segment. The right padding of a row forms its own
    segment (positions 0, 1, …), labelled -100, so real tokens never attend to it.
    """
    import torch

    longest = max(len(e["input_ids"]) for e in examples)
    if pad_to_multiple_of:
        longest = -(-longest // pad_to_multiple_of) * pad_to_multiple_of
    n = len(examples)
    input_ids = torch.full((n, longest), pad_token_id, dtype=torch.long)
    labels = torch.full((n, longest), -100, dtype=torch.long)
    position_ids = torch.zeros((n, longest), dtype=torch.long)
    for j, e in enumerate(examples):
        ids = e["input_ids"]
        k = len(ids)
        input_ids[j, :k] = torch.as_tensor(ids, dtype=torch.long)
        labels[j, :k] = torch.as_tensor(e.get("labels", ids), dtype=torch.long)
        start = 0
        for seg in e.get("seq_lengths") or [k]:
            position_ids[j, start:start + seg] = torch.arange(seg)
            labels[j, start] = -100  # no prediction across a row boundary
            start += seg
        if k < longest:
            position_ids[j, k:] = torch.arange(longest - k)
    return {"input_ids": input_ids, "labels": labels, "position_ids": position_ids}


class PackedRowsCollator:
    """Data collator for ``SFTTrainer``: :func:`collate_packed_rows` with the tokenizer's pad id."""

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int | None = None):
        self.pad_token_id = int(pad_token_id)
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        return collate_packed_rows(examples, self.pad_token_id, self.pad_to_multiple_of)
