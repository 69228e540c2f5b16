"""Weights & Biases beside TensorBoard and MLflow (``tracking.wandb*``).

Rank 0 starts the W&B run itself (project, entity, run name, files under the run directory) before the
trainer is built; transformers' ``WandbCallback`` (``report_to=["wandb"]``) finds it and logs the metrics
into it.  The API key comes only from ``WANDB_API_KEY`` (or the host's own ``wandb login``), never from a
preset.  ``tracking.wandb_mode = "auto"`` logs offline when the service cannot be reached or no key is
at hand, and says how to upload later (``wandb sync <dir>``).
"""

from __future__ import annotations

import importlib.util
import os
import socket
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlparse

DEFAULT_BASE_URL = "https://api.wandb.ai"


def reachable(url: str, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the W&B server opens within ``timeout`` seconds."""
    u = urlparse(url if "://" in url else f"https://{url}")
    port = u.port or (443 if u.scheme == "https" else 80)
    try:
        with socket.create_connection((u.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


def _has_login() -> bool:
    """A key in the environment, or a ``wandb login`` (its ~/.netrc entry) for the server on this host."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL") or DEFAULT_BASE_URL).hostname or "api.wandb.ai"
    netrc = Path(os.environ.get("NETRC") or Path.home() / ".netrc")
    try:
        return host in netrc.read_text()
    except OSError:
        return False


def choose_mode(res: dict[str, Any], check: Callable[[str], bool] = reachable) -> tuple[str, str | None]:
    """``("online" | "offline", why offline or None)`` for the job on this host."""
    mode = str(res.get("tracking.wandb_mode") or "auto")
    env = os.environ.get("WANDB_MODE", "").strip().lower()
    if mode == "auto" and env in ("offline", "dryrun", "disabled"):
        return "offline", f"WANDB_MODE={env} on this host"
    if mode == "offline":
        return "offline", "tracking.wandb_mode is offline"
    if mode == "online":
        return "online", None
    base = os.environ.get("WANDB_BASE_URL") or DEFAULT_BASE_URL
    if not check(base):
        return "offline", f"{urlparse(base).hostname or base} cannot be reached from {socket.gethostname()}"
    if not _has_login():
        return "offline", "no WANDB_API_KEY in the run's environment (and no `wandb login` on this host)"
    return "online", None


def start(res: dict[str, Any], run_dir: Path, job_profile: str, warn: Callable[[str], None],
          check: Callable[[str], bool] = reachable) -> Any:
    """Rank 0: the W&B run (``wandb.init``) with the job's fields as its config; the caller adds
    ``"wandb"`` to ``report_to``.  Raises UserError when the package is missing."""
    if importlib.util.find_spec("wandb") is None:
        from engine.train.modeling import UserError

        raise UserError("tracking.wandb: the wandb package is not installed (pip install 'finetui[wandb]')")
    import wandb

    mode, why = choose_mode(res, check)
    wdir = Path(run_dir)
    os.environ["WANDB_DIR"] = str(wdir)
    os.environ.setdefault("WANDB_SILENT", "true")
    config = {f"finetui.{k}": v for k, v in sorted(res.items()) if v is not None and v != "" and v != []}
    config["finetui.profile"] = job_profile
    from engine.redact import redact

    config = {k: redact(v) if isinstance(v, str) else v for k, v in config.items()}
    run = wandb.init(project=str(res.get("tracking.wandb_project") or "finetui"),
                     entity=res.get("tracking.wandb_entity") or None,
                     name=str(res.get("tracking.wandb_run_name") or run_dir.name), dir=str(wdir), mode=mode,
                     config=config, reinit="finish_previous")
    os.environ["WANDB_MODE"] = mode  # transformers' callback and any later init agree
    if mode == "offline":
        where = Path(run.dir).parent if getattr(run, "dir", None) else wdir / "wandb"
        warn(f"W&B logs offline ({why}) into {where}; upload it later with `wandb sync {where}`")
    return run


def finish(run: Any, final: Path | None, warn: Callable[[str], None]) -> None:
    try:
        if final is not None:
            run.summary["final_path"] = str(final)
        run.finish()
    except Exception as e:  # noqa: BLE001 - tracking must not fail a finished run
        warn(f"wandb: could not close the run: {e}")
