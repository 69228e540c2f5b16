"""S3 (or S3-compatible) data through the job's connection, cached by ETag.

Credentials come from the ``secrets`` dict (keys: the variable names given by
``data.s3_access_key_env`` / ``data.s3_secret_key_env``, or ``access_key_id`` /
``secret_access_key``) or else from those environment variables.  They are never written
anywhere.  Downloads go to ``$FINETUI_CACHE_DIR/s3/<bucket>/<key>/<etag>/`` and are reused
while the object's ETag is unchanged.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

from engine.data.errors import DataError
from engine.data.sources import cache_dir
from engine.safeio import inside

_AUTH_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "InvalidToken",
               "ExpiredToken", "AuthorizationHeaderMalformed", "403", "InvalidClientTokenId",
               "UnrecognizedClientException", "Forbidden"}


def parse_uri(uri: str) -> tuple[str, str]:
    m = re.match(r"^s3://([^/]+)/?(.*)$", uri)
    if not m or not m.group(1):
        raise DataError(f"{uri}: not an s3://bucket/key address")
    return m.group(1), m.group(2)


def credentials(res: dict, secrets: dict | None) -> tuple[str | None, str | None]:
    secrets = secrets or {}
    ak_env = res.get("data.s3_access_key_env") or "AWS_ACCESS_KEY_ID"
    sk_env = res.get("data.s3_secret_key_env") or "AWS_SECRET_ACCESS_KEY"
    ak = secrets.get(ak_env) or secrets.get("access_key_id") or os.environ.get(ak_env)
    sk = secrets.get(sk_env) or secrets.get("secret_access_key") or os.environ.get(sk_env)
    return ak, sk


def missing_credentials(res: dict, secrets: dict | None) -> list[str]:
    """Names of the credential variables that are neither in ``secrets`` nor in the environment."""
    ak, sk = credentials(res, secrets)
    out = []
    if not ak:
        out.append(res.get("data.s3_access_key_env") or "AWS_ACCESS_KEY_ID")
    if not sk:
        out.append(res.get("data.s3_secret_key_env") or "AWS_SECRET_ACCESS_KEY")
    return out


def client(res: dict, secrets: dict | None) -> Any:
    import boto3
    from botocore.config import Config

    ak, sk = credentials(res, secrets)
    return boto3.client(
        "s3",
        endpoint_url=res.get("data.s3_endpoint_url") or None,
        region_name=res.get("data.s3_region") or "us-east-1",
        aws_access_key_id=ak,
        aws_secret_access_key=sk,
        config=Config(connect_timeout=5, read_timeout=30, retries={"max_attempts": 2}),
    )


def _where(res: dict, bucket: str, key: str) -> str:
    ep = res.get("data.s3_endpoint_url") or "AWS S3"
    return f"s3://{bucket}/{key} (endpoint {ep}, bucket {bucket})"


def explain(e: BaseException, res: dict, bucket: str, key: str) -> DataError:
    """A boto/botocore exception → one clear line naming the endpoint and bucket."""
    from botocore.exceptions import (ClientError, EndpointConnectionError, NoCredentialsError,
                                     ConnectTimeoutError, ReadTimeoutError)

    where = _where(res, bucket, key)
    if isinstance(e, NoCredentialsError):
        names = " / ".join([res.get("data.s3_access_key_env") or "AWS_ACCESS_KEY_ID",
                            res.get("data.s3_secret_key_env") or "AWS_SECRET_ACCESS_KEY"])
        return DataError(f"{where}: no credentials (set {names})")
    if isinstance(e, (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError)):
        return DataError(f"{where}: cannot reach the endpoint ({type(e).__name__})")
    if isinstance(e, ClientError):
        code = str(e.response.get("Error", {}).get("Code", ""))
        status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in ("NoSuchBucket",):
            return DataError(f"{where}: bucket `{bucket}` does not exist")
        if code in ("NoSuchKey", "404", "NotFound"):
            return DataError(f"{where}: no object `{key}` in bucket `{bucket}`")
        if code in _AUTH_CODES or status == 403:
            return DataError(f"{where}: access denied — wrong access key or secret key ({code or status})")
        return DataError(f"{where}: {code or status}: {e.response.get('Error', {}).get('Message', '')}".rstrip(": "))
    return DataError(f"{where}: {type(e).__name__}: {e}")


def _status(e: Any) -> Any:
    return getattr(e, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode")


def _safe(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", s).strip("_") or "_"


def _object_name(key: str) -> str:
    """The file name a single object is saved under (its key's last part; ``..`` or ``.`` name no file)."""
    name = posix_basename(key)
    return name if name not in ("", ".", "..") else "object"


def _download(cli: Any, bucket: str, key: str, etag: str, dest_dir: Path) -> Path:
    dest = dest_dir / _object_name(key)
    if dest.exists():
        return dest
    dest_dir.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + f".part{os.getpid()}")
    cli.download_file(bucket, key, str(tmp))
    os.replace(tmp, dest)
    return dest


def posix_basename(key: str) -> str:
    return key.rstrip("/").rsplit("/", 1)[-1]


#: how many objects were actually downloaded (tests read it to see the cache work)
DOWNLOADS = {"count": 0}


def fetch(uri: str, res: dict, secrets: dict | None = None) -> Path:
    """Download ``s3://bucket/key`` (a file, or a prefix ending in ``/``) into the cache; the local path."""
    bucket, key = parse_uri(uri)
    cli = client(res, secrets)
    root = cache_dir() / "s3" / _safe(res.get("data.s3_endpoint_url") or "aws") / _safe(bucket)
    try:
        if key and not key.endswith("/"):
            head = cli.head_object(Bucket=bucket, Key=key)
            etag = str(head.get("ETag", "")).strip('"') or "noetag"
            dest_dir = root / hashlib.sha256(key.encode()).hexdigest()[:16] / _safe(etag)
            target = dest_dir / _object_name(key)
            if not target.exists():
                _download(cli, bucket, key, etag, dest_dir)
                DOWNLOADS["count"] += 1
            return target
        # a prefix: mirror every object below it (a folder of data files + images)
        folder = root / hashlib.sha256(key.encode()).hexdigest()[:16] / "prefix"
        pag = cli.get_paginator("list_objects_v2")
        objects: list[tuple[str, Path, str]] = []
        # list by the prefix without its trailing "/" and filter here: moto's signature check
        # rejects a listing whose prefix ends in "/" (seen with moto 5.2 server mode)
        for page in pag.paginate(Bucket=bucket, Prefix=key.rstrip("/")):
            for obj in page.get("Contents", []) or []:
                k = obj["Key"]
                if k.endswith("/") or not k.startswith(key):
                    continue
                dest, why = inside(folder, k[len(key):])
                if dest is None:  # `..`, a leading `/` or `//`: it would land outside the cache folder
                    raise DataError(f"{_where(res, bucket, key)}: object key `{k}` {why}; the prefix is refused")
                objects.append((k, dest, str(obj.get("ETag", "")).strip('"')))
        found = len(objects)
        for k, dest, etag in objects:  # (all checked before any is written)
            stamp = dest.with_name(dest.name + ".etag")
            if dest.exists() and stamp.exists() and stamp.read_text() == etag:
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(dest.name + f".part{os.getpid()}")
            cli.download_file(bucket, k, str(tmp))
            os.replace(tmp, dest)
            stamp.write_text(etag)
            DOWNLOADS["count"] += 1
        if not found:
            raise DataError(f"{_where(res, bucket, key)}: no objects under `{key or '/'}` in bucket `{bucket}`")
        return folder
    except DataError:
        raise
    except Exception as e:  # botocore errors → one clear line
        import botocore.exceptions as bx

        if isinstance(e, bx.ClientError) and _status(e) == 404 and key and not key.endswith("/"):
            # HeadObject's 404 does not say whether the bucket or the key is missing
            try:
                cli.head_bucket(Bucket=bucket)
            except bx.ClientError as e2:
                if _status(e2) == 404:
                    raise DataError(f"{_where(res, bucket, key)}: bucket `{bucket}` does not exist") from None
            except bx.BotoCoreError:
                pass
            raise DataError(f"{_where(res, bucket, key)}: no object `{key}` in bucket `{bucket}`") from None
        if isinstance(e, (bx.BotoCoreError, bx.ClientError)):
            raise explain(e, res, bucket, key) from None
        raise
