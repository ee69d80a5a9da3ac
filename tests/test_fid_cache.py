"""FID/KID from cached Inception features (and their cached FID statistics) equal torch-fidelity's
on the same images, and cached features of another version of the real faces are refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline_lib.evaluation.fid import fid_kid, inception_features, read_real, write_real_features
from pipeline_lib.evaluation.metrics import compute_fid


def test_cached_features_give_torch_fidelitys_fid_and_kid(real_faces_fid):
    """The session's real faces and their cached features (conftest: write_real_features) against
    torch-fidelity computing both sides from the images."""
    faces, weights, features = real_faces_fid
    torch.manual_seed(0)
    import h5py

    with h5py.File(faces, "r") as f:
        reals = f["images"][()]
    edited = np.ascontiguousarray(reals[:12][:, :, ::-1])  # mirrored faces stand in for edits
    real, statistics = read_real(features, faces)
    edited_features = inception_features(edited, weights, batch_size=16)
    cached = fid_kid(edited_features, real, statistics_b=statistics)
    direct = compute_fid(edited, reals, weights, batch_size=16)
    assert cached == fid_kid(edited_features, real)  # the stored statistics are the ones a job would compute
    assert cached["num_a"] == direct["num_a"] == 12 and cached["num_b"] == direct["num_b"] == len(reals)
    assert cached["fid"] == pytest.approx(direct["fid"], rel=1e-3)
    assert cached["kid"] == pytest.approx(direct["kid"], rel=1e-3, abs=1e-6)


def test_features_of_another_version_of_the_real_faces_are_refused(real_faces_fid, tmp_path):
    faces, weights, _ = real_faces_fid
    import h5py

    copy = tmp_path / "ffhq256.h5"
    with h5py.File(faces, "r") as f, h5py.File(copy, "w") as out:
        out["images"] = f["images"][:4]  # a small real-face file keeps this test quick
    write_real_features(copy, weights, tmp_path / "real_features.h5", batch_size=16)
    features, statistics = read_real(tmp_path / "real_features.h5", copy)  # the same file: accepted
    with h5py.File(tmp_path / "real_features.h5", "r+") as f:  # written before the statistics were cached
        del f["mu"], f["sigma"]
    old_features, recomputed = read_real(tmp_path / "real_features.h5", copy)
    assert np.array_equal(features, old_features)
    assert all(np.array_equal(statistics[k], recomputed[k]) for k in ("mu", "sigma"))
    with open(copy, "r+b") as fh:  # one more byte: another version of the real faces
        fh.seek(0, 2)
        fh.write(b"\0")
    with pytest.raises(ValueError, match="another version of .*rerun the real_features rule"):
        read_real(tmp_path / "real_features.h5", copy)
