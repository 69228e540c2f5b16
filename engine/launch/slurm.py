"""Slurm runs: a batch script in the run directory, ``sbatch --parsable``, status / stop / outcome from Slurm.

The launch backend of ``launch.launcher = "slurm"``.  It runs where ``sbatch`` runs — this machine, or the
login node over SSH through ``engine.launch.remote_agent`` (the same code on both sides, like local runs) — and
the run directory is on the cluster's shared file system, so the job's ranks write ``events.jsonl`` into it as
any run does.  Its interface is the one of a launch target: :func:`submit` (start), :func:`dir_state` (status),
:func:`stop`, and the events file / ``worker.log`` for tailing; ``engine.launch.backends.slurm`` is the backend
over it that ``engine.launch`` picks for such a job or run.

The contract (docs/slurm.md):

* ``slurm.sbatch`` in the run directory is the script submitted (readable; ``sbatch slurm.sbatch`` submits it
  again by hand).  It asks for ``--nodes`` × ``--ntasks-per-node`` tasks; ``srun`` starts one torchrun agent per
  task, all meeting at a c10d rendezvous on the first node of ``scontrol show hostnames $SLURM_JOB_NODELIST``
  (a free port picked there), each starting ``launch.procs_per_node`` ranks.  Output goes to ``worker.log``.
* ``--signal=B:USR1@<grace>``: the batch shell passes SIGUSR1 to the ranks (torchrun's agents ignore it), which
  agree to stop at the next step, save a checkpoint and exit.  With ``--requeue`` the job requeues itself
  (``scontrol requeue``) and the next start resumes from the newest complete checkpoint of the same run
  (``FINETUI_RESUME=last``, ``SLURM_RESTART_COUNT`` > 0); without it the run ends ``stopped``.
* Status comes from Slurm (``scontrol show job``, then ``sacct`` where the cluster keeps accounting): pending
  (with its reason and place in the queue), running, completed, failed, timeout, cancelled, preempted.  A job that
  ended without an ``end`` record gets one from Slurm's state; the final state is kept in ``launch.json``
  (Slurm forgets jobs after ``MinJobAge``).
* ``stop`` is ``scancel``; it waits until Slurm says the job is over.

Standard library only (no torch); the batch script calls ``python -m engine.launch.slurm finish`` at its end.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

from engine.schema import LOCAL_HOST, is_local_host
from engine.events import EVENTS_FILE, summarize
from engine.launch.rundir import (LAUNCH_FILE, LOG_FILE, LaunchError, append_end_if_missing, events_lock, has_end,
                                  log_tail, read_json, read_records, update_json, write_json)

SCRIPT_FILE = "slurm.sbatch"
PREEMPT_MARK = ".slurm-preempt"
REQUEUE_ENV = "FINETUI_SLURM_REQUEUE"
RESUME_ENV = "FINETUI_RESUME"

#: Slurm job states → the run's status (states not listed count as running)
PENDING_STATES = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD"}
TERMINAL = {"COMPLETED": "completed", "FAILED": "failed", "TIMEOUT": "timeout", "CANCELLED": "cancelled",
            "PREEMPTED": "preempted", "NODE_FAIL": "failed", "OUT_OF_MEMORY": "failed", "BOOT_FAIL": "failed",
            "DEADLINE": "timeout", "REVOKED": "cancelled", "SPECIAL_EXIT": "failed"}
#: the end outcome a job gets from Slurm when its worker wrote none
OUTCOME = {"completed": "failed", "failed": "failed", "timeout": "stopped", "cancelled": "stopped",
           "preempted": "stopped"}
_PH = {"@NNODES@": "FT_NNODES", "@HEAD@": "FT_HEAD", "@PORT@": "FT_PORT", "@JOBID@": "SLURM_JOB_ID",
       "@NODES@": "SLURM_JOB_NUM_NODES"}
#: in a task's command: the node's rank in the allocation, put in by the task itself (``$SLURM_NODEID`` is the
#: batch shell's own, 0, until srun starts the task on its node)
NODE_RANK = "@NODEID@"
#: the srun task's wrapper: torchrun's agent would die of SIGUSR1 (srun passes it to every process of the step), so
#: the task ignores it (the ranks set their own handler); @NODEID@ becomes the node's rank
TASK_WRAPPER = ('trap "" USR1; a=(); for x in "$@"; do a+=("${x//' + NODE_RANK + '/$SLURM_NODEID}"); done; '
                'exec "${a[@]}"')


# ------------------------------------------------------------------ the batch script

def _sh(arg: str) -> str:
    """A shell word: quoted, or with its placeholders as ``${VAR}`` in double quotes."""
    if any(p in arg for p in _PH) and not any(c in arg for c in "\"$`\\!"):
        for p, var in _PH.items():
            arg = arg.replace(p, "${" + var + "}")
        return f'"{arg}"'
    return shlex.quote(arg)


def uses_deepspeed(res: dict[str, Any]) -> bool:
    """A DeepSpeed job starts its ranks with DeepSpeed's own launcher, one per node, from a hostfile of the
    allocation; any other with torchrun."""
    return res.get("trainer.distributed_backend") == "deepspeed"


def _tasks_per_node(res: dict[str, Any]) -> int:
    return int(res.get("launch.slurm_tasks_per_node") or 1)


def node_slots(res: dict[str, Any]) -> int:
    """Ranks per node of a DeepSpeed job (its hostfile's ``slots``): ``launch.procs_per_node`` for each of the
    ``launch.slurm_tasks_per_node`` task slots, so the world is the size the job's other numbers assume."""
    return int(res.get("launch.procs_per_node") or 1) * _tasks_per_node(res)


def resource_options(res: dict[str, Any], start_at: float | None = None) -> list[str]:
    """The ``#SBATCH`` options that shape the allocation (the same for every task of a job array)."""
    ds = uses_deepspeed(res)
    # DeepSpeed: one launcher per node starts all the node's ranks
    opts = [f"--nodes={int(res.get('launch.nodes') or 1)}", f"--ntasks-per-node={1 if ds else _tasks_per_node(res)}"]
    for key, opt in (("slurm_partition", "partition"), ("slurm_account", "account"), ("slurm_qos", "qos"),
                     ("slurm_time", "time"), ("slurm_gpus_per_node", "gpus-per-node"),
                     ("slurm_cpus_per_task", "cpus-per-task"), ("slurm_mem", "mem"),
                     ("slurm_constraint", "constraint")):
        v = res.get(f"launch.{key}")
        if v is not None and str(v).strip() != "":
            if key == "slurm_cpus_per_task" and ds:  # (the CPUs of the node's task slots, for its one launcher)
                v = int(v) * _tasks_per_node(res)
            opts.append(f"--{opt}={str(v).strip()}")
    if start_at:
        opts.append(f"--begin={datetime.fromtimestamp(start_at).strftime('%Y-%m-%dT%H:%M:%S')}")
    opts.append(f"--signal=B:USR1@{int(res.get('launch.slurm_signal_grace') or 120)}")
    opts.append("--requeue" if res.get("launch.slurm_requeue") else "--no-requeue")
    opts += [str(x).strip() for x in res.get("launch.slurm_extra") or []]
    return opts


def sbatch_options(res: dict[str, Any], run_dir: Path, start_at: float | None = None) -> list[str]:
    """The ``#SBATCH`` options of the run, in the script's order."""
    return [f"--job-name={run_dir.name}", f"--output={run_dir / LOG_FILE}", "--open-mode=append",
            f"--chdir={run_dir}", *resource_options(res, start_at)]


def task_command(res: dict[str, Any], run_dir: Path, env: dict[str, str]) -> list[str]:
    """The command of one srun task, with ``@NNODES@``/``@NODES@``/``@HEAD@``/``@PORT@``/``@JOBID@`` for what the
    allocation says and ``@NODEID@`` for the task's node: torchrun (c10d rendezvous on the first node), or for a
    DeepSpeed job DeepSpeed's launcher (``--hostfile`` of the allocation, ``--no_ssh --node_rank``)."""
    from engine.launch.core import worker_command

    if uses_deepspeed(res):
        ds = {**res, "launch.launcher": "deepspeed", "launch.procs_per_node": node_slots(res)}
        argv = worker_command(ds, run_dir, nnodes=2, node_rank=NODE_RANK, master_addr="@HEAD@",  # type: ignore
                              master_port="@PORT@", env=env, hosts=["@HEAD@", "@NODE@"])  # type: ignore[arg-type]
        (Path(run_dir) / "hostfile").unlink(missing_ok=True)  # the batch script writes it from the allocation
        if "--num_nodes" in argv:
            argv[argv.index("--num_nodes") + 1] = "@NODES@"
        return argv
    argv = worker_command(res, run_dir, nnodes=2, rdzv="c10d", master_addr="@HEAD@",
                          master_port="@PORT@", rdzv_id="@JOBID@", env=env)  # type: ignore[arg-type]
    if "--nnodes" in argv:
        argv[argv.index("--nnodes") + 1] = "@NNODES@"
    return argv


def _env_lines(res: dict[str, Any]) -> list[str]:
    """The environment every task of the job shares."""
    lines = ["export PYTHONUNBUFFERED=1" + (" PYTHONSAFEPATH=1" if sys.version_info >= (3, 11) else ""),
             f"export {REQUEUE_ENV}={'1' if res.get('launch.slurm_requeue') else '0'}"]
    for name in ("GLOO_SOCKET_IFNAME", "NCCL_SOCKET_IFNAME"):
        v = res.get(f"launch.{name.lower()}")
        if v:
            lines.append(f"export {name}={shlex.quote(str(v))}")
    return lines


def _task_lines(run_dir: Path, token: str, command: list[str], res: dict[str, Any]) -> list[str]:
    """What one task is: its run directory, token, command (and a DeepSpeed job's slots per node)."""
    out = [f"RUN_DIR={shlex.quote(str(run_dir))}", f"FINETUI_RUN_TOKEN={shlex.quote(token)}",
           "CMD=(" + " ".join(_sh(a) for a in command) + ")"]
    if uses_deepspeed(res):
        out.append(f"FT_SLOTS={node_slots(res)}")
    return out


def _script(header: list[str], options: list[str], res: dict[str, Any], python: str, select: list[str]) -> str:
    """The batch script: ``#SBATCH`` options, the shared environment, the allocation's rendezvous, then
    ``select`` (which sets ``RUN_DIR``, ``FINETUI_RUN_TOKEN`` and ``CMD``), the ranks under srun and the end."""
    lines = ["#!/bin/bash", *header, *[f"#SBATCH {o}" for o in options], "", *_env_lines(res),
             f"PY={shlex.quote(python)}",
             "FT_HEAD=$(scontrol show hostnames \"$SLURM_JOB_NODELIST\" | head -n 1)",
             "FT_NNODES=${SLURM_NTASKS:-1}",
             # a free port on this (the first) node, where the rendezvous is hosted
             "FT_PORT=$(\"$PY\" -c 'import socket; s=socket.socket(); s.bind((\"\", 0)); print(s.getsockname()[1])')",
             "export FT_HEAD FT_NNODES FT_PORT",
             *select,
             "export FINETUI_RUN_TOKEN"]
    if uses_deepspeed(res):  # DeepSpeed's hostfile: the allocation's nodes in Slurm's order (node rank = SLURM_NODEID)
        lines += ["{ echo \"# DeepSpeed hostfile written by the batch script of job $SLURM_JOB_ID from its allocation "
                  "($SLURM_JOB_NODELIST)\"",
                  "  scontrol show hostnames \"$SLURM_JOB_NODELIST\" | while read -r h; do echo \"$h slots=$FT_SLOTS\"; "
                  "done; } > \"$RUN_DIR/hostfile\""]
    lines += [
        "if [ \"${SLURM_RESTART_COUNT:-0}\" -gt 0 ]; then",
        f"  export {RESUME_ENV}=last",
        "  echo \"finetui: job $SLURM_JOB_ID restarted ($SLURM_RESTART_COUNT): resuming from the newest complete "
        "checkpoint\"",
        "fi",
        "echo \"finetui: job $SLURM_JOB_ID on $SLURM_JOB_NODELIST, $FT_NNODES task(s), rendezvous $FT_HEAD:$FT_PORT\"",
        "srun_pid=",
        f"trap 'echo \"finetui: SIGUSR1 (time limit or preemption): checkpointing\"; touch \"$RUN_DIR\"/{PREEMPT_MARK};"
        " [ -n \"$srun_pid\" ] && kill -USR1 $srun_pid' USR1",
        "trap '[ -n \"$srun_pid\" ] && kill -TERM $srun_pid' TERM INT",
        f"srun --kill-on-bad-exit=1 bash -c {shlex.quote(TASK_WRAPPER)} finetui-task \"${{CMD[@]}}\" &",
        "srun_pid=$!",
        "while :; do wait $srun_pid; rc=$?; kill -0 $srun_pid 2>/dev/null || break; done",
        "exec \"$PY\" -m engine.launch.slurm finish \"$RUN_DIR\" \"$rc\"",
        ""]
    return "\n".join(lines)


def batch_script(res: dict[str, Any], run_dir: Path, *, command: list[str], python: str, token: str,
                 start_at: float | None = None) -> str:
    run_dir = Path(run_dir)
    header = [f"# finetui run {run_dir.name}: the batch script finetui submitted with `sbatch --parsable`.",
              "# Submit it again by hand with `sbatch " + shlex.quote(str(run_dir / SCRIPT_FILE)) + "`."]
    return _script(header, sbatch_options(res, run_dir, start_at), res, python,
                   _task_lines(run_dir, token, command, res))


def array_script(tasks: list[dict[str, Any]], sweep_dir: Path, *, python: str, parallel: int | None = None) -> str:
    """One batch script for a job array: task ``i`` (1-based) runs ``tasks[i-1]``'s run (its run directory,
    token and command; its output appended to that run's ``worker.log``), at most ``parallel`` at a time
    (``--array=1-N%parallel``).  The tasks share the first one's allocation options (:func:`array_key`)."""
    sweep_dir = Path(sweep_dir)
    res = tasks[0]["res"]
    spec = f"1-{len(tasks)}" + (f"%{int(parallel)}" if parallel else "")
    options = [f"--job-name={sweep_dir.name}", f"--output={sweep_dir / 'slurm-%A_%a.out'}", "--open-mode=append",
               f"--chdir={sweep_dir}", f"--array={spec}", *resource_options(res, tasks[0].get("start_at"))]
    select = ['case "$SLURM_ARRAY_TASK_ID" in']
    for i, t in enumerate(tasks, 1):
        select += [f"  {i})", *("    " + ln for ln in _task_lines(Path(t["run_dir"]), t["token"], t["command"], t["res"])),
                   "    ;;"]
    select += ['  *) echo "finetui: job array task $SLURM_ARRAY_TASK_ID is not one of this array\'s" >&2; exit 2 ;;',
               "esac",
               'exec >>"$RUN_DIR/worker.log" 2>&1  # (the task\'s own run: its log, its directory)',
               'cd "$RUN_DIR" || exit 1']
    header = [f"# finetui sweep {sweep_dir.name}: one job array, task i = trial i (its run directory below).",
              "# Submit it again by hand with `sbatch " + shlex.quote(str(sweep_dir / SCRIPT_FILE)) + "`."]
    return _script(header, options, res, python, select)


def array_key(res: dict[str, Any]) -> tuple:
    """What the tasks of one job array must share: the allocation's options, the shared environment and the
    launcher of the ranks (runs differing in these are submitted as jobs of their own)."""
    return (tuple(resource_options(res)), tuple(_env_lines(res)), uses_deepspeed(res),
            is_local_host(res.get("launch.host")))


def _slurm_env(info: dict[str, Any] | None = None, env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of Slurm commands: this one, with the ``SLURM_CONF`` the run was submitted with."""
    out = dict(os.environ if env is None else env)
    conf = (info or {}).get("slurm_conf")
    if conf and not out.get("SLURM_CONF"):
        out["SLURM_CONF"] = str(conf)
    return out


def _tool(name: str, env: dict[str, str], host: str) -> str:
    path = shutil.which(name, path=env.get("PATH"))
    if not path:
        raise LaunchError(f"{host}: {name} is not installed or not on PATH (launch.launcher = slurm submits the job "
                          f"where sbatch runs: set launch.host to the cluster's login node)")
    return path


#: while a job array is being prepared (:func:`array_tasks`): its tasks so far
_ARRAY: ContextVar[list[dict[str, Any]] | None] = ContextVar("finetui_slurm_array", default=None)


@contextmanager
def array_tasks() -> Iterator[list[dict[str, Any]]]:
    """Within it, a Slurm run started (``engine.launch.start_run`` → :func:`submit`) is prepared as usual — its run
    directory, ``config.toml``, token and task command — but not submitted: it becomes the next task of one job
    array, submitted afterwards by :func:`submit_array` (a sweep's trials)."""
    tasks: list[dict[str, Any]] = []
    tok = _ARRAY.set(tasks)
    try:
        yield tasks
    finally:
        _ARRAY.reset(tok)


def _sbatch(argv: list[str], *, env: dict[str, str], cwd: str, host: str) -> str:
    """Run ``sbatch --parsable …``; → the job id (LaunchError with Slurm's own sentence when it refuses)."""
    try:
        p = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise LaunchError(f"{host}: sbatch did not answer ({e})") from None
    if p.returncode != 0:
        msg = " ".join((p.stderr.strip().splitlines() or p.stdout.strip().splitlines() or ["no message"])[-1:])
        msg = re.sub(r"^sbatch: (error|fatal): ", "", msg)
        raise LaunchError(f"{host}: sbatch refused the job: {msg}")
    out = p.stdout.strip().splitlines()
    job_id = out[-1].split(";")[0].strip() if out else ""
    if not job_id or not job_id.split("_")[0].isdigit():
        raise LaunchError(f"{host}: sbatch answered no job id ({p.stdout.strip()[:200]!r})")
    return job_id


def submit(run_dir: Path, res: dict[str, Any], *, env: dict[str, str], host: str = LOCAL_HOST,
           start_at: float | None = None, cwd: str | None = None, command: list[str] | None = None) -> dict[str, Any]:
    """Write ``slurm.sbatch``, submit it with ``sbatch --parsable``, write ``launch.json``; → its content.

    ``env`` is the run's whole environment (secrets included): sbatch passes it to the job (``--export=ALL``), so
    no secret is written into the script.  Inside :func:`array_tasks` the run is prepared, not submitted."""
    from engine.launch import procs

    run_dir = Path(run_dir).resolve()
    sbatch = _tool("sbatch", env, host)
    python = procs.python_exe()
    token = env[procs.TOKEN_ENV]
    command = command or task_command(res, run_dir, env)
    (run_dir / LOG_FILE).touch()
    info: dict[str, Any] = {
        "name": run_dir.name, "host": host, "task_command": command, "run_dir": str(run_dir),
        "cwd": cwd or str(run_dir), "created": time.time(), "started": time.time(), "start_at": start_at,
        "launcher": "slurm", "python": python, "token": token, "slurm_conf": env.get("SLURM_CONF"),
        "nnodes": int(res.get("launch.nodes") or 1)}
    tasks = _ARRAY.get()
    if tasks is not None:  # a task of a job array: submit_array submits it with the others
        write_json(run_dir / LAUNCH_FILE, {**info, "slurm_array_task": len(tasks) + 1})
        tasks.append({"run_dir": run_dir, "res": res, "env": env, "command": command, "token": token,
                      "start_at": start_at, "host": host, "cwd": cwd or str(run_dir), "sbatch": sbatch})
        return info
    script = run_dir / SCRIPT_FILE
    script.write_text(batch_script(res, run_dir, command=command, python=python, token=token, start_at=start_at))
    os.chmod(script, 0o755)
    argv = [sbatch, "--parsable", str(script)]
    job_id = _sbatch(argv, env=env, cwd=cwd or str(run_dir), host=host)
    info.update(command=argv, script=str(script), slurm_job_id=job_id)
    write_json(run_dir / LAUNCH_FILE, info)
    return info


def submit_array(sweep_dir: Path, tasks: list[dict[str, Any]], *, parallel: int | None = None) -> str:
    """Submit the tasks prepared in :func:`array_tasks` as one job array (``sweep_dir/slurm.sbatch``, ``sbatch
    --parsable``, ``--array=1-N%parallel``); each task's run records its job id ``<array>_<i>``.  → the array's
    job id.  LaunchError when Slurm refuses it (the runs are then left without a job)."""
    from engine.launch import procs

    if not tasks:
        raise LaunchError("a job array needs at least one task")
    sweep_dir = Path(sweep_dir).resolve()
    first = tasks[0]
    python = procs.python_exe()
    script = sweep_dir / SCRIPT_FILE
    script.write_text(array_script(tasks, sweep_dir, python=python, parallel=parallel))
    os.chmod(script, 0o755)
    argv = [first["sbatch"], "--parsable", str(script)]
    env = {k: v for k, v in first["env"].items() if k != procs.TOKEN_ENV}  # (each task sets its own)
    array_id = _sbatch(argv, env=env, cwd=first["cwd"], host=first["host"])
    for i, t in enumerate(tasks, 1):
        update_json(Path(t["run_dir"]) / LAUNCH_FILE, command=argv, script=str(script), slurm_array=array_id,
                    slurm_job_id=f"{array_id}_{i}")
    return array_id


def cancel(job_id: str, info: dict[str, Any] | None = None) -> None:
    """``scancel`` a job (a whole job array by its id); nothing when Slurm has it over already."""
    env = _slurm_env(info)
    scancel = _tool("scancel", env, (info or {}).get("host") or LOCAL_HOST)
    p = subprocess.run([scancel, str(job_id)], env=env, capture_output=True, text=True, timeout=60)
    if p.returncode != 0 and "already completing or completed" not in p.stderr:
        raise LaunchError(f"scancel {job_id} failed: {p.stderr.strip()[-300:]}")


# ------------------------------------------------------------------ status

def _fields(line: str) -> dict[str, str]:
    """``scontrol show job -o``'s Key=Value pairs (values may hold spaces only in the last known keys)."""
    out: dict[str, str] = {}
    for m in re.finditer(r"(\w+(?:/\w+)?)=(\S*)", line):
        out.setdefault(m.group(1), m.group(2))
    return out


def job_state(job_id: str, info: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """What Slurm says of the job: ``{"state", "reason", "restarts", "exit_code", "nodes", "source"}`` (plus
    ``position`` in the queue while pending), or None when it no longer knows the job."""
    env = _slurm_env(info)
    scontrol = shutil.which("scontrol", path=env.get("PATH"))
    if scontrol:
        try:
            p = subprocess.run([scontrol, "show", "job", "-o", str(job_id)], env=env, capture_output=True, text=True,
                               timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            p = None
        if p is not None and p.returncode == 0 and "JobState=" in p.stdout:
            # a requeued/array job may list several lines: the one of this job id
            aid, _, tid = str(job_id).partition("_")
            line = next((ln for ln in p.stdout.splitlines() if f"JobId={job_id} " in ln + " " or (
                tid and f"ArrayJobId={aid} " in ln and f"ArrayTaskId={tid} " in ln + " ")), p.stdout.splitlines()[0])
            f = _fields(line)
            st = {"state": f.get("JobState", "UNKNOWN").split("+")[0], "reason": f.get("Reason", "None"),
                  "restarts": int(f.get("Restarts", "0") or 0), "exit_code": f.get("ExitCode"),
                  "nodes": f.get("NodeList"), "source": "scontrol"}
            if st["state"] in PENDING_STATES:
                st["position"] = _queue_position(job_id, env)
            return st
    sacct = shutil.which("sacct", path=env.get("PATH"))
    if sacct:  # Slurm has forgotten the job (MinJobAge): its accounting, where the cluster keeps one
        try:
            p = subprocess.run([sacct, "-n", "-X", "-P", "-j", str(job_id), "-o", "State,ExitCode,Reason,NodeList"],
                               env=env, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        rows = [r.split("|") for r in p.stdout.strip().splitlines() if r.strip()] if p.returncode == 0 else []
        if rows and rows[-1][0]:
            r = rows[-1] + ["", "", "", ""]
            return {"state": r[0].split()[0], "reason": r[2] or "None", "restarts": 0, "exit_code": r[1],
                    "nodes": r[3], "source": "sacct"}
    return None


def _queue_position(job_id: str, env: dict[str, str]) -> int | None:
    """1-based place among the pending jobs of the cluster, in Slurm's priority order."""
    squeue = shutil.which("squeue", path=env.get("PATH"))
    if not squeue:
        return None
    try:
        p = subprocess.run([squeue, "-h", "-t", "PENDING", "--sort=-p,i", "-o", "%i"], env=env, capture_output=True,
                           text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    ids = [i for x in p.stdout.splitlines() if x.strip() for i in _array_ids(x.strip())]
    return ids.index(str(job_id)) + 1 if str(job_id) in ids else None


def _array_ids(entry: str) -> list[str]:
    """squeue's ``%i`` of pending array tasks, ``12_[3-5,8%2]``, as the tasks' ids (``12_3`` …); others as is."""
    m = re.fullmatch(r"(\d+)_\[([\d,\-]+)(?:%\d+)?\]", entry)
    if not m:
        return [entry]
    out = []
    for part in m.group(2).split(","):
        lo, _, hi = part.partition("-")
        if lo.isdigit() and (hi.isdigit() or not hi):
            out += [f"{m.group(1)}_{k}" for k in range(int(lo), int(hi or lo) + 1)]
    return out


def status_of(state: str) -> str:
    if state in PENDING_STATES:
        return "pending"
    return TERMINAL.get(state, "running")


def _end_from_slurm(run_dir: Path, st: dict[str, Any]) -> None:
    """The job is over and its worker wrote no ``end``: the outcome from Slurm's state."""
    status = status_of(st["state"])
    why = {"timeout": "the job reached its time limit (launch.slurm_time)",
           "cancelled": "the job was cancelled (scancel)",
           "preempted": "the job was preempted",
           "completed": "the job ended without the worker's end record"}.get(status)
    if why is None:
        tail = [ln for ln in log_tail(run_dir, 4000).strip().splitlines() if ln.strip()]
        why = (f"Slurm: job {st['state']} (exit code {st.get('exit_code')}, reason {st.get('reason')})"
               + (f": {tail[-1].strip()[:300]}" if tail else ""))
    outcome = OUTCOME.get(status, "failed")
    append_end_if_missing(run_dir, outcome, why if outcome == "failed" else None, slurm_state=st["state"])
    if outcome != "failed":  # (a stop's reason is no error: a status line says it)
        _status_line(run_dir, "slurm", why)


def _status_line(run_dir: Path, phase: str, text: str) -> None:
    import json

    with events_lock(run_dir):
        step = 0
        for r in read_records(run_dir / EVENTS_FILE)[-50:]:
            step = max(step, int(r.get("step") or 0))
        with open(run_dir / EVENTS_FILE, "ab") as fh:
            fh.write(json.dumps({"t": round(time.time(), 3), "kind": "status", "step": step, "phase": phase,
                                 "text": text, "by": "launcher"}).encode() + b"\n")


#: how long after the batch script's ``scontrol requeue`` a terminal Slurm state is read as the requeue passing
REQUEUE_GRACE_S = 60.0


def _requeue_in_flight(recs: list[dict[str, Any]], grace: float = REQUEUE_GRACE_S) -> bool:
    """The batch script asked Slurm to requeue the job (a ``requeued`` status, no start, log or end after it)
    less than ``grace`` seconds ago.  On its way back to PENDING the job passes through a terminal state (FAILED,
    NonZeroExitCode: "cancelled due to job requeue"), which is not the run's outcome."""
    for r in reversed(recs):
        if r.get("kind") in ("start", "end", "log"):
            return False
        if r.get("kind") == "status" and r.get("phase") == "requeued":
            return time.time() - float(r.get("t") or 0) < grace
    return False


def dir_state(run_dir: Path, info: dict[str, Any], sup: dict[str, Any]) -> dict[str, Any]:
    """``core.dir_state`` for a Slurm run: status from Slurm, events from the run directory."""
    run_dir = Path(run_dir)
    st = info.get("slurm_final") or job_state(str(info["slurm_job_id"]), info)
    recs = read_records(run_dir / EVENTS_FILE)
    ended = any(r.get("kind") == "end" for r in recs)
    alive = False
    if st is None:
        status = summarize(recs).status if ended else "lost"
    else:
        status = status_of(st["state"])
        alive = status in ("pending", "running")
        if not alive and st["state"] != "CANCELLED" and _requeue_in_flight(recs):
            status, alive = "pending", True  # on its way back to PENDING: not the run's outcome
        if not alive:
            if not ended:
                _end_from_slurm(run_dir, st)
                recs = read_records(run_dir / EVENTS_FILE)
            if not info.get("slurm_final"):
                info = update_json(run_dir / LAUNCH_FILE, slurm_final={k: v for k, v in st.items() if k != "position"})
            if status in ("completed", "failed"):
                status = summarize(recs).status  # the worker's word is finer (early_stopped; failed with a cause)
        elif ended and status == "running":
            status = summarize(recs).status  # the worker is done; Slurm is cleaning up
    s = summarize(recs)
    try:
        size = (run_dir / EVENTS_FILE).stat().st_size
    except OSError:
        size = 0
    return {"status": status, "alive": alive, "summary": s, "launch": info, "supervisor": sup, "events_size": size,
            "slurm": {"job_id": info["slurm_job_id"], **(st or {"state": "UNKNOWN"})}}


def describe(sl: dict[str, Any]) -> str:
    """One phrase for a listing: ``PENDING (Resources, 3rd in queue)``, ``RUNNING on node[1-2]``, ``TIMEOUT``."""
    state = str(sl.get("state") or "UNKNOWN")
    if state in PENDING_STATES:
        parts = [str(sl.get("reason") or "None")]
        if sl.get("position"):
            parts.append(f"#{sl['position']} in queue")
        return f"job {sl.get('job_id')} {state} ({', '.join(parts)})"
    if status_of(state) == "running" and sl.get("nodes"):
        return f"job {sl.get('job_id')} {state} on {sl['nodes']}"
    return f"job {sl.get('job_id')} {state}"


_alive_cache: dict[str, tuple[float, bool]] = {}


def alive(info: dict[str, Any], max_age: float = 2.0) -> bool:
    """Whether the run's job is pending or running (asked at most every ``max_age`` s); a job found over without
    an ``end`` record gets one (:func:`dir_state`)."""
    job = str(info["slurm_job_id"])
    hit = _alive_cache.get(job)
    if hit and 0.0 <= time.monotonic() - hit[0] < max_age:  # (a stamp ahead of the clock: ask again)
        return hit[1]
    run_dir = Path(info.get("run_dir") or Path(info.get("script") or ".").parent)
    ok = bool(dir_state(run_dir, info, {})["alive"]) if (run_dir / LAUNCH_FILE).exists() else False
    _alive_cache[job] = (time.monotonic(), ok)
    return ok


# ------------------------------------------------------------------ stop

def stop(run_dir: Path, info: dict[str, Any], grace: float = 15.0) -> str:
    """``scancel`` the job, wait until Slurm says it is over (SIGKILL of every step after ``grace`` more), record
    ``stopped`` when the worker did not; → the run's outcome."""
    from engine.launch import procs

    run_dir = Path(run_dir)
    job = str(info["slurm_job_id"])
    env = _slurm_env(info)
    st = dir_state(run_dir, info, {})
    if st["alive"]:
        scancel = _tool("scancel", env, info.get("host") or LOCAL_HOST)
        try:
            cancel(job, info)
        except LaunchError as e:
            raise LaunchError(f"run {run_dir.name}: {e}") from None
        killed = False
        deadline = time.monotonic() + grace + 60
        while True:
            j = job_state(job, info)
            if j is None or status_of(j["state"]) not in ("pending", "running") and j["state"] != "COMPLETING":
                break
            if not killed and time.monotonic() > deadline - 60:
                subprocess.run([scancel, "--signal=KILL", "--full", job], env=env, capture_output=True, timeout=60)
                killed = True
            if time.monotonic() > deadline:
                raise LaunchError(f"run {run_dir.name}: Slurm job {job} is still {j['state']} after scancel")
            time.sleep(0.5)
        left_deadline = time.monotonic() + 15
        while procs.token_pids(info.get("token")) and time.monotonic() < left_deadline:
            time.sleep(0.2)  # (processes on this node: the login node may be a compute node too)
        left = procs.token_pids(info.get("token"))
        if left:
            raise LaunchError(f"run {run_dir.name}: {len(left)} of its processes survived scancel "
                              f"(pid {', '.join(map(str, left[:8]))}); it is not stopped")
        dir_state(run_dir, read_json(run_dir / LAUNCH_FILE), {})  # records Slurm's final state
    append_end_if_missing(run_dir, "stopped")
    end = has_end(run_dir)
    return str(end.get("outcome", "stopped")) if end else "stopped"


# ------------------------------------------------------------------ the end of the batch script

def finish(run_dir: Path, rc: int) -> int:
    """Run by the batch script after srun returned: requeue after a SIGUSR1 (``launch.slurm_requeue``), else
    make sure the run has an ``end``."""
    from engine.launch.supervisor import _reason

    run_dir = Path(run_dir).resolve()
    mark = run_dir / PREEMPT_MARK
    preempted = mark.exists()
    mark.unlink(missing_ok=True)
    job = os.environ.get("SLURM_JOB_ID", "")
    if preempted and os.environ.get(REQUEUE_ENV) == "1" and not has_end(run_dir):
        _status_line(run_dir, "requeued", f"SIGUSR1: checkpoint saved, job {job} requeued; it resumes from the "
                                          f"newest complete checkpoint")
        p = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
        if p.returncode == 0:
            print(f"finetui: job {job} requeued", flush=True)
            return 0
        append_end_if_missing(run_dir, "stopped", f"scontrol requeue {job} failed: {p.stderr.strip()[-300:]}")
        return 1
    if has_end(run_dir):
        return 0
    if preempted or rc in (143, 15, 130, 137):
        append_end_if_missing(run_dir, "stopped")
        return 0
    tail = log_tail(run_dir, 8000).strip().splitlines()
    last = _reason(tail)
    append_end_if_missing(run_dir, "failed", f"the job's ranks exited with code {rc} without finishing"
                          + (f": {last.strip()[:300]}" if last else ""), traceback="\n".join(tail[-20:]))
    return rc or 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 3 and argv[0] == "finish":
        return finish(Path(argv[1]), int(argv[2]) if argv[2].lstrip("-").isdigit() else 1)
    print("usage: python -m engine.launch.slurm finish RUN_DIR EXIT_CODE", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
