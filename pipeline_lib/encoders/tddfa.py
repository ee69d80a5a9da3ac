"""3DDFA_V2 (Guo et al., ECCV 2020) as a differentiable landmark and head-pose encoder.

A plain-PyTorch re-implementation of cleardusk/3DDFA_V2's inference path, so that the editing
network's pose and expression losses can back-propagate through it into generated pixels:

    face box -> 120x120 crop (BGR, (v - 127.5) / 128 on 0..255 values) -> MobileNetV1
    -> 62 normalised parameters -> * std + mean -> 3x4 camera | 40 shape | 10 expression
    -> 68 BFM keypoints in crop pixels -> `similar_transform` back to image pixels

Pose (yaw, pitch, roll in degrees) is 3DDFA_V2's `calc_pose`: `rotation_from_camera` (P2sRt)
then `euler_degrees` (matrix2angle), both from geometry.py. Where 3DDFA_V2 runs OpenCV
(crop_img + cv2.resize INTER_LINEAR) this module samples with `grid_sample` at the same
source positions, so the crop is differentiable and within a grey level of OpenCV's.

Module and parameter names are the official ones, so `mb1_120x120.pth` and `mb05_120x120.pth`
load with strict key matching once the DataParallel prefix 'module.' is stripped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline_lib.encoders.base import LandmarkEncoder, freeze
from pipeline_lib.encoders.geometry import euler_degrees, rotation_from_camera
from pipeline_lib.weights import WeightsError
from pipeline_lib.weights.unpickler import restricted_load

CROP_SIZE = 120
NUM_PARAMS = 62  # 12 camera (3x4, row-major) + 40 shape + 10 expression
NUM_SHAPE, NUM_EXPRESSION = 40, 10
NUM_LANDMARKS = 68

# The fixed face box for FFHQ-aligned faces, as fractions of the image width/height:
# (left, top, right, bottom) in 3DDFA_V2's roi_box convention (pixels; right/bottom exclusive).
# For 256x256 images it is the square pixel box (27, 65, 229, 267): 202 px, centre (128, 166).
# Its bottom 11 rows lie below the image and are zero (black), as crop_img pads them.
#
# How it was derived: `calibrate_aligned_face_box` on the 81 real aligned faces of
# ../shared/assets/faces256 with mb05_120x120.pth. Starting from a centred 200 px box, each
# face's box was re-derived 10 times with 3DDFA_V2's tracking rule (`roi_box_from_landmarks`:
# predict, take the square of side sqrt(2) x the landmarks' longer extent around their
# bounding-box centre, predict again). The boxes settle after 2-3 rounds; after that the
# restless faces still move by up to ~3 px (crop_img rounds the box). Mean over the faces:
# centre (129.6, 166.6), side 202.2 (per-face std 11.6, 5.5 and 9.8 px: yawed faces shift
# the landmark extent); after a single round, 3DDFA_V2's own two-step refinement, (129.4,
# 165.6) and 204.1. The mean was made symmetric about the vertical midline (centre x = 128, so
# that a mirrored face sees the mirrored crop) and rounded to whole pixels, as crop_img rounds.
# The centre sits low because the 68 points span eyebrows to chin, not forehead to chin.
ALIGNED_FACE_BOX = (27 / 256, 65 / 256, 229 / 256, 267 / 256)


class TDDFAFileError(WeightsError):
    """A 3DDFA_V2 asset that cannot be used; the message names the file and what was expected."""


# ----------------------------------------------------------------------------------------------
# The regressor


class DepthwiseSeparable(nn.Module):
    """MobileNetV1's unit: 3x3 depthwise conv, then 1x1 pointwise conv, each with BN + ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv_dw = nn.Conv2d(in_channels, in_channels, 3, stride, 1, groups=in_channels, bias=False)
        self.bn_dw = nn.BatchNorm2d(in_channels)
        self.conv_sep = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn_sep = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn_dw(self.conv_dw(x)))
        return F.relu(self.bn_sep(self.conv_sep(x)))


# (name, input width, output width, stride) at width multiplier 1, in forward order.
MOBILENET_V1_BLOCKS = (
    ("dw2_1", 32, 64, 1),
    ("dw2_2", 64, 128, 2),
    ("dw3_1", 128, 128, 1),
    ("dw3_2", 128, 256, 2),
    ("dw4_1", 256, 256, 1),
    ("dw4_2", 256, 512, 2),
    ("dw5_1", 512, 512, 1),
    ("dw5_2", 512, 512, 1),
    ("dw5_3", 512, 512, 1),
    ("dw5_4", 512, 512, 1),
    ("dw5_5", 512, 512, 1),
    ("dw5_6", 512, 1024, 2),
    ("dw6", 1024, 1024, 1),
)


class MobileNetV1Regressor(nn.Module):
    """3DDFA_V2's MobileNetV1 (BatchNorm eps 1e-5, ReLU, global average pool).

    `fc_param` predicts the 62 normalised 3DMM parameters. The official checkpoints also carry
    `fc_lm`, a 136-d 2D-landmark head used only as a training aid; 3DDFA_V2's inference ignores
    it. It is kept (when the checkpoint has it) only so that loading can be strict.
    """

    def __init__(self, width: float = 1.0, landmark_head: bool = True):
        super().__init__()
        self.width = width
        c = lambda n: int(n * width)  # noqa: E731 - 3DDFA_V2 truncates widths the same way
        self.conv1 = nn.Conv2d(3, c(32), 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c(32))
        for name, cin, cout, stride in MOBILENET_V1_BLOCKS:
            self.add_module(name, DepthwiseSeparable(c(cin), c(cout), stride))
        self.fc_param = nn.Linear(c(1024), NUM_PARAMS)
        self.fc_lm = nn.Linear(c(1024), 2 * NUM_LANDMARKS) if landmark_head else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N,3,120,120] -> [N,62] normalised
        x = F.relu(self.bn1(self.conv1(x)))
        for name, *_ in MOBILENET_V1_BLOCKS:
            x = getattr(self, name)(x)
        return self.fc_param(x.mean(dim=(2, 3)))


# ----------------------------------------------------------------------------------------------
# Boxes and crops


def roi_box_from_landmarks(landmarks: torch.Tensor) -> torch.Tensor:
    """3DDFA_V2's `parse_roi_box_from_landmark`: [N,68,2+] pixels -> [N,4] (left, top, right, bottom).

    A square centred on the landmarks' bounding box with side sqrt(2) times its longer edge;
    3DDFA_V2 uses it to re-crop from a previous prediction (video tracking, two-step refinement).
    """
    xy = landmarks[..., :2]
    lo, hi = xy.amin(dim=1), xy.amax(dim=1)
    centre = (lo + hi) / 2
    side = (hi - lo).amax(dim=1, keepdim=True) * (2**0.5)
    return torch.cat([centre - side / 2, centre + side / 2], dim=1)


def aligned_face_boxes(n: int, height: int, width: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """The calibrated fixed box, scaled to the image size, repeated for a batch of n."""
    scale = torch.tensor([width, height, width, height], device=device, dtype=dtype)
    return (torch.tensor(ALIGNED_FACE_BOX, device=device, dtype=dtype) * scale).expand(n, 4)


def crop_to_network_input(img: torch.Tensor, boxes: torch.Tensor, size: int = CROP_SIZE) -> torch.Tensor:
    """Library images (RGB, [-1, 1]) -> 3DDFA_V2's network input for the given boxes.

    Reproduces crop_img (box rounded to whole pixels, zeros outside the image) followed by
    cv2.resize INTER_LINEAR: output pixel i samples box-relative position (i + 0.5) * side / size
    - 0.5, bilinearly. Like OpenCV when shrinking, nothing is low-pass filtered first. Then BGR
    order and (v - 127.5) / 128 on 0..255 values. Differentiable in the pixels (not the box).
    Against OpenCV on a real face the crops differ by at most 0.75 of a grey level (OpenCV's
    fixed-point weights and uint8 output); only when a box is smaller than the crop do the
    outermost output pixels differ more, because OpenCV replicates the crop's edge there.
    """
    n, _, h, w = img.shape
    boxes = boxes.detach().round().to(img.dtype)
    steps = (torch.arange(size, device=img.device, dtype=img.dtype) + 0.5) / size  # [size]
    left, top, right, bottom = boxes.unbind(dim=1)
    xs = left[:, None] + steps[None] * (right - left)[:, None] - 0.5  # [N,size] source pixel x
    ys = top[:, None] + steps[None] * (bottom - top)[:, None] - 0.5
    # grid_sample with align_corners=False puts pixel j's centre at (2j + 1) / W - 1.
    gx, gy = (2 * xs + 1) / w - 1, (2 * ys + 1) / h - 1
    grid = torch.stack([gx[:, None, :].expand(n, size, size), gy[:, :, None].expand(n, size, size)], dim=-1)
    pixels = (img + 1) * 127.5  # 0..255, so that zero padding is black as in crop_img
    crop = F.grid_sample(pixels, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return (crop.flip(1) - 127.5) / 128


# ----------------------------------------------------------------------------------------------
# Face model and reconstruction


class KeypointFaceModel(nn.Module):
    """The 68 keypoint rows of 3DDFA's BFM (mean, 40 shape and 10 expression bases).

    Rows are x, y, z per landmark (point-interleaved), as 3DDFA_V2's `u_base`/`w_*_base`.
    """

    def __init__(self, mean: torch.Tensor, shape_basis: torch.Tensor, expression_basis: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", mean.reshape(3 * NUM_LANDMARKS))
        self.register_buffer("shape_basis", shape_basis.reshape(3 * NUM_LANDMARKS, NUM_SHAPE))
        self.register_buffer("expression_basis", expression_basis.reshape(3 * NUM_LANDMARKS, NUM_EXPRESSION))

    def forward(self, alpha_shape: torch.Tensor, alpha_expression: torch.Tensor) -> torch.Tensor:
        flat = self.mean + alpha_shape @ self.shape_basis.T + alpha_expression @ self.expression_basis.T
        return flat.view(-1, NUM_LANDMARKS, 3)  # model space, [N,68,3]


def camera_matrix(params: torch.Tensor) -> torch.Tensor:
    """[N,62] de-normalised parameters -> the [N,3,4] affine camera (scaled rotation | offset)."""
    return params[:, :12].view(-1, 3, 4)


def crop_to_image(points: torch.Tensor, boxes: torch.Tensor, size: int = CROP_SIZE) -> torch.Tensor:
    """3DDFA_V2's `similar_transform`: projected points in the crop -> image pixels.

    The model lives in 1-based (MATLAB) coordinates with y up: x and z lose 1 and y is flipped
    about the crop height; x, y are scaled by the box size over the crop size and shifted by the
    box corner, z by the mean scale, and z is then shifted so that its minimum over the 68
    points is 0. The box is used unrounded, as in 3DDFA_V2. Kept as 3DDFA_V2 has it, although
    the crop sampled crop pixel c from box position (c + 0.5) * scale - 0.5, not c * scale:
    points land (scale - 1) / 2 px up and left of that (0.34 px for the fixed box at 256x256).
    """
    x, y, z = (points - points.new_tensor([1.0, 0.0, 1.0])).unbind(dim=-1)
    y = size - y
    left, top, right, bottom = (v[:, None] for v in boxes.unbind(dim=1))
    scale_x, scale_y = (right - left) / size, (bottom - top) / size
    x = x * scale_x + left
    y = y * scale_y + top
    z = z * (scale_x + scale_y) / 2
    z = z - z.amin(dim=1, keepdim=True)
    return torch.stack([x, y, z], dim=-1)


# ----------------------------------------------------------------------------------------------
# The encoder


class TDDFA(LandmarkEncoder):
    """68 landmarks (input-image pixels) and yaw/pitch/roll (degrees) from 3DDFA_V2.

    Aligned faces use the fixed `ALIGNED_FACE_BOX` (no detector in the training loop); pass
    `boxes` ([N,4] pixels, left/top/right/bottom, 3DDFA_V2's roi_box) for other images.
    """

    networks = ("regressor",)

    def __init__(self, regressor: MobileNetV1Regressor, param_mean, param_std, face_model: KeypointFaceModel):
        super().__init__()
        self.regressor = regressor
        self.face_model = face_model
        self.register_buffer("param_mean", torch.as_tensor(param_mean, dtype=torch.float32).reshape(NUM_PARAMS))
        self.register_buffer("param_std", torch.as_tensor(param_std, dtype=torch.float32).reshape(NUM_PARAMS))

    @classmethod
    def from_files(cls, checkpoint, param_mean_std, bfm_68_landmarks) -> TDDFA:
        """A frozen encoder from 3DDFA_V2's checkpoint, mean/std pickle and the 68-keypoint BFM."""
        regressor = load_regressor(checkpoint)
        mean, std = load_param_mean_std(param_mean_std)
        return freeze(cls(regressor, mean, std, load_keypoint_face_model(bfm_68_landmarks)))

    def _boxes(self, img: torch.Tensor, boxes: torch.Tensor | None) -> torch.Tensor:
        n, _, h, w = img.shape
        if boxes is None:
            return aligned_face_boxes(n, h, w, device=img.device, dtype=img.dtype)
        boxes = torch.as_tensor(boxes, device=img.device, dtype=img.dtype).reshape(-1, 4)
        if boxes.shape[0] not in (1, n):
            raise ValueError(f"boxes: expected 1 or {n} rows, got {boxes.shape[0]}")
        return boxes.expand(n, 4)

    def parameters_3dmm(self, img: torch.Tensor, boxes: torch.Tensor | None = None):
        """De-normalised 62 parameters [N,62] and the boxes [N,4] they refer to."""
        boxes = self._boxes(img, boxes)
        normalised = self.regressor(crop_to_network_input(img, boxes)).float()
        return normalised * self.param_std + self.param_mean, boxes

    def reconstruct(self, params: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """3DDFA_V2's sparse `recon_vers`: [N,68,3] in image pixels (z >= 0, min 0)."""
        P = camera_matrix(params)
        shape = self.face_model(params[:, 12 : 12 + NUM_SHAPE], params[:, 12 + NUM_SHAPE :])
        projected = shape @ P[:, :, :3].transpose(1, 2) + P[:, None, :, 3]
        return crop_to_image(projected, boxes)

    @staticmethod
    def pose_from_params(params: torch.Tensor) -> torch.Tensor:
        """3DDFA_V2's `calc_pose`: (yaw, pitch, roll) degrees [N,3]."""
        _, R, _ = rotation_from_camera(camera_matrix(params))
        return euler_degrees(R)

    def landmarks_and_pose(self, img: torch.Tensor, boxes: torch.Tensor | None = None):
        params, boxes = self.parameters_3dmm(img, boxes)
        # The geometry stays float32 under autocast: a bf16 product of the 3DMM bases would move
        # the landmarks by about half a pixel, more than the network's own error.
        with torch.autocast(img.device.type, enabled=False):
            params, boxes = params.float(), boxes.float()
            return self.reconstruct(params, boxes), self.pose_from_params(params)

    def landmarks(self, img: torch.Tensor, boxes: torch.Tensor | None = None) -> torch.Tensor:
        return self.landmarks_and_pose(img, boxes)[0]

    def pose(self, img: torch.Tensor, boxes: torch.Tensor | None = None) -> torch.Tensor:
        return self.landmarks_and_pose(img, boxes)[1]


def calibrate_aligned_face_box(encoder: TDDFA, img: torch.Tensor, rounds: int = 10) -> torch.Tensor:
    """Per-face boxes [N,4] after `rounds` of 3DDFA_V2's landmark re-crop rule.

    Starts from a centred box 200/256 of the image wide. Used once to derive
    `ALIGNED_FACE_BOX` (see there); kept so that the numbers can be re-derived.
    """
    n, _, h, w = img.shape
    side = 200 / 256 * w
    boxes = img.new_tensor([(w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2]).expand(n, 4)
    with torch.no_grad():
        for _ in range(rounds):
            boxes = roi_box_from_landmarks(encoder.landmarks(img, boxes))
    return boxes


# ----------------------------------------------------------------------------------------------
# Loading


def _require_file(path, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise TDDFAFileError(f"{path}: not found (expected {what})")
    return path


def load_regressor(checkpoint) -> MobileNetV1Regressor:
    """The MobileNetV1 of an official 3DDFA_V2 checkpoint; width inferred, keys matched strictly."""
    path = _require_file(checkpoint, "a 3DDFA_V2 MobileNetV1 checkpoint such as mb1_120x120.pth")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for non-checkpoints
        raise TDDFAFileError(f"{path}: not a readable torch checkpoint ({type(exc).__name__}: {exc})") from None
    state = blob.get("state_dict", blob) if isinstance(blob, dict) else None
    if not isinstance(state, dict) or ("module.conv1.weight" not in state and "conv1.weight" not in state):
        raise TDDFAFileError(f"{path}: expected a 3DDFA_V2 MobileNetV1 state_dict (no 'conv1.weight')")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    width = state["conv1.weight"].shape[0] / 32
    model = MobileNetV1Regressor(width=width, landmark_head="fc_lm.weight" in state)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise TDDFAFileError(f"{path}: not a 3DDFA_V2 MobileNetV1 of width {width:g}: {exc}") from None
    return model


def load_param_mean_std(path) -> tuple[np.ndarray, np.ndarray]:
    """3DDFA_V2's parameter normalisation (param_mean_std_62d_120x120.pkl), read without running code."""
    path = _require_file(path, "3DDFA_V2's param_mean_std_62d_120x120.pkl")
    try:
        data = restricted_load(path)
    except Exception as exc:
        raise TDDFAFileError(f"{path}: not a 3DDFA_V2 mean/std pickle ({exc})") from None
    if not isinstance(data, dict) or not {"mean", "std"} <= set(data):
        raise TDDFAFileError(f"{path}: expected a dict with 'mean' and 'std'")
    mean, std = (np.asarray(data[k], dtype=np.float32).reshape(-1) for k in ("mean", "std"))
    if mean.shape != (NUM_PARAMS,) or std.shape != (NUM_PARAMS,):
        raise TDDFAFileError(f"{path}: expected {NUM_PARAMS} means and stds, got {mean.shape} and {std.shape}")
    return mean, std


def load_keypoint_face_model(path) -> KeypointFaceModel:
    """The 68-keypoint BFM arrays (u_base, w_shp_base, w_exp_base) from an .npz file."""
    path = _require_file(path, "bfm_68_landmarks.npz with u_base, w_shp_base, w_exp_base")
    expected = {
        "u_base": (3 * NUM_LANDMARKS,),
        "w_shp_base": (3 * NUM_LANDMARKS, NUM_SHAPE),
        "w_exp_base": (3 * NUM_LANDMARKS, NUM_EXPRESSION),
    }
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: np.asarray(data[k], dtype=np.float32) for k in expected if k in data.files}
    except Exception as exc:
        raise TDDFAFileError(f"{path}: not a readable .npz ({exc})") from None
    for key, shape in expected.items():
        if key not in arrays:
            raise TDDFAFileError(f"{path}: no array '{key}' (expected {', '.join(expected)})")
        if arrays[key].shape != shape:
            raise TDDFAFileError(f"{path}: expected '{key}' of shape {shape}, got {arrays[key].shape}")
    return KeypointFaceModel(*(torch.from_numpy(arrays[k]) for k in expected))
