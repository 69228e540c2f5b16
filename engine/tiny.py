"""The built-in tiny model ``finetui:tiny-llama``.

No machine in this project reaches a model hub, so the demo and every training
test use a random-initialised Llama-architecture model (about 130k parameters)
with a byte-level BPE tokenizer trained locally (``tokenizers``) on the bundled
sample data and given a ChatML chat template with ``{% generation %}`` markers
(TRL's ``assistant_only_loss`` needs them).  It is built once, saved with
``save_pretrained`` into ``$FINETUI_CACHE_DIR/tiny-llama`` (default
``~/.cache/finetui/tiny-llama``) and from then on loaded with the real
``from_pretrained``.

The build is atomic (temporary folder + rename) and safe when several processes
race (a file lock).  This module does not import torch at import time.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from engine.schema import TINY_MODEL, TINY_VLM

TINY_NAME = TINY_MODEL  # (the schema's name for it: model.name_or_path's default)
#: Bump when the build changes: a cached model of another version is rebuilt.
TINY_VERSION = 1
VOCAB_SIZE = 512

#: The model's config.json content (what the estimator reads without building).
TINY_CONFIG: dict = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 64,
    "intermediate_size": 192,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "vocab_size": VOCAB_SIZE,
    "max_position_embeddings": 512,
    "hidden_act": "silu",
    "rms_norm_eps": 1e-6,
    "rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"},
    "attention_bias": False,
    "attention_dropout": 0.0,
    "mlp_bias": False,
    "tie_word_embeddings": True,
    "initializer_range": 0.02,
    "bos_token_id": 0,
    "eos_token_id": 2,
    "pad_token_id": 1,
    "dtype": "float32",
    "use_cache": True,
}

#: Special tokens, in id order (ids 0..3).
SPECIAL_TOKENS = ["<|endoftext|>", "<|pad|>", "<|im_end|>", "<|im_start|>"]
BOS, PAD, EOS, IM_START = SPECIAL_TOKENS

#: ChatML with {% generation %} markers around each assistant turn (its <|im_end|> included,
#: so the model learns to stop). Roles: system, user, assistant, tool.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if message['role'] == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- generation %}"
    "{{- message['content'] + '<|im_end|>' }}"
    "{%- endgeneration %}"
    "{{- '\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- endif %}"
)


#: The built-in tiny vision-language model: a LLaVA (a CLIP vision tower of 16×16 images in 8×8 patches, a
#: projector, the tiny Llama as its language model) with a LlavaProcessor. Trains the image formats
#: (sharegpt_image SFT and DPO) through the same from_pretrained / AutoProcessor path as any vision model.
TINY_VLM_NAME = TINY_VLM
IMAGE_TOKEN = "<image>"
TINY_VLM_VISION: dict = {"model_type": "clip_vision_model", "hidden_size": 32, "intermediate_size": 64,
                         "num_hidden_layers": 1, "num_attention_heads": 2, "image_size": 16, "patch_size": 8,
                         "projection_dim": 32}
TINY_VLM_CONFIG: dict = {
    "architectures": ["LlavaForConditionalGeneration"],
    "model_type": "llava",
    "text_config": {**{k: v for k, v in TINY_CONFIG.items() if k != "architectures"}, "vocab_size": VOCAB_SIZE + 1},
    "vision_config": TINY_VLM_VISION,
    "image_token_index": VOCAB_SIZE,
    "vision_feature_select_strategy": "default",
    "vision_feature_layer": -1,
    "projector_hidden_act": "gelu",
    "tie_word_embeddings": True,
    "dtype": "float32",
}
#: The processor's chat template: CHAT_TEMPLATE with a turn's content also given as typed parts (text, image).
VLM_CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if message['content'] is string %}{%- set text = message['content'] %}{%- else %}"
    "{%- set ns = namespace(text='') %}{%- for part in message['content'] %}"
    "{%- if part['type'] == 'image' %}{%- set ns.text = ns.text + '" + IMAGE_TOKEN + "' %}"
    "{%- else %}{%- set ns.text = ns.text + part['text'] %}{%- endif %}"
    "{%- endfor %}{%- set text = ns.text %}{%- endif %}"
    "{%- if message['role'] == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- generation %}"
    "{{- text + '<|im_end|>' }}"
    "{%- endgeneration %}"
    "{{- '\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + text + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- endif %}"
)


def cache_dir() -> Path:
    env = os.environ.get("FINETUI_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "finetui"


def tiny_model_dir(name: str = TINY_NAME) -> Path:
    return cache_dir() / name.split(":", 1)[1]


def _is_built(d: Path) -> bool:
    marker = d / "finetui-tiny.json"
    if not (marker.exists() and (d / "config.json").exists() and (d / "tokenizer.json").exists()):
        return False
    try:
        return json.loads(marker.read_text()).get("version") == TINY_VERSION
    except (OSError, ValueError):
        return False


def resolve_model_path(name_or_path: str) -> str:
    """``finetui:tiny-llama`` / ``finetui:tiny-vlm`` → the built folder (building it on first use); anything else
    unchanged."""
    name = str(name_or_path).strip()
    if name in (TINY_NAME, TINY_VLM_NAME):
        return str(ensure_tiny_model(name))
    return str(name_or_path)


def ensure_tiny_model(name: str = TINY_NAME) -> Path:
    """Build the tiny model (or the tiny vision-language model) once (atomic, race-safe) and return its folder."""
    d = tiny_model_dir(name)
    if _is_built(d):
        return d
    d.parent.mkdir(parents=True, exist_ok=True)
    import fcntl

    with open(d.parent / f".{d.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if _is_built(d):
                return d
            tmp = Path(tempfile.mkdtemp(prefix=f".{d.name}-build-", dir=d.parent))
            os.chmod(tmp, 0o755)
            try:
                (_build_vlm if name == TINY_VLM_NAME else _build)(tmp)
                if d.exists():  # an older version or a broken build
                    old = d.with_name(f".{d.name}-old-{os.getpid()}")
                    os.replace(d, old)
                    shutil.rmtree(old, ignore_errors=True)
                os.replace(tmp, d)
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return d


def _training_texts() -> list[str]:
    """Every string of the bundled samples, rendered roughly as the model will see them."""
    from engine.samples import SAMPLES_DIR

    texts: list[str] = []

    def walk(o):  # noqa: ANN001
        if isinstance(o, str):
            texts.append(o)
        elif isinstance(o, dict):
            for v in o.values():
                walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)

    for p in sorted(SAMPLES_DIR.glob("*.jsonl")):
        for line in p.read_text(encoding="utf-8").splitlines():
            if line.strip():
                walk(json.loads(line))
    texts += ["system", "user", "assistant", "tool", "You are a helpful assistant."]
    return texts


def build_tokenizer():
    """A byte-level BPE tokenizer (vocab 512) trained on the samples, as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    texts = _training_texts()
    tok.train_from_iterator(texts * 2, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=None,
        additional_special_tokens=[IM_START],
        model_max_length=TINY_CONFIG["max_position_embeddings"],
        padding_side="right",
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def _build(out: Path) -> None:
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    tokenizer = build_tokenizer()
    cfg = {k: v for k, v in TINY_CONFIG.items() if k not in ("architectures", "model_type", "dtype")}
    cfg["vocab_size"] = max(VOCAB_SIZE, len(tokenizer))
    cfg["bos_token_id"] = tokenizer.convert_tokens_to_ids(BOS)
    cfg["eos_token_id"] = tokenizer.convert_tokens_to_ids(EOS)
    cfg["pad_token_id"] = tokenizer.convert_tokens_to_ids(PAD)
    config = LlamaConfig(**cfg)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id, max_new_tokens=32, do_sample=False,
    )
    _save(out, model, tokenizer, TINY_NAME)


def _save(out: Path, model, saver, name: str) -> None:  # noqa: ANN001
    # transformers writes a model only on global rank 0 once torch.distributed is initialised; the build runs in
    # whichever rank wins the lock (under torchrun, or on every node of a multi-node run), so it must save here
    model.should_save_on_this_rank = lambda *a, **k: True
    model.save_pretrained(out)
    saver.save_pretrained(out)
    missing = [f for f in ("config.json", "model.safetensors", "tokenizer.json") if not (out / f).exists()]
    if missing:
        raise RuntimeError(f"building the tiny model in {out} left out {', '.join(missing)}")
    (out / "finetui-tiny.json").write_text(json.dumps({"name": name, "version": TINY_VERSION}) + "\n")


def _build_vlm(out: Path) -> None:
    """The tiny LLaVA (TINY_VLM_CONFIG) and its processor: the tiny tokenizer with an ``<image>`` token, a CLIP
    image processor of 16×16 images; each image is 4 patch tokens."""
    import torch
    from transformers import (CLIPImageProcessor, CLIPVisionConfig, GenerationConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor)

    tokenizer = build_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": [IM_START, IMAGE_TOKEN]})
    c = TINY_VLM_CONFIG
    if tokenizer.convert_tokens_to_ids(IMAGE_TOKEN) != c["image_token_index"]:
        raise RuntimeError(f"the tiny tokenizer gave {IMAGE_TOKEN} id {tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)}")
    text = {k: v for k, v in c["text_config"].items() if k not in ("model_type", "dtype")}
    vision = {k: v for k, v in c["vision_config"].items() if k != "model_type"}
    config = LlavaConfig(text_config=LlamaConfig(**text), vision_config=CLIPVisionConfig(**vision),
                         **{k: c[k] for k in ("image_token_index", "vision_feature_select_strategy",
                                              "vision_feature_layer", "projector_hidden_act", "tie_word_embeddings")})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = LlavaForConditionalGeneration(config)
    t = config.text_config
    model.generation_config = GenerationConfig(bos_token_id=t.bos_token_id, eos_token_id=t.eos_token_id,
                                               pad_token_id=t.pad_token_id, max_new_tokens=32, do_sample=False)
    side = vision["image_size"]
    images = CLIPImageProcessor(size={"shortest_edge": side}, crop_size={"height": side, "width": side})
    tokenizer.chat_template = VLM_CHAT_TEMPLATE
    processor = LlavaProcessor(image_processor=images, tokenizer=tokenizer, patch_size=vision["patch_size"],
                               vision_feature_select_strategy=c["vision_feature_select_strategy"],
                               num_additional_image_tokens=1, chat_template=VLM_CHAT_TEMPLATE,
                               image_token=IMAGE_TOKEN)
    _save(out, model, processor, TINY_VLM_NAME)


if __name__ == "__main__":  # python -m engine.tiny [finetui:tiny-vlm]
    import sys

    print(ensure_tiny_model(*sys.argv[1:2]))
