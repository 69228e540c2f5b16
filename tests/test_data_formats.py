"""Every format: good rows → canonical rows; every failure reason → its plain-words message."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.data.errors import RowError
from engine.data.formats import NORMALIZERS

BR = "bedrock-conversation-2024"


def norm(fmt, obj, images=None):
    return NORMALIZERS[fmt](obj, images)


# ------------------------------------------------------------------------------------ good rows

def test_alpaca_with_system_and_history():
    row = norm("alpaca", {"instruction": "Translate", "input": "chat", "output": "cat", "system": "Be brief.",
                          "history": [["hi", "hello"], ["how?", "fine"]]})
    assert row == {"messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "how?"}, {"role": "assistant", "content": "fine"},
        {"role": "user", "content": "Translate\nchat"}, {"role": "assistant", "content": "cat"}]}


def test_alpaca_empty_input_is_fine():
    row = norm("alpaca", {"instruction": "Say hi", "input": "", "output": "hi"})
    assert row["messages"] == [{"role": "user", "content": "Say hi"}, {"role": "assistant", "content": "hi"}]


def test_corpus():
    assert norm("corpus", {"text": "abc"}) == {"text": "abc"}


def test_sharegpt_function_call_and_observation_with_tools():
    row = norm("sharegpt", {"conversations": [
        {"from": "system", "value": "sys"}, {"from": "human", "value": "weather?"},
        {"from": "function_call", "value": '{"name": "w"}'}, {"from": "observation", "value": '{"t": 3}'},
        {"from": "gpt", "value": "3 degrees"}], "tools": '[{"name": "w"}]'})
    assert [m["role"] for m in row["messages"]] == ["system", "user", "assistant", "tool", "assistant"]
    assert row["tools"] == '[{"name": "w"}]'


def test_sharegpt_messages_style():
    row = norm("sharegpt", {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]})
    assert row["messages"][-1] == {"role": "assistant", "content": "b"}


def test_sharegpt_tools_list_becomes_json_string():
    row = norm("sharegpt", {"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}],
                            "tools": [{"name": "f"}]})
    assert row["tools"] == '[{"name": "f"}]'


def test_sharegpt_image_resolves_images():
    seen = []

    def look(ref):
        seen.append(ref)
        return "/abs/" + ref

    row = norm("sharegpt_image", {"messages": [{"role": "user", "content": "<image>who?"},
                                               {"role": "assistant", "content": "me"}],
                                  "images": ["img/1.png"]}, look)
    assert row["images"] == ["/abs/img/1.png"] and seen == ["img/1.png"]


def test_sharegpt_image_single_image_path_without_token():
    row = norm("sharegpt_image", {"conversations": [{"from": "human", "value": "who?"},
                                                    {"from": "gpt", "value": "me"}],
                                  "image_path": "a.png"}, lambda r: "/x/" + r)
    assert row["messages"][0]["content"] == "<image>who?" and row["images"] == ["/x/a.png"]


def test_bedrock_converse():
    row = norm("bedrock_converse", {"schemaVersion": BR, "system": [{"text": "sys"}], "messages": [
        {"role": "user", "content": [{"text": "look"}, {"image": {"format": "png", "source": {
            "s3Location": {"uri": "s3://b/i.png"}}}}]},
        {"role": "assistant", "content": [{"text": "a cat"}]}]})
    assert row["messages"] == [{"role": "system", "content": "sys"}, {"role": "user", "content": "look<image>"},
                               {"role": "assistant", "content": "a cat"}]
    assert row["images"] == ["s3://b/i.png"]


def test_preference_alpaca_style():
    row = norm("preference", {"instruction": "2+2", "input": "", "chosen": "4", "rejected": "5"})
    assert row == {"prompt": [{"role": "user", "content": "2+2"}], "chosen": [{"role": "assistant", "content": "4"}],
                   "rejected": [{"role": "assistant", "content": "5"}]}


def test_preference_sharegpt_style():
    row = norm("preference", {"conversations": [{"from": "system", "value": "s"}, {"from": "human", "value": "q"}],
                              "chosen": {"from": "gpt", "value": "good"}, "rejected": {"from": "gpt", "value": "bad"}})
    assert row["prompt"] == [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}]
    assert row["chosen"][0]["content"] == "good" and row["rejected"][0]["content"] == "bad"


def test_kto_messages_and_label():
    row = norm("kto", {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
                       "label": False})
    assert row == {"prompt": [{"role": "user", "content": "q"}], "completion": [{"role": "assistant", "content": "a"}],
                   "label": False}


# ------------------------------------------------------------------------------------ bad rows

H = lambda v: {"from": "human", "value": v}  # noqa: E731
G = lambda v: {"from": "gpt", "value": v}  # noqa: E731

BAD = [
    # format, row, field, reason (exact)
    ("alpaca", {"instruction": "a", "input": ""}, "output", "missing key `output`"),
    ("alpaca", {"input": "x", "output": "y"}, "instruction", "missing key `instruction`"),
    ("alpaca", {"instruction": "a", "output": ""}, "output", "`output` is empty"),
    ("alpaca", {"instruction": "a", "output": 3}, "output", "`output` must be a string, not a number"),
    ("alpaca", {"instruction": " ", "input": "", "output": "y"}, "instruction",
     "`instruction` and `input` are both empty"),
    ("alpaca", {"instruction": "a", "output": "b", "history": [["x"]]}, "history[0]",
     "history entry 1 must be a pair [instruction, response] of strings"),
    ("alpaca", {"instruction": "a", "output": "b", "history": "x"}, "history",
     "`history` must be a list of [instruction, response] pairs, not a string"),
    ("alpaca", ["not", "an", "object"], "", "row must be a JSON object, not a list"),
    ("corpus", {"txt": "a"}, "text", "missing key `text`"),
    ("corpus", {"text": "  "}, "text", "`text` is empty"),
    ("sharegpt", {"conversations": [H("a"), H("b"), G("c")]}, "conversations[1]",
     "turn 2: two `human` turns in a row"),
    ("sharegpt", {"conversations": [H("a"), G("b"), G("c")]}, "conversations[2]", "turn 3: two `gpt` turns in a row"),
    ("sharegpt", {"conversations": [G("a"), H("b"), G("c")]}, "conversations[0]",
     "turn 1: conversation starts with `gpt`, expected a user turn"),
    ("sharegpt", {"conversations": [H("a"), G("b"), H("c")]}, "conversations[2]",
     "turn 3: last turn is `human`; the conversation must end with the model's turn"),
    ("sharegpt", {"conversations": [H("a"), {"from": "system", "value": "s"}, G("c")]}, "conversations[1]",
     "turn 2: `system` turn is only allowed first"),
    ("sharegpt", {"conversations": [H("a"), {"from": "robot", "value": "b"}]}, "conversations[1].from",
     "turn 2: unknown role `robot` (allowed: human, user, gpt, assistant, model, system, function_call, "
     "observation, tool, function)"),
    ("sharegpt", {"conversations": [H("a"), {"from": "gpt"}]}, "conversations[1].value", "turn 2: missing key `value`"),
    ("sharegpt", {"conversations": [H("a"), G("")]}, "conversations[1]", "turn 2: empty `gpt` turn"),
    ("sharegpt", {"conversations": [H("a"), G(["x"])]}, "conversations[1].value",
     "turn 2: `value` must be a string, not a list"),
    ("sharegpt", {"dialog": []}, "conversations", "missing key `conversations` (or `messages`)"),
    ("sharegpt", {"conversations": []}, "conversations", "`conversations` is empty"),
    ("sharegpt", {"conversations": [H("a"), G("b")], "tools": "{not json"}, "tools", "`tools` is not valid JSON"),
    ("sharegpt", {"conversations": [H("a"), {"from": "function_call", "value": "{}"}, H("b"), G("c")]},
     "conversations[2]", "turn 3: `function_call` must be followed by an `observation` turn, not `human`"),
    ("sharegpt", {"conversations": [{"from": "observation", "value": "{}"}, G("c")]},
     "conversations[0]", "turn 1: `observation` turn without a `function_call` before it"),
    ("sharegpt_image", {"conversations": [H("<image>a"), G("b")]}, "images", "missing key `images` (or `image_path`)"),
    ("sharegpt_image", {"conversations": [H("<image>a<image>"), G("b")], "images": ["1.png"]}, "images",
     "2 `<image>` tokens but 1 image"),
    ("sharegpt_image", {"conversations": [H("a"), G("b")], "images": ["1.png", "2.png"]}, "images",
     "0 `<image>` tokens but 2 images"),
    ("sharegpt_image", {"conversations": [H("<image>a"), G("b")], "images": ["img/4.png"]}, "images[0]",
     "image `img/4.png` not in archive"),
    ("bedrock_converse", {"messages": []}, "schemaVersion", "missing key `schemaVersion`"),
    ("bedrock_converse", {"schemaVersion": "v1", "messages": []}, "schemaVersion",
     "`schemaVersion` is `v1`, expected `bedrock-conversation-2024`"),
    ("bedrock_converse", {"schemaVersion": BR, "messages": [
        {"role": "user", "content": [{"text": "a"}]}, {"role": "user", "content": [{"text": "b"}]}]},
     "messages[1]", "turn 2: two `user` turns in a row"),
    ("bedrock_converse", {"schemaVersion": BR, "messages": [{"role": "assistant", "content": [{"text": "a"}]}]},
     "messages[0]", "turn 1: conversation starts with `assistant`, expected `user`"),
    ("bedrock_converse", {"schemaVersion": BR, "messages": [{"role": "user", "content": [{"text": "a"}]}]},
     "messages[0]", "turn 1: last turn is `user`; the conversation must end with `assistant`"),
    ("bedrock_converse", {"schemaVersion": BR, "messages": [{"role": "system", "content": [{"text": "a"}]}]},
     "messages[0].role", "turn 1: role `system` must be `user` or `assistant`"),
    ("bedrock_converse", {"schemaVersion": BR, "messages": [{"role": "user", "content": "a"}]},
     "messages[0].content", "turn 1: `content` must be a non-empty list of blocks"),
    ("bedrock_converse", {"schemaVersion": BR, "messages": [{"role": "user", "content": [
        {"image": {"format": "bmp", "source": {"bytes": "x"}}}]}]}, "messages[0].content[0].image.format",
     "turn 1: image format `bmp` (allowed: png, jpeg, gif, webp)"),
    ("bedrock_converse", {"schemaVersion": BR, "messages": [{"role": "user", "content": [{"video": {}}]}]},
     "messages[0].content[0]", "turn 1: content block 1 has neither `text` nor `image`"),
    ("bedrock_converse", {"schemaVersion": BR, "system": "be nice", "messages": []}, "system",
     "`system` must be a list of {text} blocks, not a string"),
    ("preference", {"instruction": "q", "chosen": "a"}, "rejected", "missing key `rejected`"),
    ("preference", {"instruction": "q", "chosen": "a", "rejected": "a"}, "rejected",
     "`chosen` and `rejected` are the same"),
    ("preference", {"instruction": "q", "chosen": "", "rejected": "b"}, "chosen", "`chosen` is empty"),
    ("preference", {"conversations": [H("q"), G("a")], "chosen": G("x"), "rejected": G("y")}, "conversations[1]",
     "turn 2: last turn is `gpt`; the prompt must end with a user turn"),
    ("preference", {"conversations": [H("q")], "chosen": H("x"), "rejected": G("y")}, "chosen",
     "`chosen` turn is `human`, expected the model's turn"),
    ("preference", {"chosen": "a", "rejected": "b"}, "instruction",
     "missing key `instruction` (or `conversations` / `prompt`)"),
    ("kto", {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}, "label",
     "missing key `label`"),
    ("kto", {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "label": "yes"},
     "label", '`label` must be true or false, not "yes"'),
    ("kto", {"messages": [{"role": "user", "content": "q"}], "label": True}, "messages[0]",
     "turn 1: last turn is `user`; the conversation must end with the model's turn"),
]


@pytest.mark.parametrize("fmt,obj,field,reason", BAD, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD)])
def test_bad_row_message(fmt, obj, field, reason):
    def look(ref):
        return None  # no image exists

    look.where = "not in archive"

    with pytest.raises(RowError) as ei:
        norm(fmt, obj, look)
    assert ei.value.reason == reason
    assert ei.value.field == field


# ------------------------------------------------------------------------------ JSON arrays, a chunk at a time

_ELEM = st.recursive(st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.text(max_size=8),
                     lambda inner: (st.lists(inner, max_size=3)
                                    | st.dictionaries(st.text(max_size=4), inner, max_size=3)),
                     max_leaves=6)


def _array_run(chunks: list[str]) -> tuple[list, str | None]:
    from engine.data.errors import DataError
    from engine.data.sources import _json_array_records

    out: list = []
    try:
        for loc, obj in _json_array_records(iter(chunks), "a.json"):
            out.append((loc, obj))
    except DataError as e:
        return out, str(e)
    return out, None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(_ELEM, max_size=6), indent=st.sampled_from([None, 1, 2]), cut=st.integers(0, 10**6),
       damage=st.sampled_from(["", "cut", "junk", "comma", "bracket"]), size=st.sampled_from([1, 2, 3, 7, 64]),
       forget=st.sampled_from([4, 1 << 20]))
def test_a_json_array_read_a_chunk_at_a_time_is_read_whole(monkeypatch, rows, indent, cut, damage, size, forget):
    """A JSON array's rows, locations and errors (damaged, cut short, junk between rows) are the same read in chunks
    of any size — the text forgotten as it is passed — as read whole."""
    from engine.data import sources

    text = json.dumps(rows, indent=indent, ensure_ascii=False)
    at = cut % (len(text) + 1)
    text = {"": text, "cut": text[:at], "junk": text[:at] + "x" + text[at:], "comma": text.replace(",", " ", 1),
            "bracket": text.replace("]", "", 1)}[damage]
    whole = _array_run([text])
    monkeypatch.setattr(sources, "_ARRAY_CHUNK", forget)
    assert _array_run([text[k:k + size] for k in range(0, len(text), size)]) == whole


@settings(max_examples=300, deadline=None)
@given(data=st.lists(st.sampled_from([b"a", b"\n", b"\xc3\xa9", b"\xe2\x82\xac", b"\xf0\x9f\x98\x80", b"\xff", b"\xc3",
                                      b"\xef\xbb\xbf", b"\x80", b"[", b"{}"]), max_size=30).map(b"".join),
       bom=st.booleans(), size=st.sampled_from([1, 2, 3, 5, 4096]))
def test_utf8_chunks_read_what_decode_utf8_reads(data, bom, size):
    """The text of a file decoded a chunk at a time (a character cut by a read completed by the next) is what it is
    decoded whole — or the same error, naming the line and column of the first bad byte."""
    import io

    from engine import userfiles
    from engine.data.errors import DataError
    from engine.data.sources import data_error

    data = (b"\xef\xbb\xbf" if bom else b"") + data

    def run(f):
        try:
            return f(), None
        except DataError as e:
            return None, str(e)

    whole = run(lambda: userfiles.decode_utf8(data, "a.json", data_error))
    chunked = run(lambda: "".join(userfiles.utf8_chunks(io.BytesIO(data), "a.json", data_error, size)))
    assert chunked == whole
