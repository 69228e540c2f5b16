"""Small tokenizers of two real chat-template families, built locally (nothing downloaded).

A byte-level BPE trained with ``tokenizers`` on the bundled samples, given the special tokens and the
chat template of the family, saved with ``save_pretrained`` so loading goes through the real
``AutoTokenizer.from_pretrained``:

* ``qwen``: Qwen2.5-Instruct's ChatML template (default system prompt, ``<|im_end|>`` ends a turn and
  is the EOS, no BOS);
* ``llama3``: Llama-3-Instruct's template (``<|begin_of_text|>`` from the template,
  ``<|start_header_id|>role<|end_header_id|>``, ``<|eot_id|>`` ends a turn) and a post-processor
  that adds the BOS when special tokens are added, as the real tokenizer does;
* ``plain``: the same BPE with no chat template at all.
"""

from __future__ import annotations

from pathlib import Path

QWEN_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if (message.role == 'user') or (message.role == 'system' and not loop.first) or (message.role == 'assistant') %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}"
    "{%- elif message.role == 'tool' %}"
    "{{- '<|im_start|>user\\n<tool_response>\\n' + message.content + '\\n</tool_response><|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)

#: Llama-3's template with the end-of-turn marker left out of assistant turns (a broken template)
LLAMA3_NO_EOT_TEMPLATE = LLAMA3_TEMPLATE.replace(
    "+ message['content'] | trim + '<|eot_id|>' %}",
    "+ message['content'] | trim + ('' if message['role'] == 'assistant' else '<|eot_id|>') %}")

FAMILIES = {
    "qwen": {"specials": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], "bos": None, "eos": "<|im_end|>",
             "pad": "<|endoftext|>", "template": QWEN_TEMPLATE},
    "llama3": {"specials": ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                            "<|eot_id|>"], "bos": "<|begin_of_text|>", "eos": "<|eot_id|>", "pad": None,
               "template": LLAMA3_TEMPLATE},
    "llama3-no-eot": {"specials": ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                                   "<|end_header_id|>", "<|eot_id|>"], "bos": "<|begin_of_text|>",
                      "eos": "<|eot_id|>", "pad": None, "template": LLAMA3_NO_EOT_TEMPLATE},
    "plain": {"specials": ["<|endoftext|>"], "bos": None, "eos": "<|endoftext|>", "pad": None, "template": None},
}


def build_chat_tokenizer(family: str, out: Path) -> Path:
    """Train and save the ``family`` tokenizer in ``out``; returns ``out``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    from engine.tiny import _training_texts

    f = FAMILIES[family]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=f["specials"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_training_texts(), trainer=trainer)
    if f["bos"]:
        bos_id = tok.token_to_id(f["bos"])
        tok.post_processor = processors.Sequence([
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(single=f"{f['bos']} $A", pair=f"{f['bos']} $A {f['bos']} $B",
                                          special_tokens=[(f["bos"], bos_id)])])
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=f["bos"], eos_token=f["eos"], pad_token=f["pad"],
                                   additional_special_tokens=[s for s in f["specials"]
                                                              if s not in (f["bos"], f["eos"], f["pad"])])
    if f["template"]:
        fast.chat_template = f["template"]
    out.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(out)
    return out
