"""Opening the pipeline's own intermediate files with errors that name the file and the fix.

A truncated HDF5 file (a job killed while writing outside `atomic_path`, a copy cut short) or
a hand-edited JSON sidecar otherwise fails with h5py's or json's bare message, which names
neither the file nor what to do; here the message names both.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py


class CorruptFileError(ValueError):
    """A file the pipeline wrote (or was given) cannot be read; the message says how to fix it."""


def _fix(path: Path, rule: str | None) -> str:
    if rule:
        return f"delete it and rerun rule {rule} (`snakemake --forcerun {rule}`)"
    return f"delete it and rerun the step that makes it (`snakemake {path}`)"


def read_json_sidecar(path, what: str, rule: str | None = None):
    """The parsed JSON of `path`; `what` says what the file is (e.g. "the generator's kwargs
    sidecar"). Invalid JSON raises CorruptFileError naming the file, line and column."""
    path = Path(path)
    try:
        text = path.read_text()
    except UnicodeDecodeError as exc:
        raise CorruptFileError(f"file {path} ({what}) is not text ({exc.reason}): {_fix(path, rule)}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CorruptFileError(
            f"file {path} ({what}) is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}): "
            f"{_fix(path, rule)}"
        ) from None


def open_h5(path, what: str, rule: str | None = None, mode: str = "r") -> h5py.File:
    """h5py.File(path, mode), with a missing, truncated or corrupt file reported by name.

    Use it as h5py.File: `with open_h5(p, "the merged dataset", "merge_dataset") as f:`.
    """
    path = Path(path)
    if mode == "r" and not path.exists():
        raise FileNotFoundError(f"file {path} ({what}) does not exist: run `snakemake {path}` to make it")
    try:
        return h5py.File(path, mode)
    except OSError as exc:
        raise CorruptFileError(
            f"file {path} ({what}) is not a readable HDF5 file (truncated or corrupt: {exc}): {_fix(path, rule)}"
        ) from None
