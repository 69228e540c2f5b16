"""S3 through a real S3 API (moto server on loopback, signatures checked)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import zipfile
import io

import pytest

from engine.data import DataError, load_rows
from engine.data import s3 as S3

ROWS = [{"instruction": f"say {i}", "input": "", "output": str(i)} for i in range(10)]


@pytest.fixture
def s3res(moto_s3, data_res, monkeypatch):
    monkeypatch.setenv("FT_TEST_AK", moto_s3["access_key"])
    monkeypatch.setenv("FT_TEST_SK", moto_s3["secret_key"])

    def make(key: str, **kw) -> dict:
        return data_res(data__train_path=f"s3://{moto_s3['bucket']}/{key}", data__s3_endpoint_url=moto_s3["url"],
                        data__s3_region="us-east-1", data__s3_access_key_env="FT_TEST_AK",
                        data__s3_secret_key_env="FT_TEST_SK", **kw)

    return make


def put(moto_s3, key, body):
    moto_s3["client"].put_object(Bucket=moto_s3["bucket"], Key=key, Body=body)


def test_load_from_s3_with_etag_cache(moto_s3, s3res):
    put(moto_s3, "sets/a.jsonl", "\n".join(json.dumps(r) for r in ROWS).encode())
    n0 = S3.DOWNLOADS["count"]
    d = load_rows(s3res("sets/a.jsonl"))
    assert len(d.train) == 10 and d.report["train"]["source"] == f"s3://{moto_s3['bucket']}/sets/a.jsonl"
    assert S3.DOWNLOADS["count"] == n0 + 1
    cached = [p for p in (S3.cache_dir() / "s3").rglob("a.jsonl")]
    assert len(cached) == 1
    # second load: same ETag → no download
    load_rows(s3res("sets/a.jsonl"))
    assert S3.DOWNLOADS["count"] == n0 + 1
    # the object changes → new ETag → downloaded again, new rows
    put(moto_s3, "sets/a.jsonl", "\n".join(json.dumps(r) for r in ROWS[:4]).encode())
    d = load_rows(s3res("sets/a.jsonl"))
    assert len(d.train) == 4 and S3.DOWNLOADS["count"] == n0 + 2


def test_secrets_dict_instead_of_env(moto_s3, s3res, monkeypatch):
    put(moto_s3, "b.json", json.dumps(ROWS).encode())
    monkeypatch.delenv("FT_TEST_AK")
    monkeypatch.delenv("FT_TEST_SK")
    d = load_rows(s3res("b.json"), secrets={"FT_TEST_AK": moto_s3["access_key"], "FT_TEST_SK": moto_s3["secret_key"]})
    assert len(d.train) == 10


def test_zip_from_s3(moto_s3, s3res):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("train.json", json.dumps(ROWS))
    put(moto_s3, "c.zip", buf.getvalue())
    assert len(load_rows(s3res("c.zip")).train) == 10


def test_a_bucket_file_beside_a_local_one(moto_s3, s3res, tmp_path):
    put(moto_s3, "two/b.jsonl", "\n".join(json.dumps(r) for r in ROWS[:3]).encode())
    local = tmp_path / "a.json"
    local.write_text(json.dumps(ROWS))
    res = s3res("two/b.jsonl")
    res["data.train_path"] = f"{local},{res['data.train_path']}"
    d = load_rows(res)
    assert d.train[10:] == d.train[:3] and len(d.train) == 13


def test_prefix_folder_from_s3(moto_s3, s3res):
    put(moto_s3, "folder/train.jsonl", "\n".join(json.dumps(r) for r in ROWS).encode())
    assert len(load_rows(s3res("folder/")).train) == 10


def test_wrong_secret_is_one_clear_line(moto_s3, s3res, monkeypatch):
    put(moto_s3, "d.jsonl", b'{"instruction": "a", "output": "b"}\n')
    monkeypatch.setenv("FT_TEST_SK", "not-the-secret")
    with pytest.raises(DataError) as ei:
        load_rows(s3res("d.jsonl"))
    msg = str(ei.value)
    assert msg == (f"s3://finetui-data/d.jsonl (endpoint {moto_s3['url']}, bucket finetui-data): access denied — "
                   "wrong access key or secret key (403)")
    assert "not-the-secret" not in msg


def test_wrong_access_key(moto_s3, s3res, monkeypatch):
    monkeypatch.setenv("FT_TEST_AK", "AKIANOSUCHKEY")
    with pytest.raises(DataError, match=r"access denied — wrong access key or secret key"):
        load_rows(s3res("d.jsonl"))


def test_missing_bucket(moto_s3, s3res, data_res, monkeypatch):
    res = s3res("x.jsonl")
    res["data.train_path"] = "s3://no-such-bucket/x.jsonl"
    with pytest.raises(DataError) as ei:
        load_rows(res)
    assert str(ei.value) == (f"s3://no-such-bucket/x.jsonl (endpoint {moto_s3['url']}, bucket no-such-bucket): "
                             "bucket `no-such-bucket` does not exist")


def test_missing_key(moto_s3, s3res):
    with pytest.raises(DataError) as ei:
        load_rows(s3res("nothing/here.jsonl"))
    assert str(ei.value).endswith("no object `nothing/here.jsonl` in bucket `finetui-data`")


def test_empty_prefix(moto_s3, s3res):
    with pytest.raises(DataError, match=r"no objects under `empty/` in bucket `finetui-data`"):
        load_rows(s3res("empty/"))


def test_unreachable_endpoint(s3res, moto_s3):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    res = s3res("d.jsonl")
    res["data.s3_endpoint_url"] = f"http://127.0.0.1:{port}"
    with pytest.raises(DataError) as ei:
        load_rows(res)
    assert str(ei.value) == (f"s3://finetui-data/d.jsonl (endpoint http://127.0.0.1:{port}, bucket finetui-data): "
                             "cannot reach the endpoint (EndpointConnectionError)")


def test_cli_check_from_s3(moto_s3, tmp_path):
    moto_s3["client"].put_object(Bucket=moto_s3["bucket"], Key="cli.jsonl",
                                 Body=("\n".join(json.dumps(r) for r in ROWS) + "\n{}\n").encode())
    env = dict(os.environ, FT_AK=moto_s3["access_key"], FT_SK=moto_s3["secret_key"],
               FINETUI_CACHE_DIR=str(tmp_path / "cache"))
    cmd = [sys.executable, "-m", "tui.cli", "data", "check", f"s3://{moto_s3['bucket']}/cli.jsonl", "--format",
           "alpaca", "--endpoint-url", moto_s3["url"], "--access-key-env", "FT_AK", "--secret-key-env", "FT_SK",
           "--json"]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
    assert p.returncode == 2, p.stderr
    rep = json.loads(p.stdout)
    assert rep["rows"] == {"total": 11, "valid": 10, "invalid": 1, "invalid_pct": pytest.approx(9.0909, abs=1e-3)}
    p = subprocess.run(cmd + ["--allow-invalid", "10"], env=env, capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, timeout=120)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["dropped"] == 1
    # no credentials and no terminal to ask on → one clear line, exit 2
    env.pop("FT_AK")
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
    assert p.returncode == 2
    assert p.stderr.strip() == f"s3://{moto_s3['bucket']}/cli.jsonl: no S3 credentials — set FT_AK"


def test_cli_prompts_masked_for_missing_secret_on_a_terminal(moto_s3, monkeypatch):
    """On a terminal the CLI asks for an unset credential (masked) and uses it for this run only."""
    from typer.testing import CliRunner

    import tui.commands.data as cmd
    from tui.cli import app

    moto_s3["client"].put_object(Bucket=moto_s3["bucket"], Key="tty.jsonl",
                                 Body=b'{"instruction": "a", "output": "b"}\n')
    asked = []

    def fake_prompt(name):
        asked.append(name)
        return moto_s3["secret_key"]

    monkeypatch.setattr(cmd, "_prompt_secret", fake_prompt)
    monkeypatch.setattr(cmd.common, "stdin_is_tty", lambda: True)
    monkeypatch.setenv("FT_AK2", moto_s3["access_key"])
    monkeypatch.delenv("FT_SK2", raising=False)
    r = CliRunner().invoke(app, ["data", "check", f"s3://{moto_s3['bucket']}/tty.jsonl", "--format", "alpaca",
                                 "--endpoint-url", moto_s3["url"], "--access-key-env", "FT_AK2",
                                 "--secret-key-env", "FT_SK2"])
    assert r.exit_code == 0, r.output
    assert asked == ["FT_SK2"] and moto_s3["secret_key"] not in r.output
    assert "rows: 1 total, 1 valid, 0 invalid" in r.stdout
