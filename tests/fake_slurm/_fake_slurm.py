"""A stand-in for the SLURM commands that snakemake-executor-plugin-slurm calls, for tests.

Each command in this folder (sbatch, srun, sacct, squeue, scancel, sinfo, scontrol, sacctmgr)
is a two-line wrapper around `main(<command>, argv)` below. Put the folder first on PATH and
set FAKE_SLURM_STATE to a writable folder; every command refuses to run without it.

What it emulates (one node, "fakenode01", of a cluster "fakecluster"):

- sbatch allocates a job id under an exclusive lock (`state/lock`, fcntl), stores the job
  (options, command line, script) as `state/jobs/<id>.json` (written atomically), starts the job
  script in the background in a new session (so that scancel can kill its process group) and
  prints what real sbatch prints: `<id>` with --parsable (`<id>;<cluster>` with --clusters),
  else `Submitted batch job <id>`. The job runs in -D with the submitter's environment
  (--export=ALL) plus the SLURM_* variables of a batch job; its stdout and stderr go to
  --output (%j, %x, %u, %N, %% replaced; default slurm-%j.out). States go
  PENDING -> RUNNING -> COMPLETED / FAILED (ExitCode "<rc>:0") / TIMEOUT (past -t) / CANCELLED.
  Unknown options, an unknown account or partition, and requests that the partition cannot
  hold (GPUs on `cpu`, more CPUs, memory or time than its node/limit) are refused with SLURM's
  messages and exit status 1. --array is not emulated (refused).
- srun (inside a job only) records its command line in `state/srun.log`, refuses a step that
  asks for more GPUs or CPUs than the allocation holds, and execs the command.
- sacct, squeue answer from the job files: the fields and formats the plugin asks for
  (sacct --parsable2/--noheader/-X/--format, squeue --format=%i|%T --states=all ...).
- scancel marks jobs CANCELLED and kills their process groups.
- sinfo, scontrol show config|partition|job, sacctmgr list user|account: static answers
  describing partitions `cpu` (default) and `gpu` (4 GPUs) and the accounts in
  FAKE_SLURM_ACCOUNTS (comma separated; default "genfields-test").

Environment knobs: FAKE_SLURM_PENDING_SECONDS (time a job stays PENDING, default 0).
Only the standard library is used, so any python3 runs these commands.
"""

from __future__ import annotations

import fcntl
import getpass
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

CLUSTER = "fakecluster"
NODE = "fakenode01"
# name -> (cpus, mem_mb, gpus, max time); the first is the default partition
PARTITIONS = {
    "cpu": {"cpus": 64, "mem_mb": 256000, "gpus": 0, "max_time": "2-00:00:00"},
    "gpu": {"cpus": 32, "mem_mb": 512000, "gpus": 4, "max_time": "2-00:00:00"},
}
DEFAULT_PARTITION = "cpu"
ACTIVE = ("PENDING", "RUNNING", "COMPLETING")


class SlurmError(Exception):
    """A refusal that the command reports on stderr with exit status 1."""


# ----------------------------------------------------------------------------- state


def state_dir() -> Path:
    path = os.environ.get("FAKE_SLURM_STATE")
    if not path:
        raise SlurmError("FAKE_SLURM_STATE is not set: the fake SLURM needs a state folder")
    root = Path(path)
    (root / "jobs").mkdir(parents=True, exist_ok=True)
    return root


@contextmanager
def locked():
    """Exclusive lock over the whole state folder (id allocation, job updates)."""
    with open(state_dir() / "lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def job_path(jobid: str) -> Path:
    return state_dir() / "jobs" / f"{jobid}.json"


def read_job(jobid: str) -> dict | None:
    try:
        return json.loads(job_path(jobid).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def write_job(job: dict) -> None:
    path = job_path(job["id"])
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(job, indent=1))
    os.replace(tmp, path)


def all_jobs() -> list[dict]:
    jobs = []
    for path in sorted(state_dir().glob("jobs/*.json"), key=lambda p: int(p.stem)):
        job = read_job(path.stem)
        if job:
            jobs.append(job)
    return jobs


def update_job(jobid: str, **changes) -> dict | None:
    with locked():
        job = read_job(jobid)
        if job is None:
            return None
        job.update(changes)
        write_job(job)
        return job


def append_log(name: str, record: dict) -> None:
    with locked(), open(state_dir() / name, "a") as fh:
        fh.write(json.dumps(record) + "\n")


# ----------------------------------------------------------------------------- option parsing


def parse_options(argv, with_value, flags, stop_at_positional=True):
    """getopt_long-like parsing: --name=value, --name value, -Xvalue, -X value, -abc flags.
    Returns (options as a list of (name, value)), positional arguments). Names are given
    without dashes; a short alias maps through the `with_value`/`flags` dicts."""
    opts, rest = [], []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest.extend(argv[i + 1 :])
            break
        if arg.startswith("--"):
            name, eq, value = arg[2:].partition("=")
            if name in with_value:
                if not eq:
                    i += 1
                    if i >= len(argv):
                        raise SlurmError(f"option '--{name}' requires an argument")
                    value = argv[i]
                opts.append((with_value[name], value))
            elif name in flags:
                if eq:
                    raise SlurmError(f"option '--{name}' doesn't allow an argument")
                opts.append((flags[name], None))
            else:
                raise SlurmError(f"unrecognized option '{arg}'")
        elif arg.startswith("-") and len(arg) > 1:
            j = 1
            while j < len(arg):
                ch = arg[j]
                if ch in with_value:
                    value = arg[j + 1 :]
                    if not value:
                        i += 1
                        if i >= len(argv):
                            raise SlurmError(f"option requires an argument -- '{ch}'")
                        value = argv[i]
                    opts.append((with_value[ch], value))
                    break
                if ch in flags:
                    opts.append((flags[ch], None))
                    j += 1
                    continue
                raise SlurmError(f"invalid option -- '{ch}'")
        else:
            if stop_at_positional:
                rest.extend(argv[i:])
                break
            rest.append(arg)
        i += 1
    return opts, rest


def time_to_seconds(spec: str) -> int:
    """SLURM time limits: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S (and UNLIMITED)."""
    spec = str(spec).strip()
    if spec.upper() in ("UNLIMITED", "INFINITE"):
        return 10**9
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", spec)
    if not m:
        raise SlurmError("Invalid time limit specification")
    days, a, b, c = m.groups()
    if days is not None:
        h, mi, s = int(a), int(b or 0), int(c or 0)
        return int(days) * 86400 + h * 3600 + mi * 60 + s
    if c is not None:
        return int(a) * 3600 + int(b) * 60 + int(c)
    if b is not None:
        return int(a) * 60 + int(b)
    return int(a) * 60


def seconds_to_slurm(seconds: float) -> str:
    seconds = int(seconds)
    days, rem = divmod(seconds, 86400)
    h, rem = divmod(rem, 3600)
    mi, s = divmod(rem, 60)
    return (f"{days}-" if days else "") + f"{h:02d}:{mi:02d}:{s:02d}"


def iso(t: float | None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(t)) if t else "Unknown"


def mem_to_mb(spec: str) -> int:
    """--mem values: a number of MB, or with a K/M/G/T suffix."""
    number, unit = re.fullmatch(r"(\d+)([KMGT]?)", spec).groups()
    return int(int(number) * {"K": 1 / 1024, "": 1, "M": 1, "G": 1024, "T": 1024**2}[unit])


def accounts() -> list[str]:
    return [a.strip() for a in os.environ.get("FAKE_SLURM_ACCOUNTS", "genfields-test").split(",") if a.strip()]


def gpu_count(spec: str | None) -> int:
    """--gpus=[type:]N, --gres=gpu[:type]:N  ->  N."""
    if not spec:
        return 0
    m = re.fullmatch(r"(?:[A-Za-z0-9_.]+:)?(\d+)", spec)
    if not m:
        raise SlurmError(f"Invalid GPU specification: {spec}")
    return int(m.group(1))


def gres_gpu_count(spec: str | None) -> int:
    total = 0
    for item in (spec or "").split(","):
        parts = item.split(":")
        if parts[0] == "gpu":
            total += int(parts[-1]) if len(parts) > 1 and parts[-1].isdigit() else 1
    return total


# ----------------------------------------------------------------------------- sbatch

SBATCH_VALUE = {
    "job-name": "job-name",
    "J": "job-name",
    "output": "output",
    "o": "output",
    "error": "error",
    "e": "error",
    "comment": "comment",
    "account": "account",
    "A": "account",
    "partition": "partition",
    "p": "partition",
    "time": "time",
    "t": "time",
    "mem": "mem",
    "mem-per-cpu": "mem-per-cpu",
    "mem-per-gpu": "mem-per-gpu",
    "ntasks": "ntasks",
    "n": "ntasks",
    "ntasks-per-node": "ntasks-per-node",
    "ntasks-per-gpu": "ntasks-per-gpu",
    "cpus-per-task": "cpus-per-task",
    "c": "cpus-per-task",
    "cpus-per-gpu": "cpus-per-gpu",
    "chdir": "chdir",
    "D": "chdir",
    "workdir": "chdir",
    "gpus": "gpus",
    "G": "gpus",
    "gres": "gres",
    "constraint": "constraint",
    "C": "constraint",
    "qos": "qos",
    "q": "qos",
    "clusters": "clusters",
    "M": "clusters",
    "nodes": "nodes",
    "N": "nodes",
    "exclude": "exclude",
    "x": "exclude",
    "reservation": "reservation",
    "array": "array",
    "a": "array",
    "wrap": "wrap",
    "export": "export",
    "mail-type": "mail-type",
    "mail-user": "mail-user",
    "dependency": "dependency",
    "d": "dependency",
}
SBATCH_FLAGS = {
    "parsable": "parsable",
    "requeue": "requeue",
    "no-requeue": "no-requeue",
    "exclusive": "exclusive",
    "hold": "hold",
    "H": "hold",
    "quiet": "quiet",
    "Q": "quiet",
}


def sbatch(argv):
    try:
        opts, rest = parse_options(argv, SBATCH_VALUE, SBATCH_FLAGS)
    except SlurmError as e:
        raise SlurmError(f'sbatch: {e}\nTry "sbatch --help" for more information') from None
    o = dict(opts)
    if "array" in o:
        raise SlurmError("sbatch: error: fake SLURM: --array is not emulated")
    if "wrap" in o:
        if rest:
            raise SlurmError("sbatch: error: script arguments not permitted with --wrap option")
        script = f"#!/bin/sh\n# This script was created by sbatch --wrap.\n\n{o['wrap']}\n"
    elif rest and rest[0] != "-":
        try:
            script = Path(rest[0]).read_text()
        except OSError as e:
            raise SlurmError(f"sbatch: error: Unable to open file {rest[0]}: {e.strerror}") from None
    else:
        script = sys.stdin.read()
    if not script.startswith("#!"):
        raise SlurmError(
            "sbatch: error: This does not look like a batch script.  The first\n"
            "sbatch: error: line must start with #! followed by the path to an interpreter."
        )

    partition = o.get("partition", DEFAULT_PARTITION)
    if partition not in PARTITIONS:
        raise SlurmError("sbatch: error: Batch job submission failed: Invalid partition name specified")
    account = o.get("account")
    if account is not None and account.lower() not in accounts():
        raise SlurmError(
            "sbatch: error: Batch job submission failed: Invalid account or account/partition combination specified"
        )
    gpus = gpu_count(o.get("gpus")) + gres_gpu_count(o.get("gres"))
    if gpus > PARTITIONS[partition]["gpus"]:
        raise SlurmError("sbatch: error: Batch job submission failed: Requested node configuration is not available")
    time_limit = time_to_seconds(o["time"]) if "time" in o else None
    if time_limit is not None and time_limit > time_to_seconds(PARTITIONS[partition]["max_time"]):
        raise SlurmError(
            "sbatch: error: Batch job submission failed: Requested time limit is invalid (missing or exceeds some limit)"
        )
    for key in ("mem", "mem-per-cpu", "ntasks", "cpus-per-task", "cpus-per-gpu", "nodes"):
        if key in o and not re.fullmatch(r"\d+[KMGT]?" if key.startswith("mem") else r"\d+", o[key]):
            raise SlurmError(f"sbatch: error: Invalid --{key} specification")
    mem_mb = mem_to_mb(o["mem"]) if "mem" in o else 0
    if mem_mb > PARTITIONS[partition]["mem_mb"]:
        raise SlurmError("sbatch: error: Batch job submission failed: Requested node configuration is not available")
    ntasks = int(o.get("ntasks", 1))
    if "cpus-per-gpu" in o:
        cpus = int(o["cpus-per-gpu"]) * max(gpus, 1)
    else:
        cpus = int(o.get("cpus-per-task", 1)) * ntasks
    if cpus > PARTITIONS[partition]["cpus"]:
        raise SlurmError("sbatch: error: Batch job submission failed: Requested node configuration is not available")

    submit_dir = os.getcwd()
    workdir = o.get("chdir", submit_dir)
    export = o.get("export", "ALL")
    with locked():
        counter = state_dir() / "next_id"
        jobid = int(counter.read_text()) if counter.exists() else 4001
        counter.write_text(str(jobid + 1))
        jobid = str(jobid)
        script_path = state_dir() / "jobs" / f"{jobid}.sh"
        script_path.write_text(script)
        script_path.chmod(0o755)
        job = {
            "id": jobid,
            "argv": argv,
            "options": o,
            "name": o.get("job-name", Path(rest[0]).name if rest else "wrap"),
            "comment": o.get("comment", ""),
            "account": account or "",
            "partition": partition,
            "time_limit": time_limit,
            "gpus": gpus,
            "cpus": cpus,
            "ntasks": ntasks,
            "mem": o.get("mem", ""),
            "workdir": workdir,
            "submit_dir": submit_dir,
            "export": export,
            "output": o.get("output", "slurm-%j.out"),
            "error": o.get("error"),
            "user": getpass.getuser(),
            "state": "PENDING",
            "exit_code": "0:0",
            "reason": "None",
            "submit_time": time.time(),
            "start_time": None,
            "end_time": None,
            "pid": None,
        }
        write_job(job)
    # --export=ALL (the plugin's), NONE, or [ALL,|NONE,]VAR[=value],...
    items = export.split(",")
    env = {} if items[0].upper() == "NONE" else dict(os.environ)
    for item in items[1:] if items[0].upper() in ("ALL", "NONE") else items:
        key, eq, value = item.partition("=")
        if eq:
            env[key] = value
        elif key in os.environ:
            env[key] = os.environ[key]
    env["FAKE_SLURM_STATE"] = str(state_dir())
    if "PATH" not in env:
        env["PATH"] = os.environ.get("PATH", "/usr/bin:/bin")
    subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "__run_job__", jobid],
        env=env,
        cwd=submit_dir,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
    )
    if "parsable" in o:
        print(f"{jobid};{o['clusters']}" if "clusters" in o else jobid)
    else:
        print(f"Submitted batch job {jobid}" + (f" on cluster {o['clusters']}" if "clusters" in o else ""))
    return 0


def expand_filename(pattern: str, job: dict) -> str:
    repl = {
        "j": job["id"],
        "J": job["id"],
        "A": job["id"],
        "a": "4294967294",
        "x": job["name"],
        "u": job["user"],
        "N": NODE,
        "n": "0",
        "t": "0",
        "%": "%",
    }
    return re.sub(r"%([jJAaxuNnt%])", lambda m: repl[m.group(1)], pattern)


def run_job(jobid: str) -> int:
    """The background half of sbatch: this process is the job's session leader."""
    pending = float(os.environ.get("FAKE_SLURM_PENDING_SECONDS", "0"))
    if pending > 0:
        time.sleep(pending)
    with locked():
        job = read_job(jobid)
        if job is None or job["state"] != "PENDING":
            return 0  # cancelled while pending
        job.update(state="RUNNING", start_time=time.time(), pid=os.getpid())
        write_job(job)
    o = job["options"]
    env = dict(os.environ)
    env.pop("FAKE_SLURM_PENDING_SECONDS", None)
    slurm = {
        "SLURM_JOB_ID": jobid,
        "SLURM_JOBID": jobid,
        "SLURM_JOB_NAME": job["name"],
        "SLURM_JOB_USER": job["user"],
        "SLURM_JOB_UID": str(os.getuid()),
        "SLURM_JOB_ACCOUNT": job["account"],
        "SLURM_JOB_PARTITION": job["partition"],
        "SLURM_JOB_QOS": o.get("qos", "normal"),
        "SLURM_CLUSTER_NAME": CLUSTER,
        "SLURM_SUBMIT_DIR": job["submit_dir"],
        "SLURM_SUBMIT_HOST": socket.gethostname(),
        "SLURM_JOB_NODELIST": NODE,
        "SLURM_NODELIST": NODE,
        "SLURMD_NODENAME": NODE,
        "SLURM_JOB_NUM_NODES": "1",
        "SLURM_NNODES": "1",
        "SLURM_NTASKS": str(job["ntasks"]),
        "SLURM_NPROCS": str(job["ntasks"]),
        "SLURM_CPUS_ON_NODE": str(job["cpus"]),
        "SLURM_JOB_CPUS_PER_NODE": str(job["cpus"]),
        "SLURM_TASKS_PER_NODE": str(job["ntasks"]),
        "SLURM_NODEID": "0",
        "SLURM_PROCID": "0",
        "SLURM_LOCALID": "0",
        "SLURM_TASK_PID": str(os.getpid()),
        "SLURM_EXPORT_ENV": job["export"],
        "SLURM_GTIDS": "0",
    }
    for opt, var in (
        ("cpus-per-task", "SLURM_CPUS_PER_TASK"),
        ("cpus-per-gpu", "SLURM_CPUS_PER_GPU"),
        ("mem-per-cpu", "SLURM_MEM_PER_CPU"),
        ("gpus", "SLURM_GPUS"),
        ("ntasks-per-gpu", "SLURM_NTASKS_PER_GPU"),
        ("comment", "SLURM_JOB_COMMENT"),
    ):
        if opt in o:
            slurm[var] = o[opt]
    if "mem" in o:
        slurm["SLURM_MEM_PER_NODE"] = o["mem"]
    if job["gpus"]:
        slurm["SLURM_JOB_GPUS"] = ",".join(map(str, range(job["gpus"])))
        slurm["SLURM_GPUS_ON_NODE"] = str(job["gpus"])
    if job["time_limit"] is not None:
        slurm["SLURM_JOB_END_TIME"] = str(int(time.time() + job["time_limit"]))
    env.update(slurm)

    out_path = Path(job["workdir"], expand_filename(job["output"], job))
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out = open(out_path, "ab")
        err = open(Path(job["workdir"], expand_filename(job["error"], job)), "ab") if job["error"] else out
        # the job script leads its own process group: scancel and the time limit kill all of it
        proc = subprocess.Popen(
            [str(state_dir() / "jobs" / f"{jobid}.sh")],
            cwd=job["workdir"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
    except OSError as e:
        update_job(jobid, state="FAILED", exit_code="1:0", reason=f"JobLaunchFailure ({e})", end_time=time.time())
        return 1
    job = update_job(jobid, pgid=proc.pid)
    if job["state"] == "CANCELLED":  # scancel came between RUNNING and the launch
        kill_group(proc.pid, signal.SIGTERM)
    try:
        rc = proc.wait(timeout=job["time_limit"])
        timed_out = False
    except subprocess.TimeoutExpired:
        timed_out = True
        kill_group(proc.pid, signal.SIGTERM)
        try:
            rc = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            kill_group(proc.pid, signal.SIGKILL)
            rc = proc.wait()
        out.write(
            f"slurmstepd: error: *** JOB {jobid} ON {NODE} CANCELLED AT {iso(time.time())} DUE TO TIME LIMIT ***\n".encode()
        )
    out.flush()
    with locked():
        job = read_job(jobid)
        if job["state"] == "CANCELLED":
            job.update(end_time=job["end_time"] or time.time())
        elif timed_out:
            job.update(state="TIMEOUT", exit_code="0:15", reason="TimeLimit", end_time=time.time())
        elif rc == 0:
            job.update(state="COMPLETED", exit_code="0:0", end_time=time.time())
        elif rc < 0:
            job.update(
                state="CANCELLED" if -rc in (signal.SIGTERM, signal.SIGKILL) else "FAILED",
                exit_code=f"0:{-rc}",
                reason="NonZeroExitCode",
                end_time=time.time(),
            )
        else:
            job.update(state="FAILED", exit_code=f"{rc}:0", reason="NonZeroExitCode", end_time=time.time())
        write_job(job)
    return 0


# ----------------------------------------------------------------------------- srun

SRUN_VALUE = {
    "ntasks": "ntasks",
    "n": "ntasks",
    "cpus-per-task": "cpus-per-task",
    "c": "cpus-per-task",
    "cpus-per-gpu": "cpus-per-gpu",
    "cpu-bind": "cpu-bind",
    "gpus": "gpus",
    "G": "gpus",
    "gres": "gres",
    "nodes": "nodes",
    "N": "nodes",
    "mem": "mem",
    "mem-per-cpu": "mem-per-cpu",
    "jobid": "jobid",
    "job-name": "job-name",
    "J": "job-name",
    "output": "output",
    "o": "output",
    "error": "error",
    "e": "error",
    "time": "time",
    "t": "time",
    "ntasks-per-node": "ntasks-per-node",
    "ntasks-per-gpu": "ntasks-per-gpu",
    "export": "export",
    "chdir": "chdir",
    "D": "chdir",
}
SRUN_FLAGS = {
    "exclusive": "exclusive",
    "overlap": "overlap",
    "label": "label",
    "l": "label",
    "unbuffered": "unbuffered",
    "u": "unbuffered",
    "kill-on-bad-exit": "kill-on-bad-exit",
    "K": "kill-on-bad-exit",
    "quiet": "quiet",
    "Q": "quiet",
}


def srun(argv):
    try:
        opts, command = parse_options(argv, SRUN_VALUE, SRUN_FLAGS)
    except SlurmError as e:
        raise SlurmError(f"srun: {e}") from None
    o = dict(opts)
    jobid = os.environ.get("SLURM_JOB_ID") or o.get("jobid")
    if not jobid:
        raise SlurmError("srun: error: fake SLURM: srun is only emulated inside a job (SLURM_JOB_ID unset)")
    if not command:
        raise SlurmError("srun: fatal: No command given to execute.")
    job = read_job(jobid)
    if job is None or job["state"] != "RUNNING":
        raise SlurmError(f"srun: error: Unable to create step for job {jobid}: Invalid job id specified")
    step_gpus = gpu_count(o.get("gpus")) + gres_gpu_count(o.get("gres"))
    if step_gpus > job["gpus"]:
        raise SlurmError(
            f"srun: error: Unable to create step for job {jobid}: Invalid generic resource (gres) specification"
        )
    step_cpus = int(o.get("cpus-per-task", 1)) * int(o.get("ntasks", 1))
    if step_cpus > job["cpus"]:
        raise SlurmError(
            f"srun: error: Unable to create step for job {jobid}: More processors requested than permitted"
        )
    with locked():
        job = read_job(jobid)
        step = job.get("steps", 0)
        job["steps"] = step + 1
        write_job(job)
    append_log("srun.log", {"job": jobid, "step": step, "argv": argv})
    env = dict(os.environ)
    env.update(
        SLURM_JOB_ID=jobid,
        SLURM_JOBID=jobid,
        SLURM_STEP_ID=str(step),
        SLURM_STEPID=str(step),
        SLURM_PROCID="0",
        SLURM_LOCALID="0",
        SLURM_NODEID="0",
        SLURM_STEP_NUM_TASKS="1",
        SLURM_STEP_NODELIST=NODE,
        SLURM_CPUS_PER_TASK=str(o.get("cpus-per-task", 1)),
    )
    if step_gpus:
        env["SLURM_STEP_GPUS"] = ",".join(map(str, range(step_gpus)))
    try:
        os.execvpe(command[0], command, env)
    except OSError as e:
        raise SlurmError(f"slurmstepd: error: execve(): {command[0]}: {e.strerror}") from None


# ----------------------------------------------------------------------------- sacct

SACCT_VALUE = {
    "format": "format",
    "o": "format",
    "starttime": "starttime",
    "S": "starttime",
    "endtime": "endtime",
    "E": "endtime",
    "name": "name",
    "jobs": "jobs",
    "j": "jobs",
    "user": "user",
    "u": "user",
    "clusters": "clusters",
    "M": "clusters",
    "state": "state",
    "s": "state",
    "partition": "partition",
    "r": "partition",
    "accounts": "accounts",
    "A": "accounts",
}
SACCT_FLAGS = {
    "allocations": "allocations",
    "X": "allocations",
    "parsable": "parsable",
    "p": "parsable",
    "parsable2": "parsable2",
    "P": "parsable2",
    "noheader": "noheader",
    "n": "noheader",
    "allusers": "allusers",
    "a": "allusers",
    "units": "units",
}


def job_field(job: dict, field: str, step: str | None = None) -> str:
    jid = job["id"] + (f".{step}" if step is not None else "")
    now = time.time()
    start, end = job.get("start_time"), job.get("end_time")
    elapsed = ((end or now) - start) if start else 0
    state = job["state"]
    if state == "CANCELLED" and step is None:
        state = f"CANCELLED by {os.getuid()}"
    values = {
        "jobid": jid,
        "jobidraw": jid,
        "jobname": "batch" if step == "batch" else job["name"],
        "state": state,
        "exitcode": job["exit_code"],
        "account": job["account"],
        "partition": job["partition"],
        "nodelist": NODE if start else "None assigned",
        "reason": job.get("reason", "None"),
        "elapsed": seconds_to_slurm(elapsed),
        "elapsedraw": str(int(elapsed)),
        "start": iso(start),
        "end": iso(end),
        "submit": iso(job["submit_time"]),
        "comment": job["comment"],
        "alloccpus": str(job["cpus"]),
        "reqcpus": str(job["cpus"]),
        "reqmem": (job["mem"] + "M") if job["mem"] and job["mem"].isdigit() else job["mem"],
        "user": job["user"],
        "cluster": CLUSTER,
        "timelimit": seconds_to_slurm(job["time_limit"] or 0),
        "alloctres": f"cpu={job['cpus']}" + (f",gres/gpu={job['gpus']}" if job["gpus"] else ""),
        "maxrss": "0",
        "totalcpu": "00:00:00",
        "cputime": seconds_to_slurm(elapsed * job["cpus"]),
        "cputimeraw": str(int(elapsed * job["cpus"])),
        "nnodes": "1",
        "ncpus": str(job["cpus"]),
        "workdir": job["workdir"],
    }
    key = field.lower()
    if key not in values:
        raise SlurmError(f'sacct: fatal: Invalid field requested: "{field}"')
    return values[key]


def render(rows, fields, parsable, parsable2, header):
    """sacct/sacctmgr output: `a|b` (--parsable2), `a|b|` (--parsable), or fixed-width columns."""
    specs = []
    for field in fields:
        name, _, width = field.partition("%")
        specs.append((name, int(width) if width.lstrip("-").isdigit() else None))
    lines = []
    if parsable or parsable2:
        end = "|" if parsable else ""
        if header:
            lines.append("|".join(n for n, _ in specs) + end)
        lines += ["|".join(row) + end for row in rows]
    else:

        def cell(text, width):
            w = abs(width) if width is not None else 10
            text = text[: w - 1] + "+" if len(text) > w else text  # sacct marks cut values with +
            return text.ljust(w) if (width is not None and width < 0) else text.rjust(w)

        if header:
            lines.append(" ".join(cell(n, w) for n, w in specs))
            lines.append(" ".join("-" * abs(w if w is not None else 10) for _, w in specs))
        lines += [" ".join(cell(v, w) for v, (_, w) in zip(row, specs)) for row in rows]
    return "\n".join(lines) + ("\n" if lines else "")


def sacct(argv):
    try:
        opts, rest = parse_options(argv, SACCT_VALUE, SACCT_FLAGS, stop_at_positional=False)
    except SlurmError as e:
        raise SlurmError(f'sacct: {e}\nTry "sacct --help" for more information') from None
    o = dict(opts)
    if rest:
        raise SlurmError(f"sacct: error: Unknown arguments: {' '.join(rest)}")
    fields = (o.get("format") or "JobID,JobName,Partition,Account,AllocCPUS,State,ExitCode").split(",")
    # -j ID lists the allocation (and its steps unless -X); -j ID.STEP lists that step only
    wanted = {j.strip().split("_")[0] for j in o["jobs"].split(",") if j.strip()} if "jobs" in o else None
    names = set(o["name"].split(",")) if "name" in o else None
    rows = []
    for job in all_jobs():
        if names is not None and job["name"] not in names:
            continue
        steps = [] if job["start_time"] is None else ["batch"] + [str(s) for s in range(job.get("steps", 0))]
        candidates = [None] + steps
        for step in candidates:
            jid = job["id"] + (f".{step}" if step is not None else "")
            if wanted is None or job["id"] in wanted:
                if step is not None and "allocations" in o:
                    continue
            elif jid not in wanted:
                continue
            rows.append([job_field(job, f.partition("%")[0], step) for f in fields])
    sys.stdout.write(render(rows, fields, "parsable" in o, "parsable2" in o, "noheader" not in o))
    return 0


# ----------------------------------------------------------------------------- squeue

SQUEUE_VALUE = {
    "format": "format",
    "o": "format",
    "states": "states",
    "t": "states",
    "name": "name",
    "n": "name",
    "jobs": "jobs",
    "j": "jobs",
    "user": "user",
    "u": "user",
    "partition": "partition",
    "p": "partition",
    "account": "account",
    "A": "account",
    "clusters": "clusters",
    "M": "clusters",
}
SQUEUE_FLAGS = {"noheader": "noheader", "h": "noheader", "all": "all", "a": "all", "me": "me"}
COMPACT = {
    "PENDING": "PD",
    "RUNNING": "R",
    "COMPLETED": "CD",
    "FAILED": "F",
    "CANCELLED": "CA",
    "TIMEOUT": "TO",
    "COMPLETING": "CG",
    "NODE_FAIL": "NF",
    "PREEMPTED": "PR",
    "OUT_OF_MEMORY": "OOM",
}


def squeue(argv):
    try:
        opts, rest = parse_options(argv, SQUEUE_VALUE, SQUEUE_FLAGS, stop_at_positional=False)
    except SlurmError as e:
        raise SlurmError(f'squeue: {e}\nTry "squeue --help" for more information') from None
    if rest:
        raise SlurmError(f"squeue: error: Unrecognized option: {rest[0]}")
    o = dict(opts)
    fmt = o.get("format", "%.18i %.9P %.8j %.8u %.2t %.10M %.6D %R")
    states = {s.strip().upper() for s in o.get("states", "").split(",") if s.strip()}
    names = set(o["name"].split(",")) if "name" in o else None
    wanted = set(o["jobs"].split(",")) if "jobs" in o else None
    now = time.time()

    def code(job, letter):
        start = job.get("start_time")
        return {
            "i": job["id"],
            "A": job["id"],
            "T": job["state"],
            "t": COMPACT.get(job["state"], job["state"][:2]),
            "j": job["name"],
            "u": job["user"],
            "P": job["partition"],
            "a": job["account"],
            "M": seconds_to_slurm(((job.get("end_time") or now) - start) if start else 0),
            "D": "1",
            "C": str(job["cpus"]),
            "k": job["comment"],
            "l": seconds_to_slurm(job["time_limit"] or 0),
            "R": (
                NODE
                if job["state"] == "RUNNING"
                else ("(None)" if job["state"] == "PENDING" else "(" + job.get("reason", "None") + ")")
            ),
            "N": NODE if start else "",
            "r": job.get("reason", "None"),
        }.get(letter, "")

    def fmt_line(job=None):
        def sub(m):
            align, width, letter = m.group(1), m.group(2), m.group(3)
            text = (
                code(job, letter)
                if job
                else {
                    "i": "JOBID",
                    "A": "JOBID",
                    "T": "STATE",
                    "t": "ST",
                    "j": "NAME",
                    "u": "USER",
                    "P": "PARTITION",
                    "a": "ACCOUNT",
                    "M": "TIME",
                    "D": "NODES",
                    "R": "NODELIST(REASON)",
                }.get(letter, letter.upper())
            )
            if width:
                w = int(width)
                text = text[:w]
                text = text.rjust(w) if align == "." else text.ljust(w)
            return text

        return re.sub(r"%(\.?)(\d*)([A-Za-z])", sub, fmt)

    lines = [] if "noheader" in o else [fmt_line()]
    for job in all_jobs():
        if names is not None and job["name"] not in names:
            continue
        if wanted is not None and job["id"] not in wanted:
            continue
        if "ALL" in states:
            pass
        elif states:
            if job["state"] not in states and COMPACT.get(job["state"]) not in states:
                continue
        elif job["state"] not in ACTIVE:
            continue
        lines.append(fmt_line(job))
    sys.stdout.write("\n".join(lines) + ("\n" if lines else ""))
    return 0


# ----------------------------------------------------------------------------- scancel


def scancel(argv):
    try:
        opts, ids = parse_options(
            argv,
            {
                "clusters": "clusters",
                "M": "clusters",
                "signal": "signal",
                "s": "signal",
                "name": "name",
                "n": "name",
                "user": "user",
                "u": "user",
            },
            {"quiet": "quiet", "Q": "quiet", "batch": "batch", "b": "batch", "full": "full", "f": "full"},
            stop_at_positional=False,
        )
    except SlurmError as e:
        raise SlurmError(f"scancel: {e}") from None
    o = dict(opts)
    if "name" in o:
        ids += [j["id"] for j in all_jobs() if j["name"] == o["name"]]
    rc = 0
    for raw in ids:
        jobid = raw.split("_")[0].split(".")[0]
        with locked():
            job = read_job(jobid)
            if job is None:
                print(f"scancel: error: Kill job error on job id {raw}: Invalid job id specified", file=sys.stderr)
                rc = 1
                continue
            if job["state"] not in ACTIVE:
                continue
            pgid = job.get("pgid")
            job.update(state="CANCELLED", exit_code="0:15", reason="None", end_time=time.time())
            write_job(job)
        if pgid:
            kill_group(pgid, signal.SIGTERM)
    return rc


def kill_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


# ----------------------------------------------------------------------------- sinfo / scontrol / sacctmgr


def sinfo(argv):
    try:
        opts, rest = parse_options(
            argv,
            {
                "format": "format",
                "o": "format",
                "partition": "partition",
                "p": "partition",
                "clusters": "clusters",
                "M": "clusters",
                "nodes": "nodes",
                "n": "nodes",
            },
            {
                "noheader": "noheader",
                "h": "noheader",
                "summarize": "summarize",
                "s": "summarize",
                "long": "long",
                "l": "long",
                "Node": "Node",
                "N": "Node",
            },
            stop_at_positional=False,
        )
    except SlurmError as e:
        raise SlurmError(f"sinfo: {e}") from None
    o = dict(opts)
    fmt = o.get("format", "%9P %.5a %.10l %.6D %.6t %N")
    only = set(o["partition"].split(",")) if "partition" in o else None

    def code(name, letter):
        p = PARTITIONS[name]
        return {
            "P": name + ("*" if name == DEFAULT_PARTITION else ""),
            "R": name,
            "a": "up",
            "l": p["max_time"],
            "D": "1",
            "t": "idle",
            "T": "idle",
            "N": NODE,
            "c": str(p["cpus"]),
            "m": str(p["mem_mb"]),
            "G": f"gpu:{p['gpus']}" if p["gpus"] else "(null)",
        }.get(letter, "")

    header = {
        "P": "PARTITION",
        "R": "PARTITION",
        "a": "AVAIL",
        "l": "TIMELIMIT",
        "D": "NODES",
        "t": "STATE",
        "T": "STATE",
        "N": "NODELIST",
        "c": "CPUS",
        "m": "MEMORY",
        "G": "GRES",
    }

    def line(name=None):
        def sub(m):
            align, width, letter = m.groups()
            text = code(name, letter) if name else header.get(letter, letter)
            if width:
                text = text.rjust(int(width)) if align == "." else text.ljust(int(width))
            return text

        return re.sub(r"%(\.?)(\d*)([A-Za-z])", sub, fmt).rstrip()

    lines = [] if "noheader" in o else [line()]
    lines += [line(name) for name in PARTITIONS if only is None or name in only]
    print("\n".join(lines))
    return 0


def scontrol(argv):
    args = [a for a in argv if not a.startswith("-M") and not a.startswith("--clusters")]
    if "-M" in argv:  # `-M cluster`: drop the value too
        i = argv.index("-M")
        args = [a for k, a in enumerate(argv) if k not in (i, i + 1)]
    if len(args) >= 2 and args[0] == "show" and args[1] == "config":
        print(f"Configuration data as of {iso(time.time())}")
        for key, value in [
            ("AccountingStorageType", "accounting_storage/slurmdbd"),
            ("ClusterName", CLUSTER),
            ("GresTypes", "gpu"),
            ("MaxArraySize", "1001"),
            ("MaxJobCount", "10000"),
            ("MinJobAge", "300 sec"),
            ("SLURM_VERSION", "23.11.10"),
            ("SelectType", "select/cons_tres"),
        ]:
            print(f"{key:<31} = {value}")
        return 0
    if len(args) >= 2 and args[0] == "show" and args[1] in ("partition", "partitions"):
        names = args[2:3] or list(PARTITIONS)
        for name in names:
            if name not in PARTITIONS:
                raise SlurmError(f"Partition {name} not found")
            p = PARTITIONS[name]
            tres = f"cpu={p['cpus']},mem={p['mem_mb']}M,node=1,billing={p['cpus']}"
            if p["gpus"]:
                tres += f",gres/gpu={p['gpus']}"
            print(
                f"PartitionName={name}\n"
                f"   AllowGroups=ALL AllowAccounts=ALL AllowQos=ALL\n"
                f"   Default={'YES' if name == DEFAULT_PARTITION else 'NO'} QoS=N/A\n"
                f"   MaxNodes=UNLIMITED MaxTime={p['max_time']} MinNodes=0\n"
                f"   Nodes={NODE}\n"
                f"   State=UP TotalCPUs={p['cpus']} TotalNodes=1\n"
                f"   DefMemPerCPU=4000 MaxMemPerNode=UNLIMITED\n"
                f"   TRES={tres}\n"
            )
        return 0
    if len(args) >= 3 and args[0] == "show" and args[1] == "job":
        job = read_job(args[2].split("_")[0])
        if job is None:
            raise SlurmError("slurm_load_jobs error: Invalid job id specified")
        print(
            f"JobId={job['id']} JobName={job['name']}\n   UserId={job['user']} Account={job['account']}\n"
            f"   JobState={job['state']} Reason={job.get('reason', 'None')} ExitCode={job['exit_code']}\n"
            f"   Partition={job['partition']} NodeList={NODE}\n   NumCPUs={job['cpus']} "
            f"TRES=cpu={job['cpus']}"
            + (f",gres/gpu={job['gpus']}" if job["gpus"] else "")
            + f"\n   WorkDir={job['workdir']}\n   StdOut={expand_filename(job['output'], job)}\n"
        )
        return 0
    raise SlurmError(f"scontrol: fake SLURM does not emulate: {' '.join(argv)}")


def sacctmgr(argv):
    flags = {"-n", "--noheader", "-s", "--associations", "-P", "--parsable2", "-p", "--parsable", "-i", "--immediate"}
    opts = [a for a in argv if a in flags]
    words = [a for a in argv if a not in flags]
    if any(w.startswith("-") for w in words):
        raise SlurmError(f"sacctmgr: unrecognized option '{[w for w in words if w.startswith('-')][0]}'")
    fmt = next((w.split("=", 1)[1] for w in words if w.lower().startswith("format=")), None)
    words = [w for w in words if not w.lower().startswith("format=")]
    if len(words) < 2 or words[0] not in ("list", "show"):
        raise SlurmError(f"sacctmgr: fake SLURM does not emulate: {' '.join(argv)}")
    entity = words[1].lower()
    if entity in ("user", "users"):
        users = words[2:] or [getpass.getuser()]
        fields = (fmt or "User,Def Acct,Admin").split(",")
        rows = []
        for user in users:
            for account in accounts() if ("-s" in opts or "--associations" in opts or fmt) else accounts()[:1]:
                vals = {
                    "user": user,
                    "account": account,
                    "def acct": accounts()[0],
                    "defaultaccount": accounts()[0],
                    "admin": "None",
                    "cluster": CLUSTER,
                    "partition": "",
                    "qos": "normal",
                }
                rows.append([vals.get(f.partition("%")[0].lower(), "") for f in fields])
    elif entity in ("account", "accounts"):
        fields = (fmt or "Account,Descr,Org").split(",")
        rows = [
            [{"account": a, "descr": a, "org": a}.get(f.partition("%")[0].lower(), "") for f in fields]
            for a in accounts()
        ]
    else:
        raise SlurmError(f"sacctmgr: fake SLURM does not emulate: {' '.join(argv)}")
    sys.stdout.write(
        render(
            rows,
            fields,
            "-p" in opts or "--parsable" in opts,
            "-P" in opts or "--parsable2" in opts,
            not ("-n" in opts or "--noheader" in opts),
        )
    )
    return 0


COMMANDS = {
    "sbatch": sbatch,
    "srun": srun,
    "sacct": sacct,
    "squeue": squeue,
    "scancel": scancel,
    "sinfo": sinfo,
    "scontrol": scontrol,
    "sacctmgr": sacctmgr,
}


def main(command: str, argv: list[str]) -> int:
    try:
        state_dir()
        append_log("calls.log", {"cmd": command, "argv": argv, "time": time.time()})
        return COMMANDS[command](argv)
    except SlurmError as e:
        print(str(e), file=sys.stderr)
        return 1


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "__run_job__":
        sys.exit(run_job(sys.argv[2]))
    sys.exit(main(Path(sys.argv[0]).name, sys.argv[1:]))
