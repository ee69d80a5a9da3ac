"""Choosing the compute device, and keeping float32 exact on NVIDIA GPUs."""

from __future__ import annotations

import torch


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` picks the first CUDA GPU when there is one, else the CPU.

    On CUDA it also turns TF32 off for float32 matrix products and convolutions (cuDNN allows
    TF32 by default), so that a float32 path computes in float32, as the official code's
    numbers do; the fast paths choose bf16 explicitly instead.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {name!r} requested but CUDA is not available (set `device: cpu` or `auto`)")
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    return device
