"""Wulff & Torralba's evaluation on generated faces (their Fig. 2) and interpolations (Fig. 3).

On generated faces the true latent is known, so a projection can be scored twice: by how well
it reproduces the image (PSNR; LPIPS when a loss module is given) and by how close its latent
is to the truth (L2 in W; Mahalanobis distance in V, which weighs each direction by how much
the mapping network actually varies along it). W&T report both, with and without the prior.
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch

from pipeline_lib.latent.gaussian import LatentGaussian, to_v, to_w
from pipeline_lib.latent.projector import ProjectionResult, ProjectorConfig, latent_statistics, project


def psnr(img: torch.Tensor, ref: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """Per image PSNR in dB; images in [-1, 1] have a data range of 2."""
    mse = (img.float() - ref.float()).square().flatten(1).mean(1)
    return 20 * math.log10(data_range) - 10 * torch.log10(mse.clamp_min(1e-20))


def latent_errors(ws_est: torch.Tensor, ws_true: torch.Tensor, gaussian: LatentGaussian | None = None) -> dict:
    """Per image latent errors, averaged over layer vectors ([N, num_ws, w_dim] each; a W
    projection is its w repeated). "w_l2": Euclidean distance in W; "v_mahalanobis":
    sqrt((v1 - v2)^T cov^-1 (v1 - v2)) in V, i.e. the distance of the normalised PCA
    coefficients (the mean cancels)."""
    ws_est, ws_true = ws_est.double(), ws_true.double().to(ws_est.device)
    out = {"w_l2": (ws_est - ws_true).norm(dim=-1).mean(-1)}
    if gaussian is not None:
        c_est = gaussian.pca_coefficients(to_v(ws_est))
        c_true = gaussian.pca_coefficients(to_v(ws_true))
        out["v_mahalanobis"] = (c_est - c_true).norm(dim=-1).mean(-1)
    return out


def reconstruction_errors(
    G, result: ProjectionResult, target: torch.Tensor, ws_true=None, gaussian=None, lpips_fn=None
) -> dict[str, torch.Tensor]:
    """Image errors (PSNR, optional LPIPS) of a projection and, when the true latents are known,
    its latent errors (`latent_errors`). Every entry is per image [N]."""
    target = target.to(result.images.device)
    out = {"psnr": psnr(result.images, target)}
    if lpips_fn is not None:
        with torch.no_grad():
            out["lpips"] = lpips_fn(result.images, target).flatten()
    if ws_true is not None:
        if result.ws is None:
            raise ValueError("latent errors need a W or W+ projection")
        out.update(latent_errors(result.ws, ws_true, gaussian))
    if gaussian is not None and result.ws is not None:
        # per layer vector, so W and W+ compare (a typical sample: ~w_dim)
        out["mahalanobis_sq_per_layer"] = gaussian.mahalanobis_sq(to_v(result.ws.double())).mean(-1)
    return out


def generated_targets(G, num: int, seed: int, device="cpu", truncation_psi: float = 1.0, mixed: bool = False):
    """(ws, images) of `num` generated faces. `mixed` draws a different w for every layer,
    W&T's W+ test set (Fig. 2b); otherwise one w for all layers (Fig. 2a)."""
    gen = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        if mixed:
            z = torch.randn([num * G.num_ws, G.z_dim], generator=gen).to(device)
            ws = G.mapping(z, truncation_psi=truncation_psi)[:, 0].reshape(num, G.num_ws, -1)
        else:
            z = torch.randn([num, G.z_dim], generator=gen).to(device)
            ws = G.mapping(z, truncation_psi=truncation_psi)
        return ws, G.ws_to_image(ws, noise_mode="const")


def compare_prior(
    G, target, ws_true, config: ProjectorConfig, gaussian: LatentGaussian, seeds=None, lpips_fn=None, stats=None
) -> dict[str, dict]:
    """Project the same faces without and with the prior (everything else equal, same seeds)
    and score both: {"no_prior": errors, "prior": errors, plus the two results}."""
    stats = stats if stats is not None else latent_statistics(G, config.w_avg_samples, config.w_avg_seed, target.device)
    out = {}
    for name, weight in (("no_prior", 0.0), ("prior", config.prior_weight)):
        res = project(G, target, replace(config, prior_weight=weight), gaussian=gaussian, seeds=seeds, stats=stats)
        out[name] = reconstruction_errors(G, res, target, ws_true, gaussian, lpips_fn)
        out[f"{name}_result"] = res
    return out


def interpolate_ws(ws_a: torch.Tensor, ws_b: torch.Tensor, alphas=(0.5,), space: str = "w") -> torch.Tensor:
    """Latents between two projections, [len(alphas), N, num_ws, w_dim].

    space "w": linear in W (the usual StyleGAN interpolation); "v": linear in V, then back to
    W, which follows the Gaussian model's geometry. Alpha 0.5 gives the midpoints W&T inspect.
    """
    if space not in ("w", "v"):
        raise ValueError(f"space must be 'w' or 'v', got {space!r}")
    a = torch.as_tensor(alphas, dtype=ws_a.dtype, device=ws_a.device).reshape(-1, *([1] * ws_a.ndim))
    if space == "w":
        return ws_a + a * (ws_b - ws_a)
    va, vb = to_v(ws_a), to_v(ws_b)
    return to_w(va + a * (vb - va))


@torch.no_grad()
def interpolation_midpoints(G, result_a: ProjectionResult, result_b: ProjectionResult, alphas=(0.5,), space="w"):
    """Images along the path between two projections (W or W+), [len(alphas), N, C, H, W].

    The const noise buffers of G are used, not either projection's optimised noise maps: an
    interpolated image has no noise of its own, and the comparison with and without the prior
    should differ only in the latents.
    """
    if result_a.ws is None or result_b.ws is None:
        raise ValueError("interpolation needs W or W+ projections")
    path = interpolate_ws(result_a.ws, result_b.ws, alphas, space)
    return torch.stack([G.ws_to_image(ws, noise_mode="const") for ws in path])
