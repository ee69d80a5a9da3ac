"""The one interface of the face encoders.

Every encoder is a frozen `nn.Module` that takes images as the rest of the library holds them:
float RGB in [-1, 1], NCHW, aligned faces (FFHQ alignment, the generator's framing), 256x256
unless stated. All outputs are differentiable with respect to the pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# The 51 inner landmarks of the 68-point scheme (points 18-68, 1-based: brows, nose, eyes,
# mouth). The jaw line (1-17) moves with the head outline, not with expression; the paper's
# attribute loss (Eq. 8) and expression metric use the inner points only.
INNER_LANDMARKS = slice(17, 68)

# Side of the frame every encoder is fed in the pipeline: their crops, face boxes and the
# paper's numbers (face size 141.68 px) are defined on FFHQ-aligned 256x256 faces.
ENCODER_RESOLUTION = 256


def encoder_view(img: torch.Tensor) -> torch.Tensor:
    """Faces of any resolution -> the 256x256 frame the encoders are fed (landmarks then come out
    in 256-frame pixels whatever the generator's resolution, so annotations, training targets
    and real FFHQ256 faces compare directly). An integer reduction (1024 -> 256) is a box
    average (the "area" down-sampling of NVIDIA's projector and of e4e); anything else
    (64 -> 256, 512 -> 256 non-integer) is antialiased bilinear. 256 is returned as is, so
    StyleGAN2 paper256 runs are unchanged. Differentiable in the pixels."""
    h, w = img.shape[-2:]
    if (h, w) == (ENCODER_RESOLUTION, ENCODER_RESOLUTION):
        return img
    if h == w and h > ENCODER_RESOLUTION and h % ENCODER_RESOLUTION == 0:
        return F.avg_pool2d(img, h // ENCODER_RESOLUTION)
    size = (ENCODER_RESOLUTION, ENCODER_RESOLUTION)
    return F.interpolate(img, size=size, mode="bilinear", align_corners=False, antialias=True)


def network_dtype(device_type: str) -> torch.dtype:
    """The dtype autocast gives convolutions on `device_type` now, float32 when it is off: an
    encoder renders a network's synthetic inputs (FAN's depth heatmaps) in it directly, instead
    of writing a float32 tensor that the network's first convolution then casts."""
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return torch.float32


class LandmarkEncoder(nn.Module):
    """68 3D landmarks in input-image pixels and head pose (yaw, pitch, roll) in degrees."""

    # Attribute names of the encoder's convolutional networks (the parts that may run in reduced
    # precision and with BatchNorm folded, `inference.py`); everything else is float32 geometry.
    networks: tuple[str, ...] = ()

    def landmarks(self, img: torch.Tensor) -> torch.Tensor:  # [N, 68, 3]
        raise NotImplementedError

    def pose(self, img: torch.Tensor) -> torch.Tensor:  # [N, 3]
        raise NotImplementedError

    def landmarks_and_pose(self, img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both from one forward pass where the backend allows it."""
        return self.landmarks(img), self.pose(img)


class EmbeddingEncoder(nn.Module):
    """A feature vector per image (identity embedding, attribute features)."""

    dim: int
    networks: tuple[str, ...] = ()  # as LandmarkEncoder.networks

    def embed(self, img: torch.Tensor) -> torch.Tensor:  # [N, dim]
        raise NotImplementedError


def freeze(module: nn.Module) -> nn.Module:
    """Eval mode and no parameter gradients: encoders are fixed measuring instruments."""
    return module.eval().requires_grad_(False)


def to_unit_range(img: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1]."""
    return (img + 1) / 2
