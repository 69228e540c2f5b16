"""TRL trainer per stage / preference loss, with the common TrainingArguments."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from engine.estimate import SMALL_LOGITS
from engine.schema import packs
from engine.launch.rundir import CHECKPOINTS_DIR
from engine.train.modeling import UserError, precision

# preference_loss → (trainer family, DPO loss_type)
DPO_LOSSES = {"sigmoid": "sigmoid", "hinge": "hinge", "ipo": "ipo"}


def deepspeed_config(res: dict, device: str) -> dict:
    """The ZeRO config of the job: the one ``finetui export`` writes for LLaMA-Factory (engine/dsconfig.py), with
    the job's resolved precision in place of ``auto``: the ZeRO-3 config that is alive while the model is built
    (HfDeepSpeedConfig) is read before the trainer fills ``auto`` in, and DeepSpeed takes an ``auto`` precision
    there for off — a bf16 checkpoint was partitioned (and trained) in float32."""
    from engine.dsconfig import for_job

    cfg = for_job(res)
    bf16, fp16 = precision(res, device)
    cfg["bf16"]["enabled"], cfg["fp16"]["enabled"] = bf16, fp16
    return cfg


def fsdp_config(res: dict) -> dict[str, Any]:
    """The ``fsdp_config`` of TrainingArguments for ``distributed_backend = fsdp``: FSDP2 through accelerate, each
    decoder layer its own unit (TRANSFORMER_BASED_WRAP: the model's ``_no_split_modules``, e.g.
    LlamaDecoderLayer), activation checkpointing FSDP's own (the Trainer's adds an all-gather in backward)."""
    return {"version": 2, "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
            "reshard_after_forward": res["trainer.fsdp_sharding"] != "shard_grad_op",
            "cpu_offload": bool(res["trainer.fsdp_cpu_offload"]),
            "state_dict_type": "SHARDED_STATE_DICT" if res["trainer.fsdp_state_dict"] == "sharded"
            else "FULL_STATE_DICT",
            "activation_checkpointing": bool(res["runtime.gradient_checkpointing"])}


def _checkpointing_args(on: bool) -> dict[str, Any]:
    """Gradient checkpointing in TrainingArguments: ``activation_checkpointing`` from transformers 5.2x on (the
    old names warn in every run's log), ``gradient_checkpointing`` before."""
    import dataclasses

    from transformers import TrainingArguments

    name = "activation" if "activation_checkpointing" in {f.name for f in dataclasses.fields(TrainingArguments)} \
        else "gradient"
    return {f"{name}_checkpointing": on, f"{name}_checkpointing_kwargs": {"use_reentrant": False} if on else None}


def common_args(res: dict, run_dir: Path, device: str, has_eval: bool, report_to: list[str]) -> dict[str, Any]:
    bf16, fp16 = precision(res, device)
    sched = res["runtime.lr_scheduler"]
    sched_kw: dict[str, Any] = {}
    if sched == "constant":
        sched = "constant_with_warmup"
    elif sched == "cosine" and float(res["runtime.min_lr"] or 0) > 0:
        sched, sched_kw = "cosine_with_min_lr", {"min_lr": float(res["runtime.min_lr"])}
    warm: float = int(res["runtime.lr_warmup_steps"] or 0) or float(res["runtime.lr_warmup_ratio"] or 0.0)
    ev = res["eval.evaluation_strategy"] if has_eval else "no"
    save = res["eval.checkpoint_strategy"]
    kw: dict[str, Any] = dict(
        output_dir=str(run_dir / CHECKPOINTS_DIR),
        per_device_train_batch_size=int(res["general.batch_size"]),
        per_device_eval_batch_size=int(res["general.batch_size"]),
        gradient_accumulation_steps=int(res["runtime.gradient_accumulation_steps"]),
        num_train_epochs=float(res["general.epochs"] or 1),
        max_steps=int(res["general.max_steps"]) if res["general.max_steps"] else -1,
        learning_rate=float(res["general.learning_rate"]),
        lr_scheduler_type=sched, lr_scheduler_kwargs=sched_kw, warmup_steps=warm,
        # (on CUDA the fused AdamW: one kernel per parameter group instead of a handful per tensor)
        optim="sgd" if res["runtime.optimizer"] == "sgd" else "adamw_torch_fused" if device == "cuda" else "adamw_torch",
        adam_beta1=float(res["runtime.adam_beta1"]), adam_beta2=float(res["runtime.adam_beta2"]),
        adam_epsilon=float(res["runtime.adam_epsilon"]), weight_decay=float(res["runtime.weight_decay"]),
        max_grad_norm=float(res["runtime.max_grad_norm"]),
        bf16=bf16, fp16=fp16,
        **_checkpointing_args(bool(res["runtime.gradient_checkpointing"])),
        logging_strategy="steps", logging_steps=max(1, int(res["eval.logging_steps"] or 1)),
        eval_strategy=ev, eval_steps=int(res["eval.eval_steps"] or 1) if ev == "steps" else None,
        save_strategy=save,
        save_steps=int(res["eval.checkpoint_steps"]) if save == "steps" else 500,
        save_total_limit=res["eval.checkpoint_limit"],
        seed=int(res["runtime.seed"]), data_seed=int(res["runtime.seed"]),
        full_determinism=bool(res["runtime.full_determinism"]),
        report_to=report_to, run_name=run_dir.name,
        # several nodes, each with its run directory on its own disk: every node keeps whole checkpoints (resume
        # and load-best-at-end read them there; node 0 alone had them, the others' folders were incomplete)
        save_on_each_node=len(res.get("launch.hosts") or []) > 1,
        disable_tqdm=True, use_cpu=device != "cuda",
        dataloader_num_workers=0, ddp_find_unused_parameters=False, ddp_timeout=int(res["runtime.ddp_timeout"]),
        include_num_input_tokens_seen="non_padding",  # real tokens/s: padding is not throughput
        use_liger_kernel=bool(res["runtime.liger_kernel"]) and device == "cuda",
    )
    if res["data.group_by_length"]:
        kw["train_sampling_strategy"] = "group_by_length"
    if ev != "no":  # the checkpoint table marks the best; save_best_checkpoint also ends with it
        kw["metric_for_best_model"] = "eval_loss"
        kw["greater_is_better"] = False
        kw["load_best_model_at_end"] = bool(res["eval.save_best_checkpoint"])
    if res["trainer.distributed_backend"] == "deepspeed":
        kw["deepspeed"] = deepspeed_config(res, device)
    elif res["trainer.distributed_backend"] == "fsdp":
        kw["fsdp"], kw["fsdp_config"] = True, fsdp_config(res)
        kw.update(_checkpointing_args(False))
    return kw


def to_unpaired(rows: Iterable[dict]) -> Iterator[dict]:
    """Preference pairs → KTO rows (chosen: desirable, rejected: undesirable)."""
    for r in rows:
        if "label" in r:
            yield r
            continue
        yield {"prompt": r["prompt"], "completion": r["chosen"], "label": True}
        yield {"prompt": r["prompt"], "completion": r["rejected"], "label": False}


def rows_dataset(rows: Any, keys: tuple[str, ...] | None, status: Callable[..., None], what: str = "training",
                 unpaired: bool = False) -> Any:
    """Canonical rows for a trainer that tokenizes them itself: a list → ``Dataset.from_list``; streamed
    :class:`engine.data.loader.Rows` → an Arrow file in the host's cache, memory-mapped (never a list)."""
    from datasets import Dataset

    from engine.data.loader import Rows

    if rows is None:
        return None
    if isinstance(rows, Rows):
        from engine.data.tokcache import arrow_rows

        return arrow_rows(rows, keys, to_unpaired if unpaired else None, what, status) if rows else None
    rows = list(to_unpaired(rows)) if unpaired else rows
    return Dataset.from_list(_strip(rows, keys) if keys else rows) if rows else None


def _strip(rows: list[dict] | None, keys: tuple[str, ...]) -> list[dict] | None:
    if rows is None:
        return None
    return [{k: r[k] for k in keys if k in r} for r in rows]


def _image_parts(messages: list[dict]) -> list[dict]:
    """Messages whose ``<image>`` tokens become typed image parts, every turn's content a list of parts: TRL's
    vision collators fill these placeholders with the row's images in order (a turn left as a string would get
    them all before its text)."""
    from engine.data.formats import IMAGE_TOKEN

    out = []
    for m in messages:
        parts: list[dict] = []
        for i, text in enumerate(m["content"].split(IMAGE_TOKEN)):
            if i:
                parts.append({"type": "image", "text": None})
            if text:
                parts.append({"type": "text", "text": text})
        out.append({**m, "content": parts})
    return out


def vision_data(res: dict, tok: Any, model: Any, rows: list[dict] | None, convo: str,
                keys: tuple[str, ...]) -> tuple[Any, Any]:
    """Image rows for TRL's vision collators: the model's processor (AutoProcessor, the prepared tokenizer in it)
    and a Dataset whose ``convo`` turns carry image parts and whose ``images`` (paths) are read lazily, as
    ``datasets.Image`` decodes them when a batch is built. Refuses a text model in one line."""
    if not hasattr(model.config, "vision_config"):
        raise UserError("data.format: rows with images need a vision-language model; "
                        f"{res['model.name_or_path']} is a text model")
    from datasets import Dataset, Image, Sequence
    from transformers import AutoProcessor

    from engine.tiny import resolve_model_path

    processor = AutoProcessor.from_pretrained(resolve_model_path(res["model.name_or_path"]),
                                              trust_remote_code=res["model.trust_remote_code"])
    processor.tokenizer = tok
    if rows is None:
        return processor, None
    data = Dataset.from_list([{**{k: r[k] for k in keys if k in r}, convo: _image_parts(r[convo]),
                               "images": list(r.get("images") or [])} for r in rows])
    return processor, data.cast_column("images", Sequence(Image()))


def tokenize_lm(tok: Any, rows: list[dict], stage: str, max_len: int) -> tuple[list[dict], int]:
    """Pre-tokenize pretrain / SFT rows with the data module's tokenize_row (same masking as the preview); a run of
    plain-text rows is encoded in one tokenizer call (the same ids)."""
    from engine.data.tokenize import tokenize_row, tokenize_texts

    out, truncated = [], 0
    texts = [r["text"] for r in rows] if all("text" in r for r in rows) else None
    done = tokenize_texts(tok, texts, max_len) if texts is not None else (tokenize_row(tok, r, stage, max_len)
                                                                         for r in rows)
    for t in done:
        truncated += 1 if t.get("truncated") else 0
        if stage == "pretrain" or any(lbl != -100 for lbl in t["labels"]):
            out.append({"input_ids": t["input_ids"], "labels": t["labels"]})
    return out, truncated


def pc_sum(ds: Any, column: str) -> list[int]:
    """The sums of an Arrow list column's values, chunk by chunk (no row read into Python)."""
    import pyarrow.compute as pc

    col = ds.data.table.column(column) if hasattr(ds.data, "table") else ds.data.column(column)
    return [int(pc.sum(pc.list_flatten(c)).as_py() or 0) for c in col.chunks]


#: streaming mode: rows tokenized (and packed) a window at a time; shuffled within a buffer
STREAM_WINDOW = 2000
STREAM_BUFFER = 10_000


def streamed_lm(tok: Any, rows: Any, stage: str, max_len: int, pack: bool, seed: int) -> Any:
    """``data.streaming``: an ``IterableDataset`` that reads the rows from their sources, tokenizes them (and packs
    them, best-fit decreasing within each window of :data:`STREAM_WINDOW` rows) while training — nothing cached
    on disk; shuffled within a buffer of :data:`STREAM_BUFFER` rows, each epoch with another seed."""
    from datasets import Features, IterableDataset, List, Value

    from engine.data.tokcache import chunks
    from engine.train.packing import pack_rows

    feats = {"input_ids": List(Value("int32")), "labels": List(Value("int32"))}
    if pack:
        feats["seq_lengths"] = List(Value("int32"))

    def gen() -> Any:
        for part in chunks(rows, STREAM_WINDOW):
            out, _ = tokenize_lm(tok, part, stage, max_len)
            yield from (pack_rows(out, max_len) if pack else out)

    return IterableDataset.from_generator(gen, features=Features(feats)).shuffle(seed=seed,
                                                                                 buffer_size=STREAM_BUFFER)


def _packed_collator(tok: Any) -> Any:
    """The collator of packed rows (engine/train/packing.py) with the tokenizer's pad id (else EOS)."""
    from engine.train.packing import PackedRowsCollator

    return PackedRowsCollator(tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)


def _truncate_pairs(dataset: Any, max_len: int) -> tuple[Any, int]:
    """The reward trainer's tokenized pairs with chosen and rejected cut to ``max_len`` tokens; how many were cut."""
    n = sum(1 for c, r in zip(dataset["chosen_ids"], dataset["rejected_ids"]) if max(len(c), len(r)) > max_len)
    if n:
        dataset = dataset.map(lambda ex: {"chosen_ids": ex["chosen_ids"][:max_len],
                                          "rejected_ids": ex["rejected_ids"][:max_len]})
    return dataset, n


def small_logits(labels: Any, vocab: int | None) -> bool:
    """Whether a batch with these labels computes its loss from the full logits: at most ``SMALL_LOGITS`` values
    (64 MiB in float32; ``FINETUI_SMALL_LOGITS`` overrides). TRL's fused LM head (tiles of the LM head, only the
    labelled positions) keeps a large vocabulary's logits out of memory, and costs about a quarter of a small
    model's step on a CPU (bench/profile_step.py; LLaMA-Factory computes the plain way). The memory estimate counts
    whichever path a batch takes (engine/estimate.py, whose constant this is)."""
    import os

    limit = int(os.environ.get("FINETUI_SMALL_LOGITS", SMALL_LOGITS))
    return labels is not None and bool(vocab) and labels.numel() * int(vocab) <= limit


def _vocab_size(model: Any) -> int | None:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    base = getattr(base, "module", base)
    try:
        return int(base.config.get_text_config().vocab_size)
    except (AttributeError, TypeError, ValueError):
        return None


def _nll_from_logits(model: Any, inputs: dict) -> Any:
    """What TRL's fused LM head returns (per-token ``log_probs`` of the next-token labels, ``label_mask``,
    ``entropy``, ``is_top1``), computed from the model's full logits: the same loss, the plain way."""
    import torch
    from types import SimpleNamespace

    labels = inputs["labels"]
    out = model(**{k: v for k, v in inputs.items() if k != "labels"})
    # (prompt tuning puts its virtual tokens before the text: their positions lead the logits, and have no label)
    logits = out.logits[:, out.logits.shape[1] - labels.shape[1]:-1, :]
    target = labels[:, 1:]
    mask = target != -100
    picked = logits[mask].float()
    logp = torch.log_softmax(picked, dim=-1)
    tokens = target[mask]
    log_probs = torch.zeros(target.shape, dtype=logp.dtype, device=logp.device)
    log_probs[mask] = logp.gather(-1, tokens[:, None]).squeeze(-1)
    with torch.no_grad():
        entropy = -logp.exp().mul_(logp).sum(-1)  # (one temporary the size of the log-softmax)
        is_top1 = picked.argmax(-1) == tokens
    return SimpleNamespace(log_probs=log_probs, label_mask=mask, entropy=entropy, is_top1=is_top1)


def _unpadded(inputs: dict, processing_class: Any) -> Any:
    """The input ids of a batch without an attention mask that are not the pad token (all of them when the
    tokenizer has none): the count ``num_input_tokens_seen`` makes (transformers' Trainer, ``non_padding``)."""
    import torch

    ids = inputs["input_ids"]
    pad = getattr(getattr(processing_class, "tokenizer", processing_class), "pad_token_id", None)
    return (ids != pad).sum() if pad is not None else torch.tensor(ids.numel(), device=ids.device)


def sft_trainer_class() -> type:
    """TRL's ``SFTTrainer`` whose per-token training metrics (entropy, token accuracy, tokens seen) are gathered
    across ranks and read back only when the trainer logs. TRL gathers and reads them (``.item()``) at every step:
    four collectives on several ranks and four device syncs a step, for values shown at logging steps only. The
    loss is TRL's own computation, unchanged (the same ops); the logged values are the same (to float rounding)."""
    import torch
    from trl import SFTTrainer as TRLSFTTrainer

    class SFTTrainer(TRLSFTTrainer):
        _pending: list

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: ANN001
            sp = getattr(self.accelerator, "parallelism_config", None)
            if (return_outputs or not self.model.training or self.compute_loss_func is not None
                    or self.label_smoother is not None or self.args.loss_type != "nll" or self.aux_loss_enabled
                    or (sp is not None and getattr(sp, "sp_enabled", False))):
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            # TRL's plain negative log-likelihood branch (trl/trainer/sft_trainer.py, compute_loss), as it is — or,
            # where the batch's logits are small, the same loss from them (see small_logits)
            inputs["use_cache"] = False
            if "_vocab" not in self.__dict__:
                self._vocab = _vocab_size(model)
            if small_logits(inputs.get("labels"), self._vocab):
                outputs = _nll_from_logits(model, inputs)
            else:
                outputs = model(**inputs, fused_lm_head=True)
            per_token_loss = -outputs.log_probs
            num_tokens = outputs.label_mask.sum() if num_items_in_batch is None else num_items_in_batch
            loss = per_token_loss.sum() / torch.as_tensor(num_tokens).clamp(min=1)
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * (self.accelerator.num_processes // self.get_tp_size())
            with torch.no_grad():
                if "attention_mask" in inputs:
                    seen = inputs["attention_mask"].sum()
                else:  # packed rows (batch × longest, no mask): what transformers' tokens-seen counts, not TRL's
                    seen = _unpadded(inputs, self.processing_class)  # size(1), which assumes one flat row
                row = [outputs.label_mask.sum(), outputs.entropy.detach().sum(), outputs.is_top1.sum(), seen]
                self.__dict__.setdefault("_pending", []).append(torch.stack([x.float() for x in row]))
            return loss

        def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
            pending = self.__dict__.get("_pending")
            if pending:  # every rank logs at the same steps, with as many pending micro-batches
                self._pending = []
                steps = self.accelerator.gather(torch.stack(pending)[None]).sum(0).tolist()
                m = self._metrics["train"]
                for valid, entropy, correct, seen in steps:
                    m["entropy"].append(entropy / valid if valid > 0 else 0.0)
                    m["mean_token_accuracy"].append(correct / valid if valid > 0 else 0.0)
                    self._total_train_tokens += int(seen) // self._tp_size
                m["num_tokens"] = [self._total_train_tokens]
            super().log(logs, start_time)

    return SFTTrainer


#: indices of a shuffled epoch made into Python ints at a time (see lean_shuffle)
SHUFFLE_CHUNK = 65536


def lean_shuffle() -> None:
    """torch's ``RandomSampler`` (and accelerate's seedable one, which calls it) turns each epoch's permutation into
    one Python list: ~72 bytes per row in every rank — 150 MB per rank for 2M packed rows, growing with the corpus.
    Its ``__iter__`` is replaced by one that yields the same permutation a chunk at a time from the tensor (8 bytes a
    row): the same order, draw for draw."""
    import torch
    from torch.utils.data import RandomSampler

    if getattr(RandomSampler.__iter__, "_finetui_lean", False):
        return
    original = RandomSampler.__iter__

    def chunks(perm: Any) -> Iterator[int]:
        for at in range(0, len(perm), SHUFFLE_CHUNK):
            yield from perm[at:at + SHUFFLE_CHUNK].tolist()

    def __iter__(self: Any) -> Iterator[int]:
        if self.replacement:
            yield from original(self)
            return
        n = len(self.data_source)
        if self.generator is None:  # (as torch: a seed drawn from the global generator)
            seed = int(torch.empty((), dtype=torch.int64).random_().item())
            generator = torch.Generator()
            generator.manual_seed(seed)
        else:
            generator = self.generator
        for _ in range(self.num_samples // n):
            yield from chunks(torch.randperm(n, generator=generator))
        yield from chunks(torch.randperm(n, generator=generator)[: self.num_samples % n])

    __iter__._finetui_lean = True  # type: ignore[attr-defined]
    RandomSampler.__iter__ = __iter__  # type: ignore[method-assign]


def lean_steps(trainer: Any) -> Any:
    """transformers' Trainer does four things at every step that walk the whole model (every module or every
    parameter, frozen ones included — a LoRA model's base is most of them): ``model.train()``, the step's FLOPs
    (``num_parameters`` counts the parameters again), the gradient clipping (over ``model.parameters()``) and
    ``model.zero_grad()``. About 1 ms a step on the tiny model (~6 % of its step on a CPU), more on a model of
    hundreds of modules. The same values, once: the parameter count is counted once; clipping and zeroing go
    over the parameters that can hold a gradient (the others hold none); ``model.train()`` is skipped when every
    module is in training mode already (read from a list made once: an evaluation — under DDP it turns off the
    wrapped module, not the wrapper — or anything else that turned one off makes the step call it). Under DeepSpeed
    or FSDP the trainer's own methods are kept: their engines do more in ``train()`` and clip their own way."""
    import types

    from transformers import Trainer
    from transformers.utils import is_sagemaker_mp_enabled

    if trainer.is_deepspeed_enabled or trainer.is_fsdp_enabled:
        return trainer
    counted: dict[int, int] = {}
    trainable: dict[int, list] = {}

    def params_of(model: Any) -> list:  # (the parameters that can hold a gradient, listed once per model)
        if id(model) not in trainable:
            trainable[id(model)] = [p for p in model.parameters() if p.requires_grad]
        return trainable[id(model)]

    if type(trainer).floating_point_ops is Trainer.floating_point_ops:
        def floating_point_ops(self: Any, inputs: dict) -> int:
            main, m = getattr(self.model, "main_input_name", "input_ids"), self.model
            if main not in inputs or not hasattr(m, "num_parameters"):
                return 0
            if id(m) not in counted:
                counted[id(m)] = m.num_parameters(exclude_embeddings=True)
            return 6 * inputs[main].numel() * counted[id(m)]

        trainer.floating_point_ops = types.MethodType(floating_point_ops, trainer)

    if type(trainer)._clip_grad_norm is Trainer._clip_grad_norm:
        def _clip_grad_norm(self: Any, model: Any) -> Any:
            mixed = getattr(self, "_has_mixed_mesh_grads", None)  # (transformers ≥ 5.2x: tensor-parallel grads)
            if is_sagemaker_mp_enabled() or (mixed is not None and mixed(model)):
                return Trainer._clip_grad_norm(self, model)
            return self.accelerator.clip_grad_norm_(params_of(model), self.args.max_grad_norm)

        trainer._clip_grad_norm = types.MethodType(_clip_grad_norm, trainer)

    step = trainer.training_step
    modules: dict[int, list] = {}  # (every module under the model the loop trains, listed once)

    def zero_grad(model: Any) -> Callable[..., None]:
        params = params_of(model)

        def zero_grad(set_to_none: bool = True) -> None:  # (torch's Module.zero_grad, over these parameters)
            for p in params:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                    continue
                if p.grad.grad_fn is not None:
                    p.grad.detach_()
                else:
                    p.grad.requires_grad_(False)
                p.grad.zero_()
        return zero_grad

    def training_step(model: Any, *args: Any, **kwargs: Any) -> Any:
        if "zero_grad" not in model.__dict__:  # (the loop's model.zero_grad() after each optimizer step)
            model.zero_grad = zero_grad(model)
        if id(model) not in modules:
            modules[id(model)] = list(model.modules())
        if not all(m.training for m in modules[id(model)]):  # (an evaluation, or anything else, turned one off)
            return step(model, *args, **kwargs)
        model.train = lambda mode=True: model  # (this step's call: the model is in training mode already)
        try:
            return step(model, *args, **kwargs)
        finally:
            del model.train

    trainer.training_step = training_step
    return trainer


def build_trainer(res: dict, model: Any, tok: Any, train_rows: list[dict], eval_rows: list[dict] | None,
                  base_args: dict[str, Any], callbacks: list, optimizer: Any, status: Callable[..., None]) -> Any:
    """The TRL trainer of the job's stage (see :func:`lean_steps`)."""
    return lean_steps(_build_trainer(res, model, tok, train_rows, eval_rows, base_args, callbacks, optimizer, status))


def _build_trainer(res: dict, model: Any, tok: Any, train_rows: list[dict], eval_rows: list[dict] | None,
                   base_args: dict[str, Any], callbacks: list, optimizer: Any, status: Callable[..., None]) -> Any:
    lean_shuffle()
    from datasets import Dataset

    stage = res["trainer.stage"]
    max_len = int(res["general.max_sequence_length"])
    opt = (optimizer, None) if optimizer is not None else (None, None)
    from datasets import IterableDataset

    ds = lambda rows: (rows if isinstance(rows, (Dataset, IterableDataset))  # noqa: E731
                       else Dataset.from_list(rows) if rows else None)

    if stage in ("pretrain", "sft"):
        from trl import SFTConfig

        SFTTrainer = sft_trainer_class()
        vision = any(r.get("images") for r in train_rows[:50])
        streaming = bool(res.get("data.streaming")) and not vision
        if vision:
            tok, train = vision_data(res, tok, model, train_rows, "messages", ("messages",))
            evl, trunc = vision_data(res, tok.tokenizer, model, eval_rows, "messages", ("messages",))[1], 0
        else:
            from engine.data.tokcache import tokenized  # (once per data, tokenizer and length: a cached Arrow file)

            if not streaming:
                train, trunc = tokenized(tok, train_rows, stage, max_len, tokenize_lm, status)
            evl = tokenized(tok, eval_rows, stage, max_len, tokenize_lm, status, "validation")[0] if eval_rows else None
        padding_free = bool(res["data.padding_free"]) and not vision
        packing = packs(res) and not vision  # TRL packs no image rows
        collator = None
        if streaming:
            train = streamed_lm(tok, train_rows, stage, max_len, packing, int(res["runtime.seed"] or 0))
            status("tokenizing", f"streaming {len(train_rows)} training rows: read, tokenized"
                   f"{' and packed' if packing else ''} while training, shuffled within {STREAM_BUFFER:,} rows "
                   "(no cache)", rows=len(train_rows), streaming=True)
            if packing:  # (the windows' bins are the batch's rows, as below)
                collator, packing = _packed_collator(tok), False
        else:
            status("tokenizing", f"{len(train)} training rows, {trunc} truncated to {max_len} tokens",
                   rows=len(train), truncated=trunc)
        if not streaming and not train:
            raise UserError("data.train_path: no trainable rows left after tokenization "
                            f"(general.max_sequence_length = {max_len} may be too short)")
        if packing and not padding_free and res["runtime.attention_implementation"] != "flash_attention_2":
            # sdpa / eager: keep the BFD bins as the batch's rows (engine/train/packing.py); TRL's own
            # packing flattens the whole batch, which only flash-attention-2's varlen kernels make cheap
            from engine.train.packing import pack_arrow, pack_rows

            n_rows = len(train)
            if isinstance(train, Dataset):  # the cached tokens: packed on columns, once, beside them
                from engine.data.tokcache import derived

                train, _ = derived(train, f"packed-{max_len}.arrow", lambda d, p: pack_arrow(d, max_len, p))
                filled = sum(pc_sum(train, "seq_lengths"))
            else:
                train = pack_rows(train, max_len)
                filled = sum(len(r["input_ids"]) for r in train)
            fill = filled / (len(train) * max_len)
            status("tokenizing", f"packed {n_rows} rows into {len(train)} sequences of up to {max_len} tokens "
                   f"({fill:.0%} full)", packed_rows=n_rows, packed_sequences=len(train), packed_fill=round(fill, 4))
            collator, packing = _packed_collator(tok), False
        # rows from the tokenize-once cache are tokenized, truncated and filtered already: TRL's preparation (a
        # map and a filter over every row, in every rank) would change nothing; its own packing still needs it
        prepared = (streaming or isinstance(train, Dataset)) and not vision and not packing
        cfg = SFTConfig(**base_args, max_length=max_len, packing=packing,
                        padding_free=padding_free, dataset_num_proc=None, eos_token=None,
                        dataset_kwargs={"skip_prepare_dataset": True} if prepared else None)
        return SFTTrainer(model=model, args=cfg, train_dataset=ds(train), eval_dataset=ds(evl),
                          processing_class=tok, callbacks=callbacks, optimizers=opt, data_collator=collator)

    beta = float(res["preference.preference_beta"])
    if stage == "reward":
        from trl import RewardConfig, RewardTrainer

        # TRL drops every pair longer than max_length (all of them: an opaque "num_samples=0" error); finetui
        # truncates them instead, as it truncates SFT rows, and says how many
        cfg = RewardConfig(**base_args, max_length=None)
        keys = ("prompt", "chosen", "rejected")
        trainer = RewardTrainer(model=model, args=cfg, train_dataset=rows_dataset(train_rows, keys, status),
                                eval_dataset=rows_dataset(eval_rows, keys, status, "validation"), processing_class=tok,
                                callbacks=callbacks, optimizers=opt)
        trainer.train_dataset, trunc = _truncate_pairs(trainer.train_dataset, max_len)
        if trainer.eval_dataset is not None:
            trainer.eval_dataset = _truncate_pairs(trainer.eval_dataset, max_len)[0]
        status("tokenizing", f"{len(trainer.train_dataset)} training pairs, {trunc} truncated to {max_len} tokens",
               rows=len(trainer.train_dataset), truncated=trunc)
        return trainer

    loss = res["preference.preference_loss"] if stage == "dpo" else "kto"
    vision = any(r.get("images") for r in train_rows[:50])
    if vision and loss not in DPO_LOSSES:  # (TRL's KTO, ORPO and CPO trainers read no images)
        raise UserError(f"preference.preference_loss: {loss} does not train on images; rows with images train "
                        f"the DPO losses (allowed: {', '.join(DPO_LOSSES)})")
    ftx_set = stage == "dpo" and float(res["preference.preference_ftx"] or 0.0) > 0
    if ftx_set and loss in ("kto_pair", "orpo"):
        why = "ORPO's loss already contains the SFT term" if loss == "orpo" else "TRL's KTO loss has no SFT term"
        status("warning", f"preference.preference_ftx is not applied to the {loss} loss ({why})", level="warning")
    if stage == "kto" or loss == "kto_pair":
        from trl import KTOConfig, KTOTrainer

        keys = ("prompt", "completion", "label")
        train = rows_dataset(train_rows, keys, status, unpaired=True)
        evl = rows_dataset(eval_rows, keys, status, "validation", unpaired=True)
        cfg = KTOConfig(**base_args, max_length=max_len, beta=beta)
        return KTOTrainer(model=model, args=cfg, train_dataset=ds(train), eval_dataset=ds(evl),
                          processing_class=tok, callbacks=callbacks, optimizers=opt)

    keys = ("prompt", "chosen", "rejected")
    ftx = float(res["preference.preference_ftx"] or 0.0)
    if vision:
        tok, train = vision_data(res, tok, model, train_rows, "prompt", keys)
        evl = vision_data(res, tok.tokenizer, model, eval_rows, "prompt", keys)[1]
    else:
        train, evl = rows_dataset(train_rows, keys, status), rows_dataset(eval_rows, keys, status, "validation")
    if loss == "orpo":
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer

        cfg = ORPOConfig(**base_args, max_length=max_len, beta=beta)
        return ORPOTrainer(model=model, args=cfg, train_dataset=ds(train), eval_dataset=ds(evl),
                           processing_class=tok, callbacks=callbacks, optimizers=opt)
    if loss == "simpo":
        from trl.experimental.cpo import CPOConfig, CPOTrainer

        cfg = CPOConfig(**base_args, max_length=max_len, beta=beta, loss_type="simpo", cpo_alpha=ftx,
                        simpo_gamma=float(res["preference.simpo_gamma"]))
        return CPOTrainer(model=model, args=cfg, train_dataset=ds(train), eval_dataset=ds(evl),
                          processing_class=tok, callbacks=callbacks, optimizers=opt)
    from trl import DPOConfig, DPOTrainer

    lt = [DPO_LOSSES[loss]]
    weights = None
    if ftx > 0:
        lt.append("sft")
        weights = [1.0, ftx]
    cfg = DPOConfig(**base_args, max_length=max_len, beta=beta, loss_type=lt, loss_weights=weights,
                    label_smoothing=float(res["preference.dpo_label_smoothing"] or 0.0))
    return DPOTrainer(model=model, args=cfg, train_dataset=ds(train), eval_dataset=ds(evl),
                      processing_class=tok, callbacks=callbacks, optimizers=opt)
