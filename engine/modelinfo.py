"""What a model is, read from its ``config.json`` alone (no weights, no torch).

``describe(name_or_path)`` finds the config — a local folder (or a config.json
path), the Hugging Face cache when the model was downloaded before, the
built-in tiny model ``finetui:tiny-llama``, or a small built-in table of the
FPT AI Factory catalog models (so the estimate works offline for them) — and
returns a :class:`ModelInfo`: architecture, shapes and the exact parameter count.

The count is exact for llama / mistral / mixtral / qwen2 / qwen3 / granite /
gemma-like decoders (embeddings, tied or not, norms, biases, MoE experts): a test
builds a random-initialised model from the same config and compares.  For other
architectures the count is estimated (``exact`` is False); the catalog's vision
and DeepSeek models carry their counts, measured once with the model built on
PyTorch's meta device.

:func:`param_breakdown` gives the counts by part (embeddings, per-layer linear
modules, norms, lm_head), which ``engine/estimate.py`` uses for LoRA / QLoRA /
T-Few / freeze.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine.schema import DEFAULT_TARGET_MODULES, TINY_MODEL, TINY_VLM
from engine.errors import FinetuiError


class ModelInfoError(FinetuiError, ValueError):
    """No usable config.json; ``str()`` is one line for the user."""


# Class defaults of the config fields we read, by model_type (transformers 5.x). A config.json
# written by ``save_pretrained`` may omit a value equal to its class default.
_COMMON = {"vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
           "num_attention_heads": 32, "num_key_value_heads": None, "head_dim": None,
           "tie_word_embeddings": False, "attention_bias": False, "mlp_bias": False,
           "max_position_embeddings": 2048}
_DEFAULTS: dict[str, dict[str, Any]] = {
    "llama": {},
    "granite": {},
    "mistral": {"intermediate_size": 14336, "num_key_value_heads": 8, "max_position_embeddings": 131072},
    "mixtral": {"intermediate_size": 14336, "num_key_value_heads": 8, "max_position_embeddings": 131072,
                "num_local_experts": 8, "num_experts_per_tok": 2},
    "qwen2": {"vocab_size": 151936, "intermediate_size": 22016, "max_position_embeddings": 32768},
    "qwen3": {"vocab_size": 151936, "intermediate_size": 22016, "max_position_embeddings": 32768,
              "head_dim": 128},
    "qwen3_moe": {"vocab_size": 151936, "hidden_size": 2048, "intermediate_size": 6144, "moe_intermediate_size": 768,
                  "num_hidden_layers": 24, "num_attention_heads": 32, "num_key_value_heads": 4,
                  "max_position_embeddings": 32768, "num_experts": 128, "num_experts_per_tok": 8},
    "qwen2_moe": {"vocab_size": 151936, "hidden_size": 2048, "intermediate_size": 5632, "moe_intermediate_size": 1408,
                  "shared_expert_intermediate_size": 5632, "num_hidden_layers": 24, "num_attention_heads": 16,
                  "num_key_value_heads": 16, "max_position_embeddings": 32768, "num_experts": 60,
                  "num_experts_per_tok": 4},
    "gemma": {"vocab_size": 256000, "hidden_size": 3072, "intermediate_size": 24576, "num_hidden_layers": 28,
              "num_attention_heads": 16, "num_key_value_heads": 16, "head_dim": 256,
              "tie_word_embeddings": True, "max_position_embeddings": 8192},
    "gemma2": {"vocab_size": 256000, "hidden_size": 2304, "intermediate_size": 9216, "num_hidden_layers": 26,
               "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256,
               "tie_word_embeddings": True, "max_position_embeddings": 8192},
}
#: model types whose count is exact (tests compare with a real model built from the config)
EXACT_TYPES = tuple(_DEFAULTS)
_QKV_BIAS_ALWAYS = ("qwen2", "qwen2_moe")  # Qwen2 attention: q/k/v always have a bias, o_proj none
_QK_NORM = ("qwen3", "qwen3_moe")  # per-head RMSNorm of q and k
TEXT_SEQ2SEQ_TYPES = ("t5", "mt5", "bart", "mbart", "umt5")  # *ForConditionalGeneration without images
VISION_TYPES = ("mllama", "qwen2_vl", "qwen2_5_vl", "llava", "llava_next", "idefics3", "paligemma",
                "gemma3", "qwen3_vl", "mistral3")

# --------------------------------------------------------------------------
# Built-in catalog shapes (FPT AI Factory's base models), config.json subsets
# --------------------------------------------------------------------------

_LLAMA3_8B = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "dtype": "bfloat16", "hidden_size": 4096,
              "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
              "num_key_value_heads": 8, "vocab_size": 128256, "max_position_embeddings": 131072,
              "tie_word_embeddings": False}
_LLAMA3_70B = {**_LLAMA3_8B, "hidden_size": 8192, "intermediate_size": 28672, "num_hidden_layers": 80,
               "num_attention_heads": 64}
_QWEN2_05B = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "dtype": "bfloat16", "hidden_size": 896,
              "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
              "num_key_value_heads": 2, "vocab_size": 151936, "max_position_embeddings": 32768,
              "tie_word_embeddings": True}
_QWEN_72B_TEXT = {"dtype": "bfloat16", "hidden_size": 8192, "intermediate_size": 29568, "num_hidden_layers": 80,
                  "num_attention_heads": 64, "num_key_value_heads": 8, "vocab_size": 152064,
                  "max_position_embeddings": 32768, "tie_word_embeddings": False}
_MIXTRAL_8X22B = {"architectures": ["MixtralForCausalLM"], "model_type": "mixtral", "dtype": "bfloat16", "hidden_size": 6144,
                  "intermediate_size": 16384, "num_hidden_layers": 56, "num_attention_heads": 48,
                  "num_key_value_heads": 8, "vocab_size": 32000, "max_position_embeddings": 65536,
                  "num_local_experts": 8, "num_experts_per_tok": 2, "tie_word_embeddings": False}
_DEEPSEEK_V3 = {"architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3", "dtype": "bfloat16", "hidden_size": 7168,
                "intermediate_size": 18432, "moe_intermediate_size": 2048, "num_hidden_layers": 61,
                "num_attention_heads": 128, "num_key_value_heads": 128, "vocab_size": 129280,
                "max_position_embeddings": 163840, "n_routed_experts": 256, "n_shared_experts": 1,
                "num_experts_per_tok": 8, "first_k_dense_replace": 3, "q_lora_rank": 1536,
                "kv_lora_rank": 512, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128,
                "tie_word_embeddings": False,
                # without the multi-token-prediction layer (transformers does not load it)
                "_num_params": 671026404352}

_COMMAND_R = {"architectures": ["CohereForCausalLM"], "model_type": "cohere", "dtype": "float16", "hidden_size": 8192,
              "num_hidden_layers": 40, "num_attention_heads": 64, "vocab_size": 256000, "tie_word_embeddings": True}

#: config.json subsets of the catalog models; ``_num_params`` where the count is not computed here
#: (measured once with the transformers model built on the meta device).
CATALOG: dict[str, dict[str, Any]] = {
    "meta-llama/Llama-3.1-8B": _LLAMA3_8B,
    "meta-llama/Llama-3.2-1B": {**_LLAMA3_8B, "hidden_size": 2048, "intermediate_size": 8192,
                                "num_hidden_layers": 16, "head_dim": 64, "tie_word_embeddings": True},
    # not a published Meta model; the catalog's name is read as the Llama-3 8B shape
    "meta-llama/Llama-3.1-8B-Instruct": _LLAMA3_8B,
    "meta-llama/Llama-3.2-11B-Vision-Instruct": {
        "architectures": ["MllamaForConditionalGeneration"], "model_type": "mllama",
        **{k: v for k, v in _LLAMA3_8B.items() if k not in ("architectures", "model_type")},
        "num_hidden_layers": 40, "vocab_size": 128256, "_num_params": 10670220835},
    "meta-llama/Llama-3.3-70B-Instruct": _LLAMA3_70B,
    "meta-llama/Meta-Llama-3-8B-Instruct": {**_LLAMA3_8B, "max_position_embeddings": 8192},
    "Qwen/Qwen2-0.5B-Instruct": _QWEN2_05B,
    "Qwen/Qwen2-VL-7B-Instruct": {
        "architectures": ["Qwen2VLForConditionalGeneration"], "model_type": "qwen2_vl", "dtype": "bfloat16", "hidden_size": 3584,
        "intermediate_size": 18944, "num_hidden_layers": 28, "num_attention_heads": 28,
        "num_key_value_heads": 4, "vocab_size": 152064, "max_position_embeddings": 32768,
        "tie_word_embeddings": False, "_num_params": 8291375616},
    "Qwen/Qwen2-VL-72B": {"architectures": ["Qwen2VLForConditionalGeneration"], "model_type": "qwen2_vl",
                          **_QWEN_72B_TEXT, "_num_params": 73405560320},
    "Qwen/Qwen2-VL-72B-Instruct": {"architectures": ["Qwen2VLForConditionalGeneration"],
                                   "model_type": "qwen2_vl", **_QWEN_72B_TEXT, "_num_params": 73405560320},
    "Qwen/Qwen2.5-0.5B-Instruct": _QWEN2_05B,
    "Qwen/Qwen2.5-14B-Instruct": {**_QWEN2_05B, "hidden_size": 5120, "intermediate_size": 13824,
                                  "num_hidden_layers": 48, "num_attention_heads": 40, "num_key_value_heads": 8,
                                  "vocab_size": 152064, "tie_word_embeddings": False},
    "Qwen/Qwen2.5-32B-Instruct": {**_QWEN2_05B, "hidden_size": 5120, "intermediate_size": 27648,
                                  "num_hidden_layers": 64, "num_attention_heads": 40, "num_key_value_heads": 8,
                                  "vocab_size": 152064, "tie_word_embeddings": False},
    "Qwen/Qwen2.5-VL-72B-Instruct": {"architectures": ["Qwen2_5_VLForConditionalGeneration"],
                                     "model_type": "qwen2_5_vl", **_QWEN_72B_TEXT,
                                     "max_position_embeddings": 128000, "_num_params": 73410777344},
    "mistralai/Mixtral-8x7B-v0.1": {**_MIXTRAL_8X22B, "hidden_size": 4096, "intermediate_size": 14336,
                                    "num_hidden_layers": 32, "num_attention_heads": 32,
                                    "max_position_embeddings": 32768},
    "mistralai/Mixtral-8x22B-v0.1": _MIXTRAL_8X22B,
    "mistralai/Mixtral-8x22B-Instruct-v0.1": {**_MIXTRAL_8X22B, "vocab_size": 32768},
    "deepseek-ai/DeepSeek-R1": _DEEPSEEK_V3,
    "deepseek-ai/DeepSeek-R1-Distill-Llama-70B": {**_LLAMA3_70B, "max_position_embeddings": 131072},
    "deepseek-ai/DeepSeek-V3-0324": _DEEPSEEK_V3,
    # OCI Generative AI (001): Meta Llama 3.x 70B Instruct (LoRA) and Cohere Command R (T-Few)
    "meta.llama-3.3-70b-instruct": _LLAMA3_70B,
    "meta.llama-3.1-70b-instruct": _LLAMA3_70B,
    "meta.llama-3-70b-instruct": {**_LLAMA3_70B, "max_position_embeddings": 8192},
    # Command R 08-2024: grouped-query attention (8 KV heads), a wider MLP; 32.3B parameters
    "cohere.command-r-08-2024": {**_COMMAND_R, "intermediate_size": 24576, "num_key_value_heads": 8,
                                 "max_position_embeddings": 131072, "_num_params": 32296476672},
    # Command R (v01) as OCI serves it, with a 16k context; 35.0B parameters
    "cohere.command-r-16k": {**_COMMAND_R, "intermediate_size": 22528, "num_key_value_heads": 64,
                             "max_position_embeddings": 16384, "_num_params": 34980831232},
    # IBM watsonx.ai (002)
    "ibm-granite/granite-3.1-8b-base": {"architectures": ["GraniteForCausalLM"], "model_type": "granite",
                                        "dtype": "bfloat16", "hidden_size": 4096, "intermediate_size": 12800,
                                        "num_hidden_layers": 40, "num_attention_heads": 32, "num_key_value_heads": 8,
                                        "vocab_size": 49155, "max_position_embeddings": 131072,
                                        "tie_word_embeddings": True},
    # an encoder-decoder: 24 encoder + 24 decoder blocks, counted as 48 layers for activations; 2.85B parameters
    "google/flan-t5-xl": {"architectures": ["T5ForConditionalGeneration"], "model_type": "t5", "dtype": "float32",
                          "d_model": 2048, "d_ff": 5120, "num_layers": 24, "num_decoder_layers": 24, "num_heads": 32,
                          "d_kv": 64, "hidden_size": 2048, "intermediate_size": 5120, "num_hidden_layers": 48,
                          "num_attention_heads": 32, "head_dim": 64, "vocab_size": 32128, "n_positions": 512,
                          "tie_word_embeddings": False, "_num_params": 2849757184},
    # the model of every LLaMA-Factory example finetui imports (../shared/compat): an imported job's estimate
    # works offline
    "Qwen/Qwen3-4B": {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "dtype": "bfloat16",
                      "hidden_size": 2560, "intermediate_size": 9728, "num_hidden_layers": 36,
                      "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 151936,
                      "max_position_embeddings": 40960, "tie_word_embeddings": True},
    "Qwen/Qwen3-0.6B": {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "dtype": "bfloat16",
                        "hidden_size": 1024, "intermediate_size": 3072, "num_hidden_layers": 28,
                        "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 151936,
                        "max_position_embeddings": 40960, "tie_word_embeddings": True},
    "Qwen/Qwen3-4B-Instruct-2507": {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "dtype": "bfloat16",
                                    "hidden_size": 2560, "intermediate_size": 9728, "num_hidden_layers": 36,
                                    "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128,
                                    "vocab_size": 151936, "max_position_embeddings": 262144,
                                    "tie_word_embeddings": True},
}


#: catalog models whose architecture (config.json) is not published: name part → who keeps it
UNPUBLISHED = {"nova-micro": "Amazon", "nova-lite": "Amazon", "nova-pro": "Amazon",
               "granite-13b-instruct-v2": "IBM (offered only in its products)"}


# --------------------------------------------------------------------------
# The result
# --------------------------------------------------------------------------


@dataclass
class ModelInfo:
    name: str
    architecture: str
    model_type: str
    num_params: int
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    context_length: int
    vision: bool
    default_target_modules: list[str] = field(default_factory=list)
    dtype: str = "float32"
    head_dim: int = 0
    tied_embeddings: bool = False
    num_experts: int = 0
    exact: bool = True  # num_params computed exactly from the config
    source: str = ""  # where the config came from

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        moe = f", {self.num_experts} experts" if self.num_experts else ""
        approx = "" if self.exact else "≈"
        return (f"{self.architecture} ({self.model_type}{', vision' if self.vision else ''}): "
                f"{approx}{human_count(self.num_params)} parameters, {self.layers} layers, hidden {self.hidden}, "
                f"{self.heads} heads / {self.kv_heads} KV{moe}, vocab {self.vocab}, context {self.context_length}")


def human_count(n: float) -> str:
    for div, suf in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.3g}{suf}"
    return str(int(n))


# --------------------------------------------------------------------------
# Finding config.json
# --------------------------------------------------------------------------


def _hf_cache_dirs() -> list[Path]:
    out = []
    if os.environ.get("HF_HUB_CACHE"):
        out.append(Path(os.environ["HF_HUB_CACHE"]))
    if os.environ.get("HUGGINGFACE_HUB_CACHE"):
        out.append(Path(os.environ["HUGGINGFACE_HUB_CACHE"]))
    home = Path(os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
                / "huggingface")
    out.append(home / "hub")
    return out


def _from_hf_cache(repo_id: str) -> Path | None:
    folder = "models--" + repo_id.replace("/", "--")
    for cache in _hf_cache_dirs():
        root = cache / folder
        if not root.is_dir():
            continue
        ref = root / "refs" / "main"
        if ref.is_file():
            cand = root / "snapshots" / ref.read_text().strip() / "config.json"
            if cand.is_file():
                return cand
        snaps = sorted((root / "snapshots").glob("*/config.json"), key=lambda p: p.stat().st_mtime, reverse=True)
        if snaps:
            return snaps[0]
    return None


def load_config(name_or_path: str) -> tuple[dict[str, Any], str]:
    """The model's config.json as a dict, and where it came from. Raises :class:`ModelInfoError`."""
    name = str(name_or_path).strip()
    if not name:
        raise ModelInfoError("no model named: set model.name_or_path")
    if name == TINY_MODEL:
        from engine.tiny import TINY_CONFIG

        return dict(TINY_CONFIG), "built-in tiny model"
    if name == TINY_VLM:
        from engine.tiny import TINY_VLM_CONFIG

        return dict(TINY_VLM_CONFIG), "built-in tiny vision-language model"
    p = Path(name).expanduser()
    if p.is_dir() or p.name == "config.json" or name.startswith(("/", "./", "../", "~")):
        cfg = p / "config.json" if p.is_dir() or not p.name.endswith(".json") else p
        if not cfg.is_file():
            raise ModelInfoError(f"{name}: no config.json found in this folder")
        return _read_json(cfg), str(cfg)
    cached = _from_hf_cache(name)
    if cached is not None:
        return _read_json(cached), str(cached)
    if name in CATALOG:
        return {k: v for k, v in CATALOG[name].items()}, "built-in catalog shape"
    lower = {k.lower(): k for k in CATALOG}
    if name.lower() in lower:
        return dict(CATALOG[lower[name.lower()]]), "built-in catalog shape"
    for key, who in UNPUBLISHED.items():
        if key in name.lower():
            raise ModelInfoError(f"{name}: {who} does not publish this model's architecture, so its memory cannot be "
                                 f"estimated here; the service sizes the job itself")
    raise ModelInfoError(f"{name}: no config.json found (not a local folder, not in the Hugging Face cache, "
                         "not a built-in catalog model)")


def _model_error(where: str, reason: str) -> ModelInfoError:
    return ModelInfoError(f"{where}: {reason}")


def _read_json(path: Path) -> dict[str, Any]:
    from engine import userfiles

    try:
        text = userfiles.read_text(path, error=_model_error)  # (a FIFO, a device, not UTF-8: one line)
        with userfiles.parsing(str(path), _model_error):
            data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ModelInfoError(f"{path}:{e.lineno}: config.json is not valid JSON ({e.msg})") from None
    if not isinstance(data, dict):
        raise ModelInfoError(f"{path}: config.json is not a JSON object")
    return data


# --------------------------------------------------------------------------
# Shapes and counts
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    """The decoder shape the counts and the estimate need (text part of a vision model)."""

    model_type: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    context_length: int
    tied: bool
    attention_bias: bool
    qkv_bias: bool
    mlp_bias: bool
    num_experts: int
    experts_per_token: int
    vision: bool
    dtype: str = "float32"  # the checkpoint's dtype (config.json dtype / torch_dtype)
    moe_intermediate: int = 0  # an expert's intermediate size when it differs from the dense one (Qwen MoE)
    shared_intermediate: int = 0  # Qwen2-MoE's shared expert, run for every token
    dense_layers: int = 0  # layers with a dense MLP instead of experts (Qwen MoE's mlp_only_layers)

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(in, out) of each linear module of one decoder layer (per expert for MoE)."""
        h, q, kv = self.hidden, self.heads * self.head_dim, self.kv_heads * self.head_dim
        i = self.moe_intermediate if self.num_experts and self.moe_intermediate else self.intermediate
        return {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
                "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}


def _text_config(cfg: dict[str, Any]) -> dict[str, Any]:
    tc = cfg.get("text_config")
    if isinstance(tc, dict):
        merged = {**tc}
        for k in ("tie_word_embeddings",):
            if k in cfg and k not in tc:
                merged[k] = cfg[k]
        merged.setdefault("model_type", cfg.get("model_type", tc.get("model_type", "")))
        return merged
    return cfg


def shape(cfg: dict[str, Any]) -> Shape:
    mt = str(cfg.get("model_type") or "").lower()
    tc = _text_config(cfg)
    base_type = str(tc.get("model_type") or mt).lower()
    d = {**_COMMON, **_DEFAULTS.get(base_type, _DEFAULTS.get(mt, {}))}

    def g(key: str, *alts: str) -> Any:
        for k in (key, *alts):
            if tc.get(k) is not None:
                return tc[k]
        return d.get(key)

    try:
        hidden = int(g("hidden_size", "n_embd", "d_model"))
        layers = int(g("num_hidden_layers", "n_layer", "num_layers"))
        heads = int(g("num_attention_heads", "n_head", "num_heads"))
        kv = g("num_key_value_heads", "num_kv_heads")
        kv = int(kv) if kv is not None else heads
        head_dim = g("head_dim")
        head_dim = int(head_dim) if head_dim else hidden // heads
        inter = g("intermediate_size", "n_inner", "ffn_dim")
        inter = int(inter) if inter else 4 * hidden
        vocab = int(g("vocab_size"))
        ctx = g("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")
        ctx = int(ctx) if ctx else 0
    except (TypeError, ValueError) as e:
        raise ModelInfoError(f"config.json lacks a usable shape ({e})") from None
    tied = tc.get("tie_word_embeddings", cfg.get("tie_word_embeddings", d["tie_word_embeddings"]))
    experts = int(tc.get("num_local_experts") or tc.get("n_routed_experts") or tc.get("num_experts")
                  or d.get("num_local_experts") or d.get("num_experts") or 0)
    moe_inter = int(g("moe_intermediate_size") or 0) if experts else 0
    shared = int(g("shared_expert_intermediate_size") or 0) if experts else 0
    dense = 0
    if experts and base_type in ("qwen2_moe", "qwen3_moe"):  # decoder_sparse_step / mlp_only_layers
        step, only = int(g("decoder_sparse_step") or 1), set(g("mlp_only_layers") or [])
        dense = sum(1 for n in range(layers) if n in only or (n + 1) % step != 0)
    vision = mt in VISION_TYPES or "vision_config" in cfg or any(
        "Vision" in a or ("ConditionalGeneration" in a and mt not in TEXT_SEQ2SEQ_TYPES)
        for a in cfg.get("architectures") or [])
    return Shape(base_type or mt, hidden, layers, heads, kv, head_dim, inter, vocab, ctx, bool(tied),
                 bool(tc.get("attention_bias", d["attention_bias"])), base_type in _QKV_BIAS_ALWAYS,
                 bool(tc.get("mlp_bias", d["mlp_bias"])), experts,
                 int(tc.get("num_experts_per_tok") or d.get("num_experts_per_tok") or (2 if experts else 0)),
                 vision, str(cfg.get("dtype") or cfg.get("torch_dtype") or tc.get("dtype") or tc.get("torch_dtype")
                             or "float32"), moe_inter, shared, dense)


def param_breakdown(cfg: dict[str, Any]) -> dict[str, Any]:
    """Parameter counts by part, for llama-like decoders (exact for :data:`EXACT_TYPES`).

    Keys: ``embed``, ``lm_head`` (0 when tied), ``final_norm``, ``per_layer`` (one decoder layer),
    ``per_layer_linear`` (module name → weights + bias of one layer, all experts summed),
    ``per_layer_other`` (norms, router), ``layers``, ``extra`` (vision tower or other parts
    only known as a measured total), ``total``, ``exact``.
    """
    s = shape(cfg)
    h = s.hidden
    lin: dict[str, int] = {}
    for name, (i, o) in s.linear_shapes().items():
        bias = 0
        if name in ("q_proj", "k_proj", "v_proj"):
            bias = o if (s.attention_bias or s.qkv_bias) else 0
        elif name == "o_proj":
            bias = o if s.attention_bias else 0
        else:
            bias = o if s.mlp_bias else 0
        n = i * o + bias
        if name in ("gate_proj", "up_proj", "down_proj") and s.num_experts:
            n *= s.num_experts
        lin[name] = n
    norms = 2 * h
    if s.model_type == "gemma2":
        norms = 4 * h
    if s.model_type in _QK_NORM:
        norms += 2 * s.head_dim  # q_norm, k_norm
    # MoE: the router, and Qwen2-MoE's shared expert (gate / up / down) with its one-output gate
    shared = 3 * h * s.shared_intermediate + h if s.shared_intermediate else 0
    other = norms + (h * s.num_experts if s.num_experts else 0) + shared
    per_layer = sum(lin.values()) + other
    # Qwen MoE's dense layers: attention, norms and one MLP of the dense intermediate size
    per_dense = sum(v for k, v in lin.items() if k not in ("gate_proj", "up_proj", "down_proj")) + norms \
        + 3 * h * s.intermediate
    embed = s.vocab * h
    lm_head = 0 if s.tied else s.vocab * h
    total = embed + lm_head + h + (s.layers - s.dense_layers) * per_layer + s.dense_layers * per_dense
    exact = s.model_type in EXACT_TYPES and not s.vision
    extra = 0
    measured = cfg.get("_num_params")
    if measured:
        extra = int(measured) - total
        total = int(measured)
        exact = True
    elif s.vision:
        extra = _vision_estimate(cfg)
        total += extra
    return {"embed": embed, "lm_head": lm_head, "final_norm": h, "per_layer": per_layer,
            "per_layer_linear": lin, "per_layer_other": other, "layers": s.layers, "extra": extra,
            "total": total, "exact": exact, "shape": s}


def _vision_estimate(cfg: dict[str, Any]) -> int:
    """A ViT-style tower estimate from ``vision_config`` (12·d² per block + patch embedding)."""
    vc = cfg.get("vision_config") or {}
    d = int(vc.get("hidden_size") or vc.get("embed_dim") or 1280)
    depth = int(vc.get("depth") or vc.get("num_hidden_layers") or 32)
    inter = int(vc.get("intermediate_size") or 4 * d)
    return depth * (4 * d * d + 2 * d * inter + 4 * d) + 3 * 14 * 14 * 2 * d


def count_params(cfg: dict[str, Any]) -> int:
    return int(param_breakdown(cfg)["total"])


def describe(name_or_path: str) -> ModelInfo:
    """Describe a model from its config.json. Raises :class:`ModelInfoError` with one line."""
    cfg, source = load_config(name_or_path)
    return info_from_config(cfg, name=str(name_or_path), source=source)


def info_from_config(cfg: dict[str, Any], name: str = "", source: str = "") -> ModelInfo:
    b = param_breakdown(cfg)
    s: Shape = b["shape"]
    arch = (cfg.get("architectures") or [f"{s.model_type}"])[0]
    mt = str(cfg.get("model_type") or s.model_type)
    targets = list(DEFAULT_TARGET_MODULES.get(s.model_type, DEFAULT_TARGET_MODULES.get(mt, ["q_proj", "v_proj"])))
    return ModelInfo(name=name, architecture=arch, model_type=mt, num_params=int(b["total"]), hidden=s.hidden,
                     layers=s.layers, heads=s.heads, kv_heads=s.kv_heads, intermediate=s.intermediate,
                     vocab=s.vocab, context_length=s.context_length, vision=s.vision,
                     default_target_modules=targets, dtype=s.dtype, head_dim=s.head_dim, tied_embeddings=s.tied,
                     num_experts=s.num_experts, exact=bool(b["exact"]), source=source)
