"""Edit metrics (paper Table 1) and FID through torch-fidelity's real loader.

The FID Inception weights cannot be downloaded here, so a seeded random-weight file in the
checkpoint's exact layout stands in (random_weights_file("fid_inception", ...)). It proves that
the file loads strictly through torch-fidelity, that FID is symmetric and zero for one set against
itself, that h5py input is read correctly, and that the network is never touched; not that the
numbers match the paper's.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import socket

import h5py
import numpy as np
import pytest
import torch
from conftest import shared_path
from PIL import Image

from pipeline_lib.encoders.random_weights import random_weights_file
from pipeline_lib.evaluation.metrics import (
    FID_RESIZE,
    INNER_LANDMARKS,
    compute_fid,
    expression_distance,
    identity_similarity,
    mean_and_standard_error,
    pose_error,
    summarise,
)

N_FID = 8  # per set: a non-trivial covariance, and the three FID calls stay fast on 2 CPU cores


def _landmarks(n=4, seed=0):
    return np.random.default_rng(seed).uniform(0, 256, size=(n, 68, 3))


# ---------------------------------------------------------------- identity


def test_identity_of_identical_embeddings_is_one():
    emb = np.random.default_rng(0).standard_normal((5, 512))
    np.testing.assert_allclose(identity_similarity(emb, emb), np.ones(5), atol=1e-12)


def test_identity_of_orthogonal_embeddings_is_zero_and_of_opposite_is_minus_one():
    a = np.zeros((2, 512))
    b = np.zeros((2, 512))
    a[0, 0], b[0, 1] = 3.0, 7.0  # orthogonal, different norms
    a[1, :] = 1.0
    b[1, :] = -2.0  # opposite
    np.testing.assert_allclose(identity_similarity(a, b), [0.0, -1.0], atol=1e-12)


def test_identity_is_scale_invariant_accepts_torch_and_matches_torch_cosine():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(6, 512, generator=g), torch.randn(6, 512, generator=g)
    got = identity_similarity(a.double() * 5.0, b)
    want = torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=1).numpy()
    np.testing.assert_allclose(got, want, atol=1e-12)


def test_identity_of_zero_embedding_is_nan_not_a_number_made_up():
    a = np.ones((2, 4))
    b = np.ones((2, 4))
    b[1] = 0
    got = identity_similarity(a, b)
    assert got[0] == pytest.approx(1.0) and np.isnan(got[1])


def test_metrics_refuse_unpaired_inputs():
    with pytest.raises(ValueError):
        identity_similarity(np.ones((3, 8)), np.ones((2, 8)))
    with pytest.raises(ValueError):
        pose_error(np.ones((3, 3)), np.ones((3, 2)))
    with pytest.raises(ValueError):
        expression_distance(np.ones((2, 5, 3)), np.ones((2, 5, 3)), 256)


# ---------------------------------------------------------------- expression


def test_inner_landmarks_are_the_51_points_18_to_68():
    idx = np.arange(68)[INNER_LANDMARKS]
    assert len(idx) == 51 and idx[0] == 17 and idx[-1] == 67


def test_expression_of_identical_landmarks_is_zero():
    lm = _landmarks()
    np.testing.assert_array_equal(expression_distance(lm, lm, 256), np.zeros(4))


def test_expression_of_a_3_4_pixel_shift_is_5_over_resolution():
    a = _landmarks()
    b = a.copy()
    b[:, INNER_LANDMARKS, 0] += 3.0
    b[:, INNER_LANDMARKS, 1] += 4.0
    b[:, :, 2] += 100.0  # depth must not count: the paper's distance is between 2D landmarks
    np.testing.assert_allclose(expression_distance(a, b, 256), np.full(4, 5.0 / 256), rtol=1e-12)


def test_expression_ignores_the_jaw_line():
    a = _landmarks()
    b = a.copy()
    b[:, :17, :2] += 50.0  # points 1..17 only
    np.testing.assert_array_equal(expression_distance(a, b, 256), np.zeros(4))


def test_expression_is_a_mean_over_points_not_a_sum():
    a = np.zeros((1, 68, 2))
    b = a.copy()
    b[0, 17, 0] = 51.0  # one inner point moved 51 px: mean distance 1 px
    np.testing.assert_allclose(expression_distance(a, b, 1), [1.0])
    np.testing.assert_allclose(expression_distance(torch.from_numpy(a), torch.from_numpy(b), 512), [1 / 512])


# ---------------------------------------------------------------- pose


def test_pose_of_identical_angles_is_zero():
    p = np.random.default_rng(0).uniform(-40, 40, (5, 3))
    np.testing.assert_array_equal(pose_error(p, p), np.zeros(5))


def test_pose_error_is_the_mean_of_squared_angle_differences():
    a = np.zeros((2, 3))
    b = np.array([[1.0, 2.0, 3.0], [-3.0, 0.0, 0.0]])
    np.testing.assert_allclose(pose_error(a, b), [(1 + 4 + 9) / 3, 9 / 3])
    np.testing.assert_allclose(pose_error(b + 10.0, a + 10.0), [14 / 3, 3.0])


# ---------------------------------------------------------------- summaries


def test_mean_and_standard_error_by_hand():
    v = [1.0, 2.0, 4.0, 9.0]
    mean = 16 / 4
    var = ((1 - 4) ** 2 + (2 - 4) ** 2 + 0 + (9 - 4) ** 2) / 3  # 38 / 3, ddof=1
    m, s = mean_and_standard_error(v)
    assert m == pytest.approx(mean) and s == pytest.approx(math.sqrt(var / 4))


def test_standard_error_undefined_below_two_values():
    m, s = mean_and_standard_error([3.0])
    assert m == 3.0 and math.isnan(s)
    m, s = mean_and_standard_error([])
    assert math.isnan(m) and math.isnan(s)


def test_summarise_gives_plain_json_numbers():
    out = summarise({"pose": np.array([1.0, 2.0, 4.0, 9.0]), "identity": torch.tensor([0.5])})
    assert out["pose"] == {"mean": 4.0, "sem": pytest.approx(math.sqrt(38 / 3 / 4)), "n": 4}
    assert out["identity"] == {"mean": 0.5, "sem": None, "n": 1}
    assert all(type(v) in (float, int, type(None)) for d in out.values() for v in d.values())
    json.loads(json.dumps(out, allow_nan=False))


# ---------------------------------------------------------------- FID


def _faces(prefix: str) -> np.ndarray:
    files = sorted(shared_path("assets", "faces256").glob(f"{prefix}_*.png"))[:N_FID]
    assert len(files) == N_FID, f"need {N_FID} {prefix} faces"
    return np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])


@pytest.fixture(scope="module")
def fid_weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("fid") / "weights-inception-2015-12-05-6726825d.pth"
    random_weights_file("fid_inception", path, seed=0)
    return path


@pytest.fixture(scope="module")
def faces_a():
    return _faces("stargan_ref_female")


@pytest.fixture(scope="module")
def faces_b():
    return _faces("stargan_ref_male")


@pytest.fixture
def no_network(monkeypatch):
    """Any download or socket connection during FID fails the test."""
    import torch_fidelity.feature_extractor_inceptionv3 as fe

    def refuse(*args, **kwargs):
        raise AssertionError("compute_fid tried the network")

    monkeypatch.setattr(fe, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


def test_fid_of_a_set_with_itself_is_zero_also_from_h5py(no_network, fid_weights, faces_a, tmp_path, caplog):
    with h5py.File(tmp_path / "faces.h5", "w") as fh:
        fh.create_dataset("images", data=faces_a, chunks=(1, 256, 256, 3))
    with h5py.File(tmp_path / "faces.h5", "r") as fh, caplog.at_level(logging.WARNING):
        # batch 5 does not divide 8: block reads must still hand back every image exactly once
        out = compute_fid(fh["images"], faces_a, fid_weights, batch_size=5)
    assert abs(out["fid"]) < 1e-3
    # KID of a set with itself ~ 0, up to the unbiased estimator's O(1/m) term: with X = Y it is
    # (2/m)(mean k(x, x') - mean k(x, x)) <= 0, -0.11 here for m = 8, small beside 0.79 for two sets.
    assert -0.15 < out["kid"] <= 1e-6
    assert out["kid_subset_size"] == N_FID and out["kid_subsets"] == 100  # capped at the set size
    assert out["num_a"] == out["num_b"] == N_FID and out["image_size"] == [256, 256]
    assert out["feature_extractor"] == "inception-v3-compat" and out["resize"] == FID_RESIZE
    assert out["torch_fidelity_version"] == "0.4.0"
    assert "fewer than the 2048" in caplog.text
    json.dumps(out)


def test_fid_is_symmetric_and_positive_for_different_sets(no_network, fid_weights, faces_a, faces_b):
    out_ab = compute_fid(faces_a, faces_b, fid_weights)
    ab, ba = out_ab["fid"], compute_fid(faces_b, faces_a, fid_weights)["fid"]
    assert ab > 1e-2  # far above the ~1e-5 numerical floor of the self-distance
    assert ab == pytest.approx(ba, rel=1e-4)
    assert out_ab["kid"] > 0.5 and out_ab["kid_std"] >= 0  # different sets: far above |KID| of a set with itself


def test_fid_without_weights_names_the_file_and_downloads_nothing(no_network, tmp_path, faces_a):
    missing = tmp_path / "weights-inception-2015-12-05-6726825d.pth"
    with pytest.raises(FileNotFoundError, match="weights-inception-2015-12-05-6726825d.pth"):
        compute_fid(faces_a[:2], faces_a[:2], missing)


def test_fid_refuses_wrong_image_formats(fid_weights, faces_a):
    with pytest.raises(ValueError, match="uint8"):
        compute_fid(faces_a.astype(np.float32), faces_a, fid_weights)
    with pytest.raises(ValueError, match="uint8"):
        compute_fid(faces_a.transpose(0, 3, 1, 2), faces_a, fid_weights)  # NCHW
    with pytest.raises(ValueError, match="at least 2"):
        compute_fid(faces_a[:1], faces_a, fid_weights)


def test_fid_inception_stand_in_loads_strictly_into_torch_fidelitys_class(fid_weights):
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(fid_weights))
    state = torch.load(fid_weights, weights_only=True)
    assert set(state) == set(net.state_dict())
    again = fid_weights.parent / "again.pth"
    random_weights_file("fid_inception", again, seed=0)
    other = torch.load(again, weights_only=True)
    assert all(torch.equal(state[k], other[k]) for k in state)  # seeded


def test_resize_description_matches_torch_fidelitys_source_and_numbers():
    """FID_RESIZE is a claim about torch-fidelity; check it against the code that runs."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

    src = inspect.getsource(FeatureExtractorInceptionV3.forward)
    assert "interpolate_bilinear_2d_like_tensorflow1x(" in src and "align_corners=False" in src
    assert "method=" not in src  # so the default, 'slow', runs
    assert "(x - 128) / 128" in src and FeatureExtractorInceptionV3.INPUT_IMAGE_SIZE == 299

    x = torch.from_numpy(np.random.default_rng(0).uniform(0, 255, (1, 1, 256, 256)).astype(np.float32))
    got = interpolate_bilinear_2d_like_tensorflow1x(x, size=(299, 299), align_corners=False)[0, 0].numpy()

    def taps(n_in, n_out):  # sample i at i * n_in / n_out, floor and floor + 1 clamped, no half-pixel offset
        c = np.arange(n_out) * (n_in / n_out)
        lo = np.floor(c).astype(int)
        return lo, np.minimum(lo + 1, n_in - 1), c - lo

    ylo, yhi, wy = taps(256, 299)
    xlo, xhi, wx = taps(256, 299)
    img = x[0, 0].double().numpy()
    top = img[ylo][:, xlo] * (1 - wx) + img[ylo][:, xhi] * wx
    bottom = img[yhi][:, xlo] * (1 - wx) + img[yhi][:, xhi] * wx
    want = top * (1 - wy[:, None]) + bottom * wy[:, None]
    np.testing.assert_allclose(got, want, atol=1e-2)  # torch-fidelity computes the coordinates in float32
    # and it is not PyTorch's half-pixel bilinear
    half = torch.nn.functional.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)[0, 0].numpy()
    assert np.abs(half - got).max() > 1.0
