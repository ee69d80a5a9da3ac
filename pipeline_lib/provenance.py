"""What a target was made from: config values, input checksums, code and library versions.

Written as a JSON sidecar beside each target so that a number can always be traced back.
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


def provenance_record(params: dict, inputs: dict[str, str]) -> dict:
    import numpy
    import torch

    return {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "params": params,
        "inputs": {name: {"path": str(p), "sha256": file_sha256(p)} for name, p in inputs.items()},
        "code_version": code_version(),
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__},
        "host": platform.node(),
    }


def write_provenance(path, params: dict, inputs: dict[str, str]) -> None:
    write_json_atomic(path, provenance_record(params, inputs))
