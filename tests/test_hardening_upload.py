"""The remote data upload: streamed with progress, links in a data folder followed, bad files refused in one line
(real sshd on 127.0.0.1, see fixtures_launch.py)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

import engine.launch as L
from engine.launch import remote as R
from engine.launch import ssh
from tests.fixtures_launch import PYTHON
from tests.test_launch_local import wait_for

pytestmark = pytest.mark.slow

ROW = '{"instruction": "a", "input": "", "output": "b"}\n'


def remote_job(launch_job, tmp_path, target, **values):
    return launch_job(**{"launch.host": target, "launch.remote_python": PYTHON,
                         "launch.remote_workdir": str(tmp_path / "remote-work"), **values})


def _folder_with_links(tmp_path: Path, big: int) -> Path:
    """A data folder as users have them: a big file, an absolute link to a file elsewhere, a link back up."""
    elsewhere = tmp_path / "shared-storage"
    elsewhere.mkdir()
    (elsewhere / "more.jsonl").write_text(ROW * 3)
    d = tmp_path / "dataset"
    (d / "images").mkdir(parents=True)
    (d / "train.jsonl").write_text(ROW * 2)
    (d / "images" / "blob.bin").write_bytes(os.urandom(big))
    (d / "linked.jsonl").symlink_to(elsewhere / "more.jsonl")  # absolute
    (d / "images" / "loop").symlink_to(d)  # a folder reached again through a link
    return d


def test_upload_is_streamed_with_progress_and_follows_links(ssh_env, fake_worker, launch_job, tmp_path):
    fake_worker(2, 0.05)
    node = ssh_env.nodes[0]
    big = 24 << 20
    d = _folder_with_links(tmp_path, big)
    seen: list[tuple[str, int, int]] = []
    ref = L.start_run(remote_job(launch_job, tmp_path, node.target, **{"data.train_path": str(d)}),
                      progress=lambda h, s, t: seen.append((h, s, t)))
    rdir = Path(ref.remote.run_dir)
    sent = rdir / "data" / "0_dataset"
    assert (sent / "train.jsonl").read_text() == ROW * 2
    assert (sent / "linked.jsonl").read_text() == ROW * 3 and not (sent / "linked.jsonl").is_symlink()
    assert (sent / "images" / "blob.bin").read_bytes() == (d / "images" / "blob.bin").read_bytes()
    assert not (sent / "images" / "loop").exists()
    total = big + len(ROW) * 5
    assert seen[0] == (node.target, 0, total) and seen[-1] == (node.target, total, total)
    assert [s for _, s, _ in seen] == sorted(s for _, s, _ in seen)
    src = L.event_source(ref)
    got: list = []
    wait_for(lambda: got.extend(src.read()) or src.done, 60)
    assert got[-1]["outcome"] == "completed"


def test_tar_is_written_as_the_files_are_read(tmp_path):
    """No whole-archive buffer: the stream receives the tar in pieces while the files are read."""
    d = tmp_path / "d"
    d.mkdir()
    (d / "a.bin").write_bytes(os.urandom(3 << 20))
    writes: list[int] = []

    class Sink:
        def write(self, b):
            writes.append(len(b))
            return len(b)

    read = []
    R._send_tar(Sink(), R._walk(d, "data/0_d", "data.train_path"), read.append)
    assert sum(read) == 3 << 20 and len(writes) > 10 and max(writes) <= 1 << 20


@pytest.mark.parametrize("bad", ["broken link", "fifo"])
def test_bad_file_in_a_data_folder_is_one_line_and_leaves_nothing(ssh_env, fake_worker, launch_job, tmp_path, bad):
    node = ssh_env.nodes[0]
    d = tmp_path / "dataset"
    d.mkdir()
    (d / "train.jsonl").write_text(ROW)
    odd = d / "odd"
    if bad == "broken link":
        odd.symlink_to(tmp_path / "nowhere.jsonl")
    else:
        os.mkfifo(odd)
    job = remote_job(launch_job, tmp_path, node.target, **{"data.train_path": str(d)})
    with pytest.raises(L.LaunchError) as ei:
        L.start_run(job)
    msg = str(ei.value)
    assert "\n" not in msg and str(odd) in msg
    assert ("broken link" if bad == "broken link" else "not a regular file or folder") in msg
    assert not (tmp_path / "remote-work").exists() or not any((tmp_path / "remote-work").iterdir())
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_stream_has_no_time_limit_while_the_input_flows(ssh_env):
    """A slow upload (longer than the answer timeout) is not cut: the timeout counts from the end of the input."""
    node = ssh_env.nodes[0]

    def feed(stdin):
        for _ in range(6):
            stdin.write(b"x" * 1000)
            stdin.flush()
            time.sleep(0.5)

    p = ssh.stream(node.target, ["sh", "-c", "wc -c"], feed, timeout=1)
    assert p.returncode == 0 and p.stdout.decode().strip() == "6000"


def test_the_agent_refusing_midway_is_its_answer(ssh_env, tmp_path, launch_job):
    """The remote side stops reading (an upload it refuses): the client gets the agent's one line, not a broken
    pipe, and the remote run directory is gone so the same name can be tried again."""
    node = ssh_env.nodes[0]
    from engine import presets

    req = {"workdir": str(tmp_path / "remote-work"), "name": "r", "config_toml": presets.dumps(launch_job()),
           "tar": True, "rewrite": {}, "env": {}}

    def feed(stdin):
        import io
        import tarfile

        stdin.write(json.dumps(req).encode() + b"\n")
        with tarfile.open(fileobj=stdin, mode="w|") as tf:
            ti = tarfile.TarInfo("data/ln")
            ti.type, ti.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tf.addfile(ti)
            for i in range(200):  # megabytes the agent will not read
                ti = tarfile.TarInfo(f"data/{i}.bin")
                ti.size = 1 << 20
                tf.addfile(ti, io.BytesIO(bytes(1 << 20)))

    p = ssh.stream(node.target, R.agent_argv(PYTHON, "start"), feed, timeout=60)
    with pytest.raises(L.LaunchError, match=r"the uploaded data member `data/ln` is a link"):
        R._agent_answer(node.target, PYTHON, p)
    assert not (tmp_path / "remote-work" / "r").exists()


def test_a_file_that_shrinks_while_it_is_sent_is_one_line(ssh_env, launch_job, tmp_path, monkeypatch):
    """A data file cut short during the upload: one sentence, and nothing is left on the remote host."""
    node = ssh_env.nodes[0]
    d = tmp_path / "dataset"
    d.mkdir()
    (d / "train.jsonl").write_text(ROW * 1000)
    real = R._Counted.read

    def shrinking(self, n=-1):
        b = real(self, n)
        if b:
            os.truncate(d / "train.jsonl", 10)  # (the next read comes up short)
        return b

    monkeypatch.setattr(R._Counted, "read", shrinking)
    job = remote_job(launch_job, tmp_path, node.target, **{"data.train_path": str(d)})
    with pytest.raises(L.LaunchError) as ei:
        L.start_run(job)
    assert "\n" not in str(ei.value) and "the data upload stopped" in str(ei.value)
    wait_for(lambda: not (tmp_path / "remote-work").exists() or not any((tmp_path / "remote-work").iterdir()), 10)
