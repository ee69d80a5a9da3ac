"""3D-FAN (Bulat & Tzimiropoulos, ICCV 2017) as a second, independent landmark and pose encoder.

Built on the network classes of the `face-alignment` package (`FAN`: 4 stacked hourglasses, 68
heatmaps at 64x64 from a 256x256 crop; `ResNetDepth`: each landmark's depth from the crop plus 68
rendered heatmaps), with the package's inference path rewritten so that it is differentiable:

    fixed face box -> the package's crop (centre, scale = (w + h) / 195, side 200 * scale)
    -> FAN -> last hourglass's heatmaps -> windowed soft-argmax (package: arg-max + 1/4 px nudge)
    -> the package's heatmap -> image transform (without its final integer truncation)
    -> Gaussians rendered at those points (package: `draw_gaussian`) -> ResNetDepth -> z
    -> pose: similarity fit of the 68 points to the BFM mean keypoints, 3DDFA_V2's Euler angles.

Coordinates. Landmarks are in input-image pixels with pixel i's centre at i (as in tddfa.py).
The package's continuous image coordinate, `cx + (4 p - 128) * (200 s) / 256` for a heatmap
coordinate p = col + 0.5, is already in that convention (its crop maps crop position 128 onto
pixel centre cx); the package then truncates it to an integer pixel index, which biases by
-0.5 px on average, and this module does not. z has the x/y scale (the package's
`depth * 200 s / 256`) and, per the package's author, follows the 3DDFA model's depth
(zero-mean; larger = towards the camera), which the pose fit assumes.

Weights. face-alignment >= 1.5 (and <= 1.2) downloads plain state dicts, `3DFAN4-7835d9f11d.pth.tar`
and `depth-2a464da4ea.pth.tar`; 1.3-1.4 downloaded TorchScript archives, `3DFAN4_1.6-ec5cf40a1d.zip`
and `depth_1.6-2aa3f18772.zip` (torch >= 1.6; `_1.5-` variants and the unversioned
`3DFAN4-4a694010b9.zip` / `depth-6c4283c0e0.zip` for older torch), all from
https://www.adrianbulat.com/downloads/python-fan/ into `$TORCH_HOME/hub/checkpoints/`. Both kinds
are read here without running anything from the file: state dicts with `weights_only=True`,
and TorchScript archives by unpickling only `data.pkl` (the module tree's attributes) with a
restricted unpickler that maps TorchScript classes to inert records and tensors to the archive's
raw storages; the archive's code is never compiled (`torch.jit.load` would compile and run it).
face-alignment 1.5 itself opens the depth checkpoint with `weights_only=False`; whether that file
holds anything besides tensors could not be checked offline. If it does, loading fails with the
refused global named; convert it once (trusted `torch.load`, save its 'state_dict').
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline_lib.encoders.base import LandmarkEncoder, freeze, network_dtype, to_unit_range
from pipeline_lib.encoders.geometry import euler_degrees, similarity_fit
from pipeline_lib.weights import WeightsError
from pipeline_lib.weights.checkpoints import check_state_dict
from pipeline_lib.weights.torchscript import read_tensors

NUM_LANDMARKS = 68
CROP_SIZE = 256  # the package's CROP_RESOLUTION
HEATMAP_SIZE = 64
SCALE_FACTOR = 200.0  # crop side = SCALE_FACTOR * scale
REFERENCE_SCALE = 195.0  # scale = (box width + box height) / REFERENCE_SCALE (its S3FD default)
CENTER_Y_OFFSET = 0.12  # the crop centre sits 0.12 box heights above the box centre

# The package's `draw_gaussian(.., sigma=2)` stamps a 13x13 kernel whose std is 0.25 * 13 px.
DEPTH_SIGMA = 0.25 * 13
DEPTH_RADIUS = 6

# Soft-argmax: softmax(beta * H / max H) over a 9x9 window around the arg-max. On Gaussian
# heatmaps of std 1.25-3.25 px the centroid is within 0.05 heatmap px of the true peak for any
# sub-pixel offset and amplitude; within 0.02 px for std 1.75 (the hourglass convention, sigma=1
# drawn as a 7x7 kernel) and 3.25 (the package's own `draw_gaussian` kernel). A wider window
# would admit more background; a larger beta samples too narrow a peak.
SOFTARGMAX_RADIUS = 4
SOFTARGMAX_BETA = 8.0

# The face box (left, top, right, bottom) for FFHQ-aligned 256x256 faces, in pixel-centre
# coordinates; other sizes scale it. No detector runs: the package's S3FD boxes are close to the
# landmarks' tight box (its author tuned the 195 for ground-truth boxes), so this is the tight box
# of the BFM mean face's 68 keypoints placed by the FFHQ alignment rule (`ffhq_landmark_box`),
# made symmetric about the vertical midline and rounded to half pixels.
ALIGNED_FACE_BOX_256 = (53.5, 97.5, 201.5, 235.0)

FAN_WEIGHTS = (
    "face-alignment's 3D-FAN weights (`3DFAN4-7835d9f11d.pth.tar`, or a TorchScript archive such as "
    "`3DFAN4_1.6-ec5cf40a1d.zip`)"
)
DEPTH_WEIGHTS = (
    "face-alignment's depth network weights (`depth-2a464da4ea.pth.tar`, or a TorchScript archive such as "
    "`depth_1.6-2aa3f18772.zip`)"
)
BFM_68 = "3DDFA's 68-keypoint face model (`bfm_68_landmarks.npz` with `u_base` of 204 values)"


# ----------------------------------------------------------------------------------------------
# Geometry of the package's crop


def crop_geometry(box) -> tuple[float, float, float]:
    """The package's face box -> crop: centre (cx, cy) and side h = 200 * scale, in pixels."""
    left, top, right, bottom = box
    width, height = right - left, bottom - top
    cx, cy = (left + right) / 2, (top + bottom) / 2 - height * CENTER_Y_OFFSET
    return cx, cy, SCALE_FACTOR * (width + height) / REFERENCE_SCALE


def aligned_face_box(height: int, width: int) -> tuple[float, float, float, float]:
    """ALIGNED_FACE_BOX_256 for an image of another size (pixel-centre coordinates)."""
    sx, sy = width / 256, height / 256
    left, top, right, bottom = ALIGNED_FACE_BOX_256
    return ((left + 0.5) * sx - 0.5, (top + 0.5) * sy - 0.5, (right + 0.5) * sx - 0.5, (bottom + 0.5) * sy - 0.5)


def crop_faces(img01: torch.Tensor, cx: float, cy: float, side: float) -> torch.Tensor:
    """[N,3,H,W] -> [N,3,256,256]: crop position u (pixel j spans [j, j+1)) shows image point
    cx + (u - 128) * side / 256, zeros outside the image, bilinear (the package: integer box,
    zero padding, cv2.resize INTER_LINEAR). Differentiable in the pixels."""
    n, _, h, w = img01.shape
    theta = img01.new_tensor([[side / w, 0.0, (2 * cx + 1) / w - 1], [0.0, side / h, (2 * cy + 1) / h - 1]])
    grid = F.affine_grid(theta.expand(n, 2, 3), [n, 3, CROP_SIZE, CROP_SIZE], align_corners=False)
    return F.grid_sample(img01, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def heatmap_to_crop(points: torch.Tensor) -> torch.Tensor:
    """Heatmap pixel indices -> the package's crop coordinate: 4 * (index + 1 - 0.5).

    The package's arg-max is 1-based and it subtracts 0.5 before scaling by 4.
    """
    return (points + 0.5) * (CROP_SIZE / HEATMAP_SIZE)


def crop_to_image(points: torch.Tensor, cx: float, cy: float, side: float) -> torch.Tensor:
    """The package's inverse `transform` (heatmap -> image), here from crop units, unrounded."""
    centre = points.new_tensor([cx, cy])
    return centre + (points - CROP_SIZE / 2) * (side / CROP_SIZE)


# ----------------------------------------------------------------------------------------------
# Differentiable replacements for the package's arg-max and heatmap drawing


def soft_argmax(heatmaps: torch.Tensor, radius: int = SOFTARGMAX_RADIUS, beta: float = SOFTARGMAX_BETA):
    """[N,C,H,W] -> [N,C,2] (x, y) in heatmap pixel indices: a softmax-weighted centroid in a
    (2r+1)^2 window around the arg-max. The window keeps far-away background out; the
    normalisation by the peak value makes the weights independent of the heatmap's amplitude."""
    n, c, h, w = heatmaps.shape
    flat = heatmaps.flatten(2)
    peak = flat.detach().argmax(dim=-1)
    cy = torch.div(peak, w, rounding_mode="floor").clamp(radius, h - 1 - radius)
    cx = (peak % w).clamp(radius, w - 1 - radius)
    offsets = torch.arange(-radius, radius + 1, device=heatmaps.device)
    ys = (cy[..., None, None] + offsets[:, None]).expand(n, c, 2 * radius + 1, 2 * radius + 1).flatten(2)
    xs = (cx[..., None, None] + offsets[None, :]).expand(n, c, 2 * radius + 1, 2 * radius + 1).flatten(2)
    values = flat.gather(-1, ys * w + xs)
    scale = values.amax(dim=-1, keepdim=True).abs().clamp_min(1e-6)
    weights = torch.softmax(beta * values / scale, dim=-1)
    return torch.stack([(weights * xs).sum(-1), (weights * ys).sum(-1)], dim=-1)


def depth_heatmaps(points: torch.Tensor, size: int = CROP_SIZE, dtype: torch.dtype | None = None) -> torch.Tensor:
    """[N,C,2] crop coordinates -> [N,C,size,size], the package's depth-network input heatmaps.

    `draw_gaussian(hm, p, 2)` stamps a 13x13 Gaussian (std 3.25 px, peak 1) centred on pixel
    floor(p) - 1 = round(p - 1.5) (its 1-based legacy), only where both coordinates are > 0.
    Here the centre is p - 1.5 unrounded, so the heatmaps move smoothly with the landmarks; the
    13x13 support is kept (a mask that does not carry gradient).

    The 1-D profiles are computed in the points' dtype; only their outer product is formed in
    `dtype` (default: the points' dtype). For a reduced-precision depth network that writes the
    [N,68,size,size] maps (4.6 GB at batch 256 in float32) once, in the dtype the network reads.
    """
    mu = points - 1.5
    grid = torch.arange(size, device=points.device, dtype=points.dtype)
    inside = (grid - mu.detach().round()[..., None]).abs() <= DEPTH_RADIUS  # [N,C,2,size]
    profile = torch.exp(-((grid - mu[..., None]) ** 2) / (2 * DEPTH_SIGMA**2)) * inside
    visible = (points > 0).all(dim=-1).to(points.dtype)[..., None]
    dtype = points.dtype if dtype is None else dtype
    rows, cols = (profile[:, :, 1] * visible).to(dtype), profile[:, :, 0].to(dtype)
    return rows[..., :, None] * cols[..., None, :]


# ----------------------------------------------------------------------------------------------
# Head pose from 3D landmarks


def load_mean_shape(path) -> torch.Tensor:
    """[68,3] BFM mean keypoints (x right, y up, z towards the viewer), centred, unit RMS radius."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file; expected {BFM_68}")
    try:
        with np.load(path, allow_pickle=False) as data:
            u_base = np.asarray(data["u_base"], dtype=np.float64)
    except Exception as exc:
        raise WeightsError(f"{path}: cannot be read as {BFM_68}: {exc}") from None
    if u_base.size != 3 * NUM_LANDMARKS:
        raise WeightsError(f"{path}: `u_base` has {u_base.size} values, expected {BFM_68}")
    shape = u_base.reshape(NUM_LANDMARKS, 3)  # x, y, z interleaved per point
    shape = shape - shape.mean(axis=0)
    return torch.from_numpy(shape / np.sqrt((shape**2).sum(axis=1).mean())).float()


def image_to_model_frame(landmarks: torch.Tensor) -> torch.Tensor:
    """Image axes (x right, y down, z towards the viewer) -> the BFM's (x right, y up, z towards
    the viewer): flip y. Both are then right-handed, so a proper rotation relates them."""
    return landmarks * landmarks.new_tensor([1.0, -1.0, 1.0])


def pose_from_landmarks(landmarks: torch.Tensor, mean_shape: torch.Tensor) -> torch.Tensor:
    """[N,68,3] image landmarks -> [N,3] (yaw, pitch, roll) degrees, 3DDFA_V2's convention.

    R maps the model into the camera frame as 3DDFA_V2's camera does, so the mean shape itself
    gives (0, 0, 0); positive yaw turns the face towards the image's left (the subject's right),
    positive pitch tilts it down, positive roll turns it counter-clockwise in the image.
    """
    # Float32 even under autocast, which would run the fit's 3x3 covariance product in bf16/fp16.
    with torch.autocast(landmarks.device.type, enabled=False):
        target = image_to_model_frame(landmarks.float())
        _, rotation, _ = similarity_fit(mean_shape.to(target), target)
        return euler_degrees(rotation)


def ffhq_landmark_box(mean_shape: torch.Tensor, size: int = 256) -> tuple[float, float, float, float]:
    """Tight box of the frontal mean keypoints after FFHQ's alignment (NVlabs ffhq-dataset: square
    of side 2 * max(2 |eye-to-eye|, 1.8 |eye-to-mouth|) centred 0.1 eye-to-mouth below the eyes,
    eyes = means of points 36-41 / 42-47, mouth = mean of 48 and 54), pixel-centre coordinates."""
    points = image_to_model_frame(mean_shape.double())[:, :2]  # frontal projection, y down
    eye_left, eye_right = points[36:42].mean(0), points[42:48].mean(0)
    eye_avg, eye_to_eye = (eye_left + eye_right) / 2, eye_right - eye_left
    eye_to_mouth = (points[48] + points[54]) / 2 - eye_avg
    half = max(2.0 * float(eye_to_eye.norm()), 1.8 * float(eye_to_mouth.norm()))
    # The frontal mean face is symmetric, so the FFHQ quad is axis-aligned: no rotation.
    centre = eye_avg + 0.1 * eye_to_mouth
    pixels = (points - centre) / (2 * half) * size + size / 2 - 0.5
    lo, hi = pixels.min(0).values, pixels.max(0).values
    return (float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1]))


# ----------------------------------------------------------------------------------------------
# The encoder


class FANLandmarks(LandmarkEncoder):
    """68 3D landmarks (input-image pixels, pixel centres at integers) and head pose from 3D-FAN.

    No flip test-time augmentation (the package's `flip_input`): it would double the cost.
    """

    networks = ("fan", "depth")

    def __init__(self, fan: nn.Module, depth: nn.Module, mean_shape: torch.Tensor):
        super().__init__()
        self.fan, self.depth = fan, depth
        self.register_buffer("mean_shape", mean_shape.float())
        freeze(self)

    @classmethod
    def from_files(cls, fan_path, depth_path, bfm_68_path) -> FANLandmarks:
        fan, depth = build_networks()
        load_network_weights(fan_path, fan, FAN_WEIGHTS)
        load_network_weights(depth_path, depth, DEPTH_WEIGHTS)
        return cls(fan, depth, load_mean_shape(bfm_68_path))

    def heatmaps(self, img: torch.Tensor):
        """Images -> (crop in [0,1], last hourglass's [N,68,64,64] heatmaps, crop geometry)."""
        geometry = crop_geometry(aligned_face_box(img.shape[-2], img.shape[-1]))
        crop = crop_faces(to_unit_range(img), *geometry)
        out = self.fan(crop)
        return crop, (out[-1] if isinstance(out, (list, tuple)) else out), geometry

    def landmarks(self, img: torch.Tensor) -> torch.Tensor:
        crop, heatmaps, geometry = self.heatmaps(img)
        dtype = network_dtype(img.device.type)  # float32 unless under autocast
        # The sub-pixel decoding stays float32 whatever the networks run in: one heatmap pixel is
        # 4.6 image pixels, so the 0.1 px contract leaves the soft-argmax no rounding to spare.
        with torch.autocast(img.device.type, enabled=False):
            points = heatmap_to_crop(soft_argmax(heatmaps.float()))  # [N,68,2] crop coordinates
            depth_input = torch.cat([crop.to(dtype), depth_heatmaps(points, dtype=dtype)], dim=1)
        depth = self.depth(depth_input).float()  # [N,68] crop units
        side = geometry[2]
        return torch.cat([crop_to_image(points, *geometry), (depth * (side / CROP_SIZE))[..., None]], dim=-1)

    def pose(self, img: torch.Tensor) -> torch.Tensor:
        return pose_from_landmarks(self.landmarks(img), self.mean_shape)

    def landmarks_and_pose(self, img: torch.Tensor):
        landmarks = self.landmarks(img)
        return landmarks, pose_from_landmarks(landmarks, self.mean_shape)

    forward = landmarks_and_pose


# ----------------------------------------------------------------------------------------------
# Networks and weights


def build_networks() -> tuple[nn.Module, nn.Module]:
    """The package's FAN(4) and ResNetDepth (Python classes: face-alignment >= 1.5 or <= 1.2)."""
    try:
        from face_alignment.models import FAN, ResNetDepth
    except ImportError as exc:
        raise ImportError(
            f"the FAN landmark backend needs face-alignment>=1.5 (its Python FAN/ResNetDepth classes): {exc}"
        ) from exc
    return FAN(4), ResNetDepth()


def load_network_weights(path, module: nn.Module, what: str) -> nn.Module:
    """Copy the tensors of a state dict or TorchScript archive into `module`, strictly by name."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file; expected {what}")
    if path.name.upper().startswith("2DFAN"):
        raise WeightsError(f"{path}: 2D-FAN weights locate the 2D contour; expected {what}")
    state = read_tensors(path, what)
    check_state_dict(state, module, path, what)
    own = module.state_dict()
    with torch.no_grad():
        for key, value in state.items():
            own[key].copy_(value)
    return module
