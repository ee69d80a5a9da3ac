"""Reading third-party pickles without running anything from them.

A pickle can name any importable callable; `restricted_load` resolves only the globals it is
given and refuses every other one with an error that names it.
"""

from __future__ import annotations

import collections
import pickle
from pathlib import Path

import numpy as np


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
