"""The run's progress line (bar, step / total, elapsed, ETA) and its stats line."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import ProgressBar, Static

from tui.widgets.metrics import RunState, fmt_duration, fmt_mem, fmt_rate


class RunProgress(Horizontal):
    _text = ""

    def compose(self) -> ComposeResult:
        yield ProgressBar(total=1, show_eta=False, show_percentage=True, id="run-bar")
        yield Static("", id="run-steps", markup=False)

    def show(self, st: RunState, now: float) -> None:
        bar = self.query_one("#run-bar", ProgressBar)
        total = st.total_steps or None
        if self._phase_shown(st, bar, now):
            return
        if total:
            if bar.total != total:
                bar.update(total=total)
            # the bar shows whole percents: update it only when one is crossed
            if int(100 * bar.progress / total) != int(100 * min(st.step, total) / total) or st.step >= total:
                if bar.progress != min(st.step, total):
                    bar.update(progress=min(st.step, total))
        elif st.finished and bar.progress != (1 if st.ended_ok else 0):
            bar.update(total=1, progress=1 if st.ended_ok else 0)
        steps = f"step {st.step}/{st.total_steps}" if st.total_steps else f"step {st.step}"
        parts = [steps]
        if st.epoch is not None:
            parts.append(f"epoch {st.epoch:.2f}")
        parts.append(f"elapsed {fmt_duration(st.elapsed(now))}")
        if st.gaps:  # Slurm requeues: the time the run was not training
            parts.append(requeue_text(st, now))
        if not st.finished:
            eta = st.eta(now)
            parts.append(f"ETA {fmt_duration(eta)}" if eta is not None else "ETA —")
        text = " · ".join(parts)
        if text != self._text:
            self._text = text
            self.query_one("#run-steps", Static).update(text, layout=False)


    def _phase_shown(self, st: RunState, bar: ProgressBar, now: float) -> bool:
        """Before the first step, a phase that says how far it is (reading or tokenizing the data) has the bar:
        ``preparing data 34% · elapsed 1m 02s`` (its rows/s and time left are in the stats line)."""
        if st.phase_fraction is None or st.step or st.finished:
            return False
        if bar.total != 1000:
            bar.update(total=1000)
        if bar.progress != int(1000 * st.phase_fraction):
            bar.update(progress=int(1000 * st.phase_fraction))
        text = f"{st.phase or 'preparing'} {100 * st.phase_fraction:.0f}% · elapsed {fmt_duration(st.elapsed(now))}"
        if text != self._text:
            self._text = text
            self.query_one("#run-steps", Static).update(text, layout=False)
        return True


def requeue_text(st: RunState, now: float) -> str:
    """``↻ requeued at step 40: 2m 10s lost`` (the wait so far while the job is queued again)."""
    n = len(st.gaps)
    where = f"at step {st.gaps[0]['step']}" if n == 1 else f"{n}× (steps {', '.join(str(g['step']) for g in st.gaps)})"
    waiting = st.gaps[-1]["to"] is None and not st.finished
    return f"↻ requeued {where}: {fmt_duration(st.lost_s(now))} " + ("waiting so far" if waiting else "lost")


def stats_text(st: RunState) -> str:
    phase = st.phase or "—"
    if st.phase_text and st.phase not in ("training", "finished"):
        phase = f"{phase}: {st.phase_text}"
    parts = [f"phase {phase}"]
    parts.append(f"{fmt_rate(st.tokens_per_s)} tok/s")
    parts.append(f"{fmt_rate(st.samples_per_s)} samples/s")
    parts.append(f"mem {fmt_mem(st.memory_mb)}")
    if st.memory_reserved_mb is not None:  # CUDA: what the allocator holds (nearer nvidia-smi), the fullest GPU
        parts[-1] += f" (reserved {fmt_mem(st.memory_reserved_mb)}"
        if st.gpu_reserved_max_mb is not None and st.gpu_reserved_max_mb != st.memory_reserved_mb:
            parts[-1] += f", fullest GPU {fmt_mem(st.gpu_reserved_max_mb)}"
        parts[-1] += ")"
    if st.rows_dropped is not None:
        parts.append(f"{st.rows_dropped} rows dropped")
    if st.rows_truncated:
        parts.append(f"{st.rows_truncated} truncated")
    return " · ".join(parts)
