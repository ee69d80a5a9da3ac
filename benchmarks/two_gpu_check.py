"""Two GPUs for real (issue 17), in one command: NCCL training against one GPU, a SIGKILL and a
resume under torchrun, and two dataset shard jobs sharing the machine, each figure printed
beside its one-GPU baseline from the same run.

    PYTHONPATH=. timeout 540 python benchmarks/two_gpu_check.py --time-budget 450 --out $OUT/two_gpu
    PYTHONPATH=. python benchmarks/two_gpu_check.py --smoke --out /tmp/two_gpu   # CPU, gloo, tiny

In order, each in fresh processes started as the rules' scripts start them:
  dataset   the faces with one shard job (`--resources gpu=1`, the baseline), then with two shard
            jobs at once (`--resources gpu=2`, `dataset.num_shards: 2`): each job's device line
            (GPU UUID, CUDA_VISIBLE_DEVICES, pid; pipeline_lib.devices.describe_device) and the
            GPUs `nvidia-smi --query-compute-apps` saw its pid on; the merged faces compared
            dataset by dataset (sha256 of the bytes). `--runner snakemake` (the default where
            snakemake is importable) runs `snakemake --profile profiles/local-gpu`; `--runner
            jobs` the same job functions, at most N at once, without snakemake;
  training  `train_mref`'s job (start_training) with `training.gpus` 1 and 2 at the same global
            batch, float32 eager, on random weights of the real shapes (paper256 generator,
            IR-SE50, 3DDFA MobileNet-1.0) and the faces above: the loss curves and final weights
            compared, steps/s after the first step, and which GPU each rank ran on;
  kill      the two-GPU job again, SIGKILLed with its whole process group once a checkpoint
            exists and steps beyond it are logged, then rerun: it must resume from the
            checkpoint, log every step exactly once and end where the uninterrupted run ended;
  compiled  (time permitting) the product's settings (bf16, torch.compile): two GPUs (DDP, no
            CUDA graphs) beside one GPU (CUDA graphs), first step (the compile) and steps/s.
Every process runs in its own session and is killed with its children when its share of
`--time-budget` is spent. The JSON (`--out`/two_gpu.json) holds every figure and summary rows
(bench_summary.py); each job's log is kept beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]

from bench_summary import summary_row  # noqa: E402
from two_gpu_tools import (  # noqa: E402
    RATE_LINE,
    RESUME_LINE,
    GpuWatcher,
    compare_curves,
    compare_weights,
    device_lines,
    distinct_devices,
    every_step_once,
    hdf5_digests,
    log_overlap,
    print_table,
    read_rows,
    run_process,
    snakemake_works,
    summary_rows,
)

ENCODERS = {
    "landmarks": {"train": "3ddfa_mb1", "eval": "3ddfa_mb1"},
    "identity": "arcface_ir_se50",
    "attribute": "inception_v3",
}
# Never NVLink multicast (NCCL's NVLS and the like): it can take a shared host's GPUs out of service.
NO_MULTICAST = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}
WEIGHT_FILES = ("arcface_ir_se50", "tddfa_mb1", "tddfa_param_mean_std", "bfm_68_landmarks", "inception_v3_imagenet")

# -- the phases -----------------------------------------------------------------------------


def build_weights(work: Path, smoke: bool) -> tuple[Path, dict]:
    from pipeline_lib.encoders.random_weights import random_weights_file
    from pipeline_lib.generator import save_generator
    from pipeline_lib.generator.stylegan2 import GeneratorConfig, init_random_generator
    from pipeline_lib.weights.registry import REGISTRY

    cfg = GeneratorConfig(z_dim=16, w_dim=16, channel_base=2048, channel_max=8) if smoke else GeneratorConfig()
    gen = work / "generator.pt"
    save_generator(init_random_generator(cfg, seed=0, w_avg_samples=1000), gen)
    files = {name: str(work / REGISTRY[name].filename) for name in WEIGHT_FILES}
    for name, path in files.items():
        random_weights_file(name, path, seed=0)
    return gen, files


def dataset_phase(args, gen: Path, work: Path, watcher: GpuWatcher, report: dict) -> Path:
    from dataset_e2e_benchmark import run_jobs, run_snakemake

    from pipeline_lib.settings import load_config

    n = args.faces
    ds = load_config()["dataset"] | {"num_identity": n * 3 // 4, "num_attribute": n - n * 3 // 4}
    if args.smoke:
        ds |= {"chunk_size": 4, "batch_size": 4, "dtype": "float32", "compile": False}
    runs = {}
    for gpus in (1, 2):
        results = work / f"dataset_{gpus}gpu"
        cfg = ds | {"num_shards": gpus}
        print(f"dataset: {n} faces, {gpus} shard job(s) at once, runner {args.runner} ...", flush=True)
        t0 = time.time()
        if args.runner == "snakemake":
            try:
                run_snakemake(gen, results, cfg, args.device, work, args.smoke, gpus=gpus)
            except (RuntimeError, OSError) as e:  # one GPU call must not be lost to snakemake's install
                print(f"  snakemake failed ({e}); the same jobs without it (--runner jobs) from here on", flush=True)
                report["snakemake_failed"], args.runner = str(e), "jobs"
                shutil.rmtree(results, ignore_errors=True)
                t0 = time.time()
        if args.runner == "jobs":
            run_jobs(gen, results, cfg, args.device, parallel=gpus)
        jobs = []
        for log in sorted((results / "logs" / "synthesize_shard").glob("*.log")):
            text = log.read_text()
            stamps = re.findall(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+)", text, re.M)
            lines = device_lines(text)
            pid = lines[0]["pid"] if lines else None
            jobs.append(
                {
                    "log": str(log),
                    "device": lines[0] if lines else None,
                    "first_log": stamps[0] if stamps else None,
                    "last_log": stamps[-1] if stamps else None,
                    "nvidia_smi": watcher.gpus_of(pid, t0) if pid else {},
                }
            )
            shutil.copy(log, args.out / f"dataset_{gpus}gpu_{log.name}")
        pids = [j["device"]["pid"] for j in jobs if j["device"]]
        runs[gpus] = {
            "seconds": time.time() - t0,
            "jobs": jobs,
            "faces": str(results / "dataset" / "faces.h5"),
            "distinct": distinct_devices([j["device"] for j in jobs if j["device"]]),
            "overlap_s": log_overlap([(j["first_log"], j["last_log"]) for j in jobs]),
            "nvidia_smi_together": watcher.together(pids, t0) if watcher.enabled else None,
        }
        for j in jobs:
            print(
                f"  job {Path(j['log']).name}: {j['device'] and j['device']['info']}; nvidia-smi {j['nvidia_smi']}",
                flush=True,
            )
        print(f"  {runs[gpus]['seconds']:.1f} s; log overlap {runs[gpus]['overlap_s']:.1f} s", flush=True)
    a, b = hdf5_digests(runs[1]["faces"]), hdf5_digests(runs[2]["faces"])
    report["dataset"] = {
        "runs": runs,
        "runner": args.runner,
        "faces": n,
        "identical": {k: a[k] == b.get(k) for k in a},
        "datasets_only_in_2gpu": sorted(set(b) - set(a)),
    }
    print(f"  1 vs 2 GPUs, same bytes: {report['dataset']['identical']}", flush=True)
    return Path(runs[1]["faces"])


ANNOTATE = """
import json, sys
from pipeline_lib.logs import configure
configure()
from pipeline_lib.dataset.annotation import annotate_faces
from pipeline_lib.dataset.statistics import compute_style_stats
from pipeline_lib.devices import resolve_device
from pipeline_lib.encoders import build_encoder
a = json.loads(sys.argv[1])
dev, files = resolve_device(a["device"]), a["files"]
annotate_faces(a["faces"], a["annotations"], {"3ddfa_mb1": build_encoder("3ddfa_mb1", files, dev)},
               build_encoder("arcface_ir_se50", files, dev), build_encoder("inception_v3", files, dev),
               a["batch"], dev, progress=False)
compute_style_stats(a["faces"], a["stats"])
"""

TRAIN = """
import json, sys
from pipeline_lib.logs import configure
configure()
from pipeline_lib.training.launch import start_training
start_training(**json.loads(sys.argv[1]))
"""


def training_cfg(args, gpus: int, compiled: bool = False, checkpoints: bool = False) -> dict:
    """config.yaml's training settings (the real M_ref widths and batch) for a short run. Only the
    killed run writes checkpoints (every third of its steps): one of the real M_ref with its Adam
    state is ~0.4 GB, whose writing would blur the steps/s; no sample grids but the final one."""
    from pipeline_lib.settings import load_config

    steps = args.compiled_steps if compiled else args.steps
    cfg = load_config()["training"] | {
        "gpus": gpus,
        "num_steps": steps,
        "log_every": args.log_every,
        "sample_every": 10**9,
        "checkpoint_every": max(1, steps // 3) if checkpoints else steps,
        "precision": "bfloat16" if compiled else "float32",
        "compile": compiled,
    }
    if args.batch:
        cfg["batch_size"] = args.batch
    if args.smoke:
        cfg |= {"batch_size": 2, "hidden": [32]}
    return cfg


def train_run(args, inputs, name: str, cfg: dict, watcher, timeout: float, kill_when=None, log_name=None) -> dict:
    """One `train_mref` job into work/<name>, its output in <out>/train_<log_name or name>.log."""
    out = args.work / name / "mref.pt"
    job = dict(inputs, out_path=str(out), training_cfg=cfg, variant=args.variant, device_name=args.device)
    log = args.out / f"train_{log_name or name}.log"
    t0 = time.time()
    print(
        f"training {name}: {cfg['gpus']} GPU(s), {cfg['num_steps']} steps, batch {cfg['batch_size']}, "
        f"{cfg['precision']}, compile {cfg['compile']} (limit {timeout:.0f} s) ...",
        flush=True,
    )
    res = run_process([sys.executable, "-c", TRAIN, json.dumps(job)], log, timeout, kill_when)
    text = log.read_text(errors="replace")
    rate = RATE_LINE.findall(text)
    res.update(
        out=str(out), log=str(log), devices=device_lines(text), resumed=[int(m[0]) for m in RESUME_LINE.findall(text)]
    )
    res["distinct"] = distinct_devices([d for d in res["devices"] if d["rank"] is not None])
    res["nvidia_smi"] = {d["pid"]: watcher.gpus_of(d["pid"], t0) for d in res["devices"] if d["pid"]}
    if rate:
        steps, total, _, first, later = rate[-1]
        res.update(
            steps_run=int(steps),
            loop_s=float(total),
            first_step_s=float(first),
            steps_per_s=float(later) if later != "-" else None,
        )
    if res["rc"] not in (0, None) or res["timed_out"]:
        print("\n".join(text.splitlines()[-25:]), flush=True)
    csv_path = out.parent / "logs" / "losses.csv"
    res["rows"] = read_rows(csv_path) if csv_path.exists() else []
    print(
        f"  rc {res['rc']}, {res['seconds']:.1f} s, steps/s after the first {res.get('steps_per_s')}, first step "
        f"{res.get('first_step_s')} s; ranks {[(d['rank'], d['device'], d['uuid']) for d in res['devices']]}",
        flush=True,
    )
    return res


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="folder: two_gpu.json and every job's log")
    ap.add_argument("--time-budget", type=float, default=450.0, help="seconds for everything; later phases are cut")
    ap.add_argument("--smoke", action="store_true", help="CPU, gloo, tiny generator and sizes")
    ap.add_argument("--runner", choices=["snakemake", "jobs"], default=None)
    ap.add_argument("--faces", type=int, default=512)
    ap.add_argument("--steps", type=int, default=60, help="steps of each float32 run")
    ap.add_argument("--batch", type=int, default=None, help="global batch (default: config.yaml's, 6)")
    ap.add_argument("--log-every", type=int, default=5)
    ap.add_argument("--compiled-steps", type=int, default=300)
    ap.add_argument("--variant", default="euler")
    ap.add_argument("--workdir", default=None, help="kept when given (default: a temporary folder, removed)")
    args = ap.parse_args(argv)
    if args.workdir and Path(args.workdir).is_dir() and any(Path(args.workdir).iterdir()):
        ap.error(f"--workdir {args.workdir} is not empty (an earlier run's checkpoints would be resumed)")
    t_start = time.time()
    import torch

    if args.smoke:
        args.device, args.faces, args.steps, args.log_every = "cpu", min(args.faces, 24), min(args.steps, 6), 1
    else:
        args.device = "cuda"
        for var, value in NO_MULTICAST.items():
            os.environ.setdefault(var, value)
    args.runner = args.runner or ("snakemake" if snakemake_works() else "jobs")
    args.out = Path(args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    n_gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    report = {
        "argv": sys.argv,
        "smoke": args.smoke,
        "runner": args.runner,
        "torch": torch.__version__,
        "cuda_devices": n_gpus,
        "skipped": [],
    }
    if not args.smoke and n_gpus < 2:
        msg = f"SKIPPED: this check needs 2 CUDA devices, torch sees {n_gpus} (run it on a two-GPU machine, or --smoke)"
        print(msg, flush=True)
        report["summary_rows"] = [summary_row("Two GPUs (issue 17)", None, note=msg)]
        (args.out / "two_gpu.json").write_text(json.dumps(report, indent=1))
        return
    if n_gpus and shutil.which("nvidia-smi"):
        report["gpus"] = subprocess.run(
            ["nvidia-smi", "--query-gpu=index,uuid,name,memory.total", "--format=csv"], capture_output=True, text=True
        ).stdout
        print(report["gpus"], flush=True)
    # The work folder (weights, faces, checkpoints: gigabytes) stays out of --out, which holds
    # only what is read afterwards; a temporary one is removed at the end.
    args.work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="two-gpu-check-"))
    args.work.mkdir(parents=True, exist_ok=True)
    os.environ["GENFIELDS_GPU_LOCKS"] = str(args.work / "gpu-locks")  # this run's claims only
    watcher = GpuWatcher()

    def left() -> float:
        return args.time_budget - (time.time() - t_start)

    def save():
        report["total_s"] = time.time() - t_start
        report["summary_rows"] = summary_rows(report)
        (args.out / "two_gpu.json").write_text(json.dumps(report, indent=1, default=str))

    try:
        gen, files = build_weights(args.work, args.smoke)
        faces = dataset_phase(args, gen, args.work, watcher, report)
        save()
        ann, stats = args.work / "annotations.h5", args.work / "style_stats.h5"
        job = {
            "faces": str(faces),
            "annotations": str(ann),
            "stats": str(stats),
            "files": files,
            "device": args.device,
            "batch": 8 if args.smoke else 64,
        }
        print("annotating the one-GPU faces (random encoders of the real shapes) ...", flush=True)
        r = run_process([sys.executable, "-c", ANNOTATE, json.dumps(job)], args.out / "annotate.log", left())
        if r["rc"] != 0:
            raise RuntimeError(f"annotation failed: {(args.out / 'annotate.log').read_text()[-3000:]}")
        inputs = {
            "faces_path": str(faces),
            "annotations_path": str(ann),
            "stats_path": str(stats),
            "generator_path": str(gen),
            "encoder_files": files,
            "encoders_cfg": ENCODERS,
        }
        training_phases(args, inputs, watcher, report, left, save)
    finally:
        watcher.stop()
        save()
        print_table(report)
        if not args.workdir:
            shutil.rmtree(args.work, ignore_errors=True)


def training_phases(args, inputs, watcher, report, left, save) -> None:
    tr = report["training"] = {}
    share = 0.30  # of the time left, per float32 run (the kill and the resume share one)
    one = tr["one_gpu"] = train_run(args, inputs, "one_gpu", training_cfg(args, 1), watcher, left() * share)
    two = tr["two_gpus"] = train_run(args, inputs, "two_gpus", training_cfg(args, 2), watcher, left() * share)
    lr = training_cfg(args, 1)["lr"]
    if one["rc"] == 0 and two["rc"] == 0:
        tr["curves"] = compare_curves(one["rows"], two["rows"])
        tr["weights"] = compare_weights(one["out"], two["out"], lr)
        print(f"  loss curves 1 vs 2 GPUs: {tr['curves']}; weights: {tr['weights']}", flush=True)
    save()
    cfg2 = training_cfg(args, 2, checkpoints=True)
    ckpts = args.work / "killed" / "checkpoints"
    csv_path = args.work / "killed" / "logs" / "losses.csv"

    def mid_run() -> bool:  # a checkpoint exists, and steps after it are logged
        steps = sorted(int(p.stem.split("_")[1]) for p in ckpts.glob("step_*.pt"))
        return bool(steps) and csv_path.exists() and len(csv_path.read_text().splitlines()) - 1 > steps[-1]

    kill = tr["killed"] = train_run(args, inputs, "killed", cfg2, watcher, left() * 0.5, kill_when=mid_run)
    kill["checkpoints"] = sorted(p.name for p in ckpts.glob("*.pt"))
    kill["target_absent"] = not Path(kill["out"]).exists()
    print(
        f"  SIGKILLed: {kill['killed']}; checkpoints {kill['checkpoints']}; processes left {kill.get('alive_after_kill')}",
        flush=True,
    )
    res = tr["resumed"] = train_run(args, inputs, "killed", cfg2, watcher, left() * 0.6, log_name="resumed")
    if res["rc"] == 0:
        res["every_step_once"] = every_step_once(res["rows"], cfg2["num_steps"])
        if two["rc"] == 0:
            res["vs_uninterrupted"] = compare_curves(two["rows"], res["rows"])
            res["weights_vs_uninterrupted"] = compare_weights(two["out"], res["out"], lr)
        print(
            f"  resumed from {res['resumed']}; every step once {res['every_step_once']}; vs uninterrupted "
            f"{res.get('vs_uninterrupted')}",
            flush=True,
        )
    save()
    if args.smoke:
        report["skipped"].append("compiled runs: GPU only (Inductor on 2 CPU cores takes minutes)")
        return
    for name, gpus in (("compiled_two_gpus", 2), ("compiled_one_gpu", 1)):  # two first: it has never run
        if left() < 150:
            report["skipped"].append(f"{name}: {left():.0f} s of the budget left, needs 150")
            print(f"{name}: skipped ({left():.0f} s left)", flush=True)
            continue
        tr[name] = train_run(args, inputs, name, training_cfg(args, gpus, compiled=True), watcher, left() - 10)
        save()


if __name__ == "__main__":
    main()
