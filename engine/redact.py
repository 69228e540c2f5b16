"""Credentials written into a URI (``https://user:password@host/``) never reach a file, a message or a log.

``uri_credentials`` splits such a URI into the URI without them and the environment variables MLflow reads
them from (``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``): a run gets those in its process
environment only.  ``strip`` is what is stored (no user, no password); ``redact`` what is shown
(``https://***@host/``), in any text.  Standard library only.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

#: scheme://user:password@ — a password present (a user name alone is no secret)
_CRED = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/?#@\s]*:[^/?#@\s]*)@")


def has_credentials(value: Any) -> bool:
    return isinstance(value, str) and bool(_CRED.search(value))


def redact(text: str) -> str:
    """``text`` with every ``scheme://user:password@`` shown as ``scheme://***@``."""
    return _CRED.sub(lambda m: m.group("scheme") + "***@", text) if isinstance(text, str) else text


def strip(value: Any) -> Any:
    """A value as it may be stored: a URI loses its ``user:password@``; anything else is unchanged."""
    return _CRED.sub(lambda m: m.group("scheme"), value) if has_credentials(value) else value


def uri_credentials(uri: str) -> tuple[str, dict[str, str]]:
    """(the URI without ``user:password@``, {MLFLOW_TRACKING_USERNAME, MLFLOW_TRACKING_PASSWORD})."""
    if not has_credentials(uri):
        return uri, {}
    try:
        parts = urlsplit(uri)
        user, password = parts.username, parts.password
        clean = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    except ValueError:
        return strip(uri), {}
    env = {}
    if user:
        env["MLFLOW_TRACKING_USERNAME"] = unquote(user)
    if password is not None:
        env["MLFLOW_TRACKING_PASSWORD"] = unquote(password)
    return clean, env
