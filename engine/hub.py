"""Hub model names on a machine that cannot reach the Hugging Face Hub (an air-gapped GPU server).

There ``from_pretrained("org/name")`` asks the Hub about every file before it falls back to the
local cache, five times each with back-off: a cached tokenizer took 119 s to load here instead of
2.8 s (measured with the tiny model's files in a Hugging Face cache, DNS failing at once; a
firewall that drops packets makes each try wait for its connect timeout on top).  Before the first
``from_pretrained`` of a Hub name, :func:`offline_if_unreachable` probes the Hub's host (or the
HTTPS proxy, when one is set) once per process; when it cannot be reached it switches this process
and its children to offline mode (``HF_HUB_OFFLINE=1``), so a cached model loads at once and one
that is not cached fails at once with a sentence naming it.  Nothing changes where the Hub answers
or the user already chose (``HF_HUB_OFFLINE`` set either way).
"""

from __future__ import annotations

import os
import socket
import sys
import threading
from pathlib import Path
from urllib.parse import urlsplit

from engine.errors import FinetuiError

#: seconds the probe may take (name resolution included) before the Hub counts as unreachable
PROBE_TIMEOUT = 3.0

_probed: dict[tuple[str, int], bool] = {}


def is_hub_name(name: str) -> bool:
    """``org/name`` or ``name`` that is not a local path, a bundled model or a URL."""
    n = str(name or "").strip()
    if not n or n.startswith(("finetui:", "/", "./", "../", "~")) or "://" in n:
        return False
    return not Path(n).expanduser().exists() and n.count("/") <= 1


def cached_models() -> list[str]:
    """The Hub names with a snapshot in this machine's Hugging Face cache (what loads here offline)."""
    from engine.modelinfo import _hf_cache_dirs

    names = set()
    for d in _hf_cache_dirs():
        for repo in d.glob("models--*") if d.is_dir() else ():
            if any((repo / "snapshots").glob("*/config.json")):
                names.add(repo.name[len("models--"):].replace("--", "/"))
    return sorted(names)


def hub_target() -> tuple[str, int]:
    """The host and port a Hub request connects to first: the HTTPS proxy when one is set, else the endpoint."""
    proxy = next((os.environ[k] for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
                  if os.environ.get(k)), None)
    url = urlsplit(proxy if proxy and "://" in proxy else f"http://{proxy}" if proxy else
                   os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    port = url.port or (443 if url.scheme == "https" else 80)
    return url.hostname or "huggingface.co", port


def reachable(host: str, port: int, timeout: float = PROBE_TIMEOUT) -> bool:
    """Whether a TCP connection to ``host:port`` opens within ``timeout`` seconds, resolution included (in a
    daemon thread: ``getaddrinfo`` has no timeout of its own)."""
    key = (host, port)
    if key in _probed:
        return _probed[key]
    ok: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                ok.append(True)
        except OSError:
            pass

    t = threading.Thread(target=probe, name="hub-probe", daemon=True)
    t.start()
    t.join(timeout)
    _probed[key] = bool(ok)
    return _probed[key]


def go_offline() -> None:
    """Offline mode for this process (already imported ``huggingface_hub`` included) and its children."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    consts = sys.modules.get("huggingface_hub.constants")
    if consts is not None:
        consts.HF_HUB_OFFLINE = True


def offline_if_unreachable(name: str) -> str | None:
    """Before loading ``name``: when it is a Hub name and the Hub cannot be reached, go offline and return
    a line saying so (for the run's log); None when nothing changed."""
    if os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or not is_hub_name(name):
        return None
    host, port = hub_target()
    if reachable(host, port):
        return None
    go_offline()
    return (f"{host}:{port} cannot be reached from this machine: {name} is loaded from the local Hugging Face "
            f"cache (offline mode, HF_HUB_OFFLINE=1)")


class NotCachedOffline(FinetuiError, OSError):
    """A Hub model that is not in the local cache, on a machine that cannot reach the Hub."""


def not_cached_hint(name: str) -> str:
    """What to add to the error when a Hub model could not be loaded in offline mode."""
    offline = str(os.environ.get("HF_HUB_OFFLINE", "")).upper() in ("1", "ON", "YES", "TRUE")
    if not offline or not is_hub_name(name):
        return ""
    return (f" — {name} is not in this machine's Hugging Face cache and the Hub cannot be reached: download "
            f"it where the Hub is reachable (`hf download {name}`) and copy the cache, or set "
            f"model.name_or_path to a local folder")
