"""profiles/slurm with the real snakemake-executor-plugin-slurm, against stand-in SLURM commands.

tests/fake_slurm/ holds sbatch, srun, sacct, squeue, scancel, sinfo, scontrol and sacctmgr that
run every job on this machine (see tests/fake_slurm/_fake_slurm.py). The tests put that folder
first on PATH, give it a state folder, run the tiny pipeline up to one trained M_ref through the
profile (a job of each kind: CPU, one GPU, two GPUs under torchrun), and read what was submitted
from the state folder. The dry run checks the profile's resources of every job of the full DAG.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import h5py
import pytest
import yaml
from test_workflow import TINY, job_counts, write_config

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
FAKE = REPO / "tests" / "fake_slurm"
PROFILE = REPO / "profiles" / "slurm"
# GPUs each GPU rule asks for in the SMALL run: training runs as two processes (torchrun) on
# two GPUs; on this GPU-less machine they are two CPU processes talking through gloo.
GPU_RULES = {
    "synthesize_shard": 1,
    "annotate_dataset": 1,
    "train_mref": 2,
    "evaluate_variant": 1,
    "ablation": 1,
    "sparsity": 1,
    "real_features": 1,
    "latent_model": 1,
    "project_faces": 1,
    "latent_evaluation": 1,
    "sampling_comparison": 1,
    "edit_real_faces": 1,
}
DEFAULT_PARTITION = "cpu"  # the one the fake `sinfo` marks with *

# The tiny config without the field measurement (the pipeline test covers it): every SLURM job
# is a fresh Python that imports torch, so job count and length set this test's duration.
SMALL = json.loads(json.dumps(TINY))
SMALL["generative_fields"]["measure"] = False
SMALL["training"]["gpus"] = 2
SMALL["training"]["variants"]["concat"] = None
SMALL["ablation"]["configs"]["config1"] = None

# What the SLURM run makes: a job of each kind (CPU, one GPU, two GPUs; see pipeline_run).
TARGET = "results/models/euler/mref.pt"

# Made locally before the SLURM run: the demo's stand-ins for downloaded files (on a cluster they
# come from download_weights) and the synthesized faces (GPU and CPU jobs like those below). Every
# SLURM job is a fresh Python and a status poll that backs off by 10 s while nothing finishes.
STAND_INS = ["random_weights", "random_generator"]
FACES = "results/dataset/faces.h5"


def slurm_env(state: Path) -> dict:
    """This environment without any real SLURM job context, the fake commands first on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "SRUN_"))}
    env.update(
        PATH=os.pathsep.join([str(FAKE), str(BIN), os.environ.get("PATH", "")]),
        FAKE_SLURM_STATE=str(state),
        PYTHONUNBUFFERED="1",
    )
    return env


# No test here has a tight wall-clock limit: a run is stopped only when it makes no progress
# (no new output from snakemake, no file written under its folders) for STALL_S seconds, or
# after CAP_S seconds in all. A loaded machine makes the tests slower, not red.
STALL_S = 900
CAP_S = 7200


def newest_change(folders) -> float:
    """The latest modification time of any file under `folders` (0 where there is none)."""
    latest = 0.0
    for folder in folders:
        for root, _, files in os.walk(folder):
            for name in files:
                try:
                    latest = max(latest, os.stat(os.path.join(root, name)).st_mtime)
                except OSError:  # removed while we looked (a temporary file)
                    pass
    return latest


def run_watched(cmd, cwd: Path, env: dict, watch=()) -> subprocess.CompletedProcess:
    """subprocess.run that gives up only on a stall (see STALL_S) or after CAP_S seconds."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=err, text=True)
        start = last_progress = time.monotonic()
        seen = None
        while proc.poll() is None:
            time.sleep(2)
            now = time.monotonic()
            progress = (os.fstat(out.fileno()).st_size, os.fstat(err.fileno()).st_size, newest_change([cwd, *watch]))
            if progress != seen:
                seen, last_progress = progress, now
            if now - last_progress > STALL_S or now - start > CAP_S:
                proc.kill()
                proc.wait()
                out.seek(0)
                err.seek(0)
                why = f"made no progress for {STALL_S} s" if now - last_progress > STALL_S else f"ran past {CAP_S} s"
                # the leftover SLURM jobs are stopped by the callers (kill_leftovers)
                pytest.fail(f"{' '.join(map(str, cmd[1:]))} {why}:\n{(out.read() + err.read())[-3000:]}")
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(cmd, proc.returncode, out.read(), err.read())


def snakemake(*args, cwd: Path, env: dict, watch=()):
    cmd = [str(BIN / "snakemake"), "--snakefile", str(REPO / "Snakefile"), *map(str, args)]
    return run_watched(cmd, cwd=cwd, env=env, watch=watch)


def slurm_run(*args, cwd: Path, state: Path, profile: Path = PROFILE):
    """snakemake through a SLURM profile. Status checks start after 1 s instead of the plugin's
    40 s (a value for a real scheduler); everything else comes from the profile."""
    return snakemake(
        "--profile",
        profile,
        "--directory",
        cwd,
        "--slurm-init-seconds-before-status-checks",
        1,
        *args,
        cwd=cwd,
        env=slurm_env(state),
        watch=[state],
    )


def jobs(state: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((state / "jobs").glob("*.json"))]


def calls(state: Path, command: str) -> list[list[str]]:
    log = state / "calls.log"
    lines = log.read_text().splitlines() if log.exists() else []
    return [rec["argv"] for rec in map(json.loads, lines) if rec["cmd"] == command]


def rule_of(job: dict) -> str:
    """The plugin's --comment is rule_<rule> or rule_<rule>_wildcards_<values>."""
    return re.fullmatch(r"rule_(.+?)(?:_wildcards_.*)?", job["comment"]).group(1)


def kill_leftovers(state: Path) -> None:
    """Stop any job still running (only after a failed or timed-out run)."""
    for job in jobs(state) if (state / "jobs").exists() else []:
        if job["state"] in ("PENDING", "RUNNING"):
            for pid, kill in ((job.get("pgid"), os.killpg), (job.get("pid"), os.kill)):
                if pid:
                    try:
                        kill(pid, signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass


def planned_resources(dry_run_output: str) -> list[tuple[str, dict]]:
    """(rule, {resource: value as printed}) of every job a dry run lists."""
    blocks = re.findall(r"^(?:local)?rule (\w+):\n(.*?)(?=\n\n|\Z)", dry_run_output, flags=re.M | re.S)
    planned = []
    for rule, body in blocks:
        line = re.search(r"^\s+resources: (.*)$", body, flags=re.M)
        planned.append((rule, dict(kv.split("=", 1) for kv in line.group(1).split(", ")) if line else {}))
    return planned


def expected_resources(profile: dict, rule: str) -> dict:
    res = dict(profile.get("default-resources") or {})
    res.update((profile.get("set-resources") or {}).get(rule) or {})
    return res


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory):
    """The tiny pipeline through profiles/slurm, once for the tests below."""
    work = tmp_path_factory.mktemp("slurm_run")
    state = work / "slurm_state"
    cfg = write_config(work / "small.yaml", SMALL)
    for made_here in (["--until", *STAND_INS], [FACES]):  # (--until with merge_dataset misses the shards)
        local = snakemake(
            *made_here, "--directory", work, "--configfile", cfg, "--cores", 2, cwd=work, env=slurm_env(state)
        )
        assert local.returncode == 0, local.stdout[-3000:] + local.stderr[-3000:]
    try:
        # The DAG from the faces to one trained M_ref (3 SLURM jobs): a CPU job and a one-GPU job
        # side by side, then a two-GPU torchrun job that waits for both. Every other stage runs end
        # to end in the local workflow tests, and the dry run below checks its SLURM resources; through
        # SLURM each would be one more submission of the same kind (a fresh Python per job).
        proc = slurm_run(TARGET, "--configfile", cfg, cwd=work, state=state)
        yield work, state, proc
    finally:
        kill_leftovers(state)


def test_dry_run_lists_the_full_reproduction_without_slurm_installed(tmp_path):
    # a dry run plans without submitting: it works on a laptop with no SLURM commands at all
    env = {**os.environ, "PATH": os.pathsep.join([str(BIN), "/usr/bin", "/bin"])}
    proc = snakemake("-n", "--profile", PROFILE, "--directory", tmp_path, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert job_counts(proc.stdout + proc.stderr) == {
        "download_weights": 10,
        "generative_fields": 1,
        "synthesize_shard": 4,
        "merge_dataset": 1,
        "annotate_dataset": 1,
        "style_statistics": 1,
        "train_mref": 4,
        "evaluate_variant": 4,
        "ablation": 5,
        "sparsity": 1,
        "face_size": 1,
        "real_features": 1,
        "report_tables": 1,
        "latent_model": 1,
        "project_faces": 3,
        "latent_evaluation": 1,
        "sampling_comparison": 1,
        "edit_real_faces": 1,
        "latent_report": 1,
        "all": 1,
    }
    # every GPU rule runs on the profile's GPU partition (a GPU asked for elsewhere is refused)
    profile = yaml.safe_load((PROFILE / "config.yaml").read_text())
    for rule in GPU_RULES:
        assert expected_resources(profile, rule).get("slurm_partition") == "gpu", rule
    # the profile's per-rule resources reach every job of the DAG (the SLURM run below submits
    # only some of the rules; the plugin turns these into sbatch flags the same way for all)
    gpus = {
        **dict.fromkeys(GPU_RULES, 1),
        "train_mref": yaml.safe_load((REPO / "config.yaml").read_text())["training"]["gpus"],
    }
    planned = planned_resources(proc.stdout + proc.stderr)
    assert len(planned) == sum(job_counts(proc.stdout + proc.stderr).values())
    for rule, res in planned:
        if rule in ("download_weights", "all"):  # run by Snakemake itself, not submitted
            continue
        want = expected_resources(profile, rule)
        got = {k: res.get(k) for k in ("mem_mb", "runtime", "cpus_per_task", "slurm_partition")}
        assert got == {k: str(want[k]) if k in want else None for k in got}, (rule, res)
        assert int(res.get("gpu", 0)) == gpus.get(rule, 0), (rule, res)  # a GPU rule missing from GPU_RULES fails


def test_pipeline_runs_through_the_slurm_profile(pipeline_run):
    work, state, proc = pipeline_run
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]

    # the targets, made by jobs that ran as SLURM jobs
    res = work / "results"
    with h5py.File(res / "dataset" / "annotations.h5", "r") as f:
        assert f["identity"].shape == (12, 512) and f["pose/fan"].shape == (12, 3)
    with h5py.File(res / "dataset" / "style_stats.h5", "r") as f:
        assert f["V/covariance"].shape == (16, 16)

    submitted = jobs(state)
    assert Counter(map(rule_of, submitted)) == {
        "style_statistics": 1,  # CPU
        "annotate_dataset": 1,  # one GPU
        "train_mref": 1,  # two GPUs, torchrun
    }  # every job up to the target, each a SLURM job
    assert all(job["state"] == "COMPLETED" for job in submitted), [(j["id"], j["state"]) for j in submitted]

    # job ids: unique, and the ones the plugin parsed from sbatch --parsable
    reported = re.findall(r"has been submitted with SLURM jobid (\d+)", out)
    assert sorted(reported, key=int) == sorted((job["id"] for job in submitted), key=int)
    assert len(set(reported)) == len(reported)

    # one run id as job name, which the status queries filter on
    run_ids = {job["name"] for job in submitted}
    assert len(run_ids) == 1
    status_queries = calls(state, "sacct") + calls(state, "squeue")
    assert any(q[q.index("--name") + 1] == next(iter(run_ids)) for q in status_queries if "--name" in q)

    # every sbatch command line against the profile
    profile = yaml.safe_load((PROFILE / "config.yaml").read_text())
    assert len(calls(state, "sbatch")) == len(submitted)
    for job in submitted:
        rule = rule_of(job)
        opts = job["options"]  # the command line as the fake sbatch parsed it
        want = expected_resources(profile, rule)
        where = f"{rule}: sbatch {' '.join(job['argv'])[:400]}"
        assert opts["mem"] == str(want["mem_mb"]), where
        assert opts["time"] == str(want["runtime"]), where
        assert opts["cpus-per-task"] == str(want["cpus_per_task"]), where
        assert opts["partition"] == want.get("slurm_partition", DEFAULT_PARTITION), where
        assert ("requeue" in opts) == bool(profile.get("slurm-requeue")), where
        assert "gres" not in opts, where  # GPUs are asked for with --gpus only
        if rule in GPU_RULES:
            model, n = want.get("gpu_model"), GPU_RULES[rule]
            assert opts.get("gpus") == (f"{model}:{n}" if model else str(n)), where
        else:
            assert "gpus" not in opts and opts.get("ntasks") == "1", where
        assert Path(opts["chdir"]).resolve() == work.resolve() and "wrap" in opts, where

    # inside each job, the jobstep plugin ran the rule in one srun step with the job's GPU
    steps = [json.loads(line) for line in (state / "srun.log").read_text().splitlines()]
    assert sorted(s["job"] for s in steps) == sorted(job["id"] for job in submitted)
    rules = {job["id"]: rule_of(job) for job in submitted}
    for step in steps:
        rule = rules[step["job"]]
        assert (
            (f"--gpus={GPU_RULES[rule]}" in step["argv"])
            if rule in GPU_RULES
            else not any("--gpus" in a for a in step["argv"])
        ), step

    # the training job ran as two processes under torchrun, in one SLURM job
    train_log = (res / "logs" / "train_mref" / "euler.log").read_text()
    assert "launching 2 training processes" in train_log
    assert (res / "models" / "euler" / "mref.pt").exists()

    # nothing left queued or running
    assert calls(state, "scancel") == []


def test_account_and_partition_are_checked_and_passed(tmp_path):
    profile = yaml.safe_load((PROFILE / "config.yaml").read_text())
    cfg = write_config(tmp_path / "small.yaml", SMALL)

    def run_with(account: str, name: str):
        mine = json.loads(json.dumps(profile))
        mine["default-resources"].update(slurm_account=account, slurm_partition="cpu")
        (tmp_path / name).mkdir()
        write_config(tmp_path / name / "config.yaml", mine)
        work, state = tmp_path / f"{name}_work", tmp_path / f"{name}_state"
        work.mkdir()
        try:
            return (
                work,
                state,
                slurm_run(
                    "results/generator/tiny.pt",
                    "--configfile",
                    cfg,
                    cwd=work,
                    state=state,
                    profile=tmp_path / name,
                ),
            )
        finally:
            kill_leftovers(state)

    # an account the user has: validated with sacctmgr, then passed as -A
    work, state, proc = run_with("genfields-test", "good")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert (work / "results" / "generator" / "tiny.pt").exists()
    assert any("list" in argv and "user" in argv for argv in calls(state, "sacctmgr"))
    (job,) = jobs(state)
    opts = job["options"]
    assert opts["account"] == "genfields-test" and opts["partition"] == "cpu"

    # a typo: refused before anything is submitted, naming the account
    work, state, proc = run_with("genfeilds-test", "typo")
    assert proc.returncode != 0
    assert "The given account genfeilds-test appears to be invalid" in proc.stdout + proc.stderr
    assert calls(state, "sbatch") == []
