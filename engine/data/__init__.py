"""Training data: formats, sources (local, zip, folder, S3), loading and the validation report.

Importing this package never imports torch or transformers (the TUI uses it for
validation); tokenization (:mod:`engine.data.tokenize`) imports them lazily.

Contract used by the training worker::

    from engine.data import load_rows, DataError
    data = load_rows(job.resolved(), secrets)   # .train, .eval, .dropped, .report (lists)
    data = stream_rows(job.resolved(), secrets) # the same, as Rows read again from the sources (the worker's)

``secrets`` holds S3 credentials keyed by the variable names the job gives in
``data.s3_access_key_env`` / ``data.s3_secret_key_env`` (default ``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY``); a name missing there is read from the environment.  They are used for
the request only, never written or logged.

Rows by stage: pretrain → ``{"text"}``; sft → ``{"messages", "images"?, "tools"?}``;
dpo / reward → ``{"prompt", "chosen", "rejected"}``; kto → ``{"prompt", "completion", "label"}``
(preference data given to kto is unpaired: chosen → label true, rejected → label false).
"""

from __future__ import annotations

from engine.data.errors import DataError, RowError
from engine.data.formats import as_messages
from engine.data.loader import LoadedData, Rows, allowed_formats, check_compat, load_rows, split_rows, stream_rows

__all__ = ["DataError", "RowError", "LoadedData", "Rows", "load_rows", "stream_rows", "allowed_formats", "check_compat",
           "split_rows", "as_messages"]
