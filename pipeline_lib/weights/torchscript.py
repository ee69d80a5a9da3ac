"""Tensors of a TorchScript archive (face-alignment ships FAN and its depth network so), read
with the one allow-list unpickler and never executed: its code/ folder is ignored, and its
classes are inert stand-ins that only keep their pickled attributes."""

from __future__ import annotations

import collections
import io
import zipfile
from pathlib import Path

import torch

from pipeline_lib.weights import WeightsError
from pipeline_lib.weights.checkpoints import read_torch_state_dict
from pipeline_lib.weights.unpickler import RestrictedUnpickler


def read_tensors(path: Path, what: str) -> dict[str, torch.Tensor]:
    """Name -> tensor from a (legacy or zip) torch.save state dict or a TorchScript archive.

    Training checkpoints keep the weights under 'state_dict' with DataParallel's 'module.'.
    """
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if any("/code/" in n or n.endswith("/constants.pkl") for n in names):
                return torchscript_tensors(archive, path, what)
    return {k: v for k, v in read_torch_state_dict(path, what).items() if isinstance(v, torch.Tensor)}


class _ScriptObject:
    """Inert stand-in for a TorchScript class instance: it only keeps its pickled attributes."""

    def __setstate__(self, state):
        self.attributes = state


class _StorageType:
    def __init__(self, dtype: torch.dtype):
        self.dtype = dtype


_STORAGE_DTYPES = {
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


def _rebuild_tensor(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
    return storage.as_strided(tuple(size), tuple(stride), offset)


_ARCHIVE_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch.jit._pickle", "restore_type_tag"): lambda value, type_str: value,
    **{("torch.jit._pickle", f"build_{kind}list"): list for kind in ("int", "double", "bool", "tensor")},
    **{("torch", name): _StorageType(dtype) for name, dtype in _STORAGE_DTYPES.items()},
}


class _ArchiveUnpickler(RestrictedUnpickler):
    """Resolves TorchScript classes to `_ScriptObject` and storages to the archive's raw bytes."""

    def __init__(self, file, archive: zipfile.ZipFile, prefix: str):
        super().__init__(file, _ARCHIVE_GLOBALS)
        self.archive, self.prefix, self.storages = archive, prefix, {}

    def find_class(self, module, name):
        if module == "__torch__" or module.startswith("__torch__."):
            return _ScriptObject
        return super().find_class(module, name)

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            return super().persistent_load(pid)
        _, storage_type, key, _location, numel = pid
        if not isinstance(storage_type, _StorageType):
            raise WeightsError(f"storage of unknown type {storage_type!r}")
        if key not in self.storages:
            data = bytearray(self.archive.read(f"{self.prefix}data/{key}"))
            dtype = storage_type.dtype
            itemsize = torch.empty((), dtype=dtype).element_size()
            if len(data) != numel * itemsize:
                raise WeightsError(f"storage {key}: {len(data)} bytes for {numel} x {dtype}")
            self.storages[key] = torch.frombuffer(data, dtype=dtype) if numel else torch.empty(0, dtype=dtype)
        return self.storages[key]


def torchscript_tensors(archive: zipfile.ZipFile, path: Path, what: str) -> dict[str, torch.Tensor]:
    """Dotted attribute path -> tensor for every tensor in a TorchScript archive's module tree."""
    pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(pickles) != 1:
        raise WeightsError(f"{path}: a TorchScript archive without one top-level data.pkl; expected {what}")
    prefix = pickles[0][: -len("data.pkl")]
    if f"{prefix}byteorder" in archive.namelist() and archive.read(f"{prefix}byteorder").strip() != b"little":
        raise WeightsError(f"{path}: big-endian tensors are not supported")
    try:
        root = _ArchiveUnpickler(io.BytesIO(archive.read(pickles[0])), archive, prefix).load()
    except Exception as exc:
        raise WeightsError(f"{path}: cannot be read (tensors only) as {what}: {exc}") from None
    tensors: dict[str, torch.Tensor] = {}

    def collect(obj, name):
        attributes = getattr(obj, "attributes", None)
        for key, value in attributes.items() if isinstance(attributes, dict) else ():
            if isinstance(value, torch.Tensor):
                tensors[name + key] = value
            elif isinstance(value, _ScriptObject):
                collect(value, f"{name}{key}.")

    collect(root, "")
    if not tensors:
        raise WeightsError(f"{path}: a TorchScript archive with no named tensors (frozen?); expected {what}")
    return tensors
