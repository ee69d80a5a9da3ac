"""Atomic file targets: a killed job must never leave a file that looks finished."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    Snakemake never runs two jobs for one target at once, so any earlier temporary file of the
    same target is debris from a killed job and is removed first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.stem}.*.partial{path.suffix}"):
        stale.unlink(missing_ok=True)  # left by a killed run of this same target
    # keep the suffix last so that writers which infer the format from it (savefig) still work
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".partial{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; targets should be as readable as any file
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json_atomic(path, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def save_torch(obj, path) -> None:
    """`torch.save` to `path` atomically, through a file object: given a path, torch names the
    archive's root folder after the (random) temporary file, so equal objects would give files
    of different bytes; through a file object the root is always "archive"."""
    import torch  # this module is imported by code that never touches torch

    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        torch.save(obj, fh)
