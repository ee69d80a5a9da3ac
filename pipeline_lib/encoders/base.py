"""The one interface of the face encoders.

Every encoder is a frozen `nn.Module` that takes images as the rest of the library holds them:
float RGB in [-1, 1], NCHW, aligned faces (FFHQ alignment, the generator's framing), 256x256
unless stated. All outputs are differentiable with respect to the pixels.
"""

from __future__ import annotations

import torch
from torch import nn

# The 51 inner landmarks of the 68-point scheme (points 18-68, 1-based: brows, nose, eyes,
# mouth). The jaw line (1-17) moves with the head outline, not with expression; the paper's
# attribute loss (Eq. 8) and expression metric use the inner points only.
INNER_LANDMARKS = slice(17, 68)


class LandmarkEncoder(nn.Module):
    """68 3D landmarks in input-image pixels and head pose (yaw, pitch, roll) in degrees."""

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

    def embed(self, img: torch.Tensor) -> torch.Tensor:  # [N, dim]
        raise NotImplementedError


def freeze(module: nn.Module) -> nn.Module:
    """Eval mode and no parameter gradients: encoders are fixed measuring instruments."""
    return module.eval().requires_grad_(False)


def to_unit_range(img: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1]."""
    return (img + 1) / 2
