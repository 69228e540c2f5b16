"""``--bootstrap``: install this finetui on a remote host.

Builds a wheel of the running finetui with ``pip wheel --no-deps`` (from the
source tree this module lives in), copies it over SSH and installs it into
``launch.remote_python``'s environment.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from engine.schema import REMOTE_PYTHON
from engine.launch import ssh
from engine.launch.rundir import LaunchError

SOURCE_ROOT = Path(__file__).resolve().parent.parent.parent


def build_wheel(out_dir: Path) -> Path:
    if not (SOURCE_ROOT / "pyproject.toml").exists():
        raise LaunchError("--bootstrap needs finetui's source tree (pyproject.toml) to build a wheel; "
                          "install finetui on the remote host with pip instead")
    from engine.launch.procs import module_argv

    p = subprocess.run(module_argv(sys.executable, "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                                   "-w", str(out_dir), str(SOURCE_ROOT)), capture_output=True, text=True, timeout=600)
    wheels = sorted(out_dir.glob("finetui-*.whl"))
    if p.returncode != 0 or not wheels:
        last = (p.stderr.strip().splitlines() or ["pip wheel failed"])[-1]
        raise LaunchError(f"building the finetui wheel failed: {last}")
    return wheels[-1]


def bootstrap(target: str, python: str = REMOTE_PYTHON, *, no_deps: bool = False, log=print) -> str:  # noqa: ANN001
    """Build, copy and install the wheel on ``target``; return the installed version line."""
    with tempfile.TemporaryDirectory(prefix="ftwheel") as td:
        whl = build_wheel(Path(td))
        log(f"built {whl.name}")
        rdir = ".cache/finetui-bootstrap"
        remote_whl = f'"$HOME"/{shlex.quote(rdir)}/{shlex.quote(whl.name)}'
        p = ssh.run(target, f'mkdir -p "$HOME"/{shlex.quote(rdir)} && cat > {remote_whl}', input=whl.read_bytes(),
                    timeout=600)
        if p.returncode != 0:
            raise LaunchError(f"{target}: copying the wheel failed: "
                              f"{(p.stderr.decode(errors='replace').strip().splitlines() or ['?'])[-1]}")
        log(f"copied to {target}:~/{rdir}/{whl.name}")
    # run in the folder that holds only the wheel, so that nothing in $HOME is imported as pip (a relative
    # Python path stays relative to $HOME)
    rel = "/" in python and not python.startswith(("/", "~"))
    py = f'"$HOME"/{shlex.quote(python)}' if rel else ssh.quote_path(python)
    cmd = (f'cd "$HOME"/{shlex.quote(rdir)} && '
           f"{py} -m pip install -q --disable-pip-version-check --force-reinstall --no-deps {remote_whl}")
    if not no_deps:
        cmd += f" && {py} -m pip install -q --disable-pip-version-check {remote_whl}"
    p = ssh.run(target, cmd, timeout=1800)
    if p.returncode != 0:
        err = p.stderr.decode(errors="replace").strip().splitlines() or ["pip install failed"]
        if p.returncode == 127:
            raise LaunchError(f"{target}: the remote Python {python!r} was not found; set launch.remote_python")
        raise LaunchError(f"{target}: installing finetui failed: {err[-1]}")
    from engine.launch.remote import agent_argv

    p = ssh.run(target, agent_argv(python, "version"), timeout=60)
    out = p.stdout.decode(errors="replace").strip()
    log(f"installed on {target}: {out}")
    return out
