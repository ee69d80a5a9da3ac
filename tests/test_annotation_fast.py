"""The annotation stage's fast inference (issue 16) against the float32 reference.

The contract: landmarks within 0.1 px and pose within 0.05 degrees of float32 on the same
images. It is checked with the real 3DDFA_V2 MobileNet-0.5 on real aligned faces, in the
precision config.yaml gives it. FAN has no real weights here, so what can be checked without
them is: its landmark decoding and pose fit stay float32 under autocast (planted heatmaps that
the network hands over in reduced precision, exactly as a trained FAN's would be), and the
fast path runs the real architecture end to end. The annotation loop itself (reader thread,
asynchronous copies, padding, float32 fallback) is checked against direct encoder calls.
"""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch
from conftest import shared_path
from face_alignment.models import FAN, ResNetDepth
from PIL import Image
from test_fan import gaussian_maps

from pipeline_lib.dataset.annotation import BatchReader, annotate_faces, annotate_images
from pipeline_lib.dataset.synthesis import SynthesisSettings, merge_shards, write_shard
from pipeline_lib.encoders.base import EmbeddingEncoder
from pipeline_lib.encoders.fan import (
    FANLandmarks,
    aligned_face_box,
    crop_geometry,
    crop_to_image,
    depth_heatmaps,
    heatmap_to_crop,
    load_mean_shape,
    pose_from_landmarks,
    soft_argmax,
)
from pipeline_lib.encoders.inference import EncoderRunner
from pipeline_lib.encoders.tddfa import TDDFA
from pipeline_lib.generator.stylegan2 import GeneratorConfig, init_random_generator
from pipeline_lib.settings import AnnotationSettings, load_config

LANDMARK_PX, POSE_DEG = 0.1, 0.05  # issue 16's fidelity contract

# The faces among the 81 of ../shared/assets/faces256 whose float16 landmarks or pose strayed
# furthest from float32 (measured once over all 81, in both memory layouts; float16 convolutions
# are slow on CPUs, so the test runs where the bound is tightest rather than on all of them).
# All 81 at the time: float16 at most 0.074 px and 0.028 degrees; bfloat16 0.74 px and 0.17 degrees.
HARDEST_FACES = (
    "idinvert_000017",
    "stargan_ref_female_113393",
    "stargan_src_female_039913",
    "idinvert_000013",
    "stargan_ref_male_094805",
    "idinvert_000014",
    "stargan_ref_male_060259",
    "idinvert_000007",
)


def _configured_precision(kind: str) -> str:
    settings = AnnotationSettings.parse(load_config()["annotation"])
    settings.validate()
    return settings.precision[kind]


@pytest.fixture(scope="module")
def tddfa():
    folder = shared_path("assets", "3ddfa_v2")
    return TDDFA.from_files(
        folder / "mb05_120x120.pth", folder / "param_mean_std_62d_120x120.pkl", folder / "bfm_68_landmarks.npz"
    )


@pytest.fixture(scope="module")
def hard_faces():
    folder = shared_path("assets", "faces256")
    arrays = [np.asarray(Image.open(folder / f"{name}.png").convert("RGB")) for name in HARDEST_FACES]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 127.5 - 1


def _errors(fast: dict, reference: dict) -> tuple[float, float]:
    landmarks = (fast["landmarks"] - reference["landmarks"]).abs().max().item()  # x, y and z
    return landmarks, (fast["pose"] - reference["pose"]).abs().max().item()


def test_configured_3ddfa_precision_meets_the_contract_on_real_faces(tddfa, hard_faces):
    """Autocast in the configured dtype, as on the GPU. The CPU runs it in the default memory
    layout: its channels-last float16 convolutions take a slow path (the layout moved the
    largest float16 deviation over the 81 faces from 0.059 to 0.074 px)."""
    precision = _configured_precision("3ddfa_mb05")
    reference = EncoderRunner(tddfa)(hard_faces)
    fast = EncoderRunner(tddfa, precision)(hard_faces)
    assert all(v.dtype == torch.float32 and v.isfinite().all() for v in fast.values())
    landmark_px, pose_deg = _errors(fast, reference)
    assert landmark_px < LANDMARK_PX and pose_deg < POSE_DEG, (precision, landmark_px, pose_deg)


def test_bfloat16_would_break_the_contract_for_3ddfa(tddfa, hard_faces):
    """Why config.yaml gives 3DDFA_V2 float16: bf16's 8-bit mantissa moves it too far."""
    reference = EncoderRunner(tddfa)(hard_faces)
    landmark_px, pose_deg = _errors(EncoderRunner(tddfa, "bfloat16", fast=True)(hard_faces), reference)
    assert landmark_px > 2 * LANDMARK_PX and pose_deg > 2 * POSE_DEG


# ----------------------------------------------------------------------------------------------
# FAN: what holds without trained weights


@pytest.fixture(scope="module")
def mean_shape():
    return load_mean_shape(shared_path("assets", "3ddfa_v2", "bfm_68_landmarks.npz"))


class PlantedHeatmaps(torch.nn.Module):
    """A stand-in for FAN's hourglasses: Gaussian heatmaps (std 1.75 heatmap px, FAN's own
    width) at fixed sub-pixel points, emitted through a 1x1 convolution so that autocast hands
    them over in bf16/float16 exactly as it does a trained network's last layer."""

    def __init__(self, centres: torch.Tensor):
        super().__init__()
        self.register_buffer("maps", gaussian_maps(centres, 1.75, torch.ones(centres.shape[:-1])))
        self.head = torch.nn.Conv2d(68, 68, 1, bias=False)
        torch.nn.init.dirac_(self.head.weight)

    def forward(self, crop):
        return [self.head(self.maps.expand(crop.shape[0], -1, -1, -1))]


class ConstantDepth(torch.nn.Module):
    def __init__(self, z: torch.Tensor):
        super().__init__()
        self.fc = torch.nn.Linear(1, 68)
        with torch.no_grad():
            self.fc.weight.zero_()
            self.fc.bias.copy_(z)

    def forward(self, x):
        return self.fc(x[:, 0, 0, :1])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_fan_decoding_and_pose_fit_stay_float32_under_autocast(mean_shape, dtype):
    """Under autocast, the landmarks must be the float32 decoding of whatever heatmaps the
    network hands over, and the pose the float32 fit to them: rounding may reach the networks,
    not the 1/64-crop soft-argmax or the 3x3 covariance of the similarity fit."""
    gen = torch.Generator().manual_seed(0)
    centres = 12 + 40 * torch.rand(1, 68, 2, generator=gen)
    z = 20 * torch.randn(68, generator=gen)
    encoder = FANLandmarks(PlantedHeatmaps(centres), ConstantDepth(z), mean_shape)
    img = torch.zeros(2, 3, 256, 256)
    with torch.no_grad(), torch.autocast("cpu", dtype=dtype):
        landmarks, pose = encoder.landmarks_and_pose(img)
        handed_over = encoder.fan(img)[-1]
    assert landmarks.dtype == pose.dtype == torch.float32
    geometry = crop_geometry(aligned_face_box(256, 256))
    expected_xy = crop_to_image(heatmap_to_crop(soft_argmax(handed_over.float())), *geometry)
    assert (landmarks[..., :2] - expected_xy).abs().max() < 1e-4
    expected_z = (z.to(dtype).float() * geometry[2] / 256).expand(2, 68)  # the depth head's output, rounded
    assert (landmarks[..., 2] - expected_z).abs().max() < 1e-4
    assert (pose - pose_from_landmarks(landmarks, mean_shape)).abs().max() < 1e-4
    # ...and the rounding of the heatmaps themselves costs far less than the contract.
    with torch.no_grad():
        exact = encoder.landmarks(img)
    assert (landmarks[..., :2] - exact[..., :2]).abs().max() < LANDMARK_PX / 4


def test_pose_fit_is_float32_under_autocast(mean_shape):
    rotation = torch.linalg.matrix_exp(torch.tensor([[0.0, -0.2, 0.3], [0.2, 0.0, -0.1], [-0.3, 0.1, 0.0]]))
    landmarks = (100 * mean_shape @ rotation.T * torch.tensor([1.0, -1.0, 1.0]) + 128)[None]
    exact = pose_from_landmarks(landmarks, mean_shape)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert (pose_from_landmarks(landmarks, mean_shape) - exact).abs().max() < 1e-4


def test_depth_heatmaps_in_a_reduced_dtype_round_the_float32_maps():
    points = 8 + 48 * torch.rand(2, 68, 2, generator=torch.Generator().manual_seed(1))
    points[0, 3] = torch.tensor([-2.0, 50.0])  # an invisible point stays blank
    exact = depth_heatmaps(points, size=64)
    for dtype in (torch.bfloat16, torch.float16):
        maps = depth_heatmaps(points, size=64, dtype=dtype)
        assert maps.dtype == dtype
        assert torch.allclose(maps.float(), exact, rtol=2 * torch.finfo(dtype).eps, atol=1e-6)
        assert maps[0, 3].abs().max() == 0


def test_fast_fan_runs_the_real_architecture(mean_shape):
    """One hourglass and a 1-1-1-1 depth ResNet (the real classes), random weights: the fast
    path's shapes, dtypes and finiteness, and that its channels-last reduced-precision network
    computes float32's heatmaps up to rounding. (Random heatmaps have no peaks, so their
    arg-max, hence the landmarks, are not comparable between dtypes.)"""
    torch.manual_seed(2)
    encoder = FANLandmarks(FAN(1), ResNetDepth(layers=[1, 1, 1, 1]), mean_shape).eval()
    img = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(5)) * 2 - 1
    runner = EncoderRunner(encoder, "bfloat16", fast=True)
    fast = runner(img)
    assert fast["landmarks"].shape == (1, 68, 3) and fast["pose"].shape == (1, 3)
    assert all(v.dtype == torch.float32 and v.isfinite().all() for v in fast.values())
    with torch.no_grad():
        exact = encoder.heatmaps(img)[1]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            rounded = runner.encoder.heatmaps(img)[1]
    assert rounded.dtype == torch.bfloat16
    assert ((rounded.float() - exact).norm() / exact.norm()) < 3e-2


# ----------------------------------------------------------------------------------------------
# The annotation loop


class TinyEmbedding(EmbeddingEncoder):
    """A small convolutional embedding; `gain` makes its float16 output overflow on purpose."""

    dim = 8
    networks = ("net",)

    def __init__(self, gain: float = 1.0):
        super().__init__()
        torch.manual_seed(4)
        self.net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 4, 4), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
        self.gain = gain
        self.eval().requires_grad_(False)

    def embed(self, img):
        return self.net(img) * self.gain


def test_reader_pads_the_last_batch(tmp_path):
    with h5py.File(tmp_path / "x.h5", "w") as f:
        data = np.random.default_rng(0).integers(0, 255, (7, 4, 4, 3), dtype=np.uint8)
        images = f.create_dataset("images", data=data, chunks=(1, 4, 4, 3))
        for pad in (False, True):
            reader = BatchReader(images, 3, pad=pad, pin=False)
            seen = []
            for a, count, buf in reader:
                seen.append((a, count))
                assert np.array_equal(buf[:count].numpy(), data[a : a + count])
                assert not pad or buf[count:].sum() == 0
                reader.release(buf)
            reader.close()
            assert seen == [(0, 3), (3, 3), (6, 1)]


def test_loop_equals_direct_calls_and_recomputes_overflowed_batches(tmp_path):
    data = np.random.default_rng(1).integers(0, 255, (7, 256, 256, 3), dtype=np.uint8)
    overflowing = EncoderRunner(TinyEmbedding(gain=1e8), "float16")  # float16 saturates at 65,504
    plain = EncoderRunner(TinyEmbedding(), "bfloat16", fast=True)
    with h5py.File(tmp_path / "x.h5", "w") as f:
        images = f.create_dataset("images", data=data, chunks=(1, 256, 256, 3))
        for name in ("over", "plain"):
            f.create_dataset(name, (7, 8), dtype="f4")
        jobs = [(overflowing, {"embedding": "over"}), (plain, {"embedding": "plain"})]
        fallbacks = annotate_images(images, f, jobs, batch_size=3, device="cpu", progress=False)
        written = {name: f[name][:] for name in ("over", "plain")}
    x = torch.from_numpy(data).permute(0, 3, 1, 2).float() / 127.5 - 1
    assert fallbacks == 3  # every batch of the overflowing encoder, none of the other
    assert np.allclose(written["over"], overflowing.reference(x)["embedding"].numpy(), rtol=1e-5)
    assert np.allclose(written["plain"], plain(x)["embedding"].numpy(), rtol=1e-6, atol=1e-6)


def test_annotate_faces_records_how_each_encoder_ran(tmp_path, tddfa):
    config = GeneratorConfig(
        z_dim=16, w_dim=16, img_resolution=256, num_mapping_layers=2, channel_base=2048, channel_max=8
    )
    G = init_random_generator(config, seed=3, w_avg_samples=50)
    settings = SynthesisSettings.defaults(chunk_size=4, dtype="float32", compile=False)
    write_shard(tmp_path / "s.h5", G, "x", 0, 8, 8, settings, 8, progress=False)
    merge_shards([tmp_path / "s.h5"], tmp_path / "faces.h5", 6, 2)
    fast = EncoderRunner(tddfa, "float32", fast=True)
    summary = annotate_faces(
        tmp_path / "faces.h5",
        tmp_path / "a.h5",
        {"3ddfa_mb05": fast},
        TinyEmbedding(),
        TinyEmbedding(),
        5,
        progress=False,
    )
    with h5py.File(tmp_path / "a.h5", "r") as f:
        inference = json.loads(f.attrs["encoder_inference"])
        landmarks = f["landmarks/3ddfa_mb05"][:]
        with h5py.File(tmp_path / "faces.h5", "r") as faces:
            x = torch.from_numpy(faces["images"][:]).permute(0, 3, 1, 2).float() / 127.5 - 1
    assert summary["faces"] == 8 and summary["float32_fallbacks"] == 0
    assert inference["3ddfa_mb05"] == {"precision": "float32", "fast": True, "compile": False}
    assert inference["identity"] == {"precision": "float32", "fast": False, "compile": False}
    assert np.abs(landmarks - EncoderRunner(tddfa)(x)["landmarks"].numpy()).max() < 1e-3
    assert next(tddfa.regressor.parameters()).is_contiguous()  # the fast copy left the caller's as it was


def test_settings_refuse_unknown_dtypes_and_missing_encoders():
    raw = load_config()["annotation"]
    AnnotationSettings.parse(raw).validate()
    with pytest.raises(ValueError, match="one of"):
        AnnotationSettings.parse({**raw, "precision": {**raw["precision"], "fan": "float8"}}).validate()
    missing = {k: v for k, v in raw["precision"].items() if k != "fan"}
    with pytest.raises(ValueError, match="one entry per encoder"):
        AnnotationSettings.parse({**raw, "precision": missing}).validate()
    assert AnnotationSettings.parse(raw).precision_on("fan", "cpu") == "float32"
