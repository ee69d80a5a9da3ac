"""Reading third-party pickles without running anything from them: the one allow-list unpickler.

A pickle can name any importable callable; `RestrictedUnpickler` resolves only the globals it is
given and refuses every other one with an error that names it. `SnapshotUnpickler` is it with
the allow-list of NVIDIA's StyleGAN2-ADA and StyleGAN3 snapshots: their persistent classes
become inert `PersistentObject`s (the source code stored in the file is never executed),
tensors are rebuilt by torch's weights-only loader, numpy values only as numeric arrays.
"""

from __future__ import annotations

import collections
import pickle
from pathlib import Path

import numpy as np
import torch


def _numpy_global(name):
    for module in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            return getattr(__import__(module, fromlist=[name]), name)
        except (ImportError, AttributeError):
            continue
    raise ImportError(name)


def _safe_dtype(spec, align=False, copy=False):
    dtype = np.dtype(spec, align, copy)
    if dtype.hasobject:
        raise pickle.UnpicklingError("numpy object dtype refused")
    return dtype


def _safe_reconstruct(cls, shape, dtype):
    if cls is not np.ndarray:
        raise pickle.UnpicklingError(f"numpy reconstruct of {cls!r} refused")
    return _numpy_global("_reconstruct")(cls, shape, dtype)


# Plain numpy arrays and containers: what data files such as 3DDFA's mean/std pickle hold.
NUMPY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _safe_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _safe_reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _safe_dtype,
    ("collections", "OrderedDict"): collections.OrderedDict,
}


class RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, allowed: dict):
        super().__init__(file)
        self.allowed = allowed

    def find_class(self, module, name):
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refused global '{module}.{name}'") from None

    def persistent_load(self, pid):
        raise pickle.UnpicklingError(f"refused persistent id {pid!r}")


def restricted_load(path, allowed: dict | None = None):
    """Unpickle `path` resolving only `allowed` globals (default: plain numpy arrays)."""
    path = Path(path)
    with open(path, "rb") as fh:
        try:
            return RestrictedUnpickler(fh, NUMPY_GLOBALS if allowed is None else allowed).load()
        except pickle.UnpicklingError as exc:
            raise pickle.UnpicklingError(f"{path}: {exc}") from None


# ----------------------------------------------------------------------------------------------
# NVIDIA's snapshots (StyleGAN2-ADA and StyleGAN3 `.pkl`)


class PersistentObject:
    """Stands in for an NVIDIA persistent class; keeps its `meta` and runs nothing."""

    def __init__(self, meta):
        self.meta = meta

    @property
    def class_name(self) -> str:
        return self.meta.get("class_name", "?")

    @property
    def state(self) -> dict:
        return self.meta.get("state", {})


def _reconstruct_persistent_obj(meta):
    if not isinstance(meta, dict) or meta.get("type") != "class":
        raise pickle.UnpicklingError("persistent object with an unexpected meta record")
    return PersistentObject(meta)


def _load_storage_bytes(blob: bytes):
    import io

    return torch.load(io.BytesIO(blob), weights_only=True)


def _numpy_scalar(dtype, data=None):
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise pickle.UnpicklingError(f"numpy scalar of dtype {dtype!r} refused (only numeric scalars are allowed)")
    return np.frombuffer(data, dtype=dtype, count=1)[0]


SNAPSHOT_GLOBALS = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("dnnlib.util", "EasyDict"): dict,
    ("dnnlib", "EasyDict"): dict,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_storage_bytes,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy", "dtype"): _safe_dtype,
    # StyleGAN3 snapshots also hold plain numpy arrays (rebuilt only as numeric ndarrays)
    ("numpy.core.multiarray", "_reconstruct"): _safe_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _safe_reconstruct,
    ("numpy", "ndarray"): np.ndarray,
}


class SnapshotUnpickler(RestrictedUnpickler):
    """The allow-list of NVIDIA's snapshots, with messages that say what a refusal means."""

    def __init__(self, file):
        super().__init__(file, SNAPSHOT_GLOBALS)

    def find_class(self, module, name):
        if (module, name) in self.allowed:
            return self.allowed[(module, name)]
        if (module, name) == ("dnnlib.tflib.network", "Network"):
            raise pickle.UnpicklingError(
                "this is a TensorFlow-era StyleGAN2 pickle (dnnlib.tflib.network.Network); convert it with "
                "NVIDIA's stylegan2-ada-pytorch legacy.py first, or use the PyTorch release of the weights"
            )
        raise pickle.UnpicklingError(
            f"refused global '{module}.{name}': a StyleGAN snapshot has no reason to name it, "
            "and loading it could run code"
        )
