"""The data check: a streaming validation report of one data file.

Rows are never all kept: the check counts as it streams and keeps only a bounded reservoir
sample (token statistics), 8 bytes per row for duplicate detection, the first invalid rows
and the first few valid rows (preview).  A million-row JSON-lines file checks in bounded
memory.  The report is a plain dict (``--json`` prints it; the TUI's data screen reads it).
"""

from __future__ import annotations

import random
import re
import statistics
import time
from array import array
from typing import Any

from engine.data.errors import DataError
from engine.data.formats import as_messages, detect_format, extra_keys, format_hint, row_texts
from engine.data import arrowscan
from engine.data.loader import MAX_LISTED_INVALID, ScanCounts, allowed_formats, check_compat, open_sources, scan
from engine.data.sources import Source, open_source

#: rows whose token lengths are measured exactly; above it a seeded reservoir sample of this size
TOKEN_SAMPLE = 2000
#: a template placeholder left in the data, like LLaMA-Factory's identity.json {{name}} / {{author}}
PLACEHOLDER = re.compile(r"\{\{\s*[A-Za-z_][A-Za-z0-9_]*\s*\}\}")
PREVIEW_ROWS = 3
PROGRESS_ROWS = 20_000  # rows between two progress calls on the row-by-row path
SNIFF_ROWS = 20  # rows read to tell a file's format
HASH_SLICE = 8192  # keys of rows read one by one hashed at once


def _percentile(sorted_vals: list[int], q: float) -> int:
    if not sorted_vals:
        return 0
    k = min(len(sorted_vals) - 1, max(0, int(round(q * (len(sorted_vals) - 1)))))
    return sorted_vals[k]


#: the most row hashes the check keeps (8 bytes each) to count duplicates exactly; beyond, it keeps the hashes of a
#: sample of the rows chosen by hash (see _Hashes) and the count is an estimate
EXACT_DUPLICATE_ROWS = 4_000_000


class _Hashes:
    """The 64-bit hashes of the valid rows, for counting duplicates in bounded memory: all of them up to
    :data:`EXACT_DUPLICATE_ROWS`; beyond, only those whose top ``level`` bits are zero (1 row in 2^level, raised
    a level at a time to stay under the cap). Equal rows have equal hashes, so a row and its duplicates are kept or
    dropped together: the duplicates among the kept hashes times 2^level estimate the file's — without bias, and
    0 for a file without any."""

    def __init__(self, cap: int | None = None):
        self.cap = cap or EXACT_DUPLICATE_ROWS
        self.level = 0
        self.kept = array("q")

    def add(self, h: Any) -> None:
        """``h``: an int64 numpy array of row hashes (kept sorted a part at a time: see duplicates)."""
        import numpy as np

        if self.level:
            h = h[(h.view(np.uint64) >> np.uint64(64 - self.level)) == 0]
        self.kept.frombytes(np.sort(h).tobytes())  # (out of the GIL, while the next blocks are parsed)
        while len(self.kept) > self.cap:
            self.level += 1
            a = np.frombuffer(self.kept, dtype=np.uint64)
            self.kept = array("q", a[(a >> np.uint64(64 - self.level)) == 0].view(np.int64).tobytes())

    def duplicates(self) -> int:
        if not self.kept:
            return 0
        import numpy as np

        a = np.frombuffer(self.kept, dtype=np.int64)  # (the kept array itself, sorted in place: no copy of it)
        a.sort(kind="stable")  # (a merge of the sorted parts: 3× faster than sorting them at the end)
        return int(len(a) - 1 - np.count_nonzero(a[1:] != a[:-1])) << self.level


def _preview_messages(row: dict) -> list[dict]:
    if "text" in row:
        return [{"role": "text", "content": row["text"]}]
    msgs = [dict(m) for m in as_messages(row)]
    if "rejected" in row:  # a preference pair: the answers are labelled as what they are
        msgs[-1]["role"] = "chosen"
        msgs.append({"role": "rejected", "content": row["rejected"][0]["content"]})
    if "label" in row:
        msgs.append({"role": "label", "content": "desirable" if row["label"] else "undesirable"})
    return msgs


def plain_preview(row: dict) -> list[dict]:
    """Without a tokenizer: the conversation as ``role: content`` lines, assistant text marked trained."""
    if "text" in row:
        return [{"text": row["text"], "trained": True}]
    segs = []
    msgs = _preview_messages(row) if "rejected" in row else as_messages(row)
    for m in msgs:
        segs.append({"text": f"{m['role']}: ", "trained": False})
        segs.append({"text": m["content"], "trained": m["role"] in ("assistant", "chosen", "rejected")})
        segs.append({"text": "\n", "trained": False})
    return segs


def first_rows(srcs: list[Source], n: int = SNIFF_ROWS) -> list[Any]:
    """The first ``n`` decoded rows of the sources (unvalidated), for :func:`detect_format`; [] when unreadable."""
    out: list[Any] = []
    for src in srcs:
        try:
            for _loc, obj in src.records():
                out.append(obj)
                if len(out) >= n:
                    return out
        except (DataError, OSError, ValueError):
            pass
    return out


def sniff(path: str, res: dict | None = None, secrets: dict | None = None) -> list[Any]:
    """The first rows of a data path's first source (``a.json,b.json#fmt``: a.json), for format detection."""
    from engine.datapaths import sources

    try:
        first = next(iter(sources(path, "alpaca")), None)
        return first_rows([open_source(first[0], res, secrets)]) if first else []
    except (DataError, OSError, ValueError):
        return []


class _Stats:
    """What the check keeps of the valid rows as they stream: 8 bytes per row up to a cap (duplicates, _Hashes),
    counts, a seeded reservoir sample of ``token_sample`` rows (token lengths), the first ``preview_rows`` rows."""

    def __init__(self, token_sample: int, preview_rows: int, seed: int):
        self.k, self.preview_rows = token_sample, preview_rows
        self.rng = random.Random(seed)
        self.np_rng = None
        self.seed = seed
        self.hashes = _Hashes()
        self.pending: list[bytes] = []  # keys of rows read one by one (arrowscan.row_key), hashed in batches
        self.sample: list[dict] = []
        self.csample: list[int] = []
        self.previews: list[tuple[str, dict]] = []
        self.empty = 0
        self.placeholders: dict[str, int] = {}  # {{name}} → rows holding it
        self.placeholder_rows = 0
        self.cmin: int | None = None
        self.cmax: int | None = None
        self.i = 0

    def add_row(self, loc: str, row: dict) -> None:
        texts = row_texts(row)
        if any(not t.strip() for t in texts):
            self.empty += 1
        joined = "".join(texts)  # (one string: its length and a substring test beat two loops over texts)
        if "{{" in joined:
            found = {m for t in texts for m in PLACEHOLDER.findall(t)}
            if found:
                self.placeholder_rows += 1
                for m in found:
                    self.placeholders[m] = self.placeholders.get(m, 0) + 1
        self.pending.append(arrowscan.row_key(row))
        if len(self.pending) >= HASH_SLICE:
            self.flush()
        n_chars = len(joined)
        self.cmin = n_chars if self.cmin is None else min(self.cmin, n_chars)
        self.cmax = n_chars if self.cmax is None else max(self.cmax, n_chars)
        if len(self.previews) < self.preview_rows:
            self.previews.append((loc, row))
        i = self.i
        if i < self.k:
            self.sample.append(row)
            self.csample.append(n_chars)
        else:
            j = self.rng.randrange(i + 1)
            if j < self.k:
                self.sample[j] = row
                self.csample[j] = n_chars
        self.i += 1

    def add_block(self, b: "arrowscan.Block") -> None:
        """A block of valid rows checked on columns (no blank text, no placeholder: see engine.data.arrowscan)."""
        import numpy as np

        n = len(b)
        self.flush()
        self.hashes.add(b.hashes())  # (made in the parsing thread: scan_file(hashed=True))
        lo, hi = int(b.nchars.min()), int(b.nchars.max())
        self.cmin = lo if self.cmin is None else min(self.cmin, lo)
        self.cmax = hi if self.cmax is None else max(self.cmax, hi)
        for p in range(min(n, self.preview_rows - len(self.previews))):
            self.previews.append((b.loc(p), b.row(p)))
        # the reservoir: rows while it fills, then row i replaces a random slot j ≤ i when j < k — of the rows of
        # this block that replace one, only the last into each slot stays: only those are made into rows
        fill = max(0, min(n, self.k - self.i))
        if fill:
            self.sample.extend(b.rows(range(fill)))
            self.csample.extend(b.nchars[:fill].tolist())
        if fill < n:
            if self.np_rng is None:
                self.np_rng = np.random.default_rng(self.seed)
            idx = np.arange(self.i + fill, self.i + n, dtype=np.int64)
            js = self.np_rng.integers(0, idx + 1)
            hit = np.flatnonzero(js < self.k)
            slots, last = np.unique(js[hit][::-1], return_index=True)
            at = fill + hit[::-1][last]
            for j, row, c in zip(slots.tolist(), b.rows(at), b.nchars[at].tolist()):
                self.sample[j] = row
                self.csample[j] = c
        self.i += n


    def flush(self) -> None:
        if self.pending:
            self.hashes.add(arrowscan.key_hashes(self.pending))
            self.pending = []


def check(path: str, fmt: str, *, stage: str | None = None, max_length: int | None = None,
          tokenizer: Any = None, tokenizer_name: str | None = None, allow_invalid: float = 0.0,
          res: dict | None = None, secrets: dict | None = None, profile: str | None = None,
          token_sample: int = TOKEN_SAMPLE, preview_rows: int = PREVIEW_ROWS, seed: int = 0,
          template_fallback: str | None = None, progress: Any = None) -> dict:
    """Validate one data file; returns the report dict (``report["ok"]`` tells pass/fail).

    ``progress(rows, bytes_done, bytes_total)`` is called as the rows stream (per block of the fast path, every
    :data:`PROGRESS_ROWS` rows otherwise); ``bytes_total`` is 0 when the sizes are not known."""
    t0 = time.perf_counter()
    rep: dict[str, Any] = {
        "source": path, "format": fmt, "stage": stage, "ok": True, "errors": [], "warnings": [],
        "rows": {"total": 0, "valid": 0, "invalid": 0, "invalid_pct": 0.0},
        "invalid_rows": [], "invalid_more": 0, "allowed_invalid_pct": float(allow_invalid or 0.0),
        "dropped": 0, "compat": None, "duplicates": 0, "empty_strings": 0, "chars": None,
        "tokens": None, "preview": [],
    }
    # trainer ↔ format
    if stage:
        msg = check_compat(fmt, stage, profile)
        rep["compat"] = {"ok": msg is None, "stage": stage, "allowed": list(allowed_formats(stage, profile)),
                         "message": msg}
        if msg:
            rep["errors"].append(msg)
    elif check_compat(fmt, None):
        rep["errors"].append(check_compat(fmt, None))
        rep["ok"] = False
        return rep
    try:
        srcs = open_sources(path, fmt, stage, profile, res or {}, secrets)
    except DataError as e:
        rep["errors"].append(str(e))
        rep["ok"] = False
        rep["elapsed_s"] = round(time.perf_counter() - t0, 3)
        return rep
    rep["source"] = display = ", ".join(s.display for s, _ in srcs)
    # what the first rows look like: another format is said (before hundreds of "missing key" lines), and
    # what the row's extra keys are used for
    first = first_rows([s for s, f in srcs if f == fmt][:1])
    rep["detected"] = detect_format(first)
    rep["extra_keys"] = extra_keys(fmt, first)
    hint = format_hint(fmt, first)

    counts = ScanCounts()
    acc = _Stats(token_sample, preview_rows, seed)
    fast = arrowscan.fast_paths(srcs, stage)
    total_bytes = sum(arrowscan.source_bytes(fs) for files in fast if files for fs in files) if all(fast) else 0
    done_bytes = 0

    def advance(n: int) -> None:
        nonlocal done_bytes
        done_bytes += n
        if progress is not None:
            progress(counts.total, done_bytes, total_bytes)

    try:
        for (src, f), files in zip(srcs, fast):
            if files is None:
                for loc, row in scan(src, f, counts, materialize_images=False, stage=stage):
                    acc.add_row(loc, row)
                    if progress is not None and counts.total % PROGRESS_ROWS == 0:
                        progress(counts.total, 0, 0)
                continue
            for fs in files:
                for part in arrowscan.counted(fs, f, counts, advance=advance, hashed=True):
                    if isinstance(part, list):
                        for loc, row in part:
                            acc.add_row(loc, row)
                    else:
                        acc.add_block(part)
    except DataError as e:
        rep["errors"].append(str(e))
    acc.flush()
    if progress is not None:
        progress(counts.total, total_bytes, total_bytes)
    hashes, empty, placeholders, placeholder_rows = acc.hashes, acc.empty, acc.placeholders, acc.placeholder_rows
    cmin, cmax, csample, sample, previews = acc.cmin, acc.cmax, acc.csample, acc.sample, acc.previews

    rep["rows"] = {"total": counts.total, "valid": counts.valid, "invalid": counts.invalid,
                   "invalid_pct": round(counts.invalid_pct, 4)}
    rep["invalid_rows"] = [x.as_dict() for x in counts.listed]
    rep["invalid_more"] = max(0, counts.invalid - MAX_LISTED_INVALID)
    rep["duplicates"] = hashes.duplicates()
    rep["duplicates_sampled"] = 2 ** hashes.level  # (1: counted exactly; N: estimated from 1 row in N)
    rep["empty_strings"] = empty
    if csample:
        cs = sorted(csample)
        rep["chars"] = {"min": cmin, "median": int(statistics.median(cs)), "p95": _percentile(cs, 0.95),
                        "max": cmax, "sampled_rows": len(cs)}
    if counts.total == 0 and not rep["errors"]:
        rep["errors"].append(f"{display}: no rows")
    elif counts.total and counts.valid == 0:
        first = f"; first: {counts.listed[0]}" if counts.listed else ""
        rep["errors"].append(f"{display}: no valid rows ({counts.invalid} invalid){first}")
    elif counts.invalid_pct > rep["allowed_invalid_pct"] + 1e-12:
        first = f"; first: {counts.listed[0]}" if counts.listed else ""
        rep["errors"].append(f"{display}: {counts.invalid} of {counts.total} rows invalid "
                             f"({counts.invalid_pct:.2f}%, allowed {rep['allowed_invalid_pct']:g}%){first}")
    elif counts.invalid:
        rep["dropped"] = counts.invalid
        rep["warnings"].append(f"{counts.invalid} invalid rows will be dropped "
                               f"({counts.invalid_pct:.2f}% ≤ allowed {rep['allowed_invalid_pct']:g}%)")
    if hint:
        rep["hint"] = hint
        (rep["errors"] if rep["errors"] else rep["warnings"]).insert(0, hint)
    if rep["duplicates"]:
        rep["warnings"].append(f"{rep['duplicates']} duplicate rows" if hashes.level == 0 else
                               f"about {rep['duplicates']} duplicate rows (estimated from 1 row in "
                               f"{2 ** hashes.level}, chosen by hash)")
    if empty:
        rep["warnings"].append(f"{empty} rows with an empty string")
    rep["placeholders"] = {"rows": placeholder_rows, "names": dict(sorted(placeholders.items(), key=lambda kv: -kv[1]))}
    if placeholder_rows:
        names = ", ".join(list(rep["placeholders"]["names"])[:4])
        rep["warnings"].append(f"{placeholder_rows} rows hold template placeholders ({names}): unless they are "
                               f"meant literally, fill them in first — the model learns them as written")

    # token lengths and the preview through the tokenizer's chat template
    if tokenizer is not None and sample:
        from engine.data.tokenize import tokenize_row

        lengths, over, lost, no_trained = [], 0, 0, 0
        template_errors: list[str] = []
        for row in sample:
            try:
                out = tokenize_row(tokenizer, row, stage, None)
            except DataError as e:
                template_errors.append(str(e))
                continue
            n = len(out["input_ids"])
            lengths.append(n)
            if max_length and n > max_length:
                over += 1
                lost += n - max_length
                if not any(x != -100 for x in out["labels"][:max_length]):
                    no_trained += 1
        if template_errors:
            rep["errors"].append(f"{len(template_errors)} of {len(sample)} rows checked: {template_errors[0]}")
        ls = sorted(lengths) or [0]
        k, n_valid = len(lengths), counts.valid
        scale = n_valid / k if k else 1.0
        rep["tokens"] = {
            "tokenizer": tokenizer_name or getattr(tokenizer, "name_or_path", "?"),
            "chat_template": bool(getattr(tokenizer, "chat_template", None)) and not template_fallback,
            "sampled_rows": k, "exact": k == n_valid,
            "min": ls[0], "median": int(statistics.median(ls)), "p95": _percentile(ls, 0.95), "max": ls[-1],
            # tokens a training sequence holds per row (after truncation): packing and the time estimate use it
            "mean_trained_length": round(statistics.fmean(min(n, max_length) if max_length else n for n in ls), 1),
            "max_length": max_length,
            "over_max": round(over * scale), "tokens_lost": round(lost * scale),
            "no_trained_tokens_after_truncation": round(no_trained * scale),
        }
        if over:
            est = "" if k == n_valid else " (estimated from a sample)"
            lost_all = rep["tokens"]["no_trained_tokens_after_truncation"]
            rep["warnings"].append(f"{rep['tokens']['over_max']} rows exceed max length {max_length} and are "
                                   f"truncated, {rep['tokens']['tokens_lost']} tokens lost; {lost_all} of them "
                                   f"lose their whole answer and are dropped{est}")
        from engine.data.preview import inspect_rows

        # the first rows as the worker renders them: trained / masked spans and what is wrong with them
        mask = inspect_rows(tokenizer, previews, stage, max_length, template_fallback)
        msgs = {loc: _preview_messages(row) for loc, row in previews}
        rep["preview"] = [{**r, "messages": msgs[r["location"]]} for r in mask.pop("rows")]
        rep["loss_mask"] = mask
    else:
        rep["preview"] = [{"location": loc, "messages": _preview_messages(row), "segments": plain_preview(row)}
                          for loc, row in previews]

    rep["ok"] = not rep["errors"]
    rep["elapsed_s"] = round(time.perf_counter() - t0, 3)
    return rep


def preview_counts(p: dict) -> str:
    """``, 52 tokens: 40 prompt (masked) + 12 trained, 8 cut`` for one previewed row."""
    if "tokens" not in p:
        return ""
    cut = f", {p['truncated']} cut by max length" if p.get("truncated") else ""
    return f", {p['tokens']} tokens: {p['prompt_tokens']} prompt (masked) + {p['trained_tokens']} trained{cut}"


def mask_lines(rep: dict) -> list[str]:
    """The loss-mask summary: the end-of-turn marker trained, and one line per problem."""
    m = rep.get("loss_mask")
    if not m:
        return []
    eot = m.get("end_of_turn")
    template = "ChatML fallback" if m.get("fallback") else "the tokenizer's template"
    marker = f"end-of-turn marker {eot}" if eot else "no end-of-turn marker"
    out = [] if rep.get("stage") == "pretrain" else [f"loss mask: {marker}; {template}"]
    if m.get("note"):
        out.append(f"note: {m['note']}")
    out += [f"mask problem: {x}" for x in m.get("problems", [])]
    return out


def format_report(rep: dict, color: bool = False, with_preview: bool = True) -> str:
    """The report as text for the terminal (``with_preview=False``: without the rows, printed apart)."""
    def mark(s: str) -> str:
        if color:
            return f"\x1b[1;32m{s}\x1b[0m"
        return f"⟦{s}⟧"

    L: list[str] = []
    r = rep["rows"]
    L.append(f"data check: {rep['source']} (format {rep['format']}"
             f"{', trainer ' + rep['stage'] if rep.get('stage') else ''})")
    L.append(f"rows: {r['total']} total, {r['valid']} valid, {r['invalid']} invalid "
             f"({r['invalid_pct']:.2f}%; allowed {rep['allowed_invalid_pct']:g}%)")
    if rep["invalid_rows"]:
        L.append("invalid rows:")
        for x in rep["invalid_rows"]:
            L.append(f"  {x['location']}  {x['field'] + ': ' if x['field'] else ''}{x['reason']}")
        if rep["invalid_more"]:
            L.append(f"  … and {rep['invalid_more']} more")
    c = rep.get("compat")
    if c:
        L.append(f"trainer: {'ok' if c['ok'] else 'NOT COMPATIBLE'} — {rep['format']} → {c['stage']} "
                 f"(allowed: {', '.join(c['allowed'])})")
    est = f" (estimated from 1 row in {rep['duplicates_sampled']})" if rep.get("duplicates_sampled", 1) > 1 else ""
    L.append(f"duplicates: {rep['duplicates']} rows{est}; empty strings: {rep['empty_strings']} rows")
    ch = rep.get("chars")
    if ch:
        L.append(f"characters per row: min {ch['min']} · median {ch['median']} · p95 {ch['p95']} · max {ch['max']}")
    t = rep.get("tokens")
    if t:
        samp = "all rows" if t["exact"] else f"sample of {t['sampled_rows']} rows"
        L.append(f"tokens ({t['tokenizer']}{', chat template' if t['chat_template'] else ''}; {samp}): "
                 f"min {t['min']} · median {t['median']} · p95 {t['p95']} · max {t['max']}")
        if t["max_length"]:
            L.append(f"  over max length {t['max_length']}: {t['over_max']} rows, {t['tokens_lost']} tokens lost")
    elif rep["rows"]["valid"]:
        L.append("tokens: pass --tokenizer (a model folder or finetui:tiny-llama) for token lengths")
    if rep.get("preview") and with_preview:
        L.append("preview (trained tokens " + ("in green" if color else "marked ⟦…⟧") + "):")
        for p in rep["preview"]:
            L.append(f"── {p['location']}{preview_counts(p)}")
            text = "".join(mark(s["text"]) if s["trained"] and s["text"] else s["text"] for s in p["segments"])
            L.extend("  " + ln for ln in text.rstrip("\n").split("\n"))
            L.extend(f"  ! {x}" for x in p.get("problems", []))
    if with_preview:  # (printed apart: with the rows)
        L.extend(mask_lines(rep))
    for k, use in (rep.get("extra_keys") or {}).items():
        L.append(f"key `{k}`: {use}")
    for w in rep.get("warnings", []):
        L.append(f"warning: {w}")
    for e in rep.get("errors", []):
        L.append(f"error: {e}")
    L.append("result: " + ("OK" if rep["ok"] else "FAILED"))
    return "\n".join(L)
