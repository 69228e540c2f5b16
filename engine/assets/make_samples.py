"""Deterministic generator of the bundled sample data (``engine/assets/samples/``).

Run ``python -m engine.assets.make_samples`` to regenerate; the output is committed.
The tasks are simple and regular (reverse a word, add two numbers, capitals of
fictional countries, uppercase, ...) so that the tiny demo model's loss visibly
falls within a few dozen steps.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

OUT = Path(__file__).resolve().parent / "samples"

WORDS = ["apple", "river", "stone", "cloud", "tiger", "lemon", "piano", "candle", "forest", "silver",
         "garden", "rocket", "winter", "basket", "planet", "mirror", "pepper", "castle", "shadow", "violet",
         "anchor", "bridge", "copper", "dragon", "engine", "falcon", "harbor", "island", "jungle", "kitten"]
COUNTRIES = {"Zembla": "Nordhaven", "Ruritania": "Strelsau", "Freedonia": "Fredville", "Elbonia": "Mudtown",
             "Genovia": "Pyrus", "Latveria": "Doomstadt", "Florin": "Florin City", "Sokovia": "Novi Grad",
             "Qumar": "Alqasim", "Krakozhia": "Krakow Nova", "Markovia": "Markburg", "Borduria": "Szohod"}
COLORS = {"grass": "green", "sky": "blue", "snow": "white", "coal": "black", "blood": "red", "banana": "yellow",
          "orange": "orange", "violet": "purple"}
SYSTEM = "You are a helpful assistant."


def _task(rng: random.Random) -> tuple[str, str, str]:
    """One (instruction, input, output) triple."""
    k = rng.randrange(6)
    if k == 0:
        w = rng.choice(WORDS)
        return "Reverse the word.", w, w[::-1]
    if k == 1:
        a, b = rng.randrange(0, 50), rng.randrange(0, 50)
        return f"Add {a} and {b}.", "", str(a + b)
    if k == 2:
        c = rng.choice(sorted(COUNTRIES))
        return f"What is the capital of {c}?", "", f"The capital of {c} is {COUNTRIES[c]}."
    if k == 3:
        w = " ".join(rng.sample(WORDS, 2))
        return "Uppercase the text.", w, w.upper()
    if k == 4:
        t = rng.choice(sorted(COLORS))
        return f"What color is {t}?", "", f"{t.capitalize()} is {COLORS[t]}."
    w = rng.choice(WORDS)
    return "Count the letters in the word.", w, str(len(w))


def _wrong(rng: random.Random, out: str) -> str:
    """A plausible but wrong answer (the rejected side of a preference pair)."""
    choices = [out[::-1], out.lower() if out != out.lower() else out.upper(), "I don't know.",
               str(rng.randrange(100)), out + out]
    bad = [c for c in choices if c != out]
    return rng.choice(bad)


def _prompt(instr: str, inp: str) -> str:
    return f"{instr}\n{inp}" if inp else instr


def alpaca(n: int = 400) -> list[dict]:
    rng = random.Random(1)
    rows = []
    for _ in range(n):
        i, x, o = _task(rng)
        rows.append({"instruction": i, "input": x, "output": o})
    return rows


def corpus(n: int = 200) -> list[dict]:
    rng = random.Random(2)
    rows = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randrange(2, 5)):
            k = rng.randrange(4)
            if k == 0:
                c = rng.choice(sorted(COUNTRIES))
                parts.append(f"The capital of {c} is {COUNTRIES[c]}.")
            elif k == 1:
                w = rng.choice(WORDS)
                parts.append(f"The word {w} reversed is {w[::-1]}.")
            elif k == 2:
                a, b = rng.randrange(50), rng.randrange(50)
                parts.append(f"{a} plus {b} is {a + b}.")
            else:
                t = rng.choice(sorted(COLORS))
                parts.append(f"{t.capitalize()} is {COLORS[t]}.")
        rows.append({"text": " ".join(parts)})
    return rows


def sharegpt(n: int = 80) -> list[dict]:
    rng = random.Random(3)
    rows = []
    for j in range(n):
        conv = []
        if j % 3 == 0:
            conv.append({"from": "system", "value": SYSTEM})
        for _ in range(rng.randrange(1, 3)):
            i, x, o = _task(rng)
            conv.append({"from": "human", "value": _prompt(i, x)})
            conv.append({"from": "gpt", "value": o})
        rows.append({"conversations": conv})
    return rows


def preference(n: int = 120) -> list[dict]:
    rng = random.Random(4)
    rows = []
    for _ in range(n):
        i, x, o = _task(rng)
        rows.append({"instruction": i, "input": x, "chosen": o, "rejected": _wrong(rng, o)})
    return rows


def kto(n: int = 120) -> list[dict]:
    rng = random.Random(5)
    rows = []
    for _ in range(n):
        i, x, o = _task(rng)
        good = rng.random() < 0.5
        rows.append({"messages": [{"role": "user", "content": _prompt(i, x)},
                                  {"role": "assistant", "content": o if good else _wrong(rng, o)}],
                     "label": good})
    return rows


def bedrock_converse(n: int = 80) -> list[dict]:
    rng = random.Random(6)
    rows = []
    for _ in range(n):
        msgs = []
        for _ in range(rng.randrange(1, 3)):
            i, x, o = _task(rng)
            msgs.append({"role": "user", "content": [{"text": _prompt(i, x)}]})
            msgs.append({"role": "assistant", "content": [{"text": o}]})
        rows.append({"schemaVersion": "bedrock-conversation-2024", "system": [{"text": SYSTEM}], "messages": msgs})
    return rows


FILES = {
    "alpaca_demo.jsonl": alpaca,
    "corpus_demo.jsonl": corpus,
    "sharegpt_demo.jsonl": sharegpt,
    "preference_demo.jsonl": preference,
    "kto_demo.jsonl": kto,
    "bedrock_converse_demo.jsonl": bedrock_converse,
}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, fn in FILES.items():
        with open(OUT / name, "w", encoding="utf-8") as fh:
            for r in fn():
                fh.write(json.dumps(r, ensure_ascii=False) + "\n")
        print(f"wrote {OUT / name}")


if __name__ == "__main__":
    main()
