"""The ``slurm`` backend: a batch job submitted with ``sbatch`` on the machine it is asked on — this one, or the
login node when the ``ssh`` backend's agent runs it there (``engine.launch.slurm`` does the work; status, stop and
the job's end come from Slurm)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.schema import LOCAL_HOST
from engine.launch import core
from engine.launch import slurm as S
from engine.launch.backends.base import register
from engine.launch.backends.local import LocalBackend
from engine.launch.rundir import LAUNCH_FILE, SUPERVISOR_FILE, LaunchRecord, RemoteRecord, read_json, update_json


class SlurmBackend(LocalBackend):
    kind = "slurm"
    priority = 20

    def claims(self, res: dict[str, Any]) -> bool:
        return res.get("launch.launcher") == "slurm"

    def recognizes(self, launch: LaunchRecord, remote: RemoteRecord | None) -> bool:
        return remote is None and bool(launch.slurm_job_id)

    def gpu_hosts(self, res: dict[str, Any]) -> list[str] | None:
        return None  # (the login node's GPUs are not the job's)

    def start_here(self, run_dir: Path, res: dict[str, Any], *, env: dict[str, str] | None = None,
                   host: str = LOCAL_HOST, start_at: float | None = None, cwd: str | None = None,
                   **node: Any) -> dict[str, Any]:
        run_dir = Path(run_dir).resolve()  # (Slurm starts the ranks of every node: no node arguments)
        full_env, cwd = core.run_environment(run_dir, res, env, cwd=cwd)
        S.submit(run_dir, res, env=full_env, host=host, start_at=start_at, cwd=cwd)
        return update_json(run_dir / LAUNCH_FILE, backend=self.kind)

    def dir_state(self, run_dir: Path) -> dict[str, Any]:
        run_dir = Path(run_dir)
        return S.dir_state(run_dir, read_json(run_dir / LAUNCH_FILE), read_json(run_dir / SUPERVISOR_FILE))

    def stop_dir(self, run_dir: Path, grace: float) -> str:
        return S.stop(Path(run_dir), read_json(Path(run_dir) / LAUNCH_FILE), grace)

    def alive(self, info: dict[str, Any]) -> bool:
        """Whether the run's job is pending or running."""
        return bool(info.get("slurm_job_id")) and S.alive(info)

    def recorded(self, info: dict[str, Any]) -> bool:
        return bool(info.get("slurm_job_id"))


register(SlurmBackend())
