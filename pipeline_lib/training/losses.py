"""The training losses of the reference mapping network M_ref (paper Sec. 3.5, Eqs. 7-12).

Every term is a batch mean, so that its weight (`lambda_*`) does not depend on the batch size
or on the number of GPUs. Units: identity embeddings are ArcFace's unit vectors, landmarks are
pixels of the 256x256 image, Euler angles are degrees, images are compared in [0, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from pipeline_lib.encoders.base import INNER_LANDMARKS


def identity_loss(embedding_ref: torch.Tensor, embedding_out: torch.Tensor) -> torch.Tensor:
    """Eq. 7: L1 between the identity embeddings E_id(I_id) and E_id(I_out)."""
    return (embedding_ref.float() - embedding_out.float()).abs().mean()


def landmark_loss(landmarks_ref: torch.Tensor, landmarks_out: torch.Tensor) -> torch.Tensor:
    """Eq. 8, first term: L2 (mean squared error) between the 2D positions of the 51 inner
    landmarks of I_attr and I_out."""
    ref = landmarks_ref[:, INNER_LANDMARKS, :2].float()
    out = landmarks_out[:, INNER_LANDMARKS, :2].float()
    return (ref - out).square().mean()


def euler_loss(pose_ref: torch.Tensor, pose_out: torch.Tensor) -> torch.Tensor:
    """Eq. 8, second term (the paper's final model): L2 between (yaw, pitch, roll)."""
    return (pose_ref.float() - pose_out.float()).square().mean()


def reconstruction_loss(img_ref: torch.Tensor, img_out: torch.Tensor, alpha: float = 0.84) -> torch.Tensor:
    """Eqs. 9-10: alpha (1 - MS-SSIM) + (1 - alpha) L1 between I_attr and I_out.

    Only meaningful on reconstruction steps, where I_attr = I_id. MS-SSIM is pytorch-msssim's
    (five scales, 11-pixel Gaussian window), on images mapped to [0, 1] with data range 1; it
    needs images of at least 161 pixels a side.
    """
    from pytorch_msssim import ms_ssim

    ref = (img_ref.float() + 1) / 2
    out = (img_out.float().clamp(-1, 1) + 1) / 2
    return alpha * (1 - ms_ssim(out, ref, data_range=1.0, size_average=True)) + (1 - alpha) * (out - ref).abs().mean()


def style_negative_log_likelihood(S: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Eq. 12's regulariser -L(S): the negative log-likelihood of the edited style vector under
    the per-channel Gaussian of S fitted to the dataset (`style_stats.h5`), in nats per channel.

    Wulff & Torralba's observation is that the generator's latents are well modelled by a
    Gaussian; penalising unlikely S keeps the edit where the generator draws faces.
    """
    z = (S.float() - mean) / std
    return (0.5 * z.square() + torch.log(std) + 0.5 * math.log(2 * math.pi)).mean()


@dataclass(frozen=True)
class LossWeights:
    """The weights of the total loss. Defaults are the paper's (Sec. 4.1)."""

    lambda_id: float = 1.0
    lambda_attr: float = 0.01
    lambda_rec: float = 0.02
    lambda_reg: float = 0.0  # 0: no style regularisation (the paper's first ablation rows)
    alpha: float = 0.84
    euler: bool = False  # add the Euler-angle term to L_attr (the paper's final model)


def total_loss(terms: dict[str, torch.Tensor], weights: LossWeights, reconstruction_step: bool) -> torch.Tensor:
    """lambda_id L_id + lambda_attr L_attr + lambda_rec L_rec (reconstruction steps) + lambda_reg (-L(S))."""
    attr = terms["landmark"] + (terms["euler"] if weights.euler else 0.0)
    total = weights.lambda_id * terms["identity"] + weights.lambda_attr * attr
    if reconstruction_step:
        total = total + weights.lambda_rec * terms["reconstruction"]
    if weights.lambda_reg:
        total = total + weights.lambda_reg * terms["style_nll"]
    return total
