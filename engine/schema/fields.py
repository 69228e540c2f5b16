"""The field declarations of a finetui job: the only place a parameter is written.

Every parameter of the five provider documents is declared once here, as a
:class:`Field`: its group, kind (``engine/schema/kinds.py``), native range, default,
label, help text, the rule that decides when it is visible, its names in the other
tools' files (what the importers and exporters read) and the command-line flag that
sets it, where a command takes one.  Provider profiles (``engine/schema/profiles.py``)
overlay ranges, enums and defaults on these declarations; cross-field rules live
in ``engine/schema/rules.py``; the job and its value checks in ``engine/schema/job.py``.

This module imports neither textual nor torch: the TUI, the CLI, the presets,
the exporters and the docs page are all generated from it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field as dc_field
from typing import Any, Callable

from engine.datapaths import any_s3
from engine.schema.kinds import KINDS, Kind, _num

INF = math.inf

# The largest values a trainer can use, written into the fields' ranges (so the allowed range says them):
# beyond them a value is a typo or an attack on the schema, never a job.
MAX_BATCH = 65536  # examples per device per step; gradient accumulation steps
MAX_EPOCHS = 10_000
MAX_STEPS = 1_000_000_000  # optimizer steps, warmup, logging / evaluation / checkpoint intervals
MAX_ROWS = 10**12
MAX_TOKENS = 1 << 24  # sequence length (16M tokens)
MAX_SEED = 2**32 - 1  # numpy's seed range (transformers.set_seed seeds numpy)
MAX_RANK = 1 << 20  # LoRA rank / alpha
MAX_LAYERS = 10_000
MAX_COUNT = 1_000_000  # checkpoints kept, early-stopping patience

# --------------------------------------------------------------------------
# Field declarations
# --------------------------------------------------------------------------

#: (group key, title) in display order.
GROUPS: list[tuple[str, str]] = [
    ("model", "Model"),
    ("data", "Data"),
    ("trainer", "Trainer"),
    ("general", "General"),
    ("runtime", "Training runtime"),
    ("preference", "Preference (DPO / KTO)"),
    ("adapter", "Adapter (LoRA / QLoRA / T-Few / prompt tuning / freeze)"),
    ("eval", "Evaluation & saving"),
    ("tracking", "Tracking"),
    ("launch", "Launch"),
]
GROUP_TITLES = dict(GROUPS)

@dataclass(frozen=True)
class Range:
    """A numeric interval; ``None`` bounds are open-ended."""

    min: float | None = None
    max: float | None = None
    min_exclusive: bool = False
    max_exclusive: bool = False

    def contains(self, v: float) -> bool:
        if self.min is not None:
            if v < self.min or (self.min_exclusive and v == self.min):
                return False
        if self.max is not None:
            if v > self.max or (self.max_exclusive and v == self.max):
                return False
        return True

    def describe(self) -> str:
        lo = hi = ""
        if self.min is not None:
            lo = f"{_bound(self.min)} {'<' if self.min_exclusive else '≤'} "
        if self.max is not None:
            hi = f" {'<' if self.max_exclusive else '≤'} {_bound(self.max)}"
        if not lo and not hi:
            return "any number"
        return f"{lo}x{hi}"

    def interval(self) -> str:
        """Mathematical notation, e.g. ``[1e-05, 0.001]`` or ``(0, +inf)``."""
        lo = "-inf" if self.min is None else _num(self.min)
        hi = "+inf" if self.max is None else _num(self.max)
        lb = "(" if (self.min is None or self.min_exclusive) else "["
        rb = ")" if (self.max is None or self.max_exclusive) else "]"
        return f"{lb}{lo}, {hi}{rb}"


_SUPERSCRIPT = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


def _bound(v: float) -> str:
    """A range bound: a large power of ten as ``10⁹`` (the form's hint column is narrow), else :func:`_num`."""
    if isinstance(v, int) and v >= 10**6 and str(v).rstrip("0") == "1":
        return "10" + str(len(str(v)) - 1).translate(_SUPERSCRIPT)
    return _num(v)


#: The other tools whose files finetui imports and exports (the keys of :attr:`Field.names`).
LF = "LLaMA-Factory"
NOVA = "Nova recipe"
FPT = "FPT AI Studio JSON"
OCI = "OCI JSON"
WX = "watsonx JSON"
TOOLS = (LF, NOVA, FPT, OCI, WX)


def key_of(name: str) -> str:
    """The bare key path of an external name (the text before a note or a slash)."""
    return name.split(" (")[0].split(" / ")[0].split(" + ")[0].strip()


@dataclass(frozen=True)
class Field:
    """One parameter: the only place its type, range, default and help are written."""

    group: str
    key: str
    kind: Kind  # declared by name ("int", "float", "bool", "enum", "str", "list", "path"): engine/schema/kinds.py
    default: Any
    label: str
    help: str
    range: Range | None = None
    choices: tuple[Any, ...] | None = None
    optional: bool = False  # None is an allowed value ("unset")
    visible: Callable[[dict[str, Any]], bool] | None = None
    visible_text: str = ""  # the rule in words, for docs and the TUI
    secret: bool = False
    aliases: tuple[str, ...] = ()  # what the providers' documents call it (docs, the help dialog)
    #: a check of the value's form beyond type and range (a host name, a variable name): → why not, or None;
    #: for a list, applied to each item
    check: Callable[[Any], str | None] | None = None
    bool_as: tuple[str, str] | None = None  # a str field that also takes a bool: (what false means, what true means)
    #: its name in the other tools' files (a tool of :data:`TOOLS` → the key; dotted for nested files; a note in
    #: parentheses says how the value is transformed): what the importers and exporters read and write, and
    #: docs/parameters.md shows ("in other tools")
    names: dict[str, str] = dc_field(default_factory=dict)
    #: the command-line option that sets it (``finetui data check``: :data:`DATA_CHECK_FIELDS`), e.g. ``--max-length``
    flag: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.kind, str):
            object.__setattr__(self, "kind", KINDS[self.kind])

    @property
    def name(self) -> str:
        return f"{self.group}.{self.key}"

    def is_visible(self, values: dict[str, Any]) -> bool:
        return True if self.visible is None else bool(self.visible(values))


_HOST = re.compile(r"(?:[A-Za-z0-9_][A-Za-z0-9._-]*@)?(?:[A-Za-z0-9_][A-Za-z0-9._-]*|\[[0-9A-Fa-f:.%]+\])"
                   r"(?::(?P<port>[0-9]{1,5}))?")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: what an SSH target may be, said where one is refused
HOST_FORM = "local, [user@]host[:port] or an ~/.ssh/config alias"


def host_problem(target: Any) -> str | None:
    """Why ``target`` is not an SSH target (``[user@]host[:port]`` or an alias: letters, digits, ``._-``; no
    whitespace, NUL, shell metacharacters or leading ``-``); None when it is one (or ``local``)."""
    if is_local_host(target):
        return None
    t = str(target)
    if len(t) > 255:
        return f"a host name of {len(t)} characters is too long"
    bad = sorted({c for c in t if c.isspace() or not c.isprintable() or c in "\0;|&$`<>()'\"\\*?!{}[],#~="}
                 - ({"[", "]"} if "[" in t else set()))
    if t.startswith("-"):
        return f"{t[:40]!r} starts with `-` (ssh would read it as an option)"
    m = _HOST.fullmatch(t)
    if bad or not m:
        shown = ", ".join(repr(c) for c in bad[:4])
        return f"{t[:60]!r} is not a host" + (f" (it holds {shown})" if bad else "")
    if m.group("port") is not None and not 1 <= int(m.group("port")) <= 65535:
        return f"port {m.group('port')} is not a TCP port (1–65535)"
    return None


def env_name_problem(name: Any) -> str | None:
    """Why ``name`` cannot name an environment variable (letters, digits and ``_``, not starting with a digit)."""
    if name is None or name == "":
        return None
    s = str(name)
    if not _ENV_NAME.fullmatch(s):
        return f"{s[:60]!r} is not an environment variable name (letters, digits and _, not starting with a digit)"
    return None


def _v(expr: Callable[[dict[str, Any]], bool], text: str) -> dict[str, Any]:
    return {"visible": expr, "visible_text": text}


def _is(name: str, *vals: Any) -> dict[str, Any]:
    return _v(lambda v: v.get(name) in vals, f"{name} is {' or '.join(map(str, vals))}")


def _reads_s3(v: dict[str, Any]) -> bool:
    return any_s3(v.get("data.train_path"), v.get("data.validation_path"))


_S3_DATA = _v(_reads_s3, "a data path is s3://")

LORA_METHODS = ("lora", "qlora")
STAGES = ("pretrain", "sft", "dpo", "kto", "reward")
METHODS = ("full", "lora", "qlora", "tfew", "prompt_tuning", "freeze")
FORMATS = ("alpaca", "corpus", "sharegpt", "sharegpt_image", "preference", "bedrock_converse", "kto")

#: The FPT pipeline's trainer → data formats table, extended to the other stages.
FORMATS_BY_STAGE: dict[str, tuple[str, ...]] = {
    "pretrain": ("corpus",),
    "sft": ("alpaca", "sharegpt", "sharegpt_image", "bedrock_converse"),
    # sharegpt for the pair trainers: conversations with chosen / rejected replies (LLaMA-Factory `ranking: true`)
    "dpo": ("preference", "sharegpt", "sharegpt_image"),
    "kto": ("kto", "preference"),
    "reward": ("preference", "sharegpt"),
}

#: Default LoRA targets by architecture (watsonx: llama and granite default to q_proj, v_proj).
DEFAULT_TARGET_MODULES: dict[str, list[str]] = {
    "llama": ["q_proj", "v_proj"],
    "granite": ["q_proj", "v_proj"],
    "mistral": ["q_proj", "v_proj"],
    "mixtral": ["q_proj", "v_proj"],
    "qwen2": ["q_proj", "v_proj"],
    "qwen3": ["q_proj", "v_proj"],
    "gemma": ["q_proj", "v_proj"],
}
ALL_LINEAR_LLAMA = ["down_proj", "up_proj", "gate_proj", "q_proj", "k_proj", "v_proj", "o_proj"]

TINY_MODEL = "finetui:tiny-llama"
TINY_VLM = "finetui:tiny-vlm"  # the built-in tiny vision-language model (LLaVA), engine/tiny.py
TINY_MODELS = (TINY_MODEL, TINY_VLM)  # built on first use, never downloaded
#: Prefix of the sample data files shipped in engine/assets/samples/.
SAMPLES_PREFIX = "finetui:samples/"

#: launch.* defaults that code outside the schema also falls back to (an old run record, a CLI option)
LOCAL_HOST = "local"  # launch.host meaning this machine
REMOTE_PYTHON = "python3"
REMOTE_WORKDIR = "~/finetui-runs"
RUNS_DIR = "runs"  # launch.runs_dir: where run directories are created
MASTER_PORT = 29500


def is_local_host(host: Any) -> bool:
    """Whether a launch.host value (or the host a run records) means this machine: unset, "" or "local".
    Anything else — ``localhost`` and ``127.0.0.1`` included — is an SSH target."""
    return host in (None, "", LOCAL_HOST)


def is_remote_job(res: dict[str, Any]) -> bool:
    """Whether a resolved job runs on other hosts: launch.host names one, or launch.hosts lists nodes."""
    return bool(res.get("launch.hosts")) or not is_local_host(res.get("launch.host"))


_F = Field
_SLURM = _is("launch.launcher", "slurm")
#: Slurm's time limit forms (sbatch --time): minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS
SLURM_TIME_RE = r"^(\d+-)?\d+(:\d{1,2}){0,2}$|^\d+-\d+$"
_SLURM_FIELDS = [
    _F("launch", "slurm_partition", "str", None, "Partition", "Slurm partition (sbatch --partition); unset: the "
       "cluster's default.", optional=True, **_SLURM),
    _F("launch", "slurm_account", "str", None, "Account", "Slurm account charged (--account).", optional=True,
       **_SLURM),
    _F("launch", "slurm_qos", "str", None, "QOS", "Quality of service (--qos).", optional=True, **_SLURM),
    _F("launch", "slurm_time", "str", None, "Time limit", "Wall-clock limit (--time): minutes, HH:MM:SS or "
       "D-HH:MM:SS; unset: the partition's default.", optional=True, **_SLURM),
    _F("launch", "slurm_tasks_per_node", "int", 1, "Tasks per node", "torchrun agents per node (--ntasks-per-node), "
       "each starting launch.procs_per_node ranks; 1 is usual (one agent for all the node's GPUs). The allocation "
       "has launch.nodes nodes (--nodes). A DeepSpeed job runs one launcher per node with the ranks of them all.",
       range=Range(1, 1024), **_SLURM),
    _F("launch", "slurm_gpus_per_node", "int", None, "GPUs per node", "--gpus-per-node; unset: none asked for "
       "(CPU jobs, or clusters that give GPUs otherwise).", optional=True, range=Range(0, 1024), **_SLURM),
    _F("launch", "slurm_cpus_per_task", "int", None, "CPUs per task", "--cpus-per-task.", optional=True,
       range=Range(1, 4096), **_SLURM),
    _F("launch", "slurm_mem", "str", None, "Memory per node", "--mem, e.g. 64G or 500M; 0 = all of the node's.",
       optional=True, **_SLURM),
    _F("launch", "slurm_constraint", "str", None, "Constraint", "Node features (--constraint), e.g. a100|h100.",
       optional=True, **_SLURM),
    _F("launch", "slurm_extra", "list", [], "Extra #SBATCH lines", "Further sbatch options, one per entry "
       "(e.g. --exclusive, --reservation=x), written as #SBATCH lines.", **_SLURM),
    _F("launch", "slurm_signal_grace", "int", 120, "Signal grace (s)", "SIGUSR1 reaches the job this many seconds "
       "before its time limit (--signal=B:USR1@<s>): the worker checkpoints and exits cleanly.",
       range=Range(10, 65535), **_SLURM),
    _F("launch", "slurm_requeue", "bool", False, "Requeue", "After SIGUSR1 (time limit, preemption) the job "
       "requeues itself and resumes from the newest complete checkpoint in the same run (--requeue).", **_SLURM),
]

FIELDS: list[Field] = [
    # ---------------------------------------------------------------- model
    _F("model", "name_or_path", "str", TINY_MODEL, "Base model",
       "A model id, a local folder with config.json, or `finetui:tiny-llama` (the built-in demo model, "
       "built and saved locally on first use; `finetui:tiny-vlm`: its vision-language twin, for image data). "
       "Nova: model_name_or_path (base model or a trained checkpoint).",
       aliases=("model_name_or_path",),
       names={LF: "model_name_or_path", NOVA: "run.model_name_or_path", WX: "base_model.model_id"}),
    _F("model", "trust_remote_code", "bool", False, "Trust remote code",
       "Allow the model's own Python code (some architectures need it).",
       names={LF: "trust_remote_code"}),
    _F("model", "hidden_dropout", "float", None, "Hidden dropout",
       "Dropout of hidden states, applied to the model config where the architecture has it (Nova: 0–1; "
       "0.0–0.2 against overfitting). Unset keeps the model's own value.",
       range=Range(0, 1), optional=True,
       names={NOVA: "training_config.model.hidden_dropout"}),
    _F("model", "attention_dropout", "float", None, "Attention dropout",
       "Dropout of attention probabilities (Nova: 0–1). Unset keeps the model's own value.",
       range=Range(0, 1), optional=True,
       names={NOVA: "training_config.model.attention_dropout"}),
    _F("model", "ffn_dropout", "float", None, "FFN dropout",
       "Dropout in the feed-forward block (Nova: 0–1). Architectures without one are named in a warning.",
       range=Range(0, 1), optional=True,
       names={NOVA: "training_config.model.ffn_dropout"}),
    # ----------------------------------------------------------------- data
    _F("data", "train_path", "path", "", "Training data",
       "A .json / .jsonl / .zip file, a folder, or s3://bucket/key (connection below); several: a.json,b.jsonl "
       "(read one after the other; one in another format: b.json#sharegpt). For a run on another host a local "
       "file is copied; a path that exists only there is read in place.",
       aliases=("data_s3_path",),
       names={LF: "dataset (an entry of dataset_info.json)", NOVA: "run.data_s3_path"}),
    _F("data", "format", "enum", "alpaca", "Data format",
       "alpaca {instruction,input,output}; corpus {text}; sharegpt {conversations:[{from,value}]} or "
       "{messages:[{role,content}]} (for DPO / reward: conversations + chosen / rejected replies); sharegpt_image "
       "(zip with train.json and images; for DPO: conversations + chosen / rejected replies + images, on a "
       "vision-language model); preference (chosen/rejected after an alpaca, conversation or prompt; or "
       "chosen_messages/rejected_messages); bedrock_converse (Nova); kto (messages + boolean label).",
       choices=FORMATS,
       names={LF: "dataset_info.json formatting / ranking / columns"}, flag="--format"),
    _F("data", "validation_path", "path", None, "Validation data",
       "A separate validation file, or several separated by commas (Nova: validation_data_s3_path). Unset: "
       "use val_size.",
       optional=True, aliases=("validation_data_s3_path",),
       names={LF: "eval_dataset", NOVA: "run.validation_data_s3_path"}),
    _F("data", "val_size", "float", 0.0, "Validation fraction",
       "Fraction of the training rows held out for evaluation when no validation file is given. OCI's document "
       "states no hold-out (its step count is epochs × size(trainingDataset) ÷ batch over all training rows), so "
       "the OCI profiles hold out nothing: their early stopping evaluates data.validation_path.",
       range=Range(0, 1, max_exclusive=True),
       names={LF: "val_size"}),
    _F("data", "allow_percentage_invalid_samples", "float", 0.0, "Allowed invalid rows (%)",
       "Above this share of invalid rows the data check fails and training refuses to start; at or below "
       "it invalid rows are dropped and counted in the run's events (Nova's recipe uses 10).",
       range=Range(0, 100),
       names={NOVA: "training_config.allow_percentage_invalid_samples"}, flag="--allow-invalid"),
    _F("data", "max_samples", "int", None, "Max samples",
       "Use at most this many training rows, the first ones (unset: all). With several training files it "
       "caps their total, counted in the order the files are named.", range=Range(1, MAX_ROWS), optional=True,
       names={LF: "max_samples"}),
    _F("data", "packing", "bool", True, "Sequence packing",
       "Pack short rows best-fit-decreasing into sequences of up to max_sequence_length tokens; rows never "
       "attend to each other and no token is predicted across a row boundary. With sdpa / eager each packed "
       "sequence is a row of the batch with its own block-diagonal mask (1.99–2.03× the tokens/s of padded batches "
       "on a realistic length mix, bench/packing.py); with flash-attention-2 TRL's BFD packing flattens the "
       "batch for the varlen kernels. On by default, by that measurement (pre-training / SFT only; the "
       "evaluation rows stay unpacked; not with prompt tuning, whose PEFT model drops the position ids that "
       "keep packed rows apart). Provider profiles default it off: they count steps per example.",
       **_v(lambda v: v.get("trainer.stage") in ("pretrain", "sft") and v.get("trainer.training_type") != "prompt_tuning",
            "trainer.stage is pretrain or sft and trainer.training_type is not prompt_tuning"),
       names={LF: "packing"}),
    _F("data", "padding_free", "bool", False, "Padding-free batches",
       "Flatten each batch into one row without padding tokens (TRL padding_free). Rows stay apart "
       "(position ids restart per row); with flash-attention-2 at no cost, with sdpa / eager through a dense "
       "block mask over the whole flattened batch. Off by default, by measurement (bench/packing.py): 1.17–1.19× "
       "padded batches on CPU with sdpa where packing gives 2×; SFT / pre-training only, and without packing "
       "max_length is not enforced."),
    _F("data", "group_by_length", "bool", False, "Group by length",
       "Batch rows of similar length together to reduce padding (SFT / pre-training). Measured 1.70–2.17× "
       "the tokens/s of random batches on a realistic length mix (bench/packing.py: padding 52 % → 8–12 %); off by "
       "default because it changes the order rows are seen in (the loss curve swings with row length) and "
       "LLaMA-Factory / TRL default it off, so imported configurations keep their meaning.",
       names={LF: "group_by_length"}),
    _F("data", "s3_endpoint_url", "str", None, "S3 endpoint URL",
       "Endpoint of the S3-compatible store (FPT data hub connection). Unset: AWS.", optional=True,
       flag="--endpoint-url", **_S3_DATA),
    _F("data", "s3_region", "str", None, "S3 region", "Region of the bucket.", optional=True,
       flag="--region", **_S3_DATA),
    _F("data", "s3_access_key_env", "str", "AWS_ACCESS_KEY_ID", "Access key variable",
       "Name of the environment variable holding the access key id. Secrets are never stored in a preset.",
       check=env_name_problem, flag="--access-key-env", **_S3_DATA),
    _F("data", "s3_secret_key_env", "str", "AWS_SECRET_ACCESS_KEY", "Secret key variable",
       "Name of the environment variable holding the secret key (asked for, masked, when unset).",
       check=env_name_problem, flag="--secret-key-env", **_S3_DATA),
    _F("data", "streaming", "bool", False, "Streaming",
       "Read, tokenize and pack the rows while training instead of tokenizing them once into the host's cache "
       "(an Arrow file about the corpus's size): for corpora larger than the local disk can hold. Needs "
       "general.max_steps (the rows are not counted into epochs); rows are shuffled within a buffer of "
       "10,000, not globally; packing bins the rows of each window of 2,000; rank 0 reads and hands each "
       "rank its batches. Pre-training / SFT text data only.",
       **_v(lambda v: v.get("trainer.stage") in ("pretrain", "sft"), "trainer.stage is pretrain or sft")),
    # -------------------------------------------------------------- trainer
    _F("trainer", "stage", "enum", "sft", "Trainer",
       "pretrain (corpus), sft, dpo (DPO family incl. ORPO/SimPO), kto, reward (reward model).",
       choices=STAGES,
       names={LF: "stage (pt, sft, dpo, kto, rm)"}, flag="--trainer"),
    _F("trainer", "training_type", "enum", "lora", "Tuning method",
       "full; lora; qlora (LoRA on a 4/8-bit quantized model); tfew (OCI T-Few, PEFT IA3); "
       "prompt_tuning (watsonx); freeze (train only the last N layers).",
       choices=METHODS, aliases=("finetuning_type",),
       names={LF: "finetuning_type (qlora = lora + quantization_bit)",
              NOVA: "training_config.model.peft.peft_scheme (null = full)",
              FPT: "training_type (Full, LoRA)", OCI: "trainingConfigType",
              WX: "peft_parameters.type (none = full) / tuning_type"}),
    _F("trainer", "task_type", "enum", None, "Task type",
       "What the tuned model is for: classification, generation or summarization. Informative for training; "
       "watsonx's prompt-tuning defaults for granite-13b-instruct-v2 depend on it (its table is keyed by task).",
       choices=("classification", "generation", "summarization"), optional=True,
       **_is("trainer.training_type", "prompt_tuning"), aliases=("task_id",),
       names={WX: "task_id"}),
    _F("trainer", "distributed_backend", "enum", "ddp", "Distributed backend",
       "ddp (torchrun DistributedDataParallel), deepspeed (ZeRO) or fsdp (PyTorch FSDP2 through accelerate: "
       "parameters, gradients and optimizer states sharded over the ranks, one decoder layer gathered at a time).",
       choices=("ddp", "deepspeed", "fsdp"),
       names={LF: "deepspeed (a config file); FSDP: v1 dist_config.name fsdp2, classic: an accelerate config file",
              FPT: "distributed_backend (DDP, DeepSpeed)"}),
    _F("trainer", "zero_stage", "enum", 2, "ZeRO stage",
       "DeepSpeed ZeRO stage: 1 shards optimizer states, 2 also gradients, 3 also parameters.",
       choices=(1, 2, 3), **_is("trainer.distributed_backend", "deepspeed"),
       aliases=("deepspeed_zero_stage",),
       names={LF: "deepspeed config: zero_optimization.stage", FPT: "zero_stage"}),
    _F("trainer", "offload_optimizer", "bool", False, "Offload optimizer",
       "ZeRO: keep optimizer states in CPU memory.", **_is("trainer.distributed_backend", "deepspeed"),
       names={LF: "deepspeed config: zero_optimization.offload_optimizer"}),
    _F("trainer", "offload_params", "bool", False, "Offload parameters",
       "ZeRO-3: keep parameters in CPU memory.",
       **_v(lambda v: v.get("trainer.distributed_backend") == "deepspeed" and v.get("trainer.zero_stage") == 3,
            "distributed_backend is deepspeed and zero_stage is 3"),
       names={LF: "deepspeed config: zero_optimization.offload_param"}),
    _F("trainer", "fsdp_sharding", "enum", "full_shard", "FSDP sharding",
       "full_shard: parameters are freed again after each layer's forward (least memory, ZeRO-3-like); "
       "shard_grad_op: they stay gathered from forward to backward (less communication, ZeRO-2-like).",
       choices=("full_shard", "shard_grad_op"), **_is("trainer.distributed_backend", "fsdp"),
       names={LF: "fsdp_config: fsdp_reshard_after_forward (v1: dist_config.reshard_after_forward)"}),
    _F("trainer", "fsdp_cpu_offload", "bool", False, "FSDP CPU offload",
       "FSDP: keep parameters, gradients and optimizer states in CPU memory (the optimizer step runs on the CPU).",
       **_is("trainer.distributed_backend", "fsdp"),
       names={LF: "fsdp_config: fsdp_offload_params (v1: dist_config.offload_params)"}),
    _F("trainer", "fsdp_state_dict", "enum", "full", "FSDP checkpoint form",
       "full: each checkpoint holds the whole model, gathered on rank 0 (loads anywhere); sharded: every rank writes "
       "its own shard (fast, little memory; resumes with the same number of ranks). The final model is always full.",
       choices=("full", "sharded"), **_is("trainer.distributed_backend", "fsdp"),
       names={LF: "fsdp_config: fsdp_state_dict_type"}),
    # -------------------------------------------------------------- general
    _F("general", "batch_size", "int", 2, "Batch size",
       "Examples per device per step (per GPU when distributed).", range=Range(1, MAX_BATCH),
       aliases=("trainingBatchSize", "micro_batch_size", "per_device_train_batch_size"),
       names={LF: "per_device_train_batch_size", NOVA: "training_config.micro_batch_size", FPT: "batch_size",
              OCI: "trainingBatchSize", WX: "batch_size"}),
    _F("general", "global_batch_size", "int", None, "Global batch size",
       "Examples per optimizer step over all ranks. Set: gradient accumulation follows from it (global ÷ "
       "(batch × ranks), rounded up where it does not divide, with a warning); unset: batch × accumulation × ranks. "
       "Nova recipes: global_batch_size 16, 32 or 64 with micro_batch_size 1, a field of its own that does not "
       "grow with replicas (a replica is a whole instance). Nova sources disagree on the default: the document's "
       "quick-start recipe and the real Micro LoRA recipe say 64, the real Nova Lite full-rank recipe 16; both Nova "
       "profiles follow the document (64).",
       range=Range(1, None), optional=True, aliases=("global_batch_size",),
       **_v(lambda v: v.get("general.global_batch_size") is not None, "it is set (the Nova profiles set it)"),
       names={NOVA: "training_config.global_batch_size"}),
    _F("general", "epochs", "int", 3, "Epochs",
       "Passes over the training data. Nova: max_epochs (≤ 5); set max_steps or epochs, not both. Nova sources "
       "disagree on the default: the document's full-rank and LoRA examples say 2, its quick-start recipe max_steps 16 "
       "with max_epochs -1, the real Nova Lite full-rank recipe 1 and the Nova Micro LoRA recipe 2; nova_full follows "
       "the real recipe (1), nova_lora the document and its recipe (2).",
       range=Range(1, MAX_EPOCHS), optional=True,
       aliases=("totalTrainingEpochs", "num_epochs", "max_epochs", "num_train_epochs"),
       names={LF: "num_train_epochs", NOVA: "training_config.trainer.max_epochs", FPT: "epochs",
              OCI: "totalTrainingEpochs", WX: "num_epochs"}),
    _F("general", "max_steps", "int", None, "Max steps",
       "Stop after this many optimizer steps; when set it takes precedence over epochs.",
       range=Range(1, MAX_STEPS), optional=True,
       names={LF: "max_steps", NOVA: "training_config.trainer.max_steps"}),
    _F("general", "learning_rate", "float", 2e-4, "Learning rate",
       "Peak learning rate. Nova: full fine-tuning 1e-6–1e-3 (1e-6–1e-4 advised), LoRA 0–1. Nova full-rank "
       "default: the document's example says 1e-5, the real Nova Lite recipe 5e-6; nova_full follows the real recipe "
       "(5e-6); nova_lora 1e-5 (document and Micro LoRA recipe agree).",
       range=Range(0, 1, min_exclusive=True, max_exclusive=True), aliases=("learningRate", "lr"),
       names={LF: "learning_rate", NOVA: "training_config.model.optim.lr", FPT: "learning_rate",
              OCI: "learningRate", WX: "learning_rate"}),
    _F("general", "max_sequence_length", "int", 1024, "Max sequence length",
       "Tokens per example (input + output); longer examples are truncated and counted in the data report.",
       range=Range(1, MAX_TOKENS), aliases=("max_length", "cutoff_len", "max_seq_length"),
       names={LF: "cutoff_len", NOVA: "training_config.max_length", FPT: "max_sequence_length",
              WX: "max_seq_length"}, flag="--max-length"),
    _F("general", "resume_from_checkpoint", "str", "no", "Resume from checkpoint",
       "`no`, `last` (the newest complete checkpoint of this run) or a path to a checkpoint "
       "(relative to the run directory). FPT AI Studio's type is bool or string: false means no, true means last.",
       bool_as=("no", "last"),
       names={LF: "resume_from_checkpoint / overwrite_output_dir (false = last)",
              FPT: "resume_from_checkpoint (false = no, true = last)"}),
    # -------------------------------------------------------------- runtime
    _F("runtime", "gradient_accumulation_steps", "int", 1, "Gradient accumulation",
       "Micro-batches per optimizer step: the effective batch is batch × accumulation × ranks.",
       range=Range(1, MAX_BATCH), aliases=("accumulate_steps",),
       names={LF: "gradient_accumulation_steps", FPT: "gradient_accumulation_steps", WX: "accumulate_steps"}),
    _F("runtime", "mixed_precision", "enum", "auto", "Mixed precision",
       "bf16, fp16 or none; auto = bf16 on a GPU that supports it, none on CPU. fp16 is refused on CPU.",
       choices=("auto", "bf16", "fp16", "none"),
       names={LF: "bf16 / fp16", FPT: "mixed_precision"}),
    _F("runtime", "quantization_bit", "enum", "none", "Quantization bits",
       "On-the-fly quantization of the base model with bitsandbytes (QLoRA): none, 4 or 8. Only with "
       "LoRA; qlora without a value uses 4.",
       choices=("none", 4, 8), **_is("trainer.training_type", *LORA_METHODS),
       names={LF: "quantization_bit", FPT: "quantization_bit"}),
    _F("runtime", "optimizer", "enum", "adamw", "Optimizer",
       "adamw or sgd (Nova's distributed_fused_adam maps to adamw).", choices=("adamw", "sgd"),
       names={LF: "optim (adamw_torch, sgd)", NOVA: "training_config.model.optim.name (distributed_fused_adam)",
              FPT: "optimizer"}),
    _F("runtime", "adam_beta1", "float", 0.9, "Adam beta1", "First-moment decay.",
       range=Range(0, 1, max_exclusive=True), **_is("runtime.optimizer", "adamw"),
       names={LF: "adam_beta1", NOVA: "training_config.model.optim.betas[0]"}),
    _F("runtime", "adam_beta2", "float", 0.999, "Adam beta2", "Second-moment decay.",
       range=Range(0, 1, max_exclusive=True), **_is("runtime.optimizer", "adamw"),
       names={LF: "adam_beta2", NOVA: "training_config.model.optim.betas[1]"}),
    _F("runtime", "adam_epsilon", "float", 1e-8, "Adam epsilon", "Numerical stability term (Nova: 1e-6).",
       range=Range(0, 1, min_exclusive=True, max_exclusive=True), **_is("runtime.optimizer", "adamw"),
       names={LF: "adam_epsilon", NOVA: "training_config.model.optim.eps"}),
    _F("runtime", "weight_decay", "float", 0.0, "Weight decay",
       "Decoupled weight decay (Nova: 0.01–0.1 = more regularisation).", range=Range(0, None),
       names={LF: "weight_decay", NOVA: "training_config.model.optim.weight_decay", FPT: "weight_decay"}),
    _F("runtime", "max_grad_norm", "float", 1.0, "Max grad norm",
       "Gradient clipping threshold; 0 disables clipping.", range=Range(0, None),
       aliases=("gradient_clip_val",),
       names={LF: "max_grad_norm", NOVA: "training_config.trainer.gradient_clip_val", FPT: "max_grad_norm"}),
    _F("runtime", "gradient_checkpointing", "bool", True, "Gradient checkpointing",
       "Recompute activations in the backward pass: much less memory, about 20–30 % slower "
       "(FPT: disable_gradient_checkpointing is its negation).",
       names={LF: "disable_gradient_checkpointing (negated)", FPT: "disable_gradient_checkpointing (negated)"}),
    _F("runtime", "attention_implementation", "enum", "sdpa", "Attention",
       "sdpa (PyTorch scaled-dot-product), eager, or flash_attention_2 (FPT flash_attention_v2; "
       "needs the flash-attn package and a GPU).", choices=("sdpa", "eager", "flash_attention_2"),
       names={LF: "flash_attn (sdpa, disabled = eager, fa2)", FPT: "flash_attention_v2 (true = flash_attention_2)"}),
    _F("runtime", "liger_kernel", "bool", False, "Liger kernels",
       "Use the Liger Triton kernels (GPU only, when installed).",
       names={LF: "enable_liger_kernel"}),
    _F("runtime", "lr_warmup_steps", "int", 0, "Warmup steps",
       "Linear warmup from 0 over this many steps. Not together with warmup ratio.",
       range=Range(0, MAX_STEPS), aliases=("warmup_steps",),
       names={LF: "warmup_steps", NOVA: "training_config.model.optim.sched.warmup_steps", FPT: "lr_warmup_steps"}),
    _F("runtime", "lr_warmup_ratio", "float", 0.0, "Warmup ratio",
       "Linear warmup over this fraction of the total steps. Not together with warmup steps.",
       range=Range(0, 1, max_exclusive=True), aliases=("warmup_ratio",),
       names={LF: "warmup_ratio", FPT: "lr_warmup_ratio"}),
    _F("runtime", "lr_scheduler", "enum", "linear", "LR schedule",
       "linear, cosine or constant decay after warmup.", choices=("linear", "cosine", "constant"),
       aliases=("lr_scheduler_type",),
       names={LF: "lr_scheduler_type", FPT: "lr_scheduler"}),
    _F("runtime", "min_lr", "float", 0.0, "Minimum LR",
       "Learning rate at the end of the cosine decay (Nova: 0–1, below lr). Nova full-rank default: the document's "
       "example says 1e-6, the real Nova Lite recipe 5e-7; nova_full follows the real recipe (5e-7), nova_lora 1e-6 "
       "(document and Micro LoRA recipe agree).", range=Range(0, 1),
       **_is("runtime.lr_scheduler", "cosine"),
       names={LF: "lr_scheduler_kwargs.min_lr (cosine_with_min_lr)",
              NOVA: "training_config.model.optim.sched.min_lr"}),
    _F("runtime", "seed", "int", 42, "Seed", "Random seed, always applied.", range=Range(0, MAX_SEED),
       names={LF: "seed", FPT: "seed"}),
    _F("runtime", "full_determinism", "bool", False, "Full determinism",
       "Deterministic algorithms for reproducible distributed runs; slow, for debugging. (FPT's document "
       "says the seed has no effect when this is on; that sentence is inverted — the seed is always "
       "applied.)",
       names={LF: "full_determinism", FPT: "full_determinism"}),
    _F("runtime", "ddp_timeout", "int", 1800, "Distributed timeout",
       "Seconds a rank waits for the others in a collective (a long save, a merge, a slow node) before the "
       "run fails (transformers' ddp_timeout; the process group's timeout).", range=Range(60, None),
       names={LF: "ddp_timeout"}),
    # ----------------------------------------------------------- preference
    _F("preference", "preference_loss", "enum", "sigmoid", "Preference loss",
       "sigmoid (DPO), hinge, ipo, kto_pair, orpo, simpo.",
       choices=("sigmoid", "hinge", "ipo", "kto_pair", "orpo", "simpo"),
       **_is("trainer.stage", "dpo"), aliases=("pref_loss",),
       names={LF: "pref_loss", FPT: "preference_loss"}),
    _F("preference", "preference_beta", "float", 0.1, "Preference beta",
       "Beta of the preference loss: how far the policy may move from the reference.",
       range=Range(0, 1), **_is("trainer.stage", "dpo", "kto"), aliases=("pref_beta",),
       names={LF: "pref_beta", FPT: "preference_beta"}),
    _F("preference", "preference_ftx", "float", 0.0, "SFT loss weight",
       "Coefficient of the SFT loss mixed into the preference loss.", range=Range(0, 10),
       **_is("trainer.stage", "dpo"), aliases=("pref_ftx",),
       names={LF: "pref_ftx", FPT: "preference_ftx"}),
    _F("preference", "dpo_label_smoothing", "float", 0.0, "Label smoothing",
       "Robust DPO label smoothing (sigmoid loss only).", range=Range(0, 0.5),
       **_v(lambda v: v.get("trainer.stage") == "dpo" and v.get("preference.preference_loss") == "sigmoid",
            "stage is dpo and preference_loss is sigmoid"),
       names={LF: "dpo_label_smoothing", FPT: "dpo_label_smoothing"}),
    _F("preference", "simpo_gamma", "float", 0.5, "SimPO gamma",
       "Target reward margin of SimPO.", range=Range(0, None, min_exclusive=True),
       **_v(lambda v: v.get("trainer.stage") == "dpo" and v.get("preference.preference_loss") == "simpo",
            "stage is dpo and preference_loss is simpo"),
       names={LF: "simpo_gamma", FPT: "simpo_gamma"}),
    # -------------------------------------------------------------- adapter
    _F("adapter", "lora_rank", "int", 8, "LoRA rank", "Rank of the low-rank update matrices.",
       range=Range(1, MAX_RANK), **_is("trainer.training_type", *LORA_METHODS), aliases=("loraR", "rank", "r"),
       names={LF: "lora_rank", FPT: "lora_rank", OCI: "loraR", WX: "peft_parameters.rank"}),
    _F("adapter", "lora_alpha", "int", 16, "LoRA alpha",
       "Scaling multiplier: alpha / rank is the fraction applied (alpha 2, rank 8 → 25 %). Nova: 32, 64, 96, 128, "
       "160 or 192 (real recipe); the document's LoRA recipe says 32, the real Nova Micro LoRA recipe 128; nova_lora "
       "follows the document (32).",
       range=Range(1, MAX_RANK), **_is("trainer.training_type", *LORA_METHODS), aliases=("loraAlpha", "alpha"),
       names={LF: "lora_alpha", NOVA: "training_config.model.peft.lora_tuning.alpha", FPT: "lora_alpha",
              OCI: "loraAlpha", WX: "peft_parameters.alpha"}),
    _F("adapter", "lora_dropout", "float", 0.05, "LoRA dropout", "Dropout on the adapter input.",
       range=Range(0, 1), **_is("trainer.training_type", *LORA_METHODS),
       aliases=("loraDropout", "adapter_dropout"),
       names={LF: "lora_dropout", NOVA: "training_config.model.peft.lora_tuning.adapter_dropout",
              FPT: "lora_dropout", OCI: "loraDropout", WX: "peft_parameters.dropout"}),
    _F("adapter", "target_modules", "list", ["all-linear"], "Target modules",
       "[\"all-linear\"] = every linear layer except the output layer (a mixture-of-experts model: attention "
       "and shared-expert layers; its experts and router stay frozen); [] = the architecture's default "
       "(q_proj, v_proj for llama/granite); or an explicit list of module names.",
       **_is("trainer.training_type", *LORA_METHODS, "tfew"), aliases=("lora_target",),
       names={LF: "lora_target (all = all-linear)", FPT: "target_modules", WX: "peft_parameters.target_modules"}),
    _F("adapter", "loraplus_lr_ratio", "float", 0.0, "LoRA+ ratio",
       "LoRA+: learning-rate ratio of the B matrices to the A matrices; 0 disables. Nova: 0–100 (real recipe); the "
       "document's LoRA recipe says 8, the real Nova Micro LoRA recipe 16; nova_lora follows the document (8).",
       range=Range(0, 100), **_is("trainer.training_type", *LORA_METHODS),
       names={LF: "loraplus_lr_ratio", NOVA: "training_config.model.peft.lora_tuning.loraplus_lr_ratio"}),
    _F("adapter", "merge_adapter", "bool", False, "Merge adapter",
       "Merge the adapter into the base model for the final model; otherwise only the adapter is saved.",
       **_is("trainer.training_type", *LORA_METHODS),
       names={FPT: "merge_adapter"}),
    _F("adapter", "prompt_tuning_init", "enum", "random", "Prompt init",
       "Initialisation of the soft prompt: random or text.", choices=("random", "text"),
       **_is("trainer.training_type", "prompt_tuning"), aliases=("init_method",),
       names={WX: "init_method"}),
    _F("adapter", "prompt_tuning_init_text", "str", None, "Prompt init text",
       "Text whose tokens initialise the soft prompt (init = text).", optional=True,
       **_v(lambda v: v.get("trainer.training_type") == "prompt_tuning"
            and v.get("adapter.prompt_tuning_init") == "text", "prompt_tuning_init is text"),
       aliases=("init_text",),
       names={WX: "init_text"}),
    _F("adapter", "num_virtual_tokens", "int", 20, "Virtual tokens",
       "Length of the soft prompt.", range=Range(1, 1024),
       **_is("trainer.training_type", "prompt_tuning")),
    _F("adapter", "freeze_trainable_layers", "int", 2, "Trainable layers",
       "Freeze: train only the last N decoder layers.", range=Range(1, MAX_LAYERS),
       **_is("trainer.training_type", "freeze"),
       names={LF: "freeze_trainable_layers"}),
    # ----------------------------------------------------------------- eval
    _F("eval", "evaluation_strategy", "enum", "no", "Evaluation",
       "no, epoch or steps.", choices=("no", "epoch", "steps"), aliases=("eval_strategy",),
       names={LF: "eval_strategy", NOVA: "training_config.trainer.val_check_interval (steps)",
              FPT: "evaluation_strategy"}),
    _F("eval", "eval_steps", "int", None, "Eval every (steps)",
       "Steps between evaluations; unset = logging_steps.", range=Range(1, MAX_STEPS), optional=True,
       **_is("eval.evaluation_strategy", "steps"), aliases=("val_check_interval",),
       names={LF: "eval_steps", NOVA: "training_config.trainer.val_check_interval", FPT: "eval_steps"}),
    _F("eval", "logging_steps", "int", 10, "Log every (steps)",
       "Steps between log events. 0 logs every step. (FPT's document also says \"-1 logs every step\", "
       "which contradicts its own range [0, +inf); finetui follows the range and reads 0 as every step.)",
       range=Range(0, MAX_STEPS), aliases=("logModelMetricsIntervalInSteps", "log_every_n_steps"),
       names={LF: "logging_steps", NOVA: "training_config.trainer.log_every_n_steps", FPT: "logging_steps",
              OCI: "logModelMetricsIntervalInSteps"}),
    _F("eval", "checkpoint_strategy", "enum", "steps", "Checkpoints",
       "no, epoch or steps.", choices=("no", "epoch", "steps"), aliases=("save_strategy",),
       names={LF: "save_strategy", FPT: "checkpoint_strategy"}),
    _F("eval", "checkpoint_steps", "int", 500, "Checkpoint every (steps)",
       "Steps between two checkpoints. Nova: the document's quick-start recipe has save_steps 100000 (in effect "
       "only the last checkpoint); the real recipes and the document's other examples have none, and the Nova "
       "profiles keep finetui's default (500) there.", range=Range(1, MAX_STEPS),
       **_is("eval.checkpoint_strategy", "steps"), aliases=("save_steps",),
       names={LF: "save_steps", NOVA: "training_config.save_steps", FPT: "checkpoint_steps"}),
    _F("eval", "checkpoint_limit", "int", None, "Checkpoints kept",
       "Keep at most this many checkpoints (the best is always kept); unset keeps all.",
       range=Range(1, MAX_COUNT), optional=True, aliases=("save_total_limit", "save_top_k"),
       names={LF: "save_total_limit", NOVA: "training_config.exp_manager.checkpoint_callback_params.save_top_k",
              FPT: "checkpoint_limit"}),
    _F("eval", "save_best_checkpoint", "bool", False, "Track best checkpoint",
       "End the run with the checkpoint of the lowest evaluation loss (the final model is the best one, "
       "not the last; rotation never removes it); needs evaluation, with a checkpoint at each evaluation.",
       names={LF: "load_best_model_at_end", FPT: "save_best_checkpoint"}),
    _F("eval", "early_stopping_patience", "int", 0, "Early-stopping patience",
       "Stop after this many evaluations without an improvement of at least the threshold; 0 disables. Nova: the "
       "document's quick-start recipe turns early stopping on (val_loss, patience 2, min_delta 0.001); the real "
       "recipes and the document's other examples do not, and the Nova profiles follow them (0, off).",
       range=Range(0, MAX_COUNT), aliases=("earlyStoppingPatience",),
       names={LF: "early_stopping_steps",
              NOVA: "training_config.exp_manager.early_stopping_callback_params.patience",
              OCI: "earlyStoppingPatience"}),
    _F("eval", "early_stopping_threshold", "float", 0.0, "Early-stopping threshold",
       "Minimum decrease of the evaluation loss that counts as an improvement.", range=Range(0, None),
       aliases=("earlyStoppingThreshold", "min_delta"),
       names={NOVA: "training_config.exp_manager.early_stopping_callback_params.min_delta",
              OCI: "earlyStoppingThreshold"}),
    # ------------------------------------------------------------- tracking
    _F("tracking", "tensorboard", "bool", True, "TensorBoard",
       "Write TensorBoard event files into the run directory.",
       names={LF: "report_to (tensorboard)", NOVA: "training_config.exp_manager.create_tensorboard_logger"}),
    _F("tracking", "mlflow_tracking_uri", "str", None, "MLflow tracking URI",
       "Log metrics, parameters and the final artifact path to this MLflow tracking URI.", optional=True,
       names={LF: "report_to (mlflow) + MLFLOW_TRACKING_URI", NOVA: "run.mlflow_tracking_uri"}),
    _F("tracking", "mlflow_experiment", "str", "finetui", "MLflow experiment", "Experiment name.",
       **_v(lambda v: bool(v.get("tracking.mlflow_tracking_uri")), "mlflow_tracking_uri is set"),
       names={NOVA: "run.mlflow_experiment_name"}),
    _F("tracking", "wandb", "bool", False, "Weights & Biases",
       "Log metrics to Weights & Biases (the wandb package). The API key comes only from the WANDB_API_KEY "
       "environment variable, never from a preset; a host that cannot reach the service logs offline into "
       "the run directory (`wandb sync <dir>` uploads it later)."),
    _F("tracking", "wandb_project", "str", "finetui", "W&B project", "Project the run is logged to.",
       **_v(lambda v: bool(v.get("tracking.wandb")), "wandb is on")),
    _F("tracking", "wandb_entity", "str", None, "W&B entity",
       "Team or user that owns the project; unset: the API key's default entity.", optional=True,
       **_v(lambda v: bool(v.get("tracking.wandb")), "wandb is on")),
    _F("tracking", "wandb_run_name", "str", None, "W&B run name",
       "Name of the run in W&B; unset: the finetui run name.", optional=True,
       **_v(lambda v: bool(v.get("tracking.wandb")), "wandb is on")),
    _F("tracking", "wandb_mode", "enum", "auto", "W&B mode",
       "auto: online when the service answers, offline otherwise; online; offline (files only).",
       choices=("auto", "online", "offline"), **_v(lambda v: bool(v.get("tracking.wandb")), "wandb is on")),
    # --------------------------------------------------------------- launch
    _F("launch", "run_name", "str", None, "Run name",
       "Run directory name; unset: ft_<model>_<stage>-<method>_<YYYYmmdd-HHMMSS> (FPT naming, with the kind of run).", optional=True,
       names={LF: "output_dir (last part)", NOVA: "run.name"}),
    _F("launch", "runs_dir", "path", RUNS_DIR, "Runs folder", "Where run directories are created.",
       names={LF: "output_dir (parent)"}),
    _F("launch", "host", "str", LOCAL_HOST, "Target",
       "`local` (this machine), user@host[:port] or an ~/.ssh/config alias.", check=host_problem),
    _F("launch", "hosts", "list", [], "Nodes",
       "Multi-node: every host (first is the master). Empty = the single target above.", check=host_problem),
    _F("launch", "device", "enum", "auto", "Device",
       "auto (GPU when present), cuda or cpu.", choices=("auto", "cuda", "cpu")),
    _F("launch", "procs_per_node", "int", 1, "GPUs (processes) per node",
       "Ranks started on each node (one per GPU; CPU ranks use gloo).", range=Range(1, 1024),
       aliases=("nproc_per_node",),
       names={WX: "gpu.num"}),
    _F("launch", "nodes", "int", 1, "Nodes",
       "Number of nodes (Nova: replicas).", range=Range(1, 4096), aliases=("replicas",),
       names={NOVA: "run.replicas"}),
    _F("launch", "launcher", "enum", "torchrun", "Launcher",
       "torchrun (c10d rendezvous, one per node over SSH), deepspeed (its own launcher with a "
       "generated hostfile) or slurm (a batch job submitted with sbatch on the target, the login node: "
       "srun starts torchrun on every node of the allocation, or DeepSpeed's launcher for a DeepSpeed job). A torchrun run of one process on one node "
       "starts the worker directly, without torchrun's launcher process.",
       choices=("torchrun", "deepspeed", "slurm")),
    *_SLURM_FIELDS,
    _F("launch", "master_port", "int", MASTER_PORT, "Master port", "Rendezvous port of the master node.",
       range=Range(1024, 65535)),
    _F("launch", "master_addr", "str", None, "Master address",
       "Multi-node: the address the other nodes reach the first node at (a private IP or name on the "
       "cluster's network). Unset: the first node's host name as ssh resolves it from here.",
       optional=True, **_v(lambda v: len(v.get("launch.hosts") or []) > 1, "launch.hosts has two nodes or more")),
    _F("launch", "gloo_socket_ifname", "str", None, "Gloo network interface",
       "GLOO_SOCKET_IFNAME of every rank: the interface (e.g. eth1, ib0) CPU collectives and the rendezvous use. "
       "Unset: SSH runs pick the interface that routes to the master address; Slurm runs leave it to gloo.",
       optional=True, **_v(lambda v: len(v.get("launch.hosts") or []) > 1 or v.get("launch.launcher") == "slurm",
                           "launch.hosts has two nodes or more, or launch.launcher is slurm")),
    _F("launch", "nccl_socket_ifname", "str", None, "NCCL network interface",
       "NCCL_SOCKET_IFNAME of every rank: the interface(s) NCCL's socket transport and bootstrap use (e.g. eth0, "
       "^docker,lo to exclude). Unset: NCCL chooses.",
       optional=True, **_v(lambda v: len(v.get("launch.hosts") or []) > 1 or v.get("launch.launcher") == "slurm",
                           "launch.hosts has two nodes or more, or launch.launcher is slurm")),
    _F("launch", "remote_python", "str", REMOTE_PYTHON, "Remote Python",
       "Python (or venv python) on the remote host that has finetui installed.",
       **_v(is_remote_job, "the target is remote")),
    _F("launch", "remote_workdir", "str", REMOTE_WORKDIR, "Remote work directory",
       "Where run directories are created on the remote host.",
       **_v(is_remote_job, "the target is remote")),
    _F("launch", "gpu_hour_price", "float", None, "Price per GPU-hour",
       "What one GPU-hour costs you (any currency); a run's card then shows its cost (GPUs × wall time × price).",
       optional=True, range=Range(0, None)),
    _F("launch", "start_at", "str", None, "Start at",
       "Scheduled start, local time `YYYY-mm-dd HH:MM` (FPT scheduled trigger). Unset: now.",
       optional=True),
]

FIELD_BY_NAME: dict[str, Field] = {f.name: f for f in FIELDS}
GROUP_FIELDS: dict[str, list[Field]] = {}
for _f in FIELDS:
    GROUP_FIELDS.setdefault(_f.group, []).append(_f)

#: the fields ``finetui data check`` takes as options, each by its declared flag (the TUI's check passes them on)
DATA_CHECK_FIELDS = ("data.format", "trainer.stage", "general.max_sequence_length",
                     "data.allow_percentage_invalid_samples", "data.s3_endpoint_url", "data.s3_region",
                     "data.s3_access_key_env", "data.s3_secret_key_env")


def names_in(tool: str) -> dict[str, str]:
    """The fields ``tool`` names one to one (a plain key in :attr:`Field.names`, no note): its key → the field's
    dotted name, in the schema's order."""
    return {n: f.name for f in FIELDS if (n := f.names.get(tool)) and key_of(n) == n and " " not in n}


#: Keys that look like secrets: a preset may never hold them.
SECRET_KEYS = {"s3_secret_key", "secret_key", "aws_secret_access_key", "s3_access_key", "access_key",
               "aws_access_key_id", "token", "hf_token", "api_key", "password"}
