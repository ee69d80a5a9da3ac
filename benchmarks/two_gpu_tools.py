"""What benchmarks/two_gpu_check.py measures with and how it judges (tests/test_two_gpu_check.py):
the comparisons of two runs (loss curves, weights, HDF5 bytes), the parsing of the lines the jobs
log (device, steps/s, resume), an nvidia-smi watcher, a process runner whose kill reaches
children that live in sessions of their own (as torchrun's workers do), and the summary rows
(bench_summary.py) with their verdicts."""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]

from all_stages import descendants  # noqa: E402
from bench_summary import Target, fmt_number, summary_row  # noqa: E402

from pipeline_lib.training.launch import process_alive  # noqa: E402
from pipeline_lib.training.step import LOSS_TERMS  # noqa: E402  (the columns of losses.csv)

# The DDP tolerance of tests/test_training.py::test_two_processes_under_torchrun_match_one_process:
# final weights within a tenth of one Adam step (atol 1e-4 at lr 1e-3), the total loss curve within 1e-4 relative.
WEIGHT_TOL_LR = 0.1
LOSS_RTOL = 1e-4
DEVICE_LINE = re.compile(r"(?:process (\d+) of (\d+) on|device) (\S+) \[(.*?)\]")
RATE_LINE = re.compile(r"(\d+) steps in ([\d.]+) s \(([\d.]+) steps/s; first step ([\d.]+) s, the others ([\d.]+|-)")
RESUME_LINE = re.compile(r"resuming \S+ from \S+ \(step (\d+) of (\d+)\)")


# -- comparisons (tests/test_two_gpu_check.py) --------------------------------------------------


def read_rows(csv_path) -> list[dict]:
    with open(csv_path, newline="") as fh:
        return [{k: float(v) for k, v in r.items()} for r in csv.DictReader(fh)]


def compare_curves(a: list[dict], b: list[dict]) -> dict:
    """Two runs' loss curves step by step: judged on the total loss (LOSS_RTOL relative), with the
    largest relative difference of each term beside it. A single term can differ far more, in
    relative terms, where it is proportional to the distance trained (L_rec near dS = 0): it is
    then as far apart as the weights are. NaN in both (L_rec on cross steps) agrees."""
    steps_a, steps_b = [int(r["step"]) for r in a], [int(r["step"]) for r in b]
    terms = {}
    for term in LOSS_TERMS:
        worst = 0.0
        for ra, rb in zip(a, b):
            x, y = ra[term], rb[term]
            if math.isnan(x) and math.isnan(y):
                continue
            d = abs(x - y) if math.isfinite(x) and math.isfinite(y) else math.inf
            worst = max(worst, d / max(abs(x), abs(y), 1e-30) if d else 0.0)
        terms[term] = worst
    total_abs = max((abs(ra["total"] - rb["total"]) for ra, rb in zip(a, b)), default=math.inf)
    ok = steps_a == steps_b and len(steps_a) > 0 and terms["total"] <= LOSS_RTOL
    return {
        "same_steps": steps_a == steps_b,
        "steps": len(steps_a),
        "max_rel": terms["total"],
        "max_abs": total_abs,
        "max_rel_per_term": terms,
        "ok": ok,
    }


def every_step_once(rows: list[dict], num_steps: int) -> bool:
    return [int(r["step"]) for r in rows] == list(range(num_steps))


def compare_weights(path_a, path_b, lr: float) -> dict:
    """Largest difference of the two M_refs' weights, also in Adam steps (units of lr)."""
    from pipeline_lib.mref import load_mapper

    a, b = load_mapper(path_a)[0].state_dict(), load_mapper(path_b)[0].state_dict()
    diff = max(float((a[k] - b[k]).abs().max()) for k in a)
    moved = max(float(v.abs().max()) for k, v in a.items() if k.startswith("head"))
    return {"max_abs": diff, "in_lr": diff / lr, "head_moved": moved, "ok": diff <= WEIGHT_TOL_LR * lr}


def hdf5_digests(path) -> dict:
    """sha256 of every dataset's bytes in an HDF5 file (virtual datasets read through)."""
    import h5py

    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(
            lambda name, obj: (
                out.update({name: hashlib.sha256(obj[()].tobytes()).hexdigest()})
                if isinstance(obj, h5py.Dataset)
                else None
            )
        )
    return out


def device_lines(log_text: str) -> list[dict]:
    """The device lines of a job's log: rank (None for a one-process job), device, GPU UUID,
    CUDA_VISIBLE_DEVICES and pid."""
    found = []
    for m in DEVICE_LINE.finditer(log_text):
        info = m.group(4)
        uuid = re.search(r"uuid (\S+?);", info)
        visible = re.search(r"CUDA_VISIBLE_DEVICES=([^;]*)", info)
        pid = re.search(r"pid (\d+)", info)
        found.append(
            {
                "rank": int(m.group(1)) if m.group(1) else None,
                "device": m.group(3),
                "info": info,
                "uuid": uuid and uuid.group(1),
                "visible": visible and visible.group(1),
                "pid": pid and int(pid.group(1)),
            }
        )
    return found


def distinct_devices(lines: list[dict]) -> bool | None:
    """Whether the processes ran on different GPUs (None on the CPU, where it has no meaning)."""
    if not lines or any(x["uuid"] is None for x in lines):
        return None
    return len({x["uuid"] for x in lines}) == len(lines)


# -- processes ------------------------------------------------------------------------------


class GpuWatcher:
    """`nvidia-smi --query-compute-apps` every half second: which pids held which GPU, when."""

    def __init__(self):
        self.samples: list[tuple[float, list[tuple[int, str, int]]]] = []
        self.enabled = shutil.which("nvidia-smi") is not None
        self._stop = threading.Event()
        if self.enabled:
            threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        cmd = ["nvidia-smi", "--query-compute-apps=pid,gpu_uuid,used_memory", "--format=csv,noheader,nounits"]
        while not self._stop.wait(0.5):
            try:
                text = subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout
            except (OSError, subprocess.SubprocessError):
                continue
            apps = []
            for line in text.splitlines():
                parts = [p.strip() for p in line.split(",")]
                if len(parts) == 3 and parts[0].isdigit():
                    apps.append((int(parts[0]), parts[1], int(parts[2]) if parts[2].isdigit() else -1))
            self.samples.append((time.time(), apps))

    def gpus_of(self, pid: int, since: float = 0.0) -> dict:
        """{GPU UUID: largest MiB seen} of one pid after `since`."""
        seen: dict = {}
        for t, apps in self.samples:
            for p, uuid, mib in apps:
                if p == pid and t >= since:
                    seen[uuid] = max(seen.get(uuid, 0), mib)
        return seen

    def together(self, pids: list[int], since: float = 0.0) -> bool:
        """Whether one sample saw every pid at once, each on a GPU of its own."""
        for t, apps in self.samples:
            where = {p: u for p, u, _ in apps if p in pids}
            if t >= since and len(where) == len(pids) and len(set(where.values())) == len(pids):
                return True
        return False

    def stop(self):
        self._stop.set()


def run_process(argv, log_path: Path, timeout: float, kill_when=None, grace: float = 10.0) -> dict:
    """Run argv in its own session, output to log_path; SIGKILL its whole group when
    `kill_when()` turns true or `timeout` passes. Returns rc, seconds, killed, timed_out, and after
    a kill the processes still running `grace` seconds later (then killed one by one)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env, start_new_session=True)
        killed = timed_out = False
        while proc.poll() is None:
            if time.time() - t0 > timeout:
                timed_out = True
            elif kill_when is not None and kill_when():
                killed = True
            if killed or timed_out:
                group = [proc.pid, *descendants(proc.pid)]
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                t_kill = time.time()
                while time.time() - t_kill < grace and any(process_alive(p) for p in group):
                    time.sleep(0.1)
                left = [p for p in group if process_alive(p)]
                for p in left:  # torchrun's workers have sessions of their own: the group kill misses them
                    os.kill(p, signal.SIGKILL)
                return {
                    "rc": None,
                    "seconds": time.time() - t0,
                    "killed": killed,
                    "timed_out": timed_out,
                    "pids": group,
                    "alive_after_kill": left,
                    "gone_after_s": time.time() - t_kill,
                }
            time.sleep(0.1)
    return {"rc": proc.returncode, "seconds": time.time() - t0, "killed": False, "timed_out": False}


def snakemake_works() -> bool:
    """Whether `python -m snakemake` runs here (its wheels may be half-installed on a device)."""
    if importlib.util.find_spec("snakemake") is None:
        return False
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--version"], capture_output=True, timeout=120)
    return proc.returncode == 0


def log_overlap(spans) -> float:
    """Seconds during which every job was running (from their logs' first and last lines)."""
    from datetime import datetime

    if len(spans) < 2 or any(a is None for a, _ in spans):
        return 0.0
    parse = [
        (datetime.strptime(a, "%Y-%m-%d %H:%M:%S,%f"), datetime.strptime(b, "%Y-%m-%d %H:%M:%S,%f")) for a, b in spans
    ]
    return max(0.0, (min(b for _, b in parse) - max(a for a, _ in parse)).total_seconds())


# -- the summary (bench_summary.py's rows) ------------------------------------------------------


def summary_rows(report: dict) -> list:
    rows = []
    ds = report.get("dataset")
    if ds:
        two = ds["runs"][2]
        env = ", ".join(
            f"{Path(j['log']).stem}: CUDA_VISIBLE_DEVICES={j['device'] and j['device']['visible']}" for j in two["jobs"]
        )
        distinct = two["distinct"] if not report["smoke"] else True  # on the CPU: no GPUs to tell apart
        ok = bool(distinct) and two["overlap_s"] > 0 and two["nvidia_smi_together"] is not False
        rows.append(
            summary_row(
                "Two GPUs: 2 dataset shard jobs at once, each on its own GPU",
                "yes" if ok else "NO",
                None,
                "",
                "distinct GPUs, concurrent",
                f"{env}; logs overlap {two['overlap_s']:.1f} s; "
                f"nvidia-smi saw both at once: {two['nvidia_smi_together']}; runner {ds['runner']}",
                met=ok,
            )
        )
        differ = [k for k, v in ds["identical"].items() if not v]
        rows.append(
            summary_row(
                f"Two GPUs: dataset ({ds['faces']} faces) 2 jobs vs 1, bit-identical",
                "no" if differ else "yes",
                None,
                "",
                "identical",
                f"differ: {differ}" if differ else f"{len(ds['identical'])} datasets, sha256",
                met=not differ,
            )
        )
    tr = report.get("training", {})
    one, two = tr.get("one_gpu"), tr.get("two_gpus")
    if two:
        ranks = [(d["rank"], d["device"], d["uuid"]) for d in two["devices"] if d["rank"] is not None]
        distinct = None if report["smoke"] else bool(two["distinct"])
        rows.append(
            summary_row(
                "Two GPUs: train_mref ranks on distinct GPUs",
                {True: "yes", False: "NO", None: "-"}[distinct],
                None,
                "",
                "distinct",
                f"rank, device, uuid: {ranks}; rc {two['rc']}",
                met=distinct,
            )
        )
    if "curves" in tr:
        c, w = tr["curves"], tr["weights"]
        terms = ", ".join(f"{k} {v:.2g}" for k, v in c["max_rel_per_term"].items() if k != "total")
        rows.append(
            summary_row(
                "Two GPUs: total loss curve vs one GPU (same global batch), max rel diff",
                c["max_rel"],
                None,
                "",
                Target("<=", LOSS_RTOL),
                f"{c['steps']} steps; per term (not judged): {terms}",
                ratio=False,
            )
        )
        rows.append(
            summary_row(
                "Two GPUs: final M_ref weights vs one GPU, max diff in Adam steps (lr)",
                w["in_lr"],
                None,
                "",
                Target("<=", WEIGHT_TOL_LR),
                f"max abs {w['max_abs']:.3g}; the head moved up to {w['head_moved']:.3g}",
                ratio=False,
            )
        )
    if one and two:
        rows.append(
            summary_row(
                "Two GPUs: train_mref steps/s (float32 eager), 2 GPUs vs 1",
                two.get("steps_per_s"),
                one.get("steps_per_s"),
                "steps/s",
                None,
                "after the first step, same global batch",
            )
        )
    kill, res = tr.get("killed"), tr.get("resumed")
    if kill and res:
        ok = bool(
            kill["killed"]
            and res["rc"] == 0
            and res["resumed"]
            and res.get("every_step_once")
            and not kill.get("alive_after_kill")
            and res.get("vs_uninterrupted", {}).get("ok", True)
        )
        v, wv = res.get("vs_uninterrupted", {}), res.get("weights_vs_uninterrupted", {})
        rows.append(
            summary_row(
                "Two GPUs: SIGKILL mid-run, then resume",
                "yes" if ok else "NO",
                None,
                "",
                "resumes, every step once",
                f"resumed from step {res['resumed']}; processes alive 10 s after the kill: "
                f"{kill.get('alive_after_kill')}; total loss vs the uninterrupted run: max rel {v.get('max_rel')}, "
                f"weights {wv.get('in_lr')} Adam steps apart (run-to-run noise on this device)",
                met=ok,
            )
        )
    c2, c1 = tr.get("compiled_two_gpus"), tr.get("compiled_one_gpu")
    if c2:
        rows.append(
            summary_row(
                "Two GPUs: train_mref steps/s bf16 compiled, 2 GPUs (DDP) vs 1 (CUDA graphs)",
                c2.get("steps_per_s"),
                c1 and c1.get("steps_per_s"),
                "steps/s",
                None,
                f"first step (compile) {c2.get('first_step_s')} s vs {c1 and c1.get('first_step_s')} s; "
                f"rc {c2['rc']}/{c1 and c1['rc']}",
            )
        )
    for s in report.get("skipped", []):
        rows.append(summary_row(f"Two GPUs: {s.split(':')[0]}: not run", None, note=s))
    return rows


def print_table(report: dict) -> None:
    print("\n| measurement | two GPUs | one GPU (baseline) | x | target | met | note |\n|---|---|---|---|---|---|---|")
    for r in report.get("summary_rows", []):
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
        met = {True: "yes", False: "NO", None: "-"}[r["met"]]
        print(
            f"| {r['stage']} | {fmt_number(r['ours'])} | {fmt_number(r['baseline'])} | {ratio} | {r['target'] or '-'} "
            f"| {met} | {r['note']} |",
            flush=True,
        )
