"""Row formats → canonical rows.

Each normaliser takes one decoded JSON object and returns the canonical row, or raises
:class:`RowError` (field + plain-words reason).  No I/O except the image lookup passed in.

Canonical rows:

* corpus: ``{"text": str}``
* SFT (alpaca, sharegpt, sharegpt_image, bedrock_converse):
  ``{"messages": [{"role", "content"}], "images"?: [abs paths], "tools"?: str}``
  roles are system / user / assistant / tool; the last message is the assistant's.
* preference: ``{"prompt": [messages], "chosen": [assistant msg], "rejected": [assistant msg]}``
  (sharegpt_image for DPO: also ``"images"``, their ``<image>`` tokens in the prompt)
* kto: ``{"prompt": [messages], "completion": [assistant msg], "label": bool}``
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any, Callable, Iterable, Optional

from engine.data.errors import RowError

#: Looks an image reference up; returns the absolute path (or the reference to keep), or None if missing.
ImageLookup = Callable[[str], Optional[str]]

IMAGE_TOKEN = "<image>"

#: sharegpt role names → canonical roles
ROLE_MAP = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "model": "assistant",
    "system": "system",
    "function_call": "assistant",
    "observation": "tool",
    "tool": "tool",
    "function": "tool",
}
_USER_SIDE = {"user", "tool"}
_MODEL_SIDE = {"assistant"}
BEDROCK_SCHEMA = "bedrock-conversation-2024"


def _need(obj: dict, key: str, where: str = "") -> Any:
    if key not in obj:
        raise RowError(where + key, f"missing key `{key}`")
    return obj[key]


def _str(obj: dict, key: str, where: str = "", *, empty_ok: bool = False, required: bool = True) -> str:
    if key not in obj or obj[key] is None:
        if required:
            raise RowError(where + key, f"missing key `{key}`")
        return ""
    v = obj[key]
    if not isinstance(v, str):
        raise RowError(where + key, f"`{key}` must be a string, not {_tname(v)}")
    if not empty_ok and not v.strip():
        raise RowError(where + key, f"`{key}` is empty")
    return v


def _tname(v: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number",
            float: "a number", type(None): "null"}.get(type(v), type(v).__name__)


def _row_obj(obj: Any) -> dict:
    if not isinstance(obj, dict):
        raise RowError("", f"row must be a JSON object, not {_tname(obj)}")
    return obj


# --------------------------------------------------------------------------- corpus

def corpus(obj: Any, images: ImageLookup | None = None) -> dict:
    obj = _row_obj(obj)
    return {"text": _str(obj, "text")}


# --------------------------------------------------------------------------- alpaca

def _alpaca_prompt(obj: dict) -> list[dict]:
    """system + history + instruction/input → messages ending with the user turn."""
    msgs: list[dict] = []
    system = _str(obj, "system", empty_ok=True, required=False)
    if system.strip():
        msgs.append({"role": "system", "content": system})
    hist = obj.get("history")
    if hist is not None:
        if not isinstance(hist, list):
            raise RowError("history", f"`history` must be a list of [instruction, response] pairs, not {_tname(hist)}")
        for i, pair in enumerate(hist):
            if (not isinstance(pair, (list, tuple)) or len(pair) != 2
                    or not all(isinstance(x, str) for x in pair)):
                raise RowError(f"history[{i}]", f"history entry {i + 1} must be a pair [instruction, response] of strings")
            msgs.append({"role": "user", "content": pair[0]})
            msgs.append({"role": "assistant", "content": pair[1]})
    instruction = _str(obj, "instruction", empty_ok=True)
    inp = _str(obj, "input", empty_ok=True, required=False)
    prompt = "\n".join(s for s in (instruction, inp) if s.strip())
    if not prompt.strip():
        raise RowError("instruction", "`instruction` and `input` are both empty")
    msgs.append({"role": "user", "content": prompt})
    return msgs


def alpaca(obj: Any, images: ImageLookup | None = None) -> dict:
    obj = _row_obj(obj)
    msgs = _alpaca_prompt(obj)
    out = _str(obj, "output")
    msgs.append({"role": "assistant", "content": out})
    return {"messages": msgs}


# --------------------------------------------------------------------------- sharegpt

def _turn(t: Any, i: int, key: str) -> tuple[str, str, str]:
    """One turn → (original role name, canonical role, content)."""
    where = f"{key}[{i}]."
    if not isinstance(t, dict):
        raise RowError(f"{key}[{i}]", f"turn {i + 1}: must be an object, not {_tname(t)}")
    if "from" in t or "value" in t:
        rk, ck = "from", "value"
    else:
        rk, ck = "role", "content"
    if rk not in t:
        raise RowError(where + rk, f"turn {i + 1}: missing key `{rk}`")
    if ck not in t:
        raise RowError(where + ck, f"turn {i + 1}: missing key `{ck}`")
    role, content = t[rk], t[ck]
    if not isinstance(role, str) or role not in ROLE_MAP:
        raise RowError(where + rk, f"turn {i + 1}: unknown role `{role}` (allowed: {', '.join(ROLE_MAP)})")
    if isinstance(content, list) and content and all(isinstance(p, dict) for p in content):  # typed parts (LLaMA-Factory v1, OpenAI): [{"type": "text", "value": ...}]
        content = _text_parts(content, i, where + ck)
    if not isinstance(content, str):
        raise RowError(where + ck, f"turn {i + 1}: `{ck}` must be a string, not {_tname(content)}")
    return role, ROLE_MAP[role], content


def _text_parts(parts: list, i: int, where: str) -> str:
    """A turn's content given as typed parts → its text; only text parts are read here."""
    texts = []
    for j, p in enumerate(parts):
        if not isinstance(p, dict) or p.get("type", "text") != "text":
            kind = p.get("type") if isinstance(p, dict) else _tname(p)
            raise RowError(f"{where}[{j}]", f"turn {i + 1}: content part {j + 1} is `{kind}`; only text parts are read")
        v = p.get("value", p.get("text"))
        if not isinstance(v, str):
            raise RowError(f"{where}[{j}]", f"turn {i + 1}: content part {j + 1} has no text (`value` or `text`)")
        texts.append(v)
    return "".join(texts)


def _conversation(obj: dict, *, end: str = "assistant") -> tuple[list[dict], str]:
    """Parse conversations / messages, checking alternation.  ``end`` is the side of the last turn."""
    if "conversations" in obj:
        key = "conversations"
    elif "messages" in obj:
        key = "messages"
    else:
        raise RowError("conversations", "missing key `conversations` (or `messages`)")
    turns = obj[key]
    if not isinstance(turns, list):
        raise RowError(key, f"`{key}` must be a list of turns, not {_tname(turns)}")
    if not turns:
        raise RowError(key, f"`{key}` is empty")
    msgs: list[dict] = []
    prev_side: str | None = None
    prev_name = ""
    for i, t in enumerate(turns):
        name, role, content = _turn(t, i, key)
        if role == "system":
            if i != 0:
                raise RowError(f"{key}[{i}]", f"turn {i + 1}: `{name}` turn is only allowed first")
            msgs.append({"role": "system", "content": content})
            continue
        side = "user" if role in _USER_SIDE else "assistant"
        if prev_side is None and side != "user":
            raise RowError(f"{key}[{i}]", f"turn {i + 1}: conversation starts with `{name}`, expected a user turn")
        if side == prev_side:
            raise RowError(f"{key}[{i}]", f"turn {i + 1}: two `{prev_name}`/`{name}` turns in a row"
                           if prev_name != name else f"turn {i + 1}: two `{name}` turns in a row")
        if prev_name == "function_call" and name != "observation":
            raise RowError(f"{key}[{i}]", f"turn {i + 1}: `function_call` must be followed by an `observation` turn, "
                           f"not `{name}`")
        if name == "observation" and prev_name != "function_call":
            raise RowError(f"{key}[{i}]", f"turn {i + 1}: `observation` turn without a `function_call` before it")
        if role == "assistant" and not content.strip():
            raise RowError(f"{key}[{i}]", f"turn {i + 1}: empty `{name}` turn")
        msgs.append({"role": role, "content": content})
        prev_side, prev_name = side, name
    if prev_side is None:
        raise RowError(key, f"`{key}` has only a system turn")
    if prev_side != end:
        last = len(turns)
        if end == "assistant":
            raise RowError(f"{key}[{last - 1}]", f"turn {last}: last turn is `{prev_name}`; the conversation "
                           "must end with the model's turn")
        raise RowError(f"{key}[{last - 1}]", f"turn {last}: last turn is `{prev_name}`; the prompt must end "
                       "with a user turn")
    return msgs, key


def _tools(obj: dict) -> str | None:
    tools = obj.get("tools")
    if tools is None or tools == "":
        return None
    if isinstance(tools, str):
        try:
            json.loads(tools)
        except ValueError:
            raise RowError("tools", "`tools` is not valid JSON")
        return tools
    if isinstance(tools, (list, dict)):
        return json.dumps(tools, ensure_ascii=False)
    raise RowError("tools", f"`tools` must be a JSON string or a list, not {_tname(tools)}")


def sharegpt(obj: Any, images: ImageLookup | None = None) -> dict:
    obj = _row_obj(obj)
    if "chosen" in obj and "rejected" in obj:  # a pair read as a plain conversation: say what it is
        try:
            _conversation(obj)
        except RowError as e:
            raise RowError(e.field, f"{e.reason} (a preference pair with chosen / rejected replies: it trains the dpo "
                           "or reward trainer)") from None
    msgs, _ = _conversation(obj)
    row: dict = {"messages": msgs}
    tools = _tools(obj)
    if tools:
        row["tools"] = tools
    return row


def _image_refs(obj: dict) -> tuple[str, list[str]]:
    for key in ("images", "image_path", "image", "image_paths"):
        if key in obj and obj[key] is not None:
            v = obj[key]
            if isinstance(v, str):
                return key, [v]
            if isinstance(v, list) and all(isinstance(x, str) for x in v):
                return key, list(v)
            raise RowError(key, f"`{key}` must be a path or a list of paths")
    return "images", []


def _attach_images(obj: dict, row: dict, msgs: list[dict], images: ImageLookup | None) -> dict:
    """``row`` with its ``images`` (looked up) from ``obj``'s image key, checked against the ``<image>`` tokens of
    ``msgs`` (the conversation, or a pair's prompt); FPT style (one image_path, no token): the image goes before the
    first user text."""
    key, refs = _image_refs(obj)
    if not refs:
        raise RowError("images", "missing key `images` (or `image_path`)")
    n_tok = sum(m["content"].count(IMAGE_TOKEN) for m in msgs)
    if n_tok == 0 and len(refs) == 1:
        for m in msgs:
            if m["role"] == "user":
                m["content"] = IMAGE_TOKEN + m["content"]
                break
        n_tok = 1
    if n_tok != len(refs):
        raise RowError(key, f"{n_tok} `{IMAGE_TOKEN}` token{'s' if n_tok != 1 else ''} but {len(refs)} "
                       f"image{'s' if len(refs) != 1 else ''}")
    paths = []
    single = isinstance(obj.get(key), str)
    for i, ref in enumerate(refs):
        p = images(ref) if images is not None else ref
        if p is None:
            where = getattr(images, "where", "") or "not found"
            raise RowError(key if single else f"{key}[{i}]", f"image `{ref}` {where}")
        paths.append(p)
    row["images"] = paths
    return row


def sharegpt_image(obj: Any, images: ImageLookup | None = None) -> dict:
    obj = _row_obj(obj)
    row = sharegpt(obj)
    return _attach_images(obj, row, row["messages"], images)


def sharegpt_image_pair(obj: Any, images: ImageLookup | None = None) -> dict:
    """A ShareGPT_Image preference pair (LLaMA-Factory's multimodal ``ranking: true`` sharegpt rows, e.g. RLHF-V):
    conversations ending with the user's turn, ``chosen`` / ``rejected`` replies and ``images``; the images' tokens
    sit in the prompt (a reply shows no image)."""
    obj = _row_obj(obj)
    row = preference(obj)
    for k in ("chosen", "rejected"):
        if IMAGE_TOKEN in row[k][0]["content"]:
            raise RowError(k, f"`{k}` holds an `{IMAGE_TOKEN}` token; images belong in the prompt's turns")
    return _attach_images(obj, row, row["prompt"], images)


# --------------------------------------------------------------------------- bedrock converse

def bedrock_converse(obj: Any, images: ImageLookup | None = None) -> dict:
    obj = _row_obj(obj)
    sv = _need(obj, "schemaVersion")
    if sv != BEDROCK_SCHEMA:
        raise RowError("schemaVersion", f"`schemaVersion` is `{sv}`, expected `{BEDROCK_SCHEMA}`")
    msgs: list[dict] = []
    system = obj.get("system")
    if system is not None:
        if not isinstance(system, list):
            raise RowError("system", f"`system` must be a list of {{text}} blocks, not {_tname(system)}")
        texts = []
        for i, b in enumerate(system):
            if not isinstance(b, dict) or not isinstance(b.get("text"), str):
                raise RowError(f"system[{i}]", f"system block {i + 1} must be {{\"text\": string}}")
            texts.append(b["text"])
        if any(t.strip() for t in texts):
            msgs.append({"role": "system", "content": "\n".join(texts)})
    turns = _need(obj, "messages")
    if not isinstance(turns, list) or not turns:
        raise RowError("messages", "`messages` must be a non-empty list")
    imgs: list[str] = []
    prev = None
    for i, t in enumerate(turns):
        f = f"messages[{i}]"
        if not isinstance(t, dict):
            raise RowError(f, f"turn {i + 1}: must be an object, not {_tname(t)}")
        role = t.get("role")
        if role not in ("user", "assistant"):
            if "role" not in t:
                raise RowError(f + ".role", f"turn {i + 1}: missing key `role`")
            raise RowError(f + ".role", f"turn {i + 1}: role `{role}` must be `user` or `assistant`")
        if prev is None and role != "user":
            raise RowError(f, f"turn {i + 1}: conversation starts with `{role}`, expected `user`")
        if role == prev:
            raise RowError(f, f"turn {i + 1}: two `{role}` turns in a row")
        content = t.get("content")
        if "content" not in t:
            raise RowError(f + ".content", f"turn {i + 1}: missing key `content`")
        if not isinstance(content, list) or not content:
            raise RowError(f + ".content", f"turn {i + 1}: `content` must be a non-empty list of blocks")
        parts: list[str] = []
        for j, b in enumerate(content):
            bf = f"{f}.content[{j}]"
            if not isinstance(b, dict):
                raise RowError(bf, f"turn {i + 1}: content block {j + 1} must be an object")
            if "text" in b:
                if not isinstance(b["text"], str):
                    raise RowError(bf + ".text", f"turn {i + 1}: `text` must be a string")
                parts.append(b["text"])
            elif "image" in b:
                im = b["image"]
                if not isinstance(im, dict) or "format" not in im or "source" not in im:
                    raise RowError(bf + ".image", f"turn {i + 1}: image block needs `format` and `source`")
                if im["format"] not in ("png", "jpeg", "gif", "webp"):
                    raise RowError(bf + ".image.format", f"turn {i + 1}: image format `{im['format']}` "
                                   "(allowed: png, jpeg, gif, webp)")
                src = im["source"]
                ref = None
                if isinstance(src, dict):
                    if isinstance(src.get("s3Location"), dict):
                        ref = src["s3Location"].get("uri")
                    elif "bytes" in src:
                        ref = "bytes"
                if not isinstance(ref, str):
                    raise RowError(bf + ".image.source", f"turn {i + 1}: image `source` needs s3Location.uri or bytes")
                parts.append(IMAGE_TOKEN)
                imgs.append(ref)
            else:
                raise RowError(bf, f"turn {i + 1}: content block {j + 1} has neither `text` nor `image`")
        text = "".join(parts)
        if not text.replace(IMAGE_TOKEN, "").strip() and role == "assistant":
            raise RowError(f + ".content", f"turn {i + 1}: empty assistant turn")
        msgs.append({"role": role, "content": text})
        prev = role
    if prev != "assistant":
        raise RowError(f"messages[{len(turns) - 1}]", f"turn {len(turns)}: last turn is `user`; the conversation "
                       "must end with `assistant`")
    row: dict = {"messages": msgs}
    if imgs:
        row["images"] = imgs
    return row


# --------------------------------------------------------------------------- preference

def _answer(obj: dict, key: str) -> list[dict]:
    if key not in obj:
        raise RowError(key, f"missing key `{key}`")
    v = obj[key]
    if isinstance(v, str):
        content = v
    elif isinstance(v, dict):
        name, role, content = _turn(v, 0, key)
        if role != "assistant":
            raise RowError(key, f"`{key}` turn is `{name}`, expected the model's turn")
        content = content
    elif isinstance(v, list) and v:
        # TRL style: a list of messages, the last being the assistant's
        name, role, content = _turn(v[-1], len(v) - 1, key)
        if role != "assistant":
            raise RowError(key, f"last `{key}` turn is `{name}`, expected the model's turn")
    else:
        raise RowError(key, f"`{key}` must be a string or a turn, not {_tname(v)}")
    if not content.strip():
        raise RowError(key, f"`{key}` is empty")
    return [{"role": "assistant", "content": content}]


def _prompt(obj: dict) -> list[dict]:
    if "conversations" in obj or "messages" in obj:
        msgs, _ = _conversation(obj, end="user")
        return msgs
    if "instruction" in obj:
        return _alpaca_prompt(obj)
    if "prompt" in obj:
        p = obj["prompt"]
        if isinstance(p, str):
            if not p.strip():
                raise RowError("prompt", "`prompt` is empty")
            return [{"role": "user", "content": p}]
        if isinstance(p, list):
            msgs, _ = _conversation({"messages": p}, end="user")
            return msgs
        raise RowError("prompt", f"`prompt` must be a string or a list of turns, not {_tname(p)}")
    raise RowError("instruction", "missing key `instruction` (or `conversations` / `prompt`)")


def _message_pair(obj: dict) -> dict:
    """LLaMA-Factory v1 pairs: ``chosen_messages`` / ``rejected_messages``, two whole conversations that share
    their prompt and differ in the last (the model's) turn."""
    conv = {}
    for key in ("chosen_messages", "rejected_messages"):
        if key not in obj:
            raise RowError(key, f"missing key `{key}`")
        msgs, _ = _conversation({"messages": obj[key]})
        conv[key] = msgs
    ch, rj = conv["chosen_messages"], conv["rejected_messages"]
    if ch[:-1] != rj[:-1]:
        raise RowError("rejected_messages", "`chosen_messages` and `rejected_messages` differ before their last turn")
    if ch[-1]["content"] == rj[-1]["content"]:
        raise RowError("rejected_messages", "`chosen` and `rejected` are the same")
    return {"prompt": ch[:-1], "chosen": [ch[-1]], "rejected": [rj[-1]]}


def preference(obj: Any, images: ImageLookup | None = None) -> dict:
    obj = _row_obj(obj)
    if "chosen_messages" in obj or "rejected_messages" in obj:
        return _message_pair(obj)
    prompt = _prompt(obj)
    chosen = _answer(obj, "chosen")
    rejected = _answer(obj, "rejected")
    if chosen[0]["content"] == rejected[0]["content"]:
        raise RowError("rejected", "`chosen` and `rejected` are the same")
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


# --------------------------------------------------------------------------- kto

def kto(obj: Any, images: ImageLookup | None = None) -> dict:
    obj = _row_obj(obj)
    lk = "label" if "label" in obj else ("kto_tag" if "kto_tag" in obj else None)
    if lk is None:
        raise RowError("label", "missing key `label`")
    label = obj[lk]
    if not isinstance(label, bool):
        raise RowError(lk, f"`{lk}` must be true or false, not {json.dumps(label)}")
    if "completion" in obj and "prompt" in obj:
        prompt = _prompt(obj)
        completion = _answer(obj, "completion")
        return {"prompt": prompt, "completion": completion, "label": label}
    msgs, _ = _conversation(obj)
    return {"prompt": msgs[:-1], "completion": [msgs[-1]], "label": label}


NORMALIZERS: dict[str, Callable[[Any, Optional[ImageLookup]], dict]] = {
    "corpus": corpus,
    "alpaca": alpaca,
    "sharegpt": sharegpt,
    "sharegpt_image": sharegpt_image,
    "bedrock_converse": bedrock_converse,
    "preference": preference,
    "kto": kto,
}


#: stages trained on pairs: there, sharegpt rows are conversations with chosen / rejected replies (LLaMA-Factory's
#: `ranking: true` sharegpt data sets; the FPT pipeline's DPO reads ShareGPT)
PAIRED_STAGES = ("dpo", "reward")


def normalizer(fmt: str, stage: str | None = None) -> Callable[[Any, Optional[ImageLookup]], dict]:
    """The normaliser rows of ``fmt`` are read with for ``stage``."""
    if fmt == "sharegpt" and stage in PAIRED_STAGES:
        return preference
    if fmt == "sharegpt_image" and stage == "dpo":  # (TRL's reward trainer reads no images)
        return sharegpt_image_pair
    return NORMALIZERS[fmt]


def row_texts(row: dict) -> list[str]:
    """Every string of a canonical row (for duplicate and empty-string statistics)."""
    if "text" in row:
        return [row["text"]]
    out = []
    for k in ("messages", "prompt", "chosen", "rejected", "completion"):
        for m in row.get(k) or ():
            out.append(m["content"])
    return out


def as_messages(row: dict) -> list[dict]:
    """The conversation the model sees for a canonical row (preference: prompt + chosen)."""
    if "messages" in row:
        return row["messages"]
    if "chosen" in row:
        return row["prompt"] + row["chosen"]
    if "completion" in row:
        return row["prompt"] + row["completion"]
    return [{"role": "user", "content": row.get("text", "")}]


# --------------------------------------------------------------------------- detection

#: what each format is called in a sentence ("this looks like preference data")
FORMAT_WORDS = {
    "corpus": "plain-text corpus (pre-training) data", "alpaca": "Alpaca (instruction / output) data",
    "sharegpt": "ShareGPT conversations", "sharegpt_image": "ShareGPT conversations with images",
    "bedrock_converse": "Bedrock Converse data", "preference": "preference data", "kto": "KTO (labelled) data",
}
_IMAGE_KEYS = ("images", "image", "image_path", "image_paths")
_CONVERSATION_KEYS = ("conversations", "messages")


def row_format(obj: Any) -> str | None:
    """The format one decoded row looks like, from its distinctive keys only (no validation), or None."""
    if not isinstance(obj, dict):
        return None
    keys = set(obj)
    if obj.get("schemaVersion") == BEDROCK_SCHEMA:
        return "bedrock_converse"
    if {"chosen", "rejected"} <= keys:
        return "sharegpt_image" if keys & set(_IMAGE_KEYS) else "preference"
    if ("label" in keys or "kto_tag" in keys) and ("completion" in keys or keys & set(_CONVERSATION_KEYS)):
        return "kto"
    if keys & set(_CONVERSATION_KEYS):
        return "sharegpt_image" if keys & set(_IMAGE_KEYS) else "sharegpt"
    if "instruction" in keys and "output" in keys:
        return "alpaca"
    if "text" in keys and not keys & {"instruction", "output", "prompt", "completion"}:
        return "corpus"
    return None


def detect_format(rows: Iterable[Any]) -> str | None:
    """The format most of ``rows`` (the first rows of a file, decoded) look like, or None when none does."""
    votes = Counter(f for f in map(row_format, rows) if f is not None)
    return votes.most_common(1)[0][0] if votes else None


#: extra keys of a row → what a format uses them for (a key not listed for the format is not trained on)
EXTRA_KEY_USES = {
    "system": "the system prompt, the first message of the conversation",
    "tools": "tool (function) definitions, given to the chat template for tool calling",
    "history": "earlier turns, before the instruction",
    "input": "appended to the instruction, on a new line",
    "images": "images shown to a vision model, one per <image> token",
    "image": "the image shown to a vision model",
    "image_path": "the image shown to a vision model (before the first user text when there is no <image>)",
    "image_paths": "images shown to a vision model, one per <image> token",
}
_USES_BY_FORMAT = {
    "alpaca": ("system", "history", "input"),
    "sharegpt": ("system", "tools"),
    "sharegpt_image": ("system", "tools", *_IMAGE_KEYS),
    "bedrock_converse": ("system",),
    "preference": ("system", "history", "input"),
    "kto": ("system", "history", "input"),
}


def extra_keys(fmt: str, rows: Iterable[Any]) -> dict[str, str]:
    """The optional keys present in ``rows`` → what ``fmt`` uses each for, or that it is ignored (images in a
    text format, tools outside ShareGPT)."""
    present: dict[str, None] = {}
    for r in rows:
        if isinstance(r, dict):
            present.update(dict.fromkeys(k for k in r if k in EXTRA_KEY_USES))
    uses = _USES_BY_FORMAT.get(fmt, ())
    out = {}
    for k in present:
        if fmt == "bedrock_converse" and k == "system":
            out[k] = "system prompt blocks, the first message of the conversation"
        elif k in uses:
            out[k] = EXTRA_KEY_USES[k]
        elif k in _IMAGE_KEYS:
            out[k] = "ignored: images are read in the sharegpt_image format only"
        elif k == "tools":
            out[k] = "ignored: tool definitions are read in the sharegpt formats only"
        else:
            out[k] = f"ignored by the {fmt} format"
    return out


def format_hint(chosen: str, rows: list[Any]) -> str | None:
    """A sentence when the rows look like another format than ``chosen``:
    ``this looks like preference data (chosen / rejected keys): use --format preference``."""
    found = detect_format(rows)
    if found is None or found == chosen:
        return None
    return f"this looks like {FORMAT_WORDS.get(found, found)}: use --format {found}"
