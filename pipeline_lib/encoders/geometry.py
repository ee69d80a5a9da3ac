"""Rigid geometry shared by the landmark encoders: Euler angles and similarity fits.

All functions are batched torch operations, differentiable, and follow 3DDFA_V2's pose
convention, so that every landmark backend reports yaw, pitch and roll the same way.
"""

from __future__ import annotations

import torch


def rotation_from_camera(P: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """3DDFA's P2sRt: scale, rotation [N,3,3] and translation of a 3x4 affine camera [N,3,4].

    The first two rows of the linear part are normalised; the third is their cross product.
    """
    r1, r2 = P[:, 0, :3], P[:, 1, :3]
    n1, n2 = r1.norm(dim=1, keepdim=True), r2.norm(dim=1, keepdim=True)
    scale = (n1 + n2).squeeze(1) / 2
    r1, r2 = r1 / n1, r2 / n2
    R = torch.stack([r1, r2, torch.cross(r1, r2, dim=1)], dim=1)
    return scale, R, P[:, :, 3]


def euler_degrees(R: torch.Tensor) -> torch.Tensor:
    """[N,3] (yaw, pitch, roll) in degrees from rotations [N,3,3], 3DDFA_V2's matrix2angle:
    yaw = asin(R20), pitch = atan2(R21, R22), roll = atan2(R10, R00) (the cos(yaw) factors
    cancel in the atan2s). The gimbal-lock branch (|R20| > 0.998) is not special-cased:
    faces never turn 87 degrees in this pipeline, and the general formula stays differentiable.
    """
    yaw = torch.asin(R[:, 2, 0].clamp(-1.0, 1.0))
    pitch = torch.atan2(R[:, 2, 1], R[:, 2, 2])
    roll = torch.atan2(R[:, 1, 0], R[:, 0, 0])
    return torch.rad2deg(torch.stack([yaw, pitch, roll], dim=1))


def similarity_fit(source: torch.Tensor, target: torch.Tensor):
    """Least-squares similarity (Umeyama 1991): s, R [N,3,3], t with target ~ s R source + t.

    source: [K,3] or [N,K,3] (e.g. the mean face shape); target: [N,K,3] (e.g. landmarks).
    """
    if source.dim() == 2:
        source = source.unsqueeze(0).expand_as(target)
    mu_s, mu_t = source.mean(dim=1, keepdim=True), target.mean(dim=1, keepdim=True)
    xs, xt = source - mu_s, target - mu_t
    cov = xt.transpose(1, 2) @ xs / source.shape[1]  # [N,3,3]
    U, S, Vh = torch.linalg.svd(cov)
    d = torch.sign(torch.linalg.det(U @ Vh))
    D = torch.diag_embed(torch.stack([torch.ones_like(d), torch.ones_like(d), d], dim=1))
    R = U @ D @ Vh
    var_s = xs.square().sum(dim=(1, 2)) / source.shape[1]
    s = (S * D.diagonal(dim1=1, dim2=2)).sum(dim=1) / var_s
    t = mu_t.squeeze(1) - s[:, None] * (R @ mu_s.squeeze(1).unsqueeze(-1)).squeeze(-1)
    return s, R, t
