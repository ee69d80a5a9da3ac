"""Starting a training job: in this process on one device, or under torchrun with one process
per GPU (DDP). The inputs' checksums, which decide whether a checkpoint may be resumed, are
computed once by the launcher, not by every process."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch
import torch.distributed as dist

from pipeline_lib.devices import claim_gpus, describe_device, resolve_device
from pipeline_lib.encoders import build_encoder
from pipeline_lib.generator import load_generator
from pipeline_lib.logs import configure
from pipeline_lib.provenance import PROJECT_ROOT, file_sha256
from pipeline_lib.settings import EncoderSettings, TrainingSettings
from pipeline_lib.training.data import TrainingData
from pipeline_lib.training.loop import train

log = logging.getLogger(__name__)


def start_training(
    out_path,
    faces_path,
    annotations_path,
    stats_path,
    generator_path,
    encoder_files: dict,
    encoders_cfg: dict,
    training_cfg: dict,
    variant,
    device_name: str = "auto",
    stop_after: int | None = None,
):
    """The `train_mref` job. With `gpus` > 1 it relaunches itself under torchrun, one process
    per GPU; otherwise it trains in this process. The inputs' checksums (which decide whether a
    checkpoint may be resumed) are computed here, once, not by every process.

    `variant` and `out_path` may be lists: those variants are trained together in this process
    (one generator pass per step for all of them; config `training.together`)."""
    settings = _settings(training_cfg, variant)
    inputs = {
        "faces": faces_path,
        "annotations": annotations_path,
        "style_stats": stats_path,
        "generator": generator_path,
        **encoder_files,
    }
    checksums = {name: file_sha256(p) for name, p in sorted(inputs.items())}
    checksums["landmark_detector"] = EncoderSettings.parse(encoders_cfg).landmarks_train
    args = {
        "out_path": [str(p) for p in out_path] if isinstance(out_path, (list, tuple)) else str(out_path),
        "faces_path": str(faces_path),
        "annotations_path": str(annotations_path),
        "stats_path": str(stats_path),
        "generator_path": str(generator_path),
        "encoder_files": {k: str(v) for k, v in encoder_files.items()},
        "encoders_cfg": encoders_cfg,
        "training_cfg": training_cfg,
        "variant": variant,
        "device_name": device_name,
        "stop_after": stop_after,
        "input_checksums": checksums,
    }
    if isinstance(settings, list):
        if any(s.gpus > 1 for s in settings):
            raise ValueError("variants trained together run in one process on one device: set training.gpus to 1")
        return _train_process(args, rank=0, world=1)
    if settings.gpus > 1:
        if device_name in ("auto", "cuda"):
            claim_gpus(settings.gpus)  # torchrun's processes inherit the claimed GPUs
        return launch_distributed(args, settings.gpus)
    return _train_process(args, rank=0, world=1)


def launch_distributed(args: dict, nproc: int) -> Path:
    """torchrun --standalone (a free rendezvous port per job, so concurrent jobs on one node do
    not collide), one process per GPU, each running `python -m pipeline_lib.training.launch`."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump({**args, "launcher_pid": os.getpid()}, fh)
        args_file = fh.name
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")])}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "pipeline_lib.training.launch",
        args_file,
    ]
    log.info("launching %d training processes: %s", nproc, " ".join(cmd))
    try:
        proc = subprocess.run(cmd, env=env)
    finally:
        os.unlink(args_file)
    if proc.returncode != 0:
        raise RuntimeError(f"distributed training failed (exit {proc.returncode}); see the log above")
    return Path(args["out_path"])


def _settings(training_cfg: dict, variant):
    """One variant's settings, or the list of the variants trained together."""
    if isinstance(variant, (list, tuple)):
        return [TrainingSettings.for_variant(training_cfg, v) for v in variant]
    return TrainingSettings.for_variant(training_cfg, variant)


def _train_process(args: dict, rank: int, world: int):
    settings = _settings(args["training_cfg"], args["variant"])
    device = resolve_device(args["device_name"])
    if world > 1 and device.type == "cuda":  # (a list of variants always has world 1)
        local = int(os.environ.get("LOCAL_RANK", rank))
        if local >= torch.cuda.device_count():
            raise RuntimeError(f"{world} training processes but only {torch.cuda.device_count()} visible GPUs")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if world > 1:
        log.info("process %d of %d on %s", rank, world, describe_device(device))
    G = load_generator(args["generator_path"], device=device)
    encoders = EncoderSettings.parse(args["encoders_cfg"])
    detector = encoders.landmarks_train
    identity_encoder = build_encoder(encoders.identity, args["encoder_files"], device)
    landmark_encoder = build_encoder(detector, args["encoder_files"], device)
    landmark_encoder.name = detector
    data = TrainingData(args["faces_path"], args["annotations_path"], args["stats_path"], detector, device)
    return train(
        G,
        identity_encoder,
        landmark_encoder,
        data,
        settings,
        args["out_path"],
        args["input_checksums"],
        device,
        rank,
        world,
        stop_after=args.get("stop_after"),
    )


def _distributed_main(args_file: str) -> None:
    """Entry point of each torchrun process."""
    configure()
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    with open(args_file) as fh:
        args = json.load(fh)
    if args.get("launcher_pid"):
        end_with_launcher(args["launcher_pid"])
    backend = "nccl" if args["device_name"] != "cpu" and torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group(backend)
    try:
        _train_process(args, rank, world)
    finally:
        dist.destroy_process_group()


def end_with_launcher(pid: int, poll_seconds: float = 0.5) -> threading.Thread:
    """End this training process (SIGKILL) as soon as process `pid`, the job that launched
    torchrun, is gone.

    torchrun starts each worker in a session of its own, so killing the job's process group
    (snakemake cancelling a job, `kill -9 -PGID`, a benchmark's budget) does not reach the
    workers: they trained on as orphans, into the folder that the rerun resumes from and on
    GPUs whose claims (the launcher's lock files) the kill had released to the next job
    (benchmarks/two_gpu_check.py found them alive after the kill)."""

    def watch():
        while process_alive(pid):
            time.sleep(poll_seconds)
        log.error("the training job (process %d) is gone: this training process ends too", pid)
        os.kill(os.getpid(), signal.SIGKILL)

    thread = threading.Thread(target=watch, daemon=True, name="launcher-watch")
    thread.start()
    return thread


def process_alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, killed but not yet reaped by its parent, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True  # no /proc: os.kill's answer stands


if __name__ == "__main__":
    _distributed_main(sys.argv[1])
