"""A tokenizer's Jinja chat template as an Ollama (Go ``text/template``) TEMPLATE, and its stop tokens.

The Jinja is not parsed: it is *rendered* (``render(messages, add_generation_prompt)``, normally the
tokenizer's ``apply_chat_template``) with a marker as each message's text, which gives every role's
text before and after the message, the text before the first message and the generation prompt.
The common shapes (ChatML, Llama 3, Mistral-like, Phi, Gemma-like) are one wrap per message and
convert exactly; the result is then checked by rendering several conversations (a system
message, several turns, text with spaces and newlines around it) both ways.  A template that
does more than wrap each message (a default system prompt, trimmed text, a system message
folded into the first user turn, tools, checks that raise) fails that check and is reported in one
line instead of converted wrongly.  No torch, no transformers: the caller passes ``render``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

Render = Callable[[list[dict[str, str]], bool], str]

ROLES = ("system", "user", "assistant")
_MARK = "FINETUIMSG"


@dataclass
class GoTemplate:
    template: str | None  # the Ollama TEMPLATE, or None when the Jinja cannot be converted faithfully
    note: str = ""  # why not (one line), when template is None


def _segments(text: str, marks: list[str]) -> list[str]:
    """``text`` cut at each mark (each once, in order): len(marks) + 1 pieces."""
    out = []
    for m in marks:
        if text.count(m) != 1:
            raise ValueError("a message's text does not appear once in the rendering")
        before, text = text.split(m)
        out.append(before)
    return out + [text]


def _cut(text: str, prefix: str = "", suffix: str = "") -> str:
    if not text.startswith(prefix) or not text.endswith(suffix) or len(text) < len(prefix) + len(suffix):
        raise ValueError("messages are not wrapped the same way wherever they stand")
    return text[len(prefix):len(text) - len(suffix)]


def _wraps(render: Render) -> tuple[str, dict[str, tuple[str, str]], str]:
    """(text before the first message, role → (before, after) its text, generation prompt), read off
    renderings of short conversations with a marker as each message's text."""
    m = [f"{_MARK}{i}X" for i in range(4)]

    def conv(*roles: str) -> list[dict[str, str]]:
        return [{"role": r, "content": m[i]} for i, r in enumerate(roles)]

    head_u, u1 = _segments(render(conv("user"), False), m[:1])
    _, between, a1 = _segments(render(conv("user", "assistant"), False), m[:2])
    a0 = _cut(between, prefix=u1)
    _, _, between, _ = _segments(render(conv("user", "assistant", "user"), False), m[:3])
    u0 = _cut(between, prefix=a1)
    head = _cut(head_u, suffix=u0)
    head_s, between, _ = _segments(render(conv("system", "user"), False), m[:2])
    s0 = _cut(head_s, prefix=head)
    s1 = _cut(between, suffix=u0)
    plain, prompted = render(conv("user"), False), render(conv("user"), True)
    if not prompted.startswith(plain):
        raise ValueError("the generation prompt is not added after the conversation")
    return head, {"system": (s0, s1), "user": (u0, u1), "assistant": (a0, a1)}, prompted[len(plain):]


_CHECKS: list[tuple[list[tuple[str, str]], bool]] = [
    ([("system", "Be brief."), ("user", "Hi there"), ("assistant", "Hello."), ("user", "Name a colour.")], True),
    ([("user", "Hi there"), ("assistant", "Hello.")], False),
    ([("user", "What is 2+2?")], True),
    ([("user", "  spaced text \n"), ("assistant", "\nan answer  "), ("user", "more")], True),
]


def _expected(head: str, wraps: dict[str, tuple[str, str]], gen: str, conv: list[tuple[str, str]],
              add_gen: bool) -> str:
    return head + "".join(wraps[r][0] + c + wraps[r][1] for r, c in conv) + (gen if add_gen else "")


def _go_literal_ok(text: str) -> bool:
    return "{{" not in text and "}}" not in text and '"""' not in text


def convert(render: Render, *, bos: str | None = None, adds_bos: bool = False) -> GoTemplate:
    """The Go template for ``render``'s Jinja template, or a one-line note why it is not converted.

    ``bos``/``adds_bos``: a head that is just the BOS token the tokenizer adds by itself is left out (the
    server's tokenizer adds it: keeping it would give two)."""
    try:
        head, wraps, gen = _wraps(render)
    except Exception as e:  # noqa: BLE001 - any failure of the template is a note, never a traceback
        return GoTemplate(None, f"the chat template does not render one wrap per message ({_first(e)})")
    for conv, add_gen in _CHECKS:
        msgs = [{"role": r, "content": c} for r, c in conv]
        try:
            got = render(msgs, add_gen)
        except Exception as e:  # noqa: BLE001
            return GoTemplate(None, f"the chat template refuses a plain conversation ({_first(e)})")
        if got != _expected(head, wraps, gen, conv, add_gen):
            return GoTemplate(None, "the chat template does more than wrap each message (a default system "
                                    "prompt, trimmed text, a system message folded into a turn or the like)")
    if bos and adds_bos and head == bos:
        head = ""
    pieces = [head, gen] + [x for w in wraps.values() for x in w]
    if not all(_go_literal_ok(p) for p in pieces):
        return GoTemplate(None, "the chat template's text holds '{{', '}}' or '\"\"\"', which a Modelfile "
                                "TEMPLATE cannot hold as plain text")
    (s0, s1), (u0, u1), (a0, a1) = wraps["system"], wraps["user"], wraps["assistant"]
    # one line of actions with no whitespace trimming: every character outside {{ }} is the template's own text
    go = (f"{head}{{{{ range $i, $_ := .Messages }}}}{{{{ $last := eq (len (slice $.Messages $i)) 1 }}}}"
          f"{{{{ if eq .Role \"system\" }}}}{s0}{{{{ .Content }}}}{s1}"
          f"{{{{ else if eq .Role \"user\" }}}}{u0}{{{{ .Content }}}}{u1}"
          f"{{{{ else if eq .Role \"assistant\" }}}}{a0}{{{{ .Content }}}}{{{{ if not $last }}}}{a1}{{{{ end }}}}"
          f"{{{{ end }}}}{{{{ if and $last (ne .Role \"assistant\") }}}}{gen}{{{{ end }}}}{{{{ end }}}}")
    return GoTemplate(go)


def render_go(template: str, messages: list[dict[str, str]]) -> str:
    """Evaluate a template made by :func:`convert` the way Ollama does (only the constructs it uses);
    the tests compare it with the Jinja rendering."""
    import re

    m = re.fullmatch(r'(?s)(.*?)\{\{ range \$i, \$_ := \.Messages \}\}\{\{ \$last := eq \(len \(slice \$\.Messages '
                     r'\$i\)\) 1 \}\}\{\{ if eq \.Role "system" \}\}(.*?)\{\{ \.Content \}\}(.*?)'
                     r'\{\{ else if eq \.Role "user" \}\}(.*?)\{\{ \.Content \}\}(.*?)'
                     r'\{\{ else if eq \.Role "assistant" \}\}(.*?)\{\{ \.Content \}\}\{\{ if not \$last \}\}(.*?)'
                     r'\{\{ end \}\}\{\{ end \}\}\{\{ if and \$last \(ne \.Role "assistant"\) \}\}(.*?)'
                     r'\{\{ end \}\}\{\{ end \}\}', template)
    if m is None:
        raise ValueError("not a template made by engine.chattemplate.convert")
    head, s0, s1, u0, u1, a0, a1, gen = m.groups()
    wraps = {"system": (s0, s1), "user": (u0, u1), "assistant": (a0, a1)}
    out = [head]
    for i, msg in enumerate(messages):
        last = i == len(messages) - 1
        before, after = wraps[msg["role"]]
        out.append(before + msg["content"] + ("" if last and msg["role"] == "assistant" else after))
        if last and msg["role"] != "assistant":
            out.append(gen)
    return "".join(out)


def stop_tokens(render: Render | None, tokens: dict[str, int], eos: list[str]) -> list[str]:
    """Strings that end a turn: the end-of-sequence token(s) and the special token that closes an assistant
    message in the template (``<|im_end|>``, ``<|eot_id|>``, ``<end_of_turn>``), in that order, once each.
    ``tokens``: the tokenizer's special tokens (text → id)."""
    out = [t for t in eos if t]
    if render is not None:
        try:
            _head, wraps, _gen = _wraps(render)
            after = wraps["assistant"][1]
            out += [t for t in sorted(tokens, key=len, reverse=True) if t and t in after][:1]
        except Exception:  # noqa: BLE001 - no wrap: the EOS tokens only
            pass
    seen: list[str] = []
    for t in out:
        if t not in seen:
            seen.append(t)
    return seen


def modelfile(source: str, conv: GoTemplate, stops: list[str], *, note_lines: list[str] = ()) -> str:
    """An Ollama Modelfile: FROM ``source``, the TEMPLATE (or a comment saying why there is none), one
    ``PARAMETER stop`` per stop token."""
    lines = ["# Written by finetui export-model. Create the model, in this folder, with: "
             "ollama create NAME -f Modelfile"]
    lines += [f"# {n}" for n in note_lines]
    lines.append(f"FROM {source}")
    if conv.template is not None:
        lines.append(f'TEMPLATE """{conv.template}"""')
    else:
        lines.append(f"# No TEMPLATE: {conv.note}; Ollama uses the template it detects from the model, or write "
                     f"one by hand (https://github.com/ollama/ollama/blob/main/docs/template.md)")
    for s in stops:
        lines.append(f"PARAMETER stop {_quote(s)}")
    return "\n".join(lines) + "\n"


def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _first(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def tokenizer_render(tok: Any) -> Render | None:
    """``render`` for a transformers tokenizer with a chat template (None without one)."""
    if not getattr(tok, "chat_template", None):
        return None

    def render(messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
        return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)

    return render
