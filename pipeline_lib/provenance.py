"""What a target was made from: config values, input checksums, code and library versions.

One record, one helper: every job writes `<target>.provenance.json` beside its main target
(`write_job_provenance`), so that a number can always be traced back to the settings, the input
files and the code that made it. Identities that stages check against each other (a dataset's
`dataset_id`, a training run's fingerprint) are recorded in it as derived fields.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import platform
import subprocess
from pathlib import Path

from pipeline_lib.atomic import write_json_atomic

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def file_sha256(path, chunk: int = 1 << 20) -> str:
    """sha256 of a file, read in 1 MiB blocks (weights files are hundreds of MB)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def code_version() -> str:
    """The git commit of the checkout (with '+dirty' if modified), or 'unknown'."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (commit + ("+dirty" if dirty else "")) or "unknown"


# Inputs above this size (shards, FFHQ) get a sampled checksum: hashing 14 GB of real faces in
# each of nine evaluation jobs would cost minutes for no gain over size + head + tail.
FULL_HASH_LIMIT = 1 << 30
SAMPLE_BYTES = 16 << 20


def file_fingerprint(path) -> dict:
    """{"path", "size", "sha256"} of a file; above FULL_HASH_LIMIT the sha256 covers the size and
    the first and last SAMPLE_BYTES only, and the record says so ("sha256_of": "head+tail")."""
    path = Path(path)
    size = path.stat().st_size
    if size <= FULL_HASH_LIMIT:
        return {"path": str(path), "size": size, "sha256": file_sha256(path)}
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as fh:
        h.update(fh.read(SAMPLE_BYTES))
        fh.seek(size - SAMPLE_BYTES)
        h.update(fh.read(SAMPLE_BYTES))
    return {"path": str(path), "size": size, "sha256": h.hexdigest(), "sha256_of": "size+head+tail (16 MiB each)"}


def provenance_record(params: dict, inputs: dict, derived: dict | None = None) -> dict:
    """The record: `params` (the config values the job read), every input file's fingerprint,
    `derived` identities, the code version and the library versions."""
    import numpy
    import torch

    files = {}
    for name, p in inputs.items():
        paths = [p] if isinstance(p, (str, Path)) else list(p)
        prints = [file_fingerprint(q) for q in paths]
        files[name] = prints[0] if isinstance(p, (str, Path)) else prints
    return {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "params": params,
        "inputs": files,
        "derived": derived or {},
        "code_version": code_version(),
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__},
        "host": platform.node(),
    }


def provenance_path(target) -> Path:
    return Path(f"{target}.provenance.json")


def write_provenance(path, params: dict, inputs: dict, derived: dict | None = None) -> None:
    """Write the record to `path` atomically."""
    write_json_atomic(path, provenance_record(params, inputs, derived))


def write_job_provenance(target, params: dict, inputs: dict, derived: dict | None = None) -> Path:
    """The record of the job that made `target`, at `<target>.provenance.json`."""
    path = provenance_path(target)
    write_provenance(path, params, inputs, derived)
    return path
