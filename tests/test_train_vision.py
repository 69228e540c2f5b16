"""Image data: ShareGPT_Image preference pairs for DPO (the FPT AI Factory pipeline's trainer table lists
ShareGPT_Image for DPO; the rows are LLaMA-Factory's multimodal `ranking: true` sharegpt rows, e.g. RLHF-V) and
ShareGPT_Image conversations for SFT, trained for real on the engine's tiny vision-language model
(``finetui:tiny-vlm``: a LLaVA with a CLIP tower, loaded with AutoModelForImageTextToText + AutoProcessor)."""

from __future__ import annotations

import io
import json
import math
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from engine.schema import JobConfig
from tests.fixtures_train import describe_run, events, kinds, losses, run_batch, session_cache, write_run

COLOURS = ("red", "green", "blue", "white")


def _png(colour: str) -> bytes:
    from PIL import Image

    b = io.BytesIO()
    Image.new("RGB", (20, 16), colour).save(b, "PNG")
    return b.getvalue()


def pair(colour: str, **over) -> dict:
    row = {"conversations": [{"from": "human", "value": "<image>What colour is this?"}],
           "chosen": {"from": "gpt", "value": colour}, "rejected": {"from": "gpt", "value": "I cannot tell."},
           "images": [f"images/{colour}.png"]}
    return {**row, **over}


def image_zip(path: Path, rows: list[dict]) -> Path:
    """FPT's ShareGPT_Image upload: a zip with train.json and an images folder."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("train.json", json.dumps(rows))
        for c in COLOURS:
            z.writestr(f"images/{c}.png", _png(c))
    return path


def cli(*args):
    from typer.testing import CliRunner

    from tui.cli import app

    return CliRunner().invoke(app, ["data", "check", *args])


# ------------------------------------------------------------------------------ data check

def test_data_check_accepts_image_pairs_for_dpo(tmp_path):
    z = image_zip(tmp_path / "pairs.zip", [pair(c) for c in COLOURS]
                  + [pair("red", conversations=[{"from": "human", "value": "Name it."}], images="images/red.png")])
    r = cli(str(z), "--format", "sharegpt_image", "--trainer", "dpo")
    assert r.exit_code == 0, r.output
    assert "rows: 5 total, 5 valid, 0 invalid" in r.output
    assert "sharegpt_image → dpo" in r.output


def test_data_check_names_each_bad_image_pair(tmp_path):
    bad = [pair("red"),
           pair("green", images=["images/missing.png"]),  # 2: no such image in the zip
           pair("blue", images=["images/blue.png", "images/red.png"]),  # 3: one <image> token, two images
           pair("white", rejected={"from": "gpt", "value": "white"}),  # 4: chosen = rejected
           pair("red", chosen={"from": "gpt", "value": "<image> red"}),  # 5: an image in a reply
           pair("red", conversations=[{"from": "human", "value": "<image>?"}, {"from": "gpt", "value": "red"}]),
           {k: v for k, v in pair("red").items() if k != "images"}]  # 7: no images
    z = image_zip(tmp_path / "bad.zip", bad)
    r = cli(str(z), "--format", "sharegpt_image", "--trainer", "dpo")
    assert r.exit_code == 2, r.output
    assert "6 invalid" in r.output
    for needle in ("images[0]: image `images/missing.png`", "images: 1 `<image>` token but 2 images",
                   "`chosen` and `rejected` are the same", "chosen: `chosen` holds an `<image>` token",
                   "the prompt must end with a user turn", "missing key `images`"):
        assert needle in r.output, (needle, r.output)


def test_image_pairs_are_read_for_dpo_only(tmp_path):
    """As SFT data the same rows are refused with the reason; the reward trainer (TRL's reads no images) refuses
    the format itself."""
    z = image_zip(tmp_path / "pairs.zip", [pair(c) for c in COLOURS])
    r = cli(str(z), "--format", "sharegpt_image", "--trainer", "sft")
    assert r.exit_code == 2 and "a preference pair with chosen / rejected replies" in r.output, r.output
    r = cli(str(z), "--format", "sharegpt_image", "--trainer", "reward")
    assert r.exit_code == 2 and "sharegpt_image data cannot train the reward trainer" in r.output, r.output
    r = cli(str(z), "--format", "preference", "--trainer", "dpo")  # images would be dropped: the check says so
    assert "use --format sharegpt_image" in r.output and "images are read in the sharegpt_image format only" \
        in r.output, r.output


# ------------------------------------------------------------------------------ profiles

@pytest.mark.parametrize("profile, ok", [("fpt_pipeline", True), ("native", True), ("oci_llama_lora", False),
                                         ("nova_lora", False)])
def test_profiles_allow_image_dpo_where_the_document_does(profile, ok):
    """FPT AI Factory's trainer table: DPO ← ShareGPT, ShareGPT_Image; OCI and Nova train SFT only."""
    job = JobConfig(profile=profile, values={"trainer.stage": "dpo", "data.format": "sharegpt_image",
                                             "data.train_path": "pairs.zip"})
    errs = [str(p) for p in job.problems() if p.field in ("data.format", "trainer.stage")]
    assert not errs if ok else errs, errs
    if profile == "fpt_pipeline":
        bad = JobConfig(profile=profile, values={"trainer.stage": "pretrain", "data.format": "sharegpt_image"})
        assert any("data.format: sharegpt_image data cannot train the pretrain trainer" in str(p)
                   for p in bad.problems()), [str(p) for p in bad.problems()]


def test_fpt_pipeline_reads_sharegpt_image_from_a_zip_only():
    """The pipeline's data table: ShareGPT_Image is "zip: train.json + images folder" (other formats: json, zip)."""
    def errs(path: str, fmt: str = "sharegpt_image") -> list[str]:
        job = JobConfig(profile="fpt_pipeline", values={"trainer.stage": "dpo", "data.format": fmt,
                                                        "data.train_path": path})
        return [str(p) for p in job.problems() if p.field == "data.train_path"]

    assert errs("pairs.zip") == errs("s3://bucket/pairs.zip") == errs("pairs.json", "sharegpt") == []
    for path in ("pairs.json", "s3://bucket/pairs.json"):
        assert errs(path) == [f"data.train_path: {path}: the FPT AI Factory pipeline service reads sharegpt_image "
                              "data from ZIP files only (profile fpt_pipeline) (allowed: .zip)"]
    assert errs("a.zip,b.json#sharegpt_image") and not errs("a.zip,b.json#sharegpt")


@pytest.mark.parametrize("fmt, name", [("sharegpt_image", "pairs.zip"), ("sharegpt", "dpo_en_demo.json")])
def test_validate_reads_dpo_pairs_as_pairs(tmp_path, fmt, name):
    """`finetui validate`'s data check (before any run exists) reads a DPO job's sharegpt rows as the DPO trainer
    does: pairs, not conversations (it read them as SFT conversations: every pair refused)."""
    from typer.testing import CliRunner

    from engine import presets
    from tests.fixtures_data import COMPAT_DATA
    from tui.cli import app

    data = image_zip(tmp_path / name, [pair(c) for c in COLOURS]) if fmt == "sharegpt_image" else COMPAT_DATA / name
    job = JobConfig(profile="fpt_pipeline", values={"trainer.stage": "dpo", "data.format": fmt,
                                                    "data.train_path": str(data)})
    r = CliRunner().invoke(app, ["validate", str(presets.save(job, tmp_path / "job.toml"))])
    assert r.exit_code == 0, r.output
    if fmt == "sharegpt_image":  # and a bad pair is named by file:line
        image_zip(data, [pair(c) for c in COLOURS] + [pair("red", images=["images/nope.png"])])
        r = subprocess.run([sys.executable, "-m", "tui.cli", "validate", str(tmp_path / "job.toml")],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 2 and "train.json:1: images[0]: image `images/nope.png` not in archive" in r.stderr, \
            r.stderr


@pytest.mark.parametrize("fmt", ["sharegpt", "sharegpt_image"])
def test_llamafactory_export_and_import_keep_dpo_pairs(tmp_path, fmt):
    """A DPO job on sharegpt (image) pairs exports as LLaMA-Factory's `ranking: true` sharegpt entry (with its
    images column: RLHF-V's entry), and such an entry imports back as the same format."""
    from engine import interop
    from tests.fixtures_data import COMPAT_DATA

    job = JobConfig(profile="native", values={"trainer.stage": "dpo", "data.format": fmt,
                                              "data.train_path": str(tmp_path / "pairs.json")})
    out = tmp_path / "lf.yaml"
    interop.write_export(job, "llamafactory", out)
    entry = json.loads((tmp_path / "dataset_info.json").read_text())["finetui_train"]
    cols = {"messages": "conversations", "chosen": "chosen", "rejected": "rejected"}
    assert entry == {"file_name": str(tmp_path / "pairs.json"), "ranking": True, "formatting": "sharegpt",
                     "columns": {**cols, **({"images": "images"} if fmt == "sharegpt_image" else {})}}
    back, _ = interop.import_file(out)
    assert back.resolved()["data.format"] == ("sharegpt_image" if fmt == "sharegpt_image" else "preference")
    info = json.loads((COMPAT_DATA / "dataset_info.json").read_text())
    assert info["rlhf_v"]["columns"] == entry["columns"] or fmt == "sharegpt"


# ------------------------------------------------------------------------------ training

VLM = {"model.name_or_path": "finetui:tiny-vlm", "data.format": "sharegpt_image", "general.batch_size": 2,
       "general.max_steps": 3, "general.learning_rate": 0.02, "general.max_sequence_length": 128}


@pytest.fixture(scope="module")
def vision_runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("vision")
    pairs = image_zip(base / "pairs.zip", [pair(c) for c in COLOURS])
    convs = image_zip(base / "convs.zip", [{"conversations": [{"from": "human", "value": "What colour?"},
                                                              {"from": "gpt", "value": c}],
                                            "image_path": f"images/{c}.png"} for c in COLOURS])
    runs = {"dpo": {**VLM, "trainer.stage": "dpo", "data.train_path": str(pairs)},
            "sft": {**VLM, "trainer.stage": "sft", "data.train_path": str(convs)},
            "orpo": {**VLM, "trainer.stage": "dpo", "data.train_path": str(pairs),
                     "preference.preference_loss": "orpo"},
            "text_model": {**VLM, "trainer.stage": "dpo", "data.train_path": str(pairs),
                           "model.name_or_path": "finetui:tiny-llama"}}
    specs = []
    for name, values in runs.items():
        write_run(base / name, **values)
        specs.append({"name": name, "run_dir": str(base / name), "kind": "train", "hook": None, "at": 0})
    results = run_batch(specs, session_cache(tmp_path_factory), timeout=600)
    return {name: base / name for name in runs} | {"_results": results}


def _vision_lora_trained(run_dir: Path) -> bool:
    """The LoRA of the vision tower moved off its zero init: the images reached the model and got gradients."""
    from safetensors.torch import load_file

    sd = load_file(str(run_dir / "final" / "adapter_model.safetensors"))
    b = [t for k, t in sd.items() if "vision_tower" in k and "lora_B" in k]
    return bool(b) and all(float(t.abs().sum()) > 0 for t in b)


@pytest.mark.slow
@pytest.mark.parametrize("stage, trainer", [("dpo", "DPOTrainer"), ("sft", "SFTTrainer")])
def test_image_data_trains_the_tiny_vision_model(vision_runs, stage, trainer):
    d = vision_runs[stage]
    recs = events(d)
    end = kinds(recs, "end")
    assert end and end[-1]["outcome"] == "completed" and not kinds(recs, "error"), describe_run(d)
    start = kinds(recs, "start")[0]
    assert start["trainer"] == trainer and start["stage"] == stage and start["total_steps"] == 3
    ls = losses(recs)
    assert len(ls) == 3 and all(math.isfinite(x) for x in ls), ls
    if stage == "dpo":
        assert ls[0] == pytest.approx(math.log(2), abs=1e-3)  # policy = reference at step 1
        assert min(ls[1:]) < ls[0], ls
    else:
        assert ls[-1] < ls[0], ls
    assert _vision_lora_trained(d), describe_run(d)


@pytest.mark.slow
@pytest.mark.parametrize("name, needle", [
    ("orpo", "preference.preference_loss: orpo does not train on images"),
    ("text_model", "data.format: rows with images need a vision-language model; finetui:tiny-llama is a text model")])
def test_image_pairs_refused_in_one_line(vision_runs, name, needle):
    d = vision_runs[name]
    assert vision_runs["_results"][name]["code"] != 0
    errs = [r.get("message", "") for r in kinds(events(d), "error")]
    assert any(needle in e for e in errs), describe_run(d)
    assert not any("Traceback" in e for e in errs)
