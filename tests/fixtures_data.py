"""Fixtures of the data area: a real S3 endpoint (moto server with signature checks), the
tiny tokenizer, and helpers to write data files."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

COMPAT_DATA = Path(os.environ.get("FINETUI_COMPAT_DIR", "/work/shared/compat")) / "llamafactory" / "data"
if not COMPAT_DATA.exists():  # the corpus may also live beside the repository
    COMPAT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "compat" / "llamafactory" / "data"


def write_jsonl(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n")
    return path


def write_json(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, indent=2, ensure_ascii=False), encoding="utf-8")
    return path


@pytest.fixture
def data_res():
    """A resolved job dict with defaults, to be updated per test."""
    from engine.schema import JobConfig

    def make(**kw) -> dict:
        res = JobConfig().resolved()
        for k, v in kw.items():
            res[k.replace("__", ".")] = v
        return res

    return make


@pytest.fixture(scope="session")
def compat_data() -> Path:
    if not COMPAT_DATA.exists():
        pytest.skip("compat corpus not found")
    return COMPAT_DATA


@pytest.fixture(scope="session")
def data_tokenizer(tmp_path_factory):
    """The tiny model's tokenizer (byte-level BPE + ChatML chat template with generation markers).

    Only the tokenizer is built (``engine.tiny.build_tokenizer``), not the model, and it is saved
    to a folder (``tok.saved_path``) so subprocesses load it with ``from_pretrained``.
    """
    from engine.tiny import build_tokenizer

    tok = build_tokenizer()
    folder = tmp_path_factory.mktemp("data-tokenizer")
    tok.save_pretrained(folder)
    tok.model_max_length = int(1e9)
    tok.saved_path = str(folder)
    return tok


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture(scope="session")
def moto_s3(tmp_path_factory):
    """A real S3 API on loopback (moto server) that checks request signatures.

    ``INITIAL_NO_AUTH_ACTION_COUNT`` lets the first IAM calls through unauthenticated (to create
    a user and its access key); from then on every request must be signed with that key.
    """
    exe = shutil.which("moto_server") or str(Path(sys.executable).with_name("moto_server"))
    if not Path(exe).exists():
        pytest.skip("moto_server not installed")
    import boto3

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT="4")
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "w")
    proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], env=env, stdout=log, stderr=log)
    try:
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    pytest.fail("moto_server did not start")
                time.sleep(0.1)
        iam = boto3.client("iam", endpoint_url=url, region_name="us-east-1",
                           aws_access_key_id="setup", aws_secret_access_key="setup")
        iam.create_user(UserName="finetui")
        pol = iam.create_policy(PolicyName="all", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
        iam.attach_user_policy(UserName="finetui", PolicyArn=pol["Policy"]["Arn"])
        key = iam.create_access_key(UserName="finetui")["AccessKey"]
        s3 = boto3.client("s3", endpoint_url=url, region_name="us-east-1",
                          aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"])
        s3.create_bucket(Bucket="finetui-data")
        yield {"url": url, "access_key": key["AccessKeyId"], "secret_key": key["SecretAccessKey"],
               "bucket": "finetui-data", "client": s3}
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def read_pty(master: int) -> bytes:
    """Everything written to a pseudo-terminal until its other side closes; closes ``master``."""
    out = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    return out
