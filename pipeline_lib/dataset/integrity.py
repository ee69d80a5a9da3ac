"""Guards on the face shards: every synthesised chunk is finite, and every shard's content is
checksummed when it is written and verified when the merged dataset is opened.

Why: a NaN weight or a NaN `truncation_psi` used to give complete-looking shards of NaN styles
and black images, and a byte flipped on disk after a shard was written was read back silently
(HDF5 stores no checksum of contiguous data). Both now stop the job with the file and the fix.

The checksum (`content_sha256`, a shard attribute, copied by the merge into `faces.h5`'s
`shards` JSON) is defined on the arrays, not on the file: for each array of
`CHECKSUM_ARRAYS`, in that order, the sha256 of its rows in order, as little-endian C-order
bytes of its stored dtype; `content_sha256` is the sha256 of the lines `<name>:<hex digest>\\n`.
Per-array digests let the writer thread hash chunks as they arrive (the arrays are written
interleaved), and make the value independent of the chunk and batch sizes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from pathlib import Path

import h5py
import numpy as np

from pipeline_lib.atomic import write_json_atomic

log = logging.getLogger(__name__)

CHECKSUM_ARRAYS = ("z", "w", "styles", "images", "seed")
VERIFY_BLOCK_BYTES = 64 << 20  # rows read per step when a shard is verified
CACHE_FORMAT = "genfields-shard-verification/1"


class ContentHasher:
    """Per-array running sha256 of a shard's rows, fed chunk by chunk in row order."""

    def __init__(self, names=CHECKSUM_ARRAYS):
        self.digests = {name: hashlib.sha256() for name in names}
        self.rows = 0

    def update(self, name: str, rows: np.ndarray) -> None:
        if name in self.digests:
            self.digests[name].update(memoryview(np.ascontiguousarray(rows)).cast("B"))

    def array_sha256(self) -> dict[str, str]:
        return {name: h.hexdigest() for name, h in self.digests.items()}

    def content_sha256(self) -> str:
        return combine(self.array_sha256())


def combine(array_sha256: dict[str, str]) -> str:
    lines = "".join(f"{name}:{array_sha256[name]}\n" for name in CHECKSUM_ARRAYS if name in array_sha256)
    return hashlib.sha256(lines.encode()).hexdigest()


def shard_array_sha256(f: h5py.File) -> dict[str, str]:
    """Recompute a shard's per-array digests from its stored data (as `ContentHasher` did)."""
    hasher = ContentHasher([name for name in CHECKSUM_ARRAYS if name in f])
    for name in hasher.digests:
        data = f[name]
        row_bytes = max(1, int(np.prod(data.shape[1:], dtype=np.int64)) * data.dtype.itemsize)
        step = max(1, VERIFY_BLOCK_BYTES // row_bytes)
        for a in range(0, len(data), step):
            hasher.update(name, data[a : a + step].astype(data.dtype.newbyteorder("<"), copy=False))
    return hasher.array_sha256()


def check_chunk_finite(rows: dict, faces: tuple[int, int], path, cause) -> None:
    """Refuse a chunk whose w or styles hold NaN or inf, or whose images did before their uint8
    conversion (`finite_images`, one flag per face): such a chunk gives black images and NaN
    statistics without any error. Checked on the host copy, in the writer thread; `cause()`
    says why it happened."""
    bad = {
        name: int((~np.isfinite(rows[name].reshape(len(rows[name]), -1))).any(axis=1).sum()) for name in ("w", "styles")
    }
    if "finite_images" in rows:
        bad["images"] = int((~rows["finite_images"].astype(bool)).sum())
    bad = {name: n for name, n in bad.items() if n}
    if bad:
        what = " and ".join(f"{name} ({n} of {faces[1] - faces[0]} faces)" for name, n in bad.items())
        raise FloatingPointError(
            f"faces {faces[0]}-{faces[1] - 1} have non-finite {what}: {cause()}; no shard written to {path}"
        )


def nonfinite_cause(G, truncation_psi: float) -> str:
    """The likely reason a chunk came out non-finite: the setting, the weights, or an overflow."""
    if not math.isfinite(truncation_psi):
        return f"dataset.truncation_psi is {truncation_psi} (it must be a finite number)"
    tensors = list(G.named_parameters()) + list(G.named_buffers())
    bad = [name for name, t in tensors if t.is_floating_point() and not bool(t.isfinite().all())]
    if bad:
        return (
            f"the generator's weights hold non-finite values (in {', '.join(bad[:3])}); the generator file is damaged"
        )
    return "the weights and settings are finite, so the mapping or the affine layers overflowed"


class VerificationCache:
    """Shards verified once per file version: a JSON beside `faces.h5` keyed by the shard's path,
    size, mtime_ns and checksum. Jobs that open the dataset concurrently may each verify and
    write it; a failed write only means the next job verifies again."""

    def __init__(self, faces_path):
        faces_path = Path(faces_path)
        self.path = faces_path.with_name(f"{faces_path.stem}.shards_verified.json")

    def _read(self) -> dict:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data.get("shards", {}) if isinstance(data, dict) and data.get("format") == CACHE_FORMAT else {}

    @staticmethod
    def key(shard: Path, checksum: str) -> dict:
        st = os.stat(shard)
        return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "content_sha256": checksum}

    def is_verified(self, shard: Path, checksum: str) -> bool:
        return self._read().get(str(shard.resolve())) == self.key(shard, checksum)

    def add(self, entries: dict[str, dict]) -> None:
        shards = {**self._read(), **entries}  # keep what concurrent jobs recorded meanwhile
        try:
            write_json_atomic(self.path, {"format": CACHE_FORMAT, "shards": shards})
        except OSError as exc:  # read-only folder, full disk, a concurrent writer's clean-up
            log.info(
                "could not record the verified shards in %s (%s); the next job verifies them again", self.path, exc
            )


def verify_shards(faces_path, shards: list[tuple[Path, str | None]]) -> None:
    """Check each (shard, recorded content_sha256) against its data, once per file version."""
    cache = VerificationCache(faces_path)
    unrecorded = [str(shard) for shard, checksum in shards if not checksum]
    if unrecorded:
        log.info(
            "%s: %d shard(s) were written before shards carried a content checksum (%s); their content is not "
            "verified (rerun their synthesize_shard jobs to add one)",
            faces_path, len(unrecorded), ", ".join(unrecorded[:3]),
        )  # fmt: skip
    verified = {}
    for shard, checksum in shards:
        if not checksum or cache.is_verified(shard, checksum):
            continue
        key = VerificationCache.key(shard, checksum)
        with h5py.File(shard, "r") as f:
            recorded = json.loads(f.attrs.get("array_sha256", "{}"))
            actual = shard_array_sha256(f)
        if combine(actual) != checksum:
            changed = [name for name in actual if recorded.get(name) != actual[name]] or list(actual)
            raise ValueError(
                f"{shard} is corrupt: its {', '.join(changed)} data no longer match the content_sha256 recorded "
                f"when it was written; regenerate it with `snakemake --forcerun {shard}` (its synthesize_shard "
                "job), or delete it and rerun snakemake"
            )
        verified[str(shard.resolve())] = key
    if verified:
        cache.add(verified)
        log.info("%s: verified the content of %d shard(s)", faces_path, len(verified))
