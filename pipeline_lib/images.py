"""The library's two image forms and the conversions between them: float RGB in [-1, 1], NCHW,
inside the library; uint8 RGB, NHWC, on disk (HDF5 datasets of one image per chunk)."""

from __future__ import annotations

import h5py
import numpy as np
import torch


def to_uint8_hwc(img: torch.Tensor) -> torch.Tensor:
    """[-1, 1] NCHW float -> uint8 NHWC, the conversion of NVIDIA's gen_images.py.

    Made contiguous on the device: a permuted view would reach HDF5 as a strided array that
    h5py transposes element by element on the CPU (4x slower writes, measured).
    """
    return (img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8).contiguous()


def from_uint8_hwc(batch: torch.Tensor) -> torch.Tensor:
    """uint8 NHWC -> float [-1, 1] NCHW, on the tensor's device."""
    return batch.permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def read_images(images: h5py.Dataset, indices: np.ndarray) -> np.ndarray:
    """uint8 NHWC images at `indices` (any order, repeats allowed): h5py reads only increasing
    unique indices."""
    unique, inverse = np.unique(indices, return_inverse=True)
    return images[unique][inverse]
