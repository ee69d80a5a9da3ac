"""Opening the dataset's files, and checking that they belong together, in one place.

`faces.h5` reads its arrays from the shard files through HDF5 virtual datasets, which silently
read a missing source as fill values: `open_faces` checks every shard first. `annotations.h5`
and `style_stats.h5` record the `dataset_id` of the faces they were computed from; every reader
checks it, so that a rerun of one stage can never be paired with stale results of another.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch

from pipeline_lib.dataset.integrity import verify_shards
from pipeline_lib.files import open_h5


def open_faces(path) -> h5py.File:
    """Open `faces.h5` for reading after checking that every shard it reads from is there, is
    the shard it was merged from (same dataset and face range) and still holds the content it
    was written with (`content_sha256`, verified once per file version: `integrity.py`)."""
    path = Path(path)
    f = open_h5(path, "the merged face dataset", "merge_dataset")
    checked = []
    try:
        for src in json.loads(f.attrs["shards"]):
            shard = path.parent / src["path"]
            if not shard.exists():
                raise FileNotFoundError(
                    f"{path} reads faces {src['start']}-{src['stop']} from {shard}, which is missing; "
                    f"regenerate it (snakemake {shard}) or rerun the dataset stage"
                )
            with open_h5(shard, "a face shard", "synthesize_shard") as s:
                same = s.attrs.get("dataset_id") == f.attrs["dataset_id"] and (
                    int(s.attrs["start"]),
                    int(s.attrs["stop"]),
                ) == (src["start"], src["stop"])
            if not same:
                raise ValueError(f"{shard} is not the shard {path} was merged from; rerun the merge_dataset rule")
            checked.append((shard, src.get("content_sha256")))
        verify_shards(path, checked)
    except BaseException:
        f.close()
        raise
    return f


def _check_source(f: h5py.File, path, dataset_id: str, faces_path, rule: str) -> None:
    if f.attrs.get("source_dataset_id") != dataset_id:
        raise ValueError(f"{path} was computed from another dataset than {faces_path}; rerun the {rule} rule")


@dataclass
class Faces:
    """What every consumer of the dataset reads into memory: w, the splits and the settings the
    faces were made with (their images stay on disk)."""

    path: Path
    w: np.ndarray  # [N, w_dim] float32, one w per face (the same at every layer)
    identity_split: np.ndarray  # indices of the identity faces
    attribute_split: np.ndarray  # indices of the attribute faces
    dataset_id: str
    noise_mode: str
    truncation_psi: float


def read_faces(path) -> Faces:
    with open_faces(path) as f:
        return Faces(
            path=Path(path),
            w=f["w"][:],
            identity_split=f["split/identity"][:],
            attribute_split=f["split/attribute"][:],
            dataset_id=str(f.attrs["dataset_id"]),
            noise_mode=str(f.attrs["noise_mode"]),
            truncation_psi=float(f.attrs["truncation_psi"]),
        )


def read_annotations(path, faces: Faces, names=("identity", "attribute"), detectors=(), device="cpu") -> dict:
    """Tensors of `annotations.h5` on `device`: the named arrays, plus `landmarks/<d>` and
    `pose/<d>` of each detector in `detectors`, after checking they annotate `faces`."""
    out = {}
    with open_h5(path, "the annotations", "annotate_dataset") as a:
        _check_source(a, path, faces.dataset_id, faces.path, "annotate_dataset")
        for detector in detectors:
            if f"landmarks/{detector}" not in a:
                have = sorted(a["landmarks"].keys())
                raise KeyError(f"{path} has no landmarks of {detector!r} (has {have}); rerun annotate_dataset")
        keys = list(names) + [f"{kind}/{d}" for d in detectors for kind in ("landmarks", "pose")]
        for key in keys:
            out[key] = torch.from_numpy(a[key][:]).to(device)
    return out


def read_style_stats(path, faces: Faces, device="cpu", min_std: float = 1e-8) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of S (Eq. 12), after checking they were computed on `faces`.

    The channels that `style_statistics` found constant over the dataset (`S/constant_channels`;
    in older files, those of std 0) get std = inf, so that their term (s - mu)^2 / (2 sigma^2)
    is exactly 0 with a zero gradient: they are left out of Eq. 12's sum. (Clamping their std
    at 1e-8 instead weighted any dS on them by 5e15 and made the term 5e11.) Other stds are
    clamped at `min_std`."""
    with open_h5(path, "the style statistics", "style_statistics") as s:
        _check_source(s, path, faces.dataset_id, faces.path, "style_statistics")
        mean = torch.from_numpy(s["S/mean"][:]).float()
        std = torch.from_numpy(s["S/std"][:]).float()
        constant = s["S/constant_channels"][:] if "S/constant_channels" in s else np.flatnonzero(std.numpy() == 0)
    std = std.clamp_min(min_std)
    std[torch.from_numpy(np.asarray(constant, dtype=np.int64))] = float("inf")
    return mean.to(device), std.to(device)


def attribute_source(path) -> tuple[np.ndarray, str]:
    """Indices and a description of the attribute faces in `path`: every face of `ffhq256.h5`,
    or the attribute split of a generated `faces.h5` (the demo, without FFHQ)."""
    with open_h5(path, "the attribute faces") as f:
        if "split/attribute" in f:
            return f["split/attribute"][:], "generated (dataset attribute split; no FFHQ configured)"
        return np.arange(len(f["images"])), "real (FFHQ)"
