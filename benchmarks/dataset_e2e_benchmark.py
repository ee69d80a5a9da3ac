"""The dataset stage end to end, as a user runs it: job start to merged faces.h5, compile included.

    PYTHONPATH=. python benchmarks/dataset_e2e_benchmark.py --out $OUT/dataset_e2e.json
    PYTHONPATH=. python benchmarks/dataset_e2e_benchmark.py --smoke --out /tmp/e2e.json   # CPU, tiny

Runs, in one session, on a random-weight generator of the paper256 shape:
  new        counter latents on the device, one shard job (num_shards 1, the local-gpu profile's
             default), writer process; run twice: the first may compile cold, the second finds
             the persistent Inductor cache warm (what every later run of a user sees);
  old        the former defaults: numpy latents and the shard_size split (4 jobs for 48,000);
and prints faces/s of each beside the old path. `--runner snakemake` (default when snakemake is
importable) runs `snakemake --profile profiles/local-gpu <results>/dataset/faces.h5`; `--runner
jobs` runs the same job functions as one subprocess per job (what the rules' scripts do),
without snakemake. It then checks that a small dataset is bit-identical with 1 and 2 shards,
and how many counter latents differ between CPU and GPU. `--time-budget` skips steps that
would not fit.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from bench_summary import Target, summary_row

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline_lib.dataset.latent_rng import latents_counter  # noqa: E402
from pipeline_lib.generator import save_generator  # noqa: E402
from pipeline_lib.generator.stylegan2 import GeneratorConfig, init_random_generator  # noqa: E402
from pipeline_lib.settings import load_config  # noqa: E402

TINY = GeneratorConfig(z_dim=16, w_dim=16, img_resolution=32, num_mapping_layers=2, channel_base=128, channel_max=16)


def dataset_config(args, faces: int, new: bool, num_shards=None) -> dict:
    ds = load_config()["dataset"] | {"num_identity": faces * 3 // 4, "num_attribute": faces - faces * 3 // 4}
    if args.smoke:
        ds |= {"chunk_size": 8, "batch_size": 16, "shard_size": 16, "dtype": "float32", "compile": False}
    else:
        ds |= {"shard_size": 12288}
    ds["latent_rng"] = "counter" if new else "numpy"
    ds["num_shards"] = (1 if new else None) if num_shards is None else num_shards
    return ds


def run_jobs(gen: Path, results: Path, ds: dict, device: str, parallel: int = 1) -> None:
    """One subprocess per shard job, at most `parallel` at once (what `--resources gpu=N` lets
    snakemake run), then the merge job: the rules' scripts without snakemake. Each job logs, as
    its rule does, to stderr and to results/logs/<rule>/... (two_gpu_check.py reads the logs)."""
    from pipeline_lib.jobs.dataset import shard_indices

    shards = [results / "dataset" / "shards" / f"{i}.h5" for i in shard_indices(ds)]
    code = (
        "import json, sys\nfrom pipeline_lib.logs import configure\nfrom pipeline_lib.jobs import dataset\n"
        "configure(sys.argv[2])\n"
        "dataset.synthesize_shard(sys.argv[3], sys.argv[4], int(sys.argv[5]), json.loads(sys.argv[1]), sys.argv[6])\n"
    )
    running = []
    for i, path in enumerate(shards):
        if len(running) >= parallel:
            _wait_job(running.pop(0))
        log = results / "logs" / "synthesize_shard" / f"{i}.log"
        argv = [sys.executable, "-c", code, json.dumps(ds), str(log), str(gen), str(path), str(i), device]
        running.append(subprocess.Popen(argv, cwd=REPO, env=_env()))
    for proc in running:
        _wait_job(proc)
    code = (
        "import json, sys\nfrom pipeline_lib.logs import configure\nfrom pipeline_lib.jobs import dataset\n"
        "configure(sys.argv[3])\n"
        f"dataset.merge(json.loads(sys.argv[2]), {str(results / 'dataset' / 'faces.h5')!r}, json.loads(sys.argv[1]))\n"
    )
    argv = [sys.executable, "-c", code, json.dumps(ds), json.dumps([str(p) for p in shards])]
    subprocess.run(argv + [str(results / "logs" / "merge_dataset.log")], check=True, env=_env())


def _wait_job(proc: subprocess.Popen) -> None:
    if proc.wait():
        raise subprocess.CalledProcessError(proc.returncode, proc.args[:2])


def run_snakemake(gen: Path, results: Path, ds: dict, device: str, work: Path, smoke: bool, gpus=None) -> None:
    """`snakemake --profile profiles/local-gpu` for the merged faces; `gpus` sets --resources gpu=N."""
    config = {"results": str(results), "device": device, "generator": {"weights": str(gen)}, "dataset": ds}
    if smoke:  # the tiny generator has 7 conv layers: ablation ranges it can hold (checked at start-up)
        config["ablation"] = {"configs": {f"config{i}": ["conv0", "conv2"] for i in range(1, 6)}}
    cfg = work / f"{results.name}.yaml"
    cfg.write_text(yaml.safe_dump(config))
    cmd = [sys.executable, "-m", "snakemake", "--profile", str(REPO / "profiles" / "local-gpu"), "--configfile",
           str(cfg), "--directory", str(REPO), str(results / "dataset" / "faces.h5")]  # fmt: skip
    cmd += [] if gpus is None else ["--resources", f"gpu={gpus}"]
    proc = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True)
    if proc.returncode:
        print(proc.stdout[-3000:], proc.stderr[-6000:], flush=True)
        raise RuntimeError(f"snakemake failed ({proc.returncode})")


def job_seconds(results: Path) -> dict:
    """Wall seconds of each job from the rules' benchmark files (snakemake runner only); the
    rest of a run is snakemake's own start-up and scheduling."""
    out = {}
    for tsv in sorted((results / "benchmarks").rglob("*.tsv")):
        lines = tsv.read_text().splitlines()
        if len(lines) > 1:
            out[str(tsv.relative_to(results / "benchmarks"))] = round(float(lines[1].split("\t")[0]), 2)
    return out


def _env() -> dict:
    import os

    return {**os.environ, "PYTHONPATH": str(REPO)}


def read_dataset(path: Path) -> dict:
    from pipeline_lib.dataset.store import open_faces

    with open_faces(path) as f:
        return {k: f[k][()] for k in ("z", "w", "styles", "images", "seed")} | {"id": f.attrs["dataset_id"]}


def summary_rows(report: dict) -> list:
    """The stage's faces/s end to end (warm cache, then cold) beside the old path, against issue 16's
    3,000 faces/s, and the determinism checks (benchmarks/all_stages.py prints them)."""
    runs, faces = report["runs"], report["faces"]
    old = runs.get("old", {}).get("faces_per_s")
    old_note = "" if old else "; old path: not reached"
    rows = []
    for name, label, target in (("new repeated", "warm compile cache", Target(">=", 3000, "faces/s")),
                                ("new first", "first run, cold compile", None)):  # fmt: skip
        r = runs.get(name)
        note = f"{r['seconds']:.1f} s, {r['shards']} shard job(s)" if r else "not reached"
        note += f", runner {report['runner']}{old_note}"
        stage = f"Dataset stage end to end, {faces:,} faces, {label}"
        rows.append(summary_row(stage, r and r["faces_per_s"], old, "faces/s", target, note))
    if "bit_identical_1_vs_2_shards" in report:
        same = report["bit_identical_1_vs_2_shards"]
        differ = [k for k, v in same.items() if not v]
        rows.append(summary_row("Dataset 1 vs 2 shards bit-identical", "no" if differ else "yes", None, "",
                                "identical", f"differ: {differ}" if differ else "", met=not differ))  # fmt: skip
    if "counter_latents_cpu_vs_gpu" in report:
        c = report["counter_latents_cpu_vs_gpu"]
        rows.append(summary_row("Counter latents CPU vs GPU, values differing", c["differing"], None, "",
                                Target("<=", 0), f"of {c['values']:,}", ratio=False))  # fmt: skip
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faces", type=int, default=48000)
    ap.add_argument("--check-faces", type=int, default=1024, help="faces of the 1-vs-2-shard identity check")
    ap.add_argument("--runner", choices=["snakemake", "jobs"], default=None)
    ap.add_argument("--device", default=None)
    ap.add_argument("--smoke", action="store_true", help="CPU, tiny generator, 64 faces")
    ap.add_argument("--skip-old", action="store_true")
    ap.add_argument("--time-budget", type=float, default=290.0, help="seconds; later steps are skipped past it")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.smoke:
        args.faces, args.check_faces, args.device = min(args.faces, 64), min(args.check_faces, 32), args.device or "cpu"
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    runner = args.runner or ("snakemake" if importlib.util.find_spec("snakemake") else "jobs")
    t_start = time.perf_counter()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="genfields-e2e-"))
    work.mkdir(parents=True, exist_ok=True)
    gen = work / "generator.pt"
    G = init_random_generator(TINY if args.smoke else GeneratorConfig(), seed=0, w_avg_samples=1000)
    save_generator(G, gen)
    print(f"device {device}, runner {runner}, {args.faces} faces, torch {torch.__version__}, work {work}", flush=True)
    report = {"device": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu", "runner": runner,
              "faces": args.faces, "torch": torch.__version__, "runs": {}, "skipped": []}  # fmt: skip

    def left() -> float:
        return args.time_budget - (time.perf_counter() - t_start)

    def timed_run(name: str, faces: int, new: bool, num_shards=None, need: float = 0.0):
        if left() < need:
            print(f"{name}: skipped ({left():.0f} s of the budget left, needs ~{need:.0f})", flush=True)
            report["skipped"].append(name)
            return None
        results = work / name.replace(" ", "_")
        ds = dataset_config(args, faces, new, num_shards)
        t0 = time.perf_counter()
        if runner == "snakemake":
            run_snakemake(gen, results, ds, device, work, args.smoke)
        else:
            run_jobs(gen, results, ds, device)
        seconds = time.perf_counter() - t0
        shards = len(list((results / "dataset" / "shards").glob("*.h5")))
        jobs = job_seconds(results)
        report["runs"][name] = {"faces": faces, "seconds": seconds, "faces_per_s": faces / seconds, "shards": shards,
                                "latent_rng": ds["latent_rng"], "job_seconds": jobs}  # fmt: skip
        print(f"{name}: {faces} faces, {shards} shard job(s), {seconds:.1f} s = {faces / seconds:.0f} faces/s; "
              f"jobs {jobs}", flush=True)  # fmt: skip
        if not name.startswith("check"):  # 10.6 GB a run at 48,000 faces: free the disk for the next
            shutil.rmtree(results / "dataset", ignore_errors=True)
        return results

    timed_run("new first", args.faces, True)
    timed_run("new repeated", args.faces, True, need=40)
    one = timed_run("check 1 shard", args.check_faces, True, num_shards=1, need=30)
    two = timed_run("check 2 shards", args.check_faces, True, num_shards=2, need=30)
    if one and two:
        a, b = read_dataset(one / "dataset" / "faces.h5"), read_dataset(two / "dataset" / "faces.h5")
        same = {k: bool(np.array_equal(a[k], b[k])) for k in a}
        report["bit_identical_1_vs_2_shards"] = same
        print(f"1 vs 2 shards bit-identical: {same}", flush=True)
    if not args.skip_old:
        timed_run("old", args.faces, False, need=100)

    if device.startswith("cuda"):
        cpu = latents_counter(0, 0, 4096, 512)
        gpu = latents_counter(0, 0, 4096, 512, device=device).cpu()
        report["counter_latents_cpu_vs_gpu"] = {"values": cpu.numel(), "differing": int((cpu != gpu).sum()),
                                                "max_abs_diff": float((cpu - gpu).abs().max())}  # fmt: skip
        print(f"counter latents CPU vs GPU: {report['counter_latents_cpu_vs_gpu']}", flush=True)

    old = report["runs"].get("old")
    print("\n| run | faces | shard jobs | seconds | faces/s | x old |\n|---|---|---|---|---|---|")
    for name, r in report["runs"].items():
        ratio = f"{r['faces_per_s'] / old['faces_per_s']:.2f}" if old and r["faces"] == old["faces"] else "-"
        print(f"| {name} | {r['faces']} | {r['shards']} | {r['seconds']:.1f} | {r['faces_per_s']:.0f} | {ratio} |")
    report["total_s"] = time.perf_counter() - t_start
    report["summary_rows"] = summary_rows(report)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2))
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
