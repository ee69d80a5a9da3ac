"""Atomic file targets: a killed job must never leave a file that looks finished."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from pathlib import Path


class NoSpaceError(OSError):
    """The disk filled up while a target was written; the message names the target."""

    def __init__(self, message: str):
        super().__init__(errno.ENOSPC, message)

    def __str__(self) -> str:
        return self.strerror


def is_disk_full(exc: BaseException) -> bool:
    """ENOSPC/EDQUOT anywhere in the exception's chain, torch.save's "unexpected pos", or an
    h5py error whose text carries the system's "No space left on device" (h5py sets no errno)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if isinstance(exc, RuntimeError) and "unexpected pos" in str(exc):
            return True
        if isinstance(exc, (OSError, RuntimeError)) and os.strerror(errno.ENOSPC) in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    Snakemake never runs two jobs for one target at once, so any earlier temporary file of the
    same target is debris from a killed job and is removed first.

    A full disk is reported as such: an OSError ENOSPC (or torch.save's RuntimeError
    "unexpected pos", which is what a full disk looks like from inside its zip writer) becomes
    `NoSpaceError` "no space left on device while writing <path>", and the temporary file is
    removed, so no complete-looking target is left behind.
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
    except (OSError, RuntimeError) as exc:
        if is_disk_full(exc):
            raise NoSpaceError(
                f"no space left on device while writing {path} (in {path.parent}); free some space and rerun"
            ) from exc
        raise
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
