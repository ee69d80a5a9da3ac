"""Choosing the compute device, keeping float32 exact on NVIDIA GPUs, and sharing a
workstation's GPUs between concurrent jobs."""

from __future__ import annotations

import fcntl
import logging
import os
import tempfile
import time
from pathlib import Path

import torch

log = logging.getLogger(__name__)

_claimed: list = []  # open lock files: a claim lasts as long as this process


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` picks a CUDA GPU when there is one, else the CPU.

    On CUDA it also turns TF32 off for float32 matrix products and convolutions (cuDNN allows
    TF32 by default), so that a float32 path computes in float32, as the official code's
    numbers do; the fast paths choose bf16 explicitly instead. Under `auto` and plain `cuda`
    the job first claims a free GPU of this machine (see `claim_gpus`).
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        # Checked here, before any GPU claim could wait, and not at DAG time: a SLURM login
        # node that plans the run has no GPU, the compute node that runs the job does.
        raise RuntimeError(
            f"config `device: {name}` asks for a CUDA GPU, but this machine has none that torch can use "
            f"(torch {torch.__version__}, built for CUDA {torch.version.cuda}); run the job on a GPU node, or set "
            "`device: auto` (a GPU when there is one, else the CPU) or `device: cpu` in the config "
            "(or pass --config device=cpu)"
        )
    if name == "cuda":
        claim_gpus(1)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    log.info("device %s", describe_device(device))
    return device


def describe_device(device) -> str:
    """The device a job computes on, as one log line can prove it: on CUDA the physical card
    (name and UUID, which `nvidia-smi --query-compute-apps` also reports), the
    CUDA_VISIBLE_DEVICES it was chosen among, and the process id, so that concurrent jobs on
    one machine can be shown to use different GPUs (benchmarks/two_gpu_check.py reads it)."""
    device = torch.device(device)
    if device.type != "cuda":
        return f"{device} [pid {os.getpid()}]"
    index = torch.cuda.current_device() if device.index is None else device.index
    props = torch.cuda.get_device_properties(index)
    uuid = getattr(props, "uuid", None)
    uuid = f"GPU-{uuid}" if uuid is not None and not str(uuid).startswith("GPU-") else uuid
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "unset")
    return f"cuda:{index} [{props.name}; uuid {uuid}; CUDA_VISIBLE_DEVICES={visible}; pid {os.getpid()}]"


def claim_gpus(n: int, lock_dir=None, poll_seconds: float = 5.0, total: int | None = None) -> list[int] | None:
    """Give this process `n` GPUs of its own and make only them visible (CUDA_VISIBLE_DEVICES).

    Snakemake's `--resources gpu=N` keeps at most N GPU jobs running, but it does not say which
    card each should use, so without this every job would pick GPU 0. Each GPU has a lock file;
    a job holds the locks of its GPUs until it exits (also when killed: the OS drops them).
    Where a scheduler already chose the GPUs (CUDA_VISIBLE_DEVICES is set, as under SLURM),
    nothing is claimed. Returns the claimed indices, or None where nothing was claimed.
    """
    if _claimed:
        return [c[0] for c in _claimed]
    if os.environ.get("CUDA_VISIBLE_DEVICES") is not None:
        return None
    total = torch.cuda.device_count() if total is None else total
    if total <= 1 and n <= 1:
        return None
    if n > total:
        raise RuntimeError(f"this job needs {n} GPUs but the machine has {total}")
    lock_dir = Path(
        lock_dir or os.environ.get("GENFIELDS_GPU_LOCKS", Path(tempfile.gettempdir()) / "genfields-gpu-locks")
    )
    lock_dir.mkdir(parents=True, exist_ok=True)
    waited = False
    while True:
        held = []
        for index in range(total):
            fh = open(lock_dir / f"gpu{index}.lock", "w")
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                fh.close()
                continue
            held.append((index, fh))
            if len(held) == n:
                break
        if len(held) == n:
            break
        for _, fh in held:
            fh.close()
        if not waited:
            log.info("waiting for %d free GPU(s) (locks in %s)", n, lock_dir)
            waited = True
        time.sleep(poll_seconds)
    _claimed.extend(held)
    indices = [index for index, _ in held]
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, indices))
    log.info("using GPU(s) %s of this machine", indices)
    return indices
