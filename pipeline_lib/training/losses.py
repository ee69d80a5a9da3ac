"""The training losses of the reference mapping network M_ref (paper Sec. 3.3.2-3.5, Eqs. 7-12).

Units: identity embeddings are ArcFace's unit vectors, landmarks are pixels of the 256x256
image (x, y and a depth z on the same pixel scale), Euler angles are degrees, images are
compared in [0, 1]. Every term is reduced over the batch by a mean, so that its weight
(`lambda_*`) does not depend on the batch size or on the number of GPUs (our choice: the paper
does not say; Nitzan et al.'s code, the referred work, averages over the batch too).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pipeline_lib.encoders.base import INNER_LANDMARKS


def identity_loss(embedding_ref: torch.Tensor, embedding_out: torch.Tensor) -> torch.Tensor:
    """Eq. 7: L1 between the identity embeddings E_id(I_id) and E_id(I_out).

    Reduced as a mean over the embedding's elements and the batch (Nitzan et al.'s
    `reduce_mean(MAE)`), so the term does not grow with the embedding width.
    """
    return (embedding_ref.float() - embedding_out.float()).abs().mean()


def landmark_loss(landmarks_ref: torch.Tensor, landmarks_out: torch.Tensor) -> torch.Tensor:
    """Eq. 8, L_lnd = ||E_lnd(I_attr) - E_lnd(I_out)||_2 over the 51 inner 3D landmarks.

    Sec. 3.3: "each feature point is denoted by 3-dimensional point coordinates" and only the
    51 inner points (18-68, 1-based) are used, so E_lnd(I) is the 51x3 = 153-vector of (x, y, z)
    in pixels ([N, 68, 3] in, points 18-68 taken here). Reduction, as printed: one Euclidean
    norm per image over all 153 coordinates (not squared: the paper prints ||.||_2, not
    ||.||_2^2), then the mean over the batch.

    Nitzan et al.'s code instead takes the mean squared error over 2D points (`reduce_mean(MSE)`);
    we follow the printed equation, since the paper changed that loss on purpose (3D points,
    Sec. 3.3.2). The norm's gradient at a zero difference is 0 in PyTorch, so reconstruction
    steps (I_attr = I_id) are safe.
    """
    if landmarks_ref.shape[-1] != 3 or landmarks_out.shape[-1] != 3:
        raise ValueError(f"landmark_loss: expected [N, 68, 3] landmarks, got {tuple(landmarks_ref.shape)}")
    diff = landmarks_ref[:, INNER_LANDMARKS].float() - landmarks_out[:, INNER_LANDMARKS].float()
    return torch.linalg.vector_norm(diff.flatten(1), dim=1).mean()


def euler_loss(pose_ref: torch.Tensor, pose_out: torch.Tensor) -> torch.Tensor:
    """Eq. 8, L_pose = ||E_pose(I_attr) - E_pose(I_out)||_2 of (yaw, pitch, roll) in degrees.

    One Euclidean norm per image over the three angles, then the mean over the batch (as
    `landmark_loss`). Degrees are our choice of unit (the paper's Sec. 3.3 gives the range
    (-pi/2, pi/2) but not the unit of the loss); they keep the term on the scale of L_lnd.
    """
    return torch.linalg.vector_norm(pose_ref.float() - pose_out.float(), dim=-1).mean()


def reconstruction_loss(img_ref: torch.Tensor, img_out: torch.Tensor, alpha: float = 0.84) -> torch.Tensor:
    """Eqs. 9-10: alpha (1 - MS-SSIM) + (1 - alpha) L1 between I_attr and I_out.

    Only meaningful on reconstruction steps, where I_attr = I_id. MS-SSIM is pytorch-msssim's
    (five scales, 11-pixel Gaussian window), on images mapped to [0, 1] with data range 1; it
    needs images of at least 161 pixels a side. Eq. 9 prints MS-SSIM itself as the structural
    loss; as a loss to minimise it must be 1 - MS-SSIM (as in Nitzan et al. and Zhao et al.).
    """
    from pytorch_msssim import ms_ssim

    ref = (img_ref.float() + 1) / 2
    out = (img_out.float().clamp(-1, 1) + 1) / 2
    return alpha * (1 - ms_ssim(out, ref, data_range=1.0, size_average=True)) + (1 - alpha) * (out - ref).abs().mean()


def style_negative_log_likelihood(S: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Eq. 12's regulariser -L(S) = sum_i (s_i - mu_i)^2 / (2 sigma_i^2), summed over the |S| = 4928
    channels, then the mean over the batch.

    s is the edited style vector S_id + dS (what the generator is fed, Eq. 6), not dS alone:
    Sec. 3.4 fits mu_i, sigma_i to "the sampling value of the style space for the training
    dataset", i.e. to S = A(M_G(Z)) of the synthetic faces (`style_stats.h5`), and the term is
    meant to stop "the modulated value of style space deviating from the data manifold"; a dS
    has no dataset statistics to compare with (for dS alone the prior would be centred on mu,
    not on 0). The paper prints 1/(2 sigma_i^2) outside the sum; the index i only makes sense
    inside it, which is how it is computed here.

    A sum, not a mean over channels: the per-channel mean (our earlier version, with the
    Gaussian's constants log sigma + log(2 pi)/2) has the same gradient divided by |S|, so it
    is reached by dividing `lambda_reg` by |S|; no flag keeps it. At S_id itself (dS = 0) the
    term is about |S| / 2 = 2464 on average, a constant that carries no gradient.

    Zero-variance channels: a channel that never varies over the dataset carries no style and has
    no Gaussian to score against, so it is left out of the sum. `read_style_stats` marks those
    channels (`S/constant_channels` of `style_stats.h5`) with std = inf, which makes their term
    exactly 0 with a zero gradient, whatever dS puts on them; the signature stays (S, mean, std).
    (Clamping their std at 1e-8, as before, weighted them by 5e15: a dS of 1e-2 cost 5e11.)
    """
    z = (S.float() - mean) / std
    return 0.5 * z.square().sum(dim=-1).mean()


@dataclass(frozen=True)
class LossWeights:
    """The weights of the total loss (Eq. 11 plus the style term). Defaults are the paper's (Sec. 3.5)."""

    lambda_id: float = 1.0
    lambda_attr: float = 0.01
    lambda_rec: float = 0.02
    lambda_reg: float = 0.0  # 0: no style regularisation (Table 2's first two rows); weight of the sum, Eq. 12
    alpha: float = 0.84
    euler: bool = False  # add the Euler-angle term to L_attr (the paper's final model)


def total_loss(terms: dict[str, torch.Tensor], weights: LossWeights, reconstruction_step) -> torch.Tensor:
    """lambda_id L_id + lambda_attr L_attr + lambda_rec L_rec (reconstruction steps) + lambda_reg (-L(S)).

    `reconstruction_step` is a bool, or a 0/1 tensor: then L_rec (which must be finite) is always
    added, times that flag, so one compiled graph serves both step kinds (training/step.py)."""
    attr = terms["landmark"] + (terms["euler"] if weights.euler else 0.0)
    total = weights.lambda_id * terms["identity"] + weights.lambda_attr * attr
    if isinstance(reconstruction_step, torch.Tensor):
        total = total + weights.lambda_rec * reconstruction_step.to(total.dtype) * terms["reconstruction"]
    elif reconstruction_step:
        total = total + weights.lambda_rec * terms["reconstruction"]
    if weights.lambda_reg:
        total = total + weights.lambda_reg * terms["style_nll"]
    return total
