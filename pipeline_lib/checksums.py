"""File checksums, for provenance records and for verifying downloaded weights."""

from __future__ import annotations

import hashlib


def file_sha256(path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()
