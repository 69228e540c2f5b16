"""Memory per GPU, steps and time of a job, from its configuration and the model's config.json.

No weights are loaded and torch is not imported: the estimate is arithmetic on the
shapes :mod:`engine.modelinfo` reads.  Every part of the memory is shown with its
formula filled in with the numbers, so a user can check it by hand::

    weights     8.03B params × 4 B (fp32 master weights) = 29.9 GiB

Memory model (per GPU, the peak of a training step). The total is every part summed, except
that with one micro-batch per optimizer step under DDP the gradients (and the optimizer step's
temporaries) are counted against the activations and logits, not on top of them: the backward
pass frees the activations as it allocates the gradients —
``weights + optimizer states + overhead + max(activations + logits (+ the LM head's gradient, the
backward pass's first, when it trains), gradients + step temporaries)``:

* **weights** — trainable parameters are kept in fp32 under DDP (mixed precision is
  autocast; TRL loads in float32), in the half dtype under DeepSpeed (its fp32 master copy
  is an optimizer state); frozen parameters (LoRA / T-Few / prompt tuning / freeze) are
  loaded in the compute dtype — adapters are added to the model, so with LoRA / T-Few /
  prompt tuning every base parameter stays as a frozen one; QLoRA stores the decoder's linear weights in 4 or 8 bits
  (+ one fp32 absmax per 64 weights) and its adapters in bf16 (TRL casts them).
  ZeRO-3 and FSDP divide by the data-parallel ranks; offloaded parameters leave the GPU.
* **gradients** — one per trainable parameter, in the parameter's dtype; ZeRO-1 adds an fp32
  partition, ZeRO-2/3 partition both; FSDP reduce-scatters them (÷ ranks).
* **optimizer states** — AdamW: two moments (8 B per trainable parameter in fp32); SGD
  (momentum 0): none; DeepSpeed adds the fp32 master weights (4 B); ZeRO-1/2/3 and FSDP divide by
  the ranks; offloading moves them to CPU memory (FSDP's CPU offload: gradients too).
* **activations** — what autograd keeps for the backward pass of one micro-batch, counted tensor
  by tensor as PyTorch saves them (checked byte for byte by tests/test_estimate_activations.py). Per
  token and decoder layer, with ``a`` the bytes of the model's dtype (the residual stream; fp32 for
  QLoRA), ``c`` those of the compute dtype (autocast's, else the model's), ``q`` = heads × head_dim,
  ``kv`` = KV heads × head_dim, ``i`` = intermediate (× experts per token for MoE): each RMSNorm's
  fp32 input and rsqrt ``4·h + 4`` (+ its normalized input ``a·h`` when its weight trains); SDPA's
  q and k after RoPE, v and output ``c·(2q + 2kv)`` and its fp32 logsumexp (eager attention: q, k, v
  repeated per head and the fp32 softmax with its cast, ``heads × s`` per token); the gate and up
  outputs and act(gate) ``3·c·i``; and the inputs of the linear modules that train (a frozen Linear
  keeps no input): full fine-tuning keeps one norm output for q/k/v and one for gate/up (``a·h`` each
  — under autocast over fp32 weights each module casts its own ``c`` copy) and down_proj's ``c·i``;
  LoRA the input of each target (PEFT casts it to the adapters' dtype, autocast back to ``c``: a copy
  per target unless the dtypes agree; with dropout also the mask, 1 B on CUDA) and lora_A's output;
  T-Few each scaled module's output (down_proj: its input, in the vectors' dtype); prompt tuning
  nothing more. Under autocast over fp32 weights, each layer also keeps the ``c`` copy of its weights.
  With frozen embeddings (LoRA, T-Few, freeze) no gradient flows into the first trained layer's input:
  its first norm, and everything before its first trained module, keeps nothing. Qwen3's per-head
  q/k norms keep their fp32 inputs too. A mixture-of-experts block keeps, per token, the router's
  fp32 probabilities and top-k indices and, for each of its k experts, the gate/up output, act(gate)
  and the expert's output (plus the gathered input and the product when the experts train), and a
  shared expert's dense tensors. Plus the final norm. With gradient checkpointing only each
  layer's input (``a·h``) is kept, plus one layer recomputed.
* **logits** — SFT and pretraining (TRL's ``SFTTrainer``) never build the ``[tokens, vocab]``
  logits: TRL's fused LM head (``trl.kernels.chunked_logprob``) projects in tiles of 4096 tokens ×
  32768 vocabulary columns and recomputes them in the backward pass, so the part is that tile
  buffer in the compute dtype, the hidden states it saves (n × hidden) and their fp32 gradient,
  the head's fp32 gradient buffer when the head trains (full fine-tuning) in a half dtype (an
  fp32 head takes the buffer as its gradient, counted with the gradients), and, on CPU (no
  Triton), the fp32 temporaries of the torch fallback (7 tiles, measured). The other stages:
  ``tokens × vocab × (2 + 4 + 4 + 4)`` in bf16/fp16 (``× 12`` in fp32): the logits the model
  returns, their fp32 copy, the log-softmax the loss keeps and its gradient — the peak at the
  start of the backward pass.
* **framework overhead** — the CUDA context (not counted by PyTorch's allocator), DDP's
  gradient buckets (a second copy of the gradients when ranks > 1), DeepSpeed's
  communication buckets / ZeRO-3's gathered layers, FSDP's all-gathered layers in flight (two
  decoder layers with full_shard — the one computing and the next, prefetched —, every layer with
  shard_grad_op, in the compute dtype), the step temporaries of ``adamw_torch``
  (the worker's optimizer: one copy of the second moments).

Steps: a rank sees ``ceil(examples ÷ (batch × ranks))`` micro-batches per epoch, an optimizer
step happens every ``accumulation`` micro-batches (``ceil``), and ``general.max_steps``
overrides epochs — the arithmetic of OCI's ``totalTrainingSteps = epochs × size ÷ batch``
and of watsonx's worked examples.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from engine.schema import ALL_LINEAR_LLAMA, DEFAULT_TARGET_MODULES, packs, total_ranks

GIB = 1024 ** 3
CUDA_CONTEXT_BYTES = int(0.5 * GIB)
#: bytes a quantized weight costs: 4-bit NF4 with double quantization (an 8-bit absmax per block of
#: 64, an fp32 scale per 256 blocks, as the worker configures bitsandbytes); 8-bit: 1 B + row scales
QLORA_BYTES = {4: 0.5 + 1 / 64 + 4 / (64 * 256), 8: 1.0 + 4 / 4096}
#: an SFT / pre-training batch whose logits have at most this many values (tokens × vocabulary) computes its loss
#: from the full logits instead of TRL's fused LM head (engine.train.trainers.small_logits: faster for small ones)
SMALL_LOGITS = 1 << 24

#: TRL's fused LM head (trl.kernels.chunked_logprob, SFTTrainer): tiles of 4096 tokens × 32768 vocabulary
#: columns, the buffer allocated at its full width whatever the vocabulary
FUSED_TOKEN_CHUNK, FUSED_VOCAB_CHUNK = 4096, 32768
#: without Triton (CPU) the tile is folded by torch ops: fp32 tile-sized temporaries alive at once in its
#: backward (y, z, log p, p, the gradient and the expressions between them: _backward_tile; 7.1–7.3
#: measured in the resident set, bench/activations_cpu.py)
CPU_TILE_TEMPORARIES = 7


def gib(n: float) -> str:
    """Bytes in GiB, or MiB / KiB below one GiB (so small jobs read as more than 0.00)."""
    for div, unit in ((GIB, "GiB"), (1024 ** 2, "MiB"), (1024, "KiB")):
        if abs(n) >= div or unit == "KiB":
            return f"{n / div:.2f} {unit}"
    return f"{n:.0f} B"


def _n(x: float) -> str:
    """A count, human-friendly but checkable."""
    x = float(x)
    for div, suf in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.4g}{suf}"
    return f"{x:.4g}"


@dataclass
class Part:
    name: str
    bytes: float
    formula: str
    note: str = ""

    def line(self, width: int = 22) -> str:
        return f"{self.name:<{width}} {gib(self.bytes):>12}   {self.formula}"


@dataclass
class Steps:
    examples: int | None
    train_examples: int | None
    batch_size: int
    accumulation: int
    ranks: int
    effective_batch: int
    batches_per_epoch: int | None  # micro-batches each rank processes per epoch
    updates_per_epoch: int | None  # optimizer steps per epoch
    epochs: int | None
    total_steps: int | None  # optimizer steps
    total_batches: int | None  # micro-batches each rank processes in all
    tokens_per_step: int
    formulas: list[str] = field(default_factory=list)


@dataclass
class Suggestion:
    title: str
    changes: dict[str, Any]
    total_bytes: float
    fits: bool

    def line(self) -> str:
        ch = ", ".join(f"{k} = {v}" for k, v in self.changes.items())
        return f"{self.title}: {gib(self.total_bytes)} per GPU{' — fits' if self.fits else ''}  ({ch})"


@dataclass
class Estimate:
    model: str
    model_summary: str
    method: str
    backend: str
    precision: str
    num_params: int
    trainable_params: int
    parts: list[Part]
    total_bytes: float
    activations_other_bytes: float  # activations with gradient checkpointing toggled
    steps: Steps
    gpu_memory_gb: float | None = None
    cpu_offload_bytes: float = 0.0
    seconds: float | None = None
    time_formula: str = ""
    suggestions: list[Suggestion] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    on_cpu: bool = False
    total_formula: str = ""
    step_bytes: float = 0.0  # what a step adds to the weights, optimizer states and overhead (its max(...) term)
    margin_bytes: float = 0.0  # what the GPU holds besides the step's tensors (gpu_margin)
    margin_formula: str = ""

    @property
    def fits(self) -> bool | None:
        """The peak within the GPU's memory less the safety margin (CUDA context, NCCL, allocator headroom)."""
        if self.gpu_memory_gb is None:
            return None
        return self.total_bytes <= self.gpu_memory_gb * GIB - self.margin_bytes

    def part(self, name: str) -> Part:
        for p in self.parts:
            if p.name == name:
                return p
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["fits"] = self.fits
        d["total_gib"] = self.total_bytes / GIB
        return d

    def to_text(self) -> str:
        L: list[str] = []
        L.append(f"Model     {self.model}: {self.model_summary}")
        L.append(f"Job       {self.method} · {self.backend} · {self.precision} · "
                 f"trainable {_n(self.trainable_params)} of {_n(self.num_params)} parameters")
        L.append("")
        L.append(f"Memory per {'rank (CPU)' if self.on_cpu else 'GPU'} (peak of a training step)")
        for p in self.parts:
            L.append("  " + p.line())
            if p.note:
                L.append(f"  {'':<22} {'':>12}   ({p.note})")
        L.append(f"  {'total':<22} {gib(self.total_bytes):>12}   {self.total_formula}")
        other = "without" if self.parts_gc else "with"
        L.append(f"  (activations {other} gradient checkpointing: {gib(self.activations_other_bytes)})")
        if self.cpu_offload_bytes:
            L.append(f"  CPU memory for offloaded states per rank: {gib(self.cpu_offload_bytes)}")
        if self.gpu_memory_gb is not None:
            verdict = "fits" if self.fits else "does NOT fit"
            L.append(f"  {verdict} in {self.gpu_memory_gb:g} GB per GPU" + (f" ({self.margin_formula})"
                                                                            if self.margin_formula else ""))
        L.append("")
        L.append("Steps")
        for f in self.steps.formulas:
            L.append("  " + f)
        if self.time_formula:
            L.append("")
            L.append("Time")
            L.append("  " + self.time_formula)
        if self.suggestions:
            L.append("")
            L.append("To fit (each change alone, with its new estimate):")
            for s in self.suggestions:
                L.append("  - " + s.line())
        if self.notes:
            L.append("")
            for n in self.notes:
                L.append("note: " + n)
        return "\n".join(L) + "\n"

    @property
    def parts_gc(self) -> bool:
        return "checkpointing" in self.part("activations").formula


# --------------------------------------------------------------------------
# Steps
# --------------------------------------------------------------------------


def _paired(res: dict[str, Any]) -> bool:
    """DPO (ORPO, SimPO) and the reward model put an example's chosen and rejected sequences side by side."""
    stage = res.get("trainer.stage")
    return stage == "reward" or (stage == "dpo" and res.get("preference.preference_loss") != "kto_pair")


def steps_for(res: dict[str, Any], num_examples: int | None, tokens_per_example: float | None = None) -> Steps:
    b = int(res["general.batch_size"])
    ga = int(res.get("runtime.gradient_accumulation_steps") or 1)
    R = total_ranks(res)
    eff = b * ga * R
    epochs = res.get("general.epochs")
    max_steps = res.get("general.max_steps")
    seq = int(res["general.max_sequence_length"])
    F: list[str] = [f"effective batch = batch × accumulation × ranks = {b} × {ga} × {R} = {eff}"]
    n = train = None
    per_epoch = updates = total = total_b = None
    if num_examples is not None:
        n = int(num_examples)
        train = n
        if res.get("data.max_samples"):
            train = min(train, int(res["data.max_samples"]))
            F.append(f"examples = min({n}, data.max_samples {res['data.max_samples']}) = {train}")
        vs = float(res.get("data.val_size") or 0)
        if vs > 0 and not res.get("data.validation_path"):
            held = math.ceil(train * vs)
            F.append(f"training examples = {train} − ceil({train} × val_size {vs:g}) = {train - held}")
            train -= held
        if packs(res) and tokens_per_example:
            packed = max(1, math.ceil(train * tokens_per_example / seq))
            F.append(f"packed sequences = ceil({train} × {tokens_per_example:g} tokens ÷ {seq}) = {packed}")
            train = packed
        per_epoch = max(1, math.ceil(train / (b * R)))
        F.append(f"batches per epoch (each rank) = ceil({train} ÷ ({b} × {R})) = {per_epoch}")
        updates = max(1, math.ceil(per_epoch / ga))
        F.append(f"optimizer steps per epoch = ceil({per_epoch} ÷ {ga}) = {updates}")
    if max_steps:
        total = int(max_steps)
        total_b = total * ga
        F.append(f"total steps = general.max_steps = {total} (overrides epochs)")
    elif epochs and updates is not None:
        total = updates * int(epochs)
        total_b = per_epoch * int(epochs)
        F.append(f"total steps = {updates} × {epochs} epochs = {total}  ({total_b} batches processed per rank)")
    elif epochs:
        F.append(f"total steps = examples ÷ {eff} × {epochs} epochs (give --examples N for a number)")
    # tokens a sequence holds: packed sequences are full; unpacked ones hold one example (when its length is known)
    per_seq = seq if packs(res) or not tokens_per_example else min(seq, max(1, math.ceil(tokens_per_example)))
    per_example = 2 if _paired(res) else 1  # a pair's two sequences both count as tokens seen
    return Steps(n, train, b, ga, R, eff, per_epoch, updates, int(epochs) if epochs else None, total, total_b,
                 b * per_example * per_seq * ga * R, F)


def oci_total_training_steps(epochs: int, dataset_size: int, batch_size: int) -> float:
    """OCI's documented formula (rounding ignored): epochs × size ÷ batch."""
    return epochs * dataset_size / batch_size


# --------------------------------------------------------------------------
# Memory
# --------------------------------------------------------------------------


def _precision(res: dict[str, Any]) -> str:
    mp = str(res.get("runtime.mixed_precision") or "auto")
    if mp == "auto":
        return "none" if res.get("launch.device") == "cpu" else "bf16"
    return mp


def _targets(res: dict[str, Any], model_type: str, moe: bool) -> list[str]:
    tm = list(res.get("adapter.target_modules") or [])
    if not tm:
        return list(DEFAULT_TARGET_MODULES.get(model_type, ["q_proj", "v_proj"]))
    if tm == ["all-linear"] or "all-linear" in tm:
        # on a mixture-of-experts model the worker trains the Linear layers only: attention (and a shared
        # expert, counted by _trainable), not the fused experts or the router (engine/train/modeling.py)
        return ["q_proj", "k_proj", "v_proj", "o_proj"] if moe else list(ALL_LINEAR_LLAMA)
    return tm


#: feed-forward modules: IA3 scales their input, not their output (engine/train/modeling.py FFN_NAMES)
_FFN = ("down_proj", "fc2", "w2", "dense_4h_to_h", "c_proj", "fc_out")


def _tfew_targets(res: dict[str, Any], model_type: str, moe: bool) -> list[str]:
    """IA3's modules as the worker picks them: finetui's list, else PEFT's llama-like default."""
    if not list(res.get("adapter.target_modules") or []) and model_type not in DEFAULT_TARGET_MODULES:
        return ["k_proj", "v_proj", "down_proj"]
    return _targets(res, model_type, moe)


def _trainable(res: dict[str, Any], b: dict[str, Any]) -> tuple[int, str, list[str]]:
    """Trainable parameter count, its formula, and the adapter target modules."""
    from engine.modelinfo import Shape

    s: Shape = b["shape"]
    method = res["trainer.training_type"]
    lin = s.linear_shapes()
    L = s.layers
    if method == "full":
        return int(b["total"]), f"all {_n(b['total'])} parameters", []
    if method in ("lora", "qlora"):
        r = int(res.get("adapter.lora_rank") or 8)
        tg = [t for t in _targets(res, s.model_type, bool(s.num_experts)) if t in lin]
        per = sum(r * (lin[t][0] + lin[t][1]) for t in tg)
        what = "/".join(tg)
        if s.shared_intermediate and "all-linear" in (res.get("adapter.target_modules") or []):
            per += 3 * r * (s.hidden + s.shared_intermediate)  # the shared expert's gate, up and down
            what += " + the shared expert's gate/up/down"
        f = f"{L} layers × rank {r} × Σ(in+out) of {what} = {L} × {r} × {per // r}"
        return L * per, f, tg
    if method == "tfew":
        # PEFT IA3 on the worker's targets: one vector per target, of its out features (its in features for
        # a feed-forward module, down_proj); the architecture's own default when finetui has none for it
        tg = [t for t in _tfew_targets(res, s.model_type, bool(s.num_experts)) if t in lin]
        sizes = {t: lin[t][0] if t in _FFN else lin[t][1] for t in tg}
        per = sum(sizes.values())
        return L * per, f"IA3 vectors: {L} layers × (" + " + ".join(f"{t} {n}" for t, n in sizes.items()) \
            + f") = {L} × {per}", tg
    if method == "prompt_tuning":
        nv = int(res.get("adapter.num_virtual_tokens") or 20)
        return nv * s.hidden, f"{nv} virtual tokens × hidden {s.hidden}", []
    if method == "freeze":
        n = min(int(res.get("adapter.freeze_trainable_layers") or 2), L)
        return n * int(b["per_layer"]), f"last {n} layers × {_n(b['per_layer'])} per layer", []
    raise ValueError(f"trainer.training_type: unknown method {method!r}")


#: the modules whose input is a norm's output (the residual stream's dtype); o_proj's input is the attention
#: output and down_proj's the gated product, both already in the compute dtype
_NORM_FED = ("q_proj", "k_proj", "v_proj", "gate_proj", "up_proj")


def _moe_bytes(s: Any, *, a: int, c: int, i: int, k: int, trains: bool, copy: bool) -> int:
    """Bytes per token a mixture-of-experts block keeps (router, experts, Qwen2-MoE's shared expert).

    The router keeps its fp32 probabilities and the top-k indices; each of the k experts a token
    goes to keeps its gathered input (when the experts train), its gate/up output (2i), act(gate),
    the product (when the experts train) and its output (for the routing weight), plus index
    bookkeeping. The fused experts compute in the hidden states' dtype ``a`` (autocast does not
    cast them on CPU; unmeasured on CUDA, where ``a`` is the usual bf16 anyway). A shared expert
    keeps a dense MLP's tensors and its output for the sigmoid gate. ``copy``: autocast casts each
    Linear's input (router, shared expert) to ``c`` separately.
    """
    h, E = s.hidden, s.num_experts
    per = 4 * E + 44 * k + 4  # router probabilities, top-k indices and weights, the experts' index bookkeeping
    per += a * k * ((2 * h + 4 * i) if trains else (h + 3 * i))
    if s.shared_intermediate:
        per += c * ((4 if trains else 3) * s.shared_intermediate + h) + 4
    if trains:  # the norm output, input of the router (and of the shared expert's gate, up and gate)
        per += c * h * (4 if s.shared_intermediate else 1) if copy else a * h
    return per


def _act_layer(s: Any, *, a: int, c: int, autocast: bool, method: str = "full", targets: list[str] | None = None,
               tw: int = 4, rank: int = 8, dropout: bool = False, qlora: bool = False, mask: int = 1,
               first: bool = False, eager_seq: int = 0) -> tuple[int, int]:
    """(bytes per token, bytes per layer) autograd keeps for one decoder layer (see the module docstring).

    ``a``: bytes of the residual stream (the model's dtype; fp32 for QLoRA), ``c``: of the compute dtype,
    ``autocast``: mixed precision casts each module's inputs and weights to ``c``, ``tw``: bytes of the
    adapters' dtype, ``mask``: of a dropout mask's element (CUDA: bool; CPU: the input's dtype), ``first``:
    the first trained layer of a model whose embeddings (and earlier layers) are frozen — no gradient flows
    into its input, so what comes before its first trained module keeps nothing; ``eager_seq``: the sequence
    length with eager attention (0: SDPA or flash-attention, which keep no score matrix).
    """
    q, kv = s.heads * s.head_dim, s.kv_heads * s.head_dim
    lin = s.linear_shapes()
    h, i = s.hidden, lin["gate_proj"][1]  # (an expert's for MoE)
    k = s.experts_per_token if s.num_experts else 1
    targets = [t for t in (targets or []) if t in lin]
    mult = {t: (k if t in ("gate_proj", "up_proj", "down_proj") else 1) for t in lin}
    qkv = ("q_proj", "k_proj", "v_proj")
    trains = method in ("full", "freeze")
    tr = set(lin) if trains else set(targets)  # the modules that train (or carry an adapter)
    # where a gradient flows: into the layer's input, the attention, the residual after it, gate / up, down_proj
    g_in = not first
    g_attn = g_in or bool(tr & set(qkv))
    g_mid = g_attn or "o_proj" in tr
    g_gate, g_up = g_mid or "gate_proj" in tr, g_mid or "up_proj" in tr
    grad_in = {"q_proj": g_in, "k_proj": g_in, "v_proj": g_in, "o_proj": g_attn, "gate_proj": g_mid,
               "up_proj": g_mid, "down_proj": g_gate or g_up}

    def norm(g: bool) -> int:  # RMSNorm computes in fp32: its fp32 input and rsqrt; the normalized input (weight)
        return (4 * h + 4 if g else 0) + (a * h if trains else 0)

    per = norm(g_in) + norm(g_mid)
    if s.model_type in ("qwen3", "qwen3_moe") and g_attn:  # per-head RMSNorm of q and k (before RoPE)
        per += 4 * (q + kv) + 4 * (s.heads + s.kv_heads) + (c * (q + kv) if trains else 0)
    if g_attn and eager_seq:  # q, k and v repeated to every head, the fp32 softmax (and its cast to c)
        per += c * 3 * q + s.heads * eager_seq * (4 + (c if c != 4 else 0))
    elif g_attn:  # q and k after RoPE, v, the output (o_proj's input), the fp32 logsumexp
        per += c * (2 * q + 2 * kv) + 4 * s.heads
    copy = autocast and a != c  # autocast casts a norm-fed module's input: each module its own copy
    if s.num_experts:  # the MoE block (transformers 5's fused experts), measured tensor by tensor
        per += _moe_bytes(s, a=a, c=c, i=i, k=k, trains=trains, copy=copy) if g_mid else 0
    else:
        # act(gate) keeps the gate output, act(gate) × up keeps both factors (each when the other needs a gradient)
        per += c * i * (2 * g_gate + g_up)
    if trains:
        per += sum(c * lin[t][0] for t in qkv) if copy else a * h  # q/k/v share one norm output
        if not s.num_experts:
            per += 2 * c * h if copy else a * h  # gate/up share the other
            per += c * i  # down_proj's input: the product; o_proj's is the attention output (SDPA keeps it)
        per += c * q if eager_seq else 0
    elif method in ("lora", "qlora"):
        shared: set[str] = set()
        for t in targets:
            src = a if t in _NORM_FED else c
            n = lin[t][0] * mult[t]
            if dropout:  # a dropped-out copy of the input (cast to the compute dtype) and its mask
                per += (c if autocast else tw) * n + (mask * n if grad_in[t] else 0)
            elif src != tw or (autocast and tw != c):  # PEFT casts the input to the adapters' dtype, autocast to c
                per += (c if autocast else tw) * n
            else:  # the module's input itself, shared with the modules fed by the same tensor
                group = "qkv" if t in qkv else "gate_up" if t in ("gate_proj", "up_proj") else t
                if group not in shared and (t != "o_proj" or eager_seq or not g_attn):
                    shared.add(group)
                    per += src * n
            per += (c if autocast else tw) * rank * mult[t]  # lora_A's output, lora_B's input
    elif method == "tfew":
        # IA3: ``out × l`` keeps each scaled module's output, ``x × l`` down_proj's input (in l's dtype)
        per += sum(tw * lin[t][0] * mult[t] if t in _FFN else c * lin[t][1] * mult[t] for t in targets)
    # mixed precision over fp32 weights: the compute-dtype copy of each weight is kept for the backward pass
    # (for its input's gradient; autocast's cache keeps a trained weight's copy anyway)
    w = 0
    if autocast and c != 4:
        if a != c and not qlora:
            # (MoE: the fused experts are not cast; the router and a shared expert are)
            w += sum(lin[t][0] * lin[t][1] for t in lin if (trains or grad_in[t])
                     and not (s.num_experts and t in ("gate_proj", "up_proj", "down_proj")))
            if s.num_experts and (trains or g_mid):
                w += h * s.num_experts + (3 * h * s.shared_intermediate + h if s.shared_intermediate else 0)
        if method in ("lora", "qlora") and tw != c:
            w += sum(rank * (lin[t][0] * grad_in[t] + lin[t][1]) for t in targets)
    const = c * w
    if method == "tfew":  # the scaling vectors' copies (``1 × l``), for the gradient of what they scale
        const += tw * sum(lin[t][0] if t in _FFN else lin[t][1] for t in targets if grad_in[t])
    return per, const


def estimate(res: dict[str, Any], *, model_config: dict[str, Any] | None = None, num_examples: int | None = None,
             gpu_memory_gb: float | None = None, throughput_tokens_per_s: float | None = None,
             tokens_per_example: float | None = None, suggest: bool = True) -> Estimate:
    """Estimate memory per GPU, steps and time of the job ``res`` (``JobConfig.resolved()``).

    ``model_config``: the model's config.json as a dict (read with :mod:`engine.modelinfo` when
    None). ``throughput_tokens_per_s``: measured tokens per second of the whole job (all ranks).
    Raises :class:`engine.modelinfo.ModelInfoError` when the model's config cannot be found.
    """
    from engine import modelinfo

    name = str(res.get("model.name_or_path") or "")
    if model_config is None:
        model_config, _src = modelinfo.load_config(name)
    b = modelinfo.param_breakdown(model_config)
    info = modelinfo.info_from_config(model_config, name=name)
    s = b["shape"]
    # the stage's trainer: DPO (and ORPO / SimPO) and the reward model put a pair's chosen and rejected sequences
    # side by side in one micro-batch; KTO (and kto_pair) trains on unpaired rows; the reward model replaces
    # the LM head with a one-output score head
    stage = str(res.get("trainer.stage") or "sft")
    ploss = str(res.get("preference.preference_loss") or "sigmoid") if stage == "dpo" else ""
    pairs = _paired(res)
    if stage == "reward":
        b = {**b, "total": int(b["total"]) - int(b["lm_head"]) + s.hidden}
    P = int(b["total"])
    method = res["trainer.training_type"]
    backend = res["trainer.distributed_backend"]
    R = total_ranks(res)
    ds = backend == "deepspeed"
    zero = int(res.get("trainer.zero_stage") or 0) if ds else 0
    off_opt = ds and bool(res.get("trainer.offload_optimizer"))
    off_par = ds and zero == 3 and bool(res.get("trainer.offload_params"))
    # FSDP2 (full_shard or shard_grad_op) shards parameters, gradients and optimizer states over every rank;
    # its CPU offload moves all three to CPU memory
    fsdp = backend == "fsdp"
    fsdp_off = fsdp and bool(res.get("trainer.fsdp_cpu_offload"))
    sharded_by = "FSDP" if fsdp else "ZeRO-3"
    prec = _precision(res)
    half = prec in ("bf16", "fp16")
    hb = 2 if half else 4  # compute / half dtype bytes
    optim = res.get("runtime.optimizer") or "adamw"
    gc = bool(res.get("runtime.gradient_checkpointing"))
    bsz = int(res["general.batch_size"])
    seq = int(res["general.max_sequence_length"])
    ga = int(res.get("runtime.gradient_accumulation_steps") or 1)
    notes: list[str] = []
    if not b["exact"]:
        notes.append(f"{info.model_type}: parameter count estimated from the config, not exact")
    ctx = int(getattr(info, "context_length", 0) or 0)
    if ctx and seq > ctx:
        notes.append(f"⚠ max length {seq:,} exceeds the model's context ({ctx:,} tokens): positions past it were "
                     f"never trained (lower general.max_sequence_length, or extend the context with RoPE scaling)")

    T, t_formula, targets = _trainable(res, b)
    peft = method in ("lora", "qlora", "tfew", "prompt_tuning")
    if stage == "reward" and peft:  # PEFT trains a copy of the score head (modules_to_save)
        T += s.hidden
        t_formula += f" + score head copy {s.hidden}"
    # DPO / KTO compare with a reference model: given a PEFT model, TRL adds a frozen copy of its adapters ("ref")
    # and runs the reference through them; the other methods load a second, frozen copy of the model (in the
    # policy's dtype; ZeRO-3 shards it too)
    ref = stage in ("dpo", "kto") and ploss not in ("orpo", "simpo")
    qbits = res.get("runtime.quantization_bit")
    qbits = int(qbits) if qbits not in (None, "none") else (4 if method == "qlora" else 0)

    # ---- bytes per parameter ------------------------------------------------------------------
    # The worker loads the weights (engine/train/modeling.py load_dtype) in float32 without mixed precision and
    # for full fine-tuning outside DeepSpeed (every weight a master weight), else in the compute dtype —
    # whatever the checkpoint's dtype; DeepSpeed with bf16/fp16 casts the model to the half dtype.  Trainable
    # parameters are then upcast to float32 (upcast_trainable), except under DeepSpeed (its fp32 master copy).
    lb = 4 if not half or (method == "full" and not ds) else 2
    fb = 4 if method == "qlora" else lb  # frozen, not quantized (QLoRA: prepare_model_for_kbit_training → fp32)
    if method == "qlora" and half:
        tw, tw_why = 2, "bf16 adapters (TRL casts QLoRA adapters)"
    elif ds and half:
        tw, tw_why = 2, f"{prec} (DeepSpeed; fp32 master copy counted with the optimizer)"
    elif peft:
        tw, tw_why = 4, "fp32 adapters (PEFT upcasts them)"
    else:
        tw, tw_why = 4, "fp32 master weights" + (f" (the {s.dtype} checkpoint upcast)" if s.dtype in (
            "bfloat16", "float16") else "")
    shard3 = R if zero == 3 or fsdp else 1

    # ---- weights ----------------------------------------------------------------------------
    # adapters (LoRA, IA3, virtual tokens) are added to the model: every base parameter stays, frozen;
    # freeze (and full) train a part of the base parameters
    frozen = P if peft else P - T
    if method == "qlora" and qbits:
        lin_total = s.layers * sum(b["per_layer_linear"].values())
        if s.num_experts:
            # bitsandbytes replaces nn.Linear modules only: transformers 5's fused experts stay unquantized, and
            # prepare_model_for_kbit_training upcasts them to fp32 with every other unquantized parameter
            attn = sum(v for k, v in b["per_layer_linear"].items() if k not in ("gate_proj", "up_proj", "down_proj"))
            router = s.hidden * s.num_experts + (3 * s.hidden * s.shared_intermediate + s.hidden
                                                 if s.shared_intermediate else 0)
            lin_total = (s.layers - s.dense_layers) * (attn + router) \
                + s.dense_layers * (attn + 3 * s.hidden * s.intermediate)
            notes.append("QLoRA on a mixture-of-experts model: bitsandbytes quantizes the Linear layers only; the "
                         "fused experts stay unquantized (fp32 after prepare_model_for_kbit_training)")
        rest = frozen - lin_total
        qb = QLORA_BYTES[qbits]
        w_bytes = lin_total * qb + rest * fb + T * tw
        w_formula = (f"{_n(lin_total)} linear × {qb:.4g} B ({qbits}-bit + double-quantized absmax) + {_n(rest)} "
                     f"other × {fb} B "
                     f"+ {_n(T)} adapter × {tw} B")
    elif frozen > 0:
        w_bytes = (frozen * fb + T * tw) / shard3
        w_formula = f"{_n(frozen)} frozen × {fb} B + {_n(T)} trainable × {tw} B"
    else:
        w_bytes = P * tw / shard3
        w_formula = f"{_n(P)} params × {tw} B ({tw_why})"
    if ref and peft:
        w_bytes += T * tw / shard3
        w_formula += f" + reference adapters {_n(T)} × {tw} B"
    elif ref:
        w_bytes += P * lb / shard3
        w_formula += f" + reference model {_n(P)} × {lb} B"
    if shard3 > 1:
        w_formula = f"({w_formula}) ÷ {R} ranks ({sharded_by})"
    if off_par or fsdp_off:
        w_formula = f"0 on the GPU: parameters offloaded to CPU (was {gib(w_bytes)})"
        cpu_params = w_bytes if fsdp_off else w_bytes * shard3  # (FSDP: each rank offloads its own shard)
        w_bytes = 0.0
    else:
        cpu_params = 0.0

    # ---- gradients --------------------------------------------------------------------------
    if ds and half and zero >= 1:
        if zero == 1:
            g_bytes = T * tw + T * 4 / R
            g_formula = f"{_n(T)} × {tw} B ({prec} grads) + {_n(T)} × 4 B ÷ {R} ranks (fp32 partition, ZeRO-1)"
        else:
            g_bytes = T * (tw + 4) / R
            g_formula = f"{_n(T)} × ({tw} + 4) B ÷ {R} ranks (ZeRO-{zero} partitions {prec} and fp32 grads)"
    elif (ds and zero >= 2) or fsdp:
        g_bytes = T * tw / R
        g_formula = f"{_n(T)} trainable × {tw} B ÷ {R} ranks ({'FSDP reduce-scatter' if fsdp else f'ZeRO-{zero}'})"
    else:
        g_bytes = T * tw
        g_formula = f"{_n(T)} trainable × {tw} B"

    # ---- optimizer --------------------------------------------------------------------------
    # AdamW keeps two moments in the parameter's dtype (DeepSpeed: fp32, plus the fp32 master copy)
    moment_b = 4 if ds else tw
    state_b = 2 * moment_b if optim == "adamw" else 0
    master = 4 if (ds and half) else 0
    per = state_b + master
    what = ("AdamW 2 moments" if optim == "adamw" else "SGD (no momentum)") + (" + fp32 master" if master else "")
    div = R if zero >= 1 or fsdp else 1
    o_bytes = T * per / div
    o_formula = f"{_n(T)} trainable × {per} B ({what})" + (
        f" ÷ {R} ranks ({'FSDP' if fsdp else f'ZeRO-{zero}'})" if div > 1 else "")
    cpu_opt = 0.0
    if off_opt or fsdp_off:
        cpu_opt = o_bytes
        o_formula = f"0 on the GPU: offloaded to CPU ({o_formula} = {gib(o_bytes)})"
        o_bytes = 0.0
    if fsdp_off:
        cpu_opt += g_bytes
        g_formula = f"0 on the GPU: offloaded to CPU ({g_formula} = {gib(g_bytes)})"
        g_bytes = 0.0

    # ---- activations ------------------------------------------------------------------------
    cpu = res.get("launch.device") == "cpu"
    extra_tokens = int(res.get("adapter.num_virtual_tokens") or 20) if method == "prompt_tuning" else 0
    seqs = bsz * (2 if pairs else 1)  # sequences in a micro-batch
    tokens = seqs * (seq + extra_tokens)
    autocast = half and not ds  # DeepSpeed casts the model to the half dtype instead
    dropout = method in ("lora", "qlora") and float(res.get("adapter.lora_dropout") or 0) > 0
    a = fb  # the residual stream: the model's dtype (QLoRA: fp32, prepare_model_for_kbit_training)
    eager = res.get("runtime.attention_implementation") == "eager"
    kw = dict(a=a, c=hb, autocast=autocast, method=method, targets=targets, tw=tw, dropout=dropout,
              eager_seq=(seq + extra_tokens) if eager else 0,
              rank=int(res.get("adapter.lora_rank") or 8), qlora=method == "qlora", mask=tw if cpu else 1)
    per_tok, per_const = _act_layer(s, **kw)
    # no gradient flows into the first trained layer's input when the embeddings (and the layers before) are frozen
    first_tok, first_const = _act_layer(s, **kw, first=True) if method in ("lora", "qlora", "tfew", "freeze") \
        else (per_tok, per_const)
    layers_bw = min(int(res.get("adapter.freeze_trainable_layers") or 2), s.layers) if method == "freeze" \
        else s.layers
    full_layer = tokens * per_tok + per_const
    first = full_layer - (tokens * first_tok + first_const)  # what the first trained layer keeps less
    final_norm = tokens * ((4 + (a if method == "full" else 0)) * s.hidden + 4)
    act_full = layers_bw * full_layer - first + final_norm
    act_gc = layers_bw * tokens * s.hidden * a + final_norm + full_layer
    copies = f" + {gib(per_const)} {prec if half else 'fp32'} weight copies" if per_const else ""
    f_full = (f"{layers_bw} layers × ({tokens} tokens × {per_tok} B{copies})"
              + (f" − first layer's frozen input {gib(first)}" if first else "") + f" + final norm {gib(final_norm)}")
    f_gc = (f"checkpointing: {layers_bw} layers × {tokens} tokens × hidden {s.hidden} × {a} B "
            f"+ final norm {gib(final_norm)} + 1 layer recomputed {gib(full_layer)}")
    a_bytes, a_formula, a_other = (act_gc, f_gc, act_full) if gc else (act_full, f_full, act_gc)

    # ---- logits -----------------------------------------------------------------------------
    if stage == "reward":  # the score head's input: every position's hidden state (the score is one number each)
        l_bytes = float(tokens * s.hidden * a)
        l_formula = f"score head input {tokens} tokens × hidden {s.hidden} × {a} B (no LM head)"
    elif stage in ("sft", "pretrain") and seqs * seq * s.vocab <= SMALL_LOGITS:
        # small logits: the loss from the full logits (engine.train.trainers._nll_from_logits) — the logits, an fp32
        # copy of the labelled positions, their log-softmax and one temporary (the entropy's; in the backward, the
        # log-softmax's gradient)
        n = seqs * (seq + extra_tokens - 1)
        cb = hb if half else a
        l_bytes = float(n * s.vocab * (cb + 12))
        l_formula = f"{n} tokens × vocab {s.vocab} × ({cb} + 4 + 4 + 4) B (logits, fp32 copy, log-softmax, its gradient)"
        if gc:  # the layer checkpointing recomputes lives in the backward, once these are gone: only the excess counts
            l_bytes = max(0.0, l_bytes - full_layer)
            l_formula += f" − the recomputed layer {gib(full_layer)} (not alive at the same time)"
    elif ploss not in ("orpo", "simpo"):
        # TRL's SFT / DPO / KTO trainers project through the LM head in tiles (trl.kernels.chunked_logprob): no
        # [tokens, vocab] logits; the backward recomputes each tile and accumulates in fp32
        n = seqs * (seq + extra_tokens - 1)  # positions that predict a next token
        cb = hb if half else a  # the tile's dtype: autocast's, else the hidden states'
        rows = min(n, FUSED_TOKEN_CHUNK)
        cols = min(s.vocab, FUSED_VOCAB_CHUNK)  # the columns a tile writes
        # the buffer is FUSED_VOCAB_CHUNK wide; on CPU only the columns a smaller vocabulary writes are resident
        width = cols if cpu else FUSED_VOCAB_CHUNK
        parts_l = [(f"tile {rows} × {width} × {cb} B", rows * width * cb),
                   (f"hidden copy + its fp32 gradient {n} × {s.hidden} × {a}+4 B", n * s.hidden * (a + 4))]
        if method == "full" and tw != 4:
            # the head (or the tied embeddings) trains: its gradient is summed in an fp32 buffer, then cast to the
            # weight's dtype (an fp32 weight takes the buffer itself as its gradient, counted with the gradients)
            parts_l.append((f"head gradient {s.vocab} × {s.hidden} × 4 B", s.vocab * s.hidden * 4))
        if cpu:  # no Triton: the tile is folded with torch ops, several fp32 tile-sized temporaries
            parts_l.append((f"{CPU_TILE_TEMPORARIES} fp32 temporaries {rows} × {cols} × 4 B",
                            CPU_TILE_TEMPORARIES * rows * cols * 4))
        l_bytes = float(sum(v for _, v in parts_l))
        l_formula = "fused LM head (TRL): " + " + ".join(k for k, _ in parts_l)
    else:
        lgb = hb + 4 + 4 + 4 if half else 12
        l_bytes = tokens * s.vocab * lgb
        l_formula = (f"{tokens} tokens × vocab {s.vocab} × {lgb} B ({prec + ' logits + fp32 copy' if half else 'logits'}"
                     " + log-softmax + its gradient)")

    # ---- overhead ---------------------------------------------------------------------------
    ov = [] if cpu else [("CUDA context", CUDA_CONTEXT_BYTES)]
    if backend == "ddp" and R > 1:
        ov.append(("DDP buckets", T * tw))
    if ds and zero in (1, 2):
        ov.append(("reduce bucket h²×4 B", s.hidden * s.hidden * 4))
    if ds and zero == 3:
        ov.append(("gathered layers 2×layer×2 B", 2 * b["per_layer"] * hb))
    if fsdp:
        # the all-gathered units in flight: full_shard frees each decoder layer after its forward (one computing,
        # the next prefetched); shard_grad_op keeps every layer gathered from its forward to its backward.  The
        # gathered copy is in the compute dtype under mixed precision (accelerate's MixedPrecisionPolicy).
        gb = hb if half else lb
        if res.get("trainer.fsdp_sharding") == "shard_grad_op":
            ov.append((f"gathered layers (shard_grad_op) {s.layers}×layer×{gb} B", s.layers * b["per_layer"] * gb))
        else:
            ov.append((f"gathered layers (FSDP) 2×layer×{gb} B", 2 * b["per_layer"] * gb))
    step_tmp = float(T * moment_b) / (R if fsdp else 1) if optim == "adamw" and not ds and not fsdp_off else 0.0
    if step_tmp:
        ov.append(("AdamW step temporaries", step_tmp))  # adamw_torch (foreach): one sqrt(v) copy
    ov_bytes = float(sum(v for _, v in ov))
    ov_formula = " + ".join(f"{k} {gib(v)}" for k, v in ov) or "none on CPU"

    parts = [
        Part("weights", w_bytes, w_formula),
        Part("gradients", g_bytes, g_formula),
        Part("optimizer states", o_bytes, o_formula),
        Part("activations", a_bytes, a_formula, "micro-batch of " + f"{seqs} × {seq + extra_tokens} tokens"),
        Part("logits", l_bytes, l_formula),
        Part("framework overhead", ov_bytes, ov_formula),
    ]
    # When is the peak? The backward pass frees the activations as it allocates the gradients, and the optimizer
    # step (its temporaries) comes after both: with one micro-batch per step under DDP the gradients never meet
    # the activations (measured, bench/activations_cpu.py). Accumulation keeps the gradients through the next
    # micro-batches, and DeepSpeed keeps gradient partitions and buckets: then every part is summed.
    if ga == 1 and not ds:
        # (the LM head's gradient is the backward pass's first: it meets every activation)
        head_g = s.vocab * s.hidden * tw if method == "full" and stage != "reward" else 0
        step = a_bytes + l_bytes + head_g
        step_term = max(step, g_bytes + step_tmp)
        total = w_bytes + o_bytes + (ov_bytes - step_tmp) + step_term
        total_formula = ("weights + optimizer states + framework overhead + max(activations + logits"
                         + (" + the LM head's gradient" if head_g else "") + ", gradients"
                         + (" + AdamW step temporaries" if step_tmp else "") + ")")
    else:
        total = sum(p.bytes for p in parts)
        step_term = a_bytes + l_bytes + g_bytes
        total_formula = "every part summed (" + ("gradients stay allocated across the accumulation micro-batches"
                                                 if ga > 1 else "DeepSpeed keeps gradient partitions and buckets") + ")"
    st = steps_for(res, num_examples, tokens_per_example)
    secs = None
    tf = ""
    if throughput_tokens_per_s and st.total_steps:
        secs = st.total_steps * st.tokens_per_step / float(throughput_tokens_per_s)
        two = 2 if pairs else 1
        per_seq = st.tokens_per_step // max(1, bsz * two * ga * R)
        what = (f"seq {seq}" if per_seq == seq else f"{per_seq} tokens per example") \
            + (" × 2 sequences (chosen, rejected)" if pairs else "")
        tf = (f"{st.total_steps} steps × {st.tokens_per_step} tokens/step (batch {bsz} × {what} × accumulation "
              f"{ga} × ranks {R}) ÷ {throughput_tokens_per_s:g} tokens/s = {_dur(secs)}")
    if throughput_tokens_per_s and secs is not None and not packs(res) and not tokens_per_example:
        notes.append("time: batch × max length tokens per step, an upper bound for rows shorter than max length "
                     "(the measured tokens/s counts real tokens): give --tokens-per-example")
    if pairs:
        notes.append(f"{'reward model' if stage == 'reward' else ploss.upper() if ploss in ('orpo', 'simpo') else 'DPO'}:"
                     f" a pair's chosen and rejected sequences side by side, {seqs} sequences a micro-batch")
    if ref:
        notes.append("reference: a frozen copy of the adapters (TRL's \"ref\" adapter)" if peft else
                     "reference model: a second, frozen copy of the weights")
    if packs(res) and not tokens_per_example:
        notes.append("packing: fewer, full-length sequences than examples; steps counted per example (upper bound: "
                     "give the mean tokens per example, --tokens-per-example, or check the data)")
    est = Estimate(name, info.summary(), method + (f" ({qbits}-bit)" if method == "qlora" else ""),
                   backend + (f" ZeRO-{zero}" if zero else "") + (" +offload optimizer" if off_opt else "")
                   + (f" {res.get('trainer.fsdp_sharding') or 'full_shard'}" if fsdp else "")
                   + (" +CPU offload" if fsdp_off else "")
                   + (" +offload params" if off_par else "") + f", {R} rank{'s' if R > 1 else ''}",
                   prec, P, T, parts, total, a_other, st, gpu_memory_gb, cpu_opt + cpu_params, secs, tf,
                   [], notes, cpu, total_formula, step_term)
    est.parts[0].note = t_formula if method != "full" else ""
    if gpu_memory_gb is not None and not cpu:
        est.margin_bytes, est.margin_formula = gpu_margin(float(gpu_memory_gb), R)
    if suggest and gpu_memory_gb is not None and not est.fits:
        est.suggestions = _suggestions(res, model_config, gpu_memory_gb)
    return est


#: what a GPU holds besides a training step's tensors, kept free when the estimate says "fits": the CUDA context
#: (with cuBLAS / cuDNN workspaces), NCCL's communication buffers when there are several ranks, and the caching
#: allocator's headroom (fragmentation: its reserved peak, what nvidia-smi shows, runs above the allocated one)
CUDA_CONTEXT_GIB = 0.75
NCCL_BUFFERS_GIB = 0.5
ALLOCATOR_HEADROOM = 0.05


def gpu_margin(gpu_memory_gb: float, ranks: int) -> tuple[float, str]:
    """(bytes kept free on a GPU of ``gpu_memory_gb``, the sum written out)."""
    nccl = NCCL_BUFFERS_GIB if ranks > 1 else 0.0
    head = ALLOCATOR_HEADROOM * gpu_memory_gb
    usable = gpu_memory_gb - CUDA_CONTEXT_GIB - nccl - head
    parts = [f"{CUDA_CONTEXT_GIB:g} CUDA context"] + ([f"{nccl:g} NCCL buffers"] if nccl else []) + \
        [f"{head:.1f} allocator headroom ({ALLOCATOR_HEADROOM:.0%})"]
    return (CUDA_CONTEXT_GIB + nccl + head) * GIB, \
        f"usable {usable:.1f} GiB: {gpu_memory_gb:g} − " + " − ".join(parts)


def _dur(s: float) -> str:
    s = int(round(s))
    h, r = divmod(s, 3600)
    m, sec = divmod(r, 60)
    return f"{h} h {m:02d} min" if h else (f"{m} min {sec:02d} s" if m else f"{sec} s")


def _suggestions(res: dict[str, Any], model_config: dict[str, Any], gpu_gb: float) -> list[Suggestion]:
    """Changes that reduce memory, each alone, with the new estimate."""
    cands: list[tuple[str, dict[str, Any]]] = []
    if not res.get("runtime.gradient_checkpointing"):
        cands.append(("gradient checkpointing", {"runtime.gradient_checkpointing": True}))
    R = total_ranks(res)
    quantized = res["trainer.training_type"] == "qlora" or res.get("runtime.quantization_bit") not in (None, "none")
    if res["trainer.distributed_backend"] == "fsdp":
        if res.get("trainer.fsdp_sharding") == "shard_grad_op":
            cands.append(("FSDP full shard", {"trainer.fsdp_sharding": "full_shard"}))
        if not res.get("trainer.fsdp_cpu_offload"):
            cands.append(("FSDP CPU offload", {"trainer.fsdp_cpu_offload": True}))
    elif not (res["trainer.distributed_backend"] == "deepspeed" and res.get("trainer.zero_stage") == 3):
        if R > 1 and not quantized:  # (FSDP cannot shard quantized weights)
            cands.append(("FSDP2 full shard", {"trainer.distributed_backend": "fsdp"}))
        if R > 1:
            cands.append(("DeepSpeed ZeRO-3", {"trainer.distributed_backend": "deepspeed", "trainer.zero_stage": 3}))
        cands.append(("DeepSpeed ZeRO-3 + offload optimizer",
                      {"trainer.distributed_backend": "deepspeed", "trainer.zero_stage": 3,
                       "trainer.offload_optimizer": True}))
    elif not res.get("trainer.offload_optimizer"):
        cands.append(("offload optimizer", {"trainer.offload_optimizer": True}))
    if res["trainer.training_type"] in ("full", "lora", "freeze"):
        cands.append(("QLoRA (4-bit base)", {"trainer.training_type": "qlora", "runtime.quantization_bit": 4}))
    b = int(res["general.batch_size"])
    if b > 1:
        ga = int(res.get("runtime.gradient_accumulation_steps") or 1)
        nb = b
        ch: dict[str, Any] = {}
        while nb > 1:
            nb = max(1, nb // 2)
            ch = {"general.batch_size": nb, "runtime.gradient_accumulation_steps": ga * (b // nb)}
            e = estimate({**res, **ch}, model_config=model_config, gpu_memory_gb=gpu_gb, suggest=False)
            if e.fits:
                break
        cands.append((f"smaller batch (same effective batch)", ch))
    if len(cands) > 1:
        combo: dict[str, Any] = {}
        for _t, ch in cands:
            if "trainer.training_type" not in ch:
                combo.update(ch)
        cands.append(("all of the above but QLoRA, combined", combo))
    out = []
    for title, ch in cands:
        e = estimate({**res, **ch}, model_config=model_config, gpu_memory_gb=gpu_gb, suggest=False)
        out.append(Suggestion(title, ch, e.total_bytes, bool(e.fits)))
    now = estimate(res, model_config=model_config, suggest=False).total_bytes
    out = [s for s in out if s.total_bytes < now]
    out.sort(key=lambda s: (not s.fits, s.total_bytes))
    return out
