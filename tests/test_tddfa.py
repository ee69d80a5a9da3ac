"""The 3DDFA_V2 re-implementation on the official mb05 weights and real aligned faces.

No reference outputs of the original code are stored, so the tests check what must hold for any
correct implementation: mirror and rotation symmetry, gradients, and where landmarks land on
FFHQ-aligned faces. Tolerances are measured values (all 81 faces of ../shared/assets/faces256,
noted beside each) with a margin.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import shared_path
from PIL import Image

from pipeline_lib.encoders.tddfa import (
    TDDFA,
    TDDFAFileError,
    aligned_face_boxes,
    crop_to_network_input,
    load_regressor,
)

# Photographs from all four sources, frontal to about 20 degrees of yaw either way.
FACES = (
    "barbershop_15",
    "dps_00003",
    "idinvert_000002",
    "idinvert_000006",
    "stargan_ref_female_042373",
    "stargan_ref_female_058881",
    "stargan_ref_male_060259",
    "stargan_src_male_005735",
)

# iBUG 68-point order: the index each point takes in the mirrored face.
MIRRORED_INDEX = (
    list(range(16, -1, -1))  # jaw
    + list(range(26, 16, -1))  # brows
    + [27, 28, 29, 30]  # nose bridge
    + [35, 34, 33, 32, 31]  # nostrils
    + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]  # eyes
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]  # outer lips
    + [64, 63, 62, 61, 60, 67, 66, 65]  # inner lips
)
RIGHT_EYE, LEFT_EYE = slice(36, 42), slice(42, 48)  # the subject's; image left and right
MOUTH_CORNERS = (48, 54)


def _weights(name):
    return shared_path("assets", "3ddfa_v2", name)


def _to_library(arrays) -> torch.Tensor:
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 127.5 - 1


def _pil_faces(rotate_degrees: float = 0.0):
    folder = shared_path("assets", "faces256")
    faces = [Image.open(folder / f"{name}.png").convert("RGB") for name in FACES]
    return [np.asarray(f.rotate(rotate_degrees, resample=Image.BILINEAR) if rotate_degrees else f) for f in faces]


@pytest.fixture(scope="module")
def encoder():
    return TDDFA.from_files(
        _weights("mb05_120x120.pth"), _weights("param_mean_std_62d_120x120.pkl"), _weights("bfm_68_landmarks.npz")
    )


@pytest.fixture(scope="module")
def faces():
    return _to_library(_pil_faces())


@pytest.fixture(scope="module")
def predictions(encoder, faces):
    with torch.no_grad():
        return encoder.landmarks_and_pose(faces)


# ----------------------------------------------------------------------------------------------
# Loading


def test_checkpoint_loads_strictly_with_its_width():
    model = load_regressor(_weights("mb05_120x120.pth"))
    assert model.width == 0.5
    raw = torch.load(_weights("mb05_120x120.pth"), map_location="cpu", weights_only=True)["state_dict"]
    assert set(model.state_dict()) == {k.removeprefix("module.") for k in raw}


def test_encoder_is_frozen(encoder):
    assert not encoder.training
    assert not any(p.requires_grad for p in encoder.parameters())


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch.load reading the .pkl
def test_wrong_or_missing_files_are_named(tmp_path):
    with pytest.raises(TDDFAFileError, match="param_mean_std_62d_120x120.pkl"):
        load_regressor(_weights("param_mean_std_62d_120x120.pkl"))  # a pickle, not a checkpoint
    not_mobilenet = tmp_path / "other.pth"
    torch.save({"state_dict": {"module.fc.weight": torch.zeros(2, 2)}}, not_mobilenet)
    with pytest.raises(TDDFAFileError, match="other.pth"):
        load_regressor(not_mobilenet)
    truncated = tmp_path / "truncated.pth"
    state = torch.load(_weights("mb05_120x120.pth"), map_location="cpu", weights_only=True)["state_dict"]
    torch.save({"state_dict": {k: v for k, v in state.items() if "dw6" not in k}}, truncated)
    with pytest.raises(TDDFAFileError, match="truncated.pth.*width 0.5"):
        load_regressor(truncated)
    with pytest.raises(TDDFAFileError, match="missing.pth: not found"):
        TDDFA.from_files(
            tmp_path / "missing.pth", _weights("param_mean_std_62d_120x120.pkl"), _weights("bfm_68_landmarks.npz")
        )
    with pytest.raises(TDDFAFileError, match="mb05_120x120.pth: not a readable .npz"):
        TDDFA.from_files(
            _weights("mb05_120x120.pth"), _weights("param_mean_std_62d_120x120.pkl"), _weights("mb05_120x120.pth")
        )


# ----------------------------------------------------------------------------------------------
# The crop equals 3DDFA_V2's OpenCV crop


def test_crop_is_bgr_normalised_and_black_outside_the_image():
    red = torch.tensor([1.0, -1.0, -1.0]).view(1, 3, 1, 1).expand(1, 3, 64, 64)  # RGB (255, 0, 0)
    crop = crop_to_network_input(red, torch.tensor([[-32.0, 0.0, 32.0, 64.0]]))  # left half off-image
    inside, outside = crop[0, :, 2:-2, 70:], crop[0, :, :, :50]  # bottom rows blend with padding
    assert torch.allclose(inside[2], torch.tensor(127.5 / 128)) and torch.allclose(
        inside[:2], torch.tensor(-127.5 / 128)
    )
    assert torch.allclose(outside, torch.tensor(-127.5 / 128))


def test_crop_matches_opencv_crop_and_resize(faces):
    cv2 = pytest.importorskip("cv2")
    rgb = ((faces[:2] + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    boxes = [(27, 65, 229, 267), (-10, 5, 180, 195)]  # the fixed box; one off the top-left corner
    for image, (left, top, right, bottom) in zip(rgb, boxes):
        # crop_img: zeros outside the image; then cv2.resize INTER_LINEAR; BGR; normalise.
        crop = np.zeros((bottom - top, right - left, 3), np.uint8)
        y0, x0, y1, x1 = max(top, 0), max(left, 0), min(bottom, 256), min(right, 256)
        crop[y0 - top : y1 - top, x0 - left : x1 - left] = image[y0:y1, x0:x1, ::-1]
        expected = (cv2.resize(crop, (120, 120), interpolation=cv2.INTER_LINEAR).astype(np.float32) - 127.5) / 128
        library = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 127.5 - 1
        ours = crop_to_network_input(library, torch.tensor([[left, top, right, bottom]], dtype=torch.float32))
        grey_levels = np.abs(ours[0].permute(1, 2, 0).numpy() - expected) * 128
        assert grey_levels.max() < 1.0  # measured 0.75: OpenCV's fixed-point weights and uint8 output


# ----------------------------------------------------------------------------------------------
# Plausibility on aligned faces


def test_landmarks_are_plausible_on_aligned_faces(predictions):
    landmarks, pose = predictions
    assert landmarks.shape == (len(FACES), 68, 3) and pose.shape == (len(FACES), 3)
    assert torch.isfinite(landmarks).all() and torch.isfinite(pose).all()
    xy = landmarks[..., :2]
    assert (xy > 0).all() and (xy < 255).all()
    assert torch.allclose(landmarks[..., 2].amin(dim=1), torch.zeros(len(FACES)))  # 3DDFA_V2's z shift
    eyes, mouth = landmarks[:, 36:48, 1], landmarks[:, 48:68, 1]
    assert (eyes.amax(dim=1) < mouth.amin(dim=1)).all()
    assert (landmarks[:, 30, 1] > eyes.mean(dim=1)).all() and (landmarks[:, 30, 1] < mouth.mean(dim=1)).all()
    assert (landmarks[:, RIGHT_EYE, 0].amax(dim=1) < landmarks[:, LEFT_EYE, 0].amin(dim=1)).all()
    assert (landmarks[:, 0, 0] < landmarks[:, 16, 0]).all() and (landmarks[:, 8, 1] > mouth.amax(dim=1)).all()
    assert (pose.abs() < torch.tensor([30.0, 25.0, 10.0])).all()


def test_landmarks_reproduce_the_ffhq_alignment(predictions):
    """FFHQ's alignment put eyes and mouth where it did from dlib landmarks; feeding ours into its
    formula must give back (about) the whole image: centre (127.5, 127.5), side 256."""
    landmarks = predictions[0][..., :2]
    eyes = (landmarks[:, RIGHT_EYE].mean(dim=1) + landmarks[:, LEFT_EYE].mean(dim=1)) / 2
    eye_to_eye = landmarks[:, LEFT_EYE].mean(dim=1) - landmarks[:, RIGHT_EYE].mean(dim=1)
    eye_to_mouth = landmarks[:, MOUTH_CORNERS].mean(dim=1) - eyes
    centre = eyes + 0.1 * eye_to_mouth
    side = 2 * torch.maximum(2 * eye_to_eye.norm(dim=1), 1.8 * eye_to_mouth.norm(dim=1))
    # measured on 81 faces: centre (126.6, 127.7) +- 3.7, side 252 +- 12
    assert (centre.mean(dim=0) - 127.5).abs().max() < 3
    assert (centre - 127.5).abs().max() < 12
    assert abs(side.mean().item() - 256) < 15


# ----------------------------------------------------------------------------------------------
# Symmetries


def test_mirrored_face_gives_mirrored_landmarks_and_pose(encoder, faces, predictions):
    """Landmarks are pixel centres (pixel j at x = j), so a mirror maps x to W - 1 - x. 3DDFA_V2's
    similar_transform puts points (scale - 1) / 2 = 0.34 px left of the sampled position, and so
    the mirror of its output is x -> W - 1.7 - x: a bias within the tolerances below.
    Pitch must not change; yaw and roll change sign."""
    landmarks, pose = predictions
    with torch.no_grad():
        landmarks_f, pose_f = encoder.landmarks_and_pose(faces.flip(3))
    mirrored = landmarks_f[:, MIRRORED_INDEX, :2].clone()
    mirrored[..., 0] = faces.shape[3] - 1 - mirrored[..., 0]
    distance = (mirrored - landmarks[..., :2]).norm(dim=-1)
    # measured (81 faces): mean 2.2 px, worst face's mean 4.9, worst point 9.1 (jaw contour)
    assert distance.mean() < 3.0
    assert distance.mean(dim=1).max() < 5.0
    assert distance.max() < 12.0
    error = (pose_f - pose * torch.tensor([-1.0, 1.0, -1.0])).abs()
    # measured (81 faces), degrees: yaw mean 1.0 max 3.3, pitch 1.1 / 5.6, roll 0.8 / 2.5
    assert error.mean(dim=0).max() < 2.0
    assert (error.amax(dim=0) < torch.tensor([5.0, 7.0, 4.0])).all()
    assert (pose[:, 0].sign() != pose_f[:, 0].sign())[pose[:, 0].abs() > 5].all()


def test_in_plane_rotation_changes_roll_by_the_angle(encoder, predictions):
    """Roll sign: an image turned counter-clockwise as displayed (PIL's positive angle) by 10
    degrees reads 10 degrees more roll. Yaw and pitch stay."""
    pose = predictions[1]
    with torch.no_grad():
        pose_r = encoder.pose(_to_library(_pil_faces(rotate_degrees=10.0)))
    change = pose_r - pose
    # measured (81 faces): roll +10.2 +- 0.8 (7.6 .. 12.8); |yaw|, |pitch| change 0.9, 1.0 on average
    assert abs(change[:, 2].mean().item() - 10.0) < 1.0
    assert ((change[:, 2] - 10.0).abs() < 3.0).all()
    assert (change[:, :2].abs().mean(dim=0) < 2.5).all()


# ----------------------------------------------------------------------------------------------
# Differentiability


def test_gradients_reach_the_pixels_inside_the_face_box_only(encoder, faces):
    img = faces[:3].clone().requires_grad_(True)
    landmarks, pose = encoder.landmarks_and_pose(img)
    (landmarks[..., :2].sum() + pose.sum()).backward()
    grad = img.grad
    assert torch.isfinite(grad).all()
    per_image = grad.abs().sum(dim=(1, 2, 3))
    assert (per_image > 0).all()
    left, top, right, _ = aligned_face_boxes(1, 256, 256)[0].long().tolist()
    assert grad[:, :, : top - 1].abs().max() == 0  # above the box: never sampled
    assert grad[:, :, :, : left - 1].abs().max() == 0 and grad[:, :, :, right + 1 :].abs().max() == 0
    inside = grad[:, :, top + 10 : 250, left + 10 : right - 10].abs().sum(dim=1)
    assert (inside > 0).float().mean() > 0.2  # bilinear taps of the 120x120 samples, about 1 in 3


def test_explicit_boxes_equal_the_fixed_box(encoder, faces):
    fixed = encoder.landmarks(faces[:2])
    explicit = encoder.landmarks(faces[:2], boxes=torch.tensor([27.0, 65.0, 229.0, 267.0]))
    assert torch.allclose(fixed, explicit)
    shifted = encoder.landmarks(faces[:2], boxes=torch.tensor([17.0, 55.0, 219.0, 257.0]))
    assert (shifted - fixed)[..., :2].norm(dim=-1).mean() < 6  # same face, box moved by 14 px


def test_depth_is_on_the_pixel_scale_of_x_and_y(predictions):
    """Eq. 8 compares 3D landmarks, so z must share the x, y pixel scale: a face's depth extent
    (nose tip to jaw) is a sizeable fraction of its width, not a normalised 0-1 value."""
    landmarks, _ = predictions
    width = landmarks[..., 0].amax(dim=1) - landmarks[..., 0].amin(dim=1)
    depth = landmarks[..., 2].amax(dim=1) - landmarks[..., 2].amin(dim=1)
    assert ((depth / width > 0.5) & (depth / width < 1.2)).all()  # 0.73-0.94 on the eight faces
