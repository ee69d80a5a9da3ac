"""The 3D-FAN landmark backend: geometry exactly, networks only as plumbing.

The FAN and depth weights cannot be downloaded here, so the networks carry random weights and
the tests prove the plumbing only: weight files of both published kinds load strictly and run
nothing, outputs have the right shapes, are deterministic and differentiable. What does not
depend on the weights is tested against known answers: the soft-argmax on synthetic heatmaps,
the package's coordinate transforms and heatmap drawing, the fixed face box, and the pose fit on
the real BFM mean shape (../shared/assets/3ddfa_v2/bfm_68_landmarks.npz) under known rotations.
"""

from __future__ import annotations

import math
import os
import pickle
import warnings
import zipfile

import numpy as np
import pytest
import torch
from conftest import shared_path
from face_alignment.models import FAN, ResNetDepth
from face_alignment.utils import draw_gaussian, transform

from pipeline_lib.encoders.fan import (
    ALIGNED_FACE_BOX_256,
    FANLandmarks,
    crop_faces,
    crop_geometry,
    crop_to_image,
    depth_heatmaps,
    ffhq_landmark_box,
    heatmap_to_crop,
    image_to_model_frame,
    load_mean_shape,
    load_network_weights,
    pose_from_landmarks,
    soft_argmax,
)
from pipeline_lib.encoders.geometry import euler_degrees
from pipeline_lib.weights import WeightsError


@pytest.fixture(scope="module")
def bfm_path():
    return shared_path("assets", "3ddfa_v2", "bfm_68_landmarks.npz")


@pytest.fixture(scope="module")
def mean_shape(bfm_path):
    return load_mean_shape(bfm_path)


# ----------------------------------------------------------------------------------------------
# Soft-argmax and the package's coordinate conventions


def gaussian_maps(centres: torch.Tensor, std: float, amplitude: torch.Tensor, size: int = 64):
    grid = torch.arange(size, dtype=torch.float32)
    dx = grid[None, None, None, :] - centres[..., 0, None, None]
    dy = grid[None, None, :, None] - centres[..., 1, None, None]
    return amplitude[..., None, None] * torch.exp(-(dx**2 + dy**2) / (2 * std**2))


@pytest.mark.parametrize("std", [1.75, 3.25])
def test_soft_argmax_recovers_subpixel_peaks(std):
    gen = torch.Generator().manual_seed(0)
    centres = 8 + 48 * torch.rand(2, 68, 2, generator=gen)
    amplitude = 0.2 + torch.rand(2, 68, generator=gen)
    maps = gaussian_maps(centres, std, amplitude).requires_grad_(True)
    found = soft_argmax(maps)
    assert (found - centres).abs().max() < 0.02
    found.sum().backward()
    assert maps.grad.abs().sum() > 0


def test_soft_argmax_keeps_window_inside_the_map():
    centres = torch.tensor([[[0.6, 62.7], [63.0, 1.2]]])
    found = soft_argmax(gaussian_maps(centres, 1.75, torch.ones(1, 2)))
    assert found.isfinite().all() and (found - centres).abs().max() < 0.6


def test_heatmap_to_image_is_the_packages_transform():
    """The package maps heatmap peak (1-based col, row) - 0.5 to int(inverse transform); we give
    the same continuous value before the integer truncation."""
    cx, cy, side = crop_geometry(ALIGNED_FACE_BOX_256)
    scale = side / 200
    gen = torch.Generator().manual_seed(3)
    cols = torch.randint(0, 64, (50, 2), generator=gen).float()
    ours = crop_to_image(heatmap_to_crop(cols), cx, cy, side)
    for (col, row), (x, y) in zip(cols.tolist(), ours.tolist()):
        theirs = transform([col + 0.5, row + 0.5], torch.tensor([cx, cy]), scale, 64, invert=True)
        # torch's .int() truncates towards zero; allow float rounding at integer boundaries
        assert abs(int(theirs[0]) - math.trunc(x)) <= (1 if abs(x - round(x)) < 1e-3 else 0)
        assert abs(int(theirs[1]) - math.trunc(y)) <= (1 if abs(y - round(y)) < 1e-3 else 0)


def test_crop_and_inverse_transform_agree():
    """A smooth blob centred at an image point appears in the crop where crop_to_image says."""
    cx, cy, side = crop_geometry(ALIGNED_FACE_BOX_256)
    grid = torch.arange(256, dtype=torch.float32)
    blob = torch.exp(-((grid[None, :] - 100.3) ** 2 + (grid[:, None] - 180.6) ** 2) / (2 * 6.0**2))
    crop = crop_faces(blob.expand(1, 3, 256, 256), cx, cy, side)[0, 0]
    weights = crop / crop.sum()
    centres = grid + 0.5  # crop position of crop pixel j's centre
    u = torch.stack([(weights.sum(0) * centres).sum(), (weights.sum(1) * centres).sum()])
    assert torch.allclose(crop_to_image(u, cx, cy, side), torch.tensor([100.3, 180.6]), atol=0.02)


def test_depth_heatmaps_equal_the_packages_drawing():
    """Where the package's rounding is exact (p - 1.5 integral), the rendered maps are identical.

    (Within 7 px of the left/top edge the package stamps its kernel shifted; not reproduced.)
    """
    points = torch.tensor([[[100.5, 140.5], [7.5, 250.5], [-2.5, 40.5]]])
    ours = depth_heatmaps(points)
    for j, (x, y) in enumerate(points[0].tolist()):
        theirs = np.zeros((256, 256), dtype=np.float32)
        if x > 0 and y > 0:
            theirs = draw_gaussian(theirs, [x, y], 2)
        assert np.allclose(ours[0, j].numpy(), theirs, atol=1e-6), j
    assert ours[0, 2].eq(0).all()


def test_face_box_is_the_ffhq_aligned_mean_face(mean_shape):
    derived = ffhq_landmark_box(mean_shape)
    assert np.allclose(derived, ALIGNED_FACE_BOX_256, atol=0.25)
    left, top, right, bottom = ALIGNED_FACE_BOX_256
    assert (left + right) / 2 == 127.5  # symmetric, so a mirrored face sees the mirrored crop


# ----------------------------------------------------------------------------------------------
# Head pose


def rotation(yaw, pitch, roll) -> torch.Tensor:
    """R = Rz(roll) Ry(-yaw) Rx(pitch): the matrix whose 3DDFA_V2 angles are (yaw, pitch, roll)."""
    y, p, r = (math.radians(a) for a in (yaw, pitch, roll))
    rz = torch.tensor([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    ry = torch.tensor([[math.cos(-y), 0, math.sin(-y)], [0, 1, 0], [-math.sin(-y), 0, math.cos(-y)]])
    rx = torch.tensor([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    return (rz @ ry @ rx).double()


def posed_landmarks(mean_shape, yaw, pitch, roll, scale=70.0, offset=(128.0, 140.0, 30.0)):
    """The mean shape turned by (yaw, pitch, roll), as image landmarks (y down, z to the viewer)."""
    model = scale * mean_shape.double() @ rotation(yaw, pitch, roll).T
    return (image_to_model_frame(model) + torch.tensor(offset, dtype=torch.float64)).float()


def test_mean_shape_has_zero_pose(mean_shape):
    pose = pose_from_landmarks(posed_landmarks(mean_shape, 0, 0, 0)[None], mean_shape)
    assert pose.abs().max() < 1e-3


ANGLES = [(20, 0, 0), (0, 15, 0), (0, 0, 10), (-35, 12, -8), (25, -20, 15), (60, 5, 3), (-5, -30, 25)]


def test_pose_recovers_known_rotations(mean_shape):
    expected = torch.tensor(ANGLES, dtype=torch.float32)
    for angles in expected:  # the test's own rotation matches 3DDFA_V2's matrix2angle
        assert torch.allclose(euler_degrees(rotation(*angles.tolist())[None]).float()[0], angles, atol=1e-4)
    landmarks = torch.stack([posed_landmarks(mean_shape, *a) for a in ANGLES])
    pose = pose_from_landmarks(landmarks, mean_shape)
    assert (pose - expected).abs().max() < 0.1


def test_pose_signs_have_3ddfas_physical_meaning(mean_shape):
    nose, right_eye_corner = 30, 45  # 45: outer corner of the eye on the image's right

    def relative(lm, i):
        return lm[i] - lm.mean(dim=0)

    front = posed_landmarks(mean_shape, 0, 0, 0)
    assert relative(posed_landmarks(mean_shape, 20, 0, 0), nose)[0] < relative(front, nose)[0] - 10  # turns left
    assert relative(posed_landmarks(mean_shape, 0, 20, 0), nose)[1] > relative(front, nose)[1] + 10  # looks down
    rolled = posed_landmarks(mean_shape, 0, 0, 20)
    assert relative(rolled, right_eye_corner)[1] < relative(front, right_eye_corner)[1] - 5  # counter-clockwise


def test_pose_is_differentiable(mean_shape):
    landmarks = posed_landmarks(mean_shape, 10, -5, 3).requires_grad_(True)
    pose_from_landmarks(landmarks[None], mean_shape).sum().backward()
    assert landmarks.grad.isfinite().all() and landmarks.grad.abs().sum() > 0


# ----------------------------------------------------------------------------------------------
# Weight files and the encoder (random weights)


@pytest.fixture(scope="module")
def networks():
    torch.manual_seed(0)
    fan, depth = FAN(4).eval(), ResNetDepth().eval()
    gen = torch.Generator().manual_seed(1)
    for net in (fan, depth):
        for name, buf in net.named_buffers():
            if name.endswith("running_var"):
                buf.copy_(0.5 + torch.rand(buf.shape, generator=gen))
    return fan, depth


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory, networks):
    """As face-alignment 1.5 downloads them: FAN a plain state dict, depth a training checkpoint
    with DataParallel names. (The TorchScript archives are tested on smaller networks below.)"""
    fan, depth = networks
    folder = tmp_path_factory.mktemp("fan")
    torch.save(fan.state_dict(), folder / "3DFAN4-test.pth.tar")
    torch.save({"state_dict": {f"module.{k}": v for k, v in depth.state_dict().items()}}, folder / "depth-test.pth.tar")
    return folder / "3DFAN4-test.pth.tar", folder / "depth-test.pth.tar"


@pytest.fixture(scope="module")
def encoder(weight_files, bfm_path):
    return FANLandmarks.from_files(*weight_files, bfm_path)


def test_state_dict_files_load_strictly_through_from_files(encoder, networks):
    for loaded, original in zip((encoder.fan, encoder.depth), networks):
        reference = original.state_dict()
        for key, value in loaded.state_dict().items():
            assert torch.equal(value, reference[key]), key
    assert not encoder.training and not any(p.requires_grad for p in encoder.parameters())


@pytest.fixture(scope="module")
def small_encoder(mean_shape):
    """The same pipeline around one hourglass and a 1-1-1-1 depth ResNet: a third of the cost."""
    torch.manual_seed(2)
    return FANLandmarks(FAN(1), ResNetDepth(layers=[1, 1, 1, 1]), mean_shape)


def test_encoder_shapes_batch_independence_and_gradients(small_encoder):
    encoder = small_encoder
    img = torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(5)) * 2 - 1
    with torch.no_grad():
        landmarks, pose = encoder.landmarks_and_pose(img)
        single = encoder.landmarks(img[1:])
    assert landmarks.shape == (2, 68, 3) and pose.shape == (2, 3)
    assert landmarks.isfinite().all() and pose.isfinite().all()
    assert torch.allclose(single, landmarks[1:], atol=1e-3)  # BatchNorm uses running statistics
    one = img[:1].clone().requires_grad_(True)
    encoder.landmarks(one).sum().backward()
    assert one.grad.abs().sum() > 0


def test_traced_archive_loads(tmp_path):
    """face-alignment 1.3-1.4's `3DFAN4_1.6-*.zip` is a traced FAN: its tensors, nothing else."""
    fan = FAN(1).eval()
    path = tmp_path / "3DFAN1_1.6-test.zip"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript is deprecated; the archives still exist
        torch.jit.trace(fan, torch.zeros(1, 3, 64, 64), check_trace=False).save(str(path))
    target = FAN(1)
    load_network_weights(path, target, "FAN")
    assert all(torch.equal(a, b) for a, b in zip(target.state_dict().values(), fan.state_dict().values()))


def test_scripted_archive_loads(tmp_path):
    small = ResNetDepth(layers=[1, 1, 1, 1]).eval()
    path = tmp_path / "depth_small.zip"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.script(small).save(str(path))
    target = ResNetDepth(layers=[1, 1, 1, 1])
    load_network_weights(path, target, "depth")
    assert all(torch.equal(a, b) for a, b in zip(target.state_dict().values(), small.state_dict().values()))


class _RunsACommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_hostile_archive_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "3DFAN4_hostile.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("hostile/data.pkl", pickle.dumps(_RunsACommand(marker), protocol=2))
        archive.writestr("hostile/constants.pkl", pickle.dumps((), protocol=2))
        archive.writestr("hostile/code/__torch__/m.py", "")
    with pytest.raises(WeightsError, match=r"3DFAN4_hostile.zip.*refused global '(posix|os)\.system'"):
        load_network_weights(path, FAN(1), "FAN")
    assert not marker.exists()


def test_wrong_files_are_named(tmp_path, bfm_path):
    with pytest.raises(FileNotFoundError, match="absent.pth.tar.*3D-FAN"):
        FANLandmarks.from_files(tmp_path / "absent.pth.tar", tmp_path / "d.pth.tar", bfm_path)
    two_d = tmp_path / "2DFAN4-11f355bf06.pth.tar"
    two_d.write_bytes(b"")
    with pytest.raises(WeightsError, match="2DFAN4-11f355bf06.pth.tar: 2D-FAN"):
        load_network_weights(two_d, FAN(1), "3D-FAN")
    garbage = tmp_path / "garbage.pth.tar"
    garbage.write_bytes(b"<html>not found</html>")
    with pytest.raises(WeightsError, match="garbage.pth.tar: cannot be read"):
        load_network_weights(garbage, FAN(1), "3D-FAN")
    other = tmp_path / "resnet.pth"
    torch.save(ResNetDepth(layers=[1, 1, 1, 1]).state_dict(), other)
    with pytest.raises(WeightsError, match=r"resnet.pth: not 3D-FAN: \d+ missing"):
        load_network_weights(other, FAN(1), "3D-FAN")
    with pytest.raises(WeightsError, match=r"resnet.pth: 'layer1.0.conv1.weight' has shape"):
        load_network_weights(other, _shrunk_depth(), "depth")
    bad_bfm = tmp_path / "bfm.npz"
    np.savez(bad_bfm, u_base=np.zeros(10))
    with pytest.raises(WeightsError, match="bfm.npz: `u_base` has 10 values"):
        load_mean_shape(bad_bfm)


def _shrunk_depth():
    """Same names as ResNetDepth(layers=[1,1,1,1]) but a different layer1 width."""
    net = ResNetDepth(layers=[1, 1, 1, 1])
    net.layer1[0].conv1 = torch.nn.Conv2d(64, 32, 1, bias=False)
    return net
