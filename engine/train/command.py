"""The worker's launch command (torchrun or the DeepSpeed launcher).

Standard library only: the launcher (``engine/launch``) calls :func:`worker_argv`
and handles detaching, ``launch.json`` and SSH itself.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import Any

from engine.schema import MASTER_PORT

WORKER_MODULE = "engine.train.worker"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def worker_argv(res: dict[str, Any], run_dir: str | Path, *, nnodes: int = 1, node_rank: int = 0,
                master_addr: str = "127.0.0.1", master_port: int | None = None, rdzv: str = "static",
                python: str = sys.executable, rdzv_id: str | None = None,
                hostfile: str | Path | None = None, visible: str | None = None) -> list[str]:
    """The command that starts every rank of this node for the resolved config ``res``.

    ``rdzv="static"``: fixed ``--node_rank`` / ``--master_addr`` / ``--master_port``;
    ``rdzv="c10d"``: elastic rendezvous at ``master_addr:master_port`` (ranks assigned by torchrun).
    A free local port is picked when ``master_port`` is None (single node only).
    DeepSpeed on several nodes needs ``hostfile`` (one ``<host> slots=<n>`` line per node, in node order):
    finetui starts one launcher per node itself (``--no_ssh --node_rank``), so no pdsh is involved.
    ``visible``: the node's ``CUDA_VISIBLE_DEVICES``.  torchrun's ranks inherit it; the DeepSpeed launcher gives
    its ranks ``CUDA_VISIBLE_DEVICES=0..n-1`` of all the machine's GPUs unless it is told which (``--include``,
    with the variable removed so that it counts every GPU): a single node trains on the first
    ``procs_per_node`` of the visible GPUs.
    """
    nproc = int(res.get("launch.procs_per_node") or 1)
    launcher = res.get("launch.launcher") or "torchrun"
    if master_port is None:
        master_port = free_port() if nnodes == 1 else int(res.get("launch.master_port") or MASTER_PORT)
    run_dir = str(run_dir)
    worker = [WORKER_MODULE, "--run-dir", run_dir]
    if launcher == "deepspeed":
        ids = [v.strip() for v in (visible or "").split(",") if v.strip()]
        if nnodes == 1 and ids:
            if not all(i.isdigit() for i in ids):
                raise ValueError(f"launch.launcher: the deepspeed launcher takes GPU indices, and "
                                 f"CUDA_VISIBLE_DEVICES={visible} names GPUs otherwise (use indices, or torchrun)")
            if nproc > len(ids):
                raise ValueError(f"launch.procs_per_node: {nproc} ranks but CUDA_VISIBLE_DEVICES={visible} "
                                 f"names {len(ids)} GPU{'s' if len(ids) > 1 else ''}")
            return ["env", "-u", "CUDA_VISIBLE_DEVICES", python, "-m", "deepspeed.launcher.runner",
                    "--include", f"localhost:{','.join(ids[:nproc])}", "--master_addr", master_addr,
                    "--master_port", str(master_port), "--module", *worker]
        argv = [python, "-m", "deepspeed.launcher.runner", "--num_gpus", str(nproc),
                "--master_addr", master_addr, "--master_port", str(master_port)]
        if nnodes > 1:
            # one launcher per node, started by finetui (no pdsh): --no_ssh with an explicit node rank; the
            # runner takes the world (nodes and slots) from the hostfile, without one it refuses num_nodes > 1
            if not hostfile:
                raise ValueError("the deepspeed launcher on several nodes needs a hostfile")
            argv += ["--hostfile", str(hostfile), "--num_nodes", str(nnodes), "--node_rank", str(node_rank),
                     "--no_ssh"]
        else:
            argv += ["--num_nodes", "1"]
        return argv + ["--module", *worker]
    if nproc == 1 and nnodes == 1 and rdzv == "static":
        # one process on one node: the worker itself, without torchrun's launcher (a second interpreter of about
        # 220 MB and a second or more before the first step); it runs as the only rank (the worker gives itself
        # a loopback rendezvous when DeepSpeed needs a process group)
        return [python, "-m", *worker]
    argv = [python, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--nnodes", str(nnodes),
            "--max_restarts", "0"]
    if rdzv == "c10d":
        argv += ["--rdzv_backend", "c10d", "--rdzv_endpoint", f"{master_addr}:{master_port}",
                 "--rdzv_id", rdzv_id or Path(run_dir).name]
    else:
        argv += ["--node_rank", str(node_rank), "--master_addr", master_addr, "--master_port", str(master_port)]
    return argv + ["-m", *worker]
