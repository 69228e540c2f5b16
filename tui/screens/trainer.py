"""Step 3 — Trainer: stage, tuning method, backend (DDP / DeepSpeed + ZeRO stage / FSDP2).

Every choice is listed; those the profile or the other choices rule out are disabled
with the reason next to them.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Label, OptionList
from textual.widgets.option_list import Option

from engine.schema import profiles as P
from engine.schema import FORMATS_BY_STAGE, JobConfig, spec
from tui.widgets.form import FieldEdited, SchemaForm
from tui.widgets.step import StepPane

STAGE_TEXT = {
    "pretrain": "raw-text pre-training",
    "sft": "instructions, chats",
    "dpo": "chosen vs rejected",
    "kto": "liked / disliked",
    "reward": "a reward model",
}
METHOD_TEXT = {
    "full": "all weights",
    "lora": "low-rank adapters",
    "qlora": "LoRA on a 4/8-bit base",
    "tfew": "T-Few (PEFT IA3)",
    "prompt_tuning": "a soft prompt",
    "freeze": "last N layers",
}
BACKEND_TEXT = {"ddp": "torchrun DDP", "deepspeed": "DeepSpeed ZeRO", "fsdp": "PyTorch FSDP2"}
ZERO_TEXT = {1: "optimizer states", 2: "+ gradients", 3: "+ parameters"}


def stage_reason(stage: str, job: JobConfig, res: dict[str, Any]) -> str | None:
    prof = P.get(job.profile)
    if stage not in prof.stages:
        return f"not in {prof.name}"
    if res["trainer.training_type"] == "prompt_tuning" and stage in ("dpo", "kto", "reward"):
        return "not with prompt tuning"
    return None


def method_reason(method: str, job: JobConfig, res: dict[str, Any]) -> str | None:
    prof = P.get(job.profile)
    if method not in prof.methods:  # (the profile's choices of trainer.training_type)
        return f"not in {prof.name}"
    if method == "prompt_tuning" and res["trainer.stage"] in ("dpo", "kto", "reward"):
        return f"not for the {res['trainer.stage']} trainer"
    return None


def backend_reason(backend: str, job: JobConfig, res: dict[str, Any]) -> str | None:
    sp = spec("trainer.distributed_backend", job.profile)
    if sp.choices and backend not in sp.choices:
        return f"not in {job.profile}"
    if backend != "deepspeed" and res.get("launch.launcher") == "deepspeed":
        return "the deepspeed launcher is chosen (Launch step)"
    if backend == "fsdp" and res.get("trainer.training_type") == "qlora":
        return "not with QLoRA (quantized weights)"
    return None


def method_quantization(method: str, job: JobConfig, res: dict[str, Any]) -> Any:
    """The quantization the method needs when the current one no longer fits (None: keep it)."""
    q = res.get("runtime.quantization_bit")
    choices = spec("runtime.quantization_bit", job.profile).choices or ("none", 4, 8)
    if method == "qlora" and q == "none":
        return next((c for c in choices if c != "none"), None)
    if method != "qlora" and q != "none" and "none" in choices:  # (lora on a quantized model is qlora)
        return "none"
    return None


# fields whose problems are about the trainer choices (shown under the lists)
RELATED = ("trainer.stage", "trainer.training_type", "trainer.distributed_backend", "trainer.zero_stage",
           "runtime.quantization_bit", "data.format", "data.packing", "launch.launcher")


def zero_reason(stage: int, job: JobConfig) -> str | None:
    sp = spec("trainer.zero_stage", job.profile)
    if sp.choices and stage not in sp.choices:
        return f"not in {job.profile}"
    return None


class ChoiceList(OptionList):
    """An OptionList of one enum field: the current value marked, disabled options with reasons."""

    def __init__(self, field: str, id: str) -> None:
        super().__init__(id=id, classes="choice-list")
        self.field_name = field
        self._key: Any = None

    def set_choices(self, items: list[tuple[Any, str, str | None]], current: Any) -> None:
        key = (tuple(items), current)
        if key == self._key:
            return
        self._key = key
        self.clear_options()
        opts = []
        for value, text, reason in items:
            t = Text(no_wrap=False)
            if reason:
                t.append("  ✗ ", "dim")
                t.append(str(value), "dim strike")
                t.append(f"  {reason}", "dim italic")
            else:
                t.append(" ● " if value == current else " ○ ", "bold" if value == current else "")
                t.append(str(value), "bold" if value == current else "")
                t.append(f"  {text}", "dim")
            opts.append(Option(t, id=str(value), disabled=bool(reason)))
        self.add_options(opts)
        for i, (value, _, _) in enumerate(items):
            if value == current:
                self.highlighted = i


class TrainerPane(StepPane):
    STEP = "trainer"
    TITLE = "Trainer"
    SUBTITLE = "stage, tuning method, distributed backend"
    FIRST = "choice-stage"

    def compose(self) -> ComposeResult:
        yield self.header()
        with VerticalScroll(classes="step-body"):
            with Horizontal(classes="columns-fixed"):
                with Vertical(classes="column"):
                    yield Label("Stage", classes="section-title")
                    yield ChoiceList("trainer.stage", id="choice-stage")
                    yield Label("Backend", classes="section-title")
                    yield ChoiceList("trainer.distributed_backend", id="choice-backend")
                with Vertical(classes="column"):
                    yield Label("Tuning method", classes="section-title")
                    yield ChoiceList("trainer.training_type", id="choice-method")
                    with Vertical(id="zero-box"):
                        yield Label("ZeRO stage", classes="section-title")
                        yield ChoiceList("trainer.zero_stage", id="choice-zero")
            yield SchemaForm(["trainer.offload_optimizer", "trainer.offload_params", "trainer.fsdp_sharding",
                              "trainer.fsdp_cpu_offload", "trainer.fsdp_state_dict"], id="trainer-form")
            yield Label("", id="trainer-problems", classes="problem-text")
        yield self.nav()

    def sync(self, job: JobConfig, res: dict[str, Any], states: dict) -> None:
        self.query_one("#choice-stage", ChoiceList).set_choices(
            [(s, STAGE_TEXT[s], stage_reason(s, job, res)) for s in spec("trainer.stage").choices or ()],
            res["trainer.stage"])
        self.query_one("#choice-method", ChoiceList).set_choices(
            [(m, METHOD_TEXT[m], method_reason(m, job, res)) for m in spec("trainer.training_type").choices or ()],
            res["trainer.training_type"])
        self.query_one("#choice-backend", ChoiceList).set_choices(
            [(b, BACKEND_TEXT[b], backend_reason(b, job, res))
             for b in spec("trainer.distributed_backend").choices or ()],
            res["trainer.distributed_backend"])
        self.query_one("#zero-box").display = states["trainer.zero_stage"].visible
        self.query_one("#choice-zero", ChoiceList).set_choices(
            [(z, ZERO_TEXT[z], zero_reason(z, job)) for z in (1, 2, 3)], res["trainer.zero_stage"])
        self.query_one("#trainer-form", SchemaForm).sync(job, states)
        msgs = [states[n].problem for n in RELATED if n in states and states[n].problem]
        lab = self.query_one("#trainer-problems", Label)
        lab.update("\n".join(f"{'✗' if p.severity == 'error' else '⚠'} {p}" for p in msgs))
        lab.display = bool(msgs)

    @on(OptionList.OptionSelected, ".choice-list")
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        cl = event.option_list
        assert isinstance(cl, ChoiceList)
        raw = event.option.id or ""
        value: Any = int(raw) if cl.field_name == "trainer.zero_stage" else raw
        self.post_message(FieldEdited(cl.field_name, value))
        if cl.field_name == "trainer.training_type":
            # QLoRA needs a quantized base, the other methods none: follow the method
            job_: JobConfig = self.app.job  # type: ignore[attr-defined]
            q = method_quantization(value, job_, job_.resolved())
            if q is not None:
                self.post_message(FieldEdited("runtime.quantization_bit", q))
                self.app.notify(f"Quantization set to {q if q == 'none' else f'{q}-bit'} for {value}.", timeout=4)
        if cl.field_name == "trainer.stage":
            # the trainer decides the data formats: follow it when the current one no longer fits
            job: JobConfig = self.app.job  # type: ignore[attr-defined]
            prof = P.get(job.profile)
            allowed = prof.formats_by_stage.get(value, FORMATS_BY_STAGE.get(value, ()))
            fmt = job.resolved()["data.format"]
            if allowed and fmt not in allowed:
                self.post_message(FieldEdited("data.format", allowed[0]))
                self.app.notify(f"Data format set to {allowed[0]} for the {value} trainer.", timeout=4)
