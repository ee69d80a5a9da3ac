"""Log-compression sampling: W&T's alternative to the truncation trick.

W&T observe that images with artifacts have unusually large coefficients in the (leading)
principal components of V, and that compressing large coefficients logarithmically removes
the artifacts while keeping the diversity that truncation destroys (truncation pulls *every*
sample towards the mean, so identities change; compression leaves typical samples alone).

The paper's exact formula is not known to us. OUR design, applied to each normalised PCA
coefficient c (c ~ N(0, 1) under the fitted Gaussian):

    f(c) = c                                         for |c| <= tau
    f(c) = sign(c) * (tau + s * log(1 + (|c| - tau) / s))   for |c| > tau

It is odd, continuous, strictly increasing (f' = 1 / (1 + (|c| - tau) / s) > 0), the identity
on [-tau, tau] and C1 at +-tau (f' -> 1 from both sides), so samples inside the threshold are
untouched and nothing jumps at the threshold. `s` (default 1) sets how soon the log bends:
the excess over tau grows like s log(excess / s). With tau = 2 about 4.6% of coefficients are
touched at all, and a 5-sigma coefficient becomes 2 + log 4 = 3.39 sigma.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from pipeline_lib.latent.gaussian import LatentGaussian, to_v, to_w

DEFAULT_TAU = 2.0
METHODS = ("raw", "truncation", "log_compression")


def _check(tau: float, scale: float) -> None:
    if not (tau >= 0 and scale > 0):
        raise ValueError(f"need tau >= 0 and scale > 0, got tau={tau}, scale={scale}")


def log_compress(c, tau: float = DEFAULT_TAU, scale: float = 1.0):
    """f(c) above, element-wise, for torch tensors or numpy arrays."""
    _check(tau, scale)
    if isinstance(c, torch.Tensor):
        excess = (c.abs() - tau).clamp_min(0)
        return torch.where(c.abs() > tau, c.sign() * (tau + scale * torch.log1p(excess / scale)), c)
    c = np.asarray(c, dtype=np.float64)
    excess = np.maximum(np.abs(c) - tau, 0)
    return np.where(np.abs(c) > tau, np.sign(c) * (tau + scale * np.log1p(excess / scale)), c)


def log_expand(y, tau: float = DEFAULT_TAU, scale: float = 1.0):
    """Inverse of `log_compress` (to read off which raw coefficient a compressed one came from)."""
    _check(tau, scale)
    if isinstance(y, torch.Tensor):
        excess = (y.abs() - tau).clamp_min(0)
        return torch.where(y.abs() > tau, y.sign() * (tau + scale * torch.expm1(excess / scale)), y)
    y = np.asarray(y, dtype=np.float64)
    excess = np.maximum(np.abs(y) - tau, 0)
    return np.where(np.abs(y) > tau, np.sign(y) * (tau + scale * np.expm1(excess / scale)), y)


def compress_w(
    w: torch.Tensor,
    gaussian: LatentGaussian,
    tau: float = DEFAULT_TAU,
    scale: float = 1.0,
    components: int | None = None,
) -> torch.Tensor:
    """w -> V -> normalised PCA coefficients -> log-compressed -> back to W.

    `components` limits the compression to the leading k components (W&T see the artifacts
    mostly there); None compresses all. Computed in float64 so that untouched samples come
    back equal to float32 rounding.
    """
    c = gaussian.pca_coefficients(to_v(w.double()))
    k = c.shape[-1] if components is None else int(components)
    c = torch.cat([log_compress(c[..., :k], tau, scale), c[..., k:]], dim=-1)
    return to_w(gaussian.from_pca(c)).to(w.dtype)


@torch.no_grad()
def sample_ws(
    G,
    gaussian: LatentGaussian | None = None,
    z: torch.Tensor | None = None,
    seed: int | None = None,
    num: int | None = None,
    method: str = "log_compression",
    psi: float = 0.7,
    tau: float = DEFAULT_TAU,
    scale: float = 1.0,
    components: int | None = None,
    device="cpu",
) -> torch.Tensor:
    """w [N, w_dim] for given z (or `num` z drawn on the CPU from `seed`) by one of `METHODS`.

    "raw": the mapping output; "truncation": w_avg + psi (w - w_avg) (NVIDIA's trick, all
    layers); "log_compression": `compress_w` with the fitted Gaussian. Broadcast the result to
    [N, G.num_ws, w_dim] for `G.ws_to_image`.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if z is None:
        if seed is None or num is None:
            raise ValueError("give z, or seed and num")
        z = torch.randn([int(num), G.z_dim], generator=torch.Generator().manual_seed(int(seed)))
    w = G.mapping(z.to(device), truncation_psi=1.0)[:, 0]
    if method == "truncation":
        return G.mapping.w_avg.to(w.dtype).lerp(w, psi)
    if method == "log_compression":
        if gaussian is None:
            raise ValueError("log_compression needs the fitted LatentGaussian")
        return compress_w(w, gaussian, tau, scale, components)
    return w


def expected_fraction_touched(tau: float = DEFAULT_TAU) -> float:
    """P(|c| > tau) for c ~ N(0, 1): the share of coefficients the compression changes."""
    return math.erfc(tau / math.sqrt(2.0))
