"""Equivariance metrics of StyleGAN3 (EQ-T, EQ-T_frac, EQ-R), the official algorithm.

Per batch: map z (psi 1), render the reference with the identity input transform, render again
with the transform set to the inverse of a translation t (EQ-T: rounded to whole pixels; EQ-T_frac:
not) or of a rotation; shift/rotate the reference by the same amount with the official band-limited
operators and compare under their validity masks. The metric pools squared errors and mask
counts over all samples (float64): PSNR = 20 log10(2) - 10 log10(sum err / sum mask), a ratio of
sums, not a mean of per-sample PSNRs. `sample_sums` keeps them per sample so that tests can
compare with the fixture's per-sample reference values; `equivariance_metric` runs the sampling
loop with the official RNG draw order (z, then t or the angle, per batch).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from pipeline_lib.generator.stylegan3_filters import filter2d, upsample2d

METRICS = ("eqt_int", "eqt_frac", "eqr")


def sinc(x: torch.Tensor) -> torch.Tensor:
    y = (x * np.pi).abs()
    return torch.where(y < 1e-30, torch.ones_like(x), torch.sin(y) / y.clamp(1e-30, float("inf")))


def lanczos_window(x: torch.Tensor, a: float) -> torch.Tensor:
    x = x.abs() / a
    return torch.where(x < 1, sinc(x), torch.zeros_like(x))


def rotation_matrix(angle) -> torch.Tensor:
    """[[cos, sin, 0], [-sin, cos, 0], [0, 0, 1]] (float32)."""
    angle = torch.as_tensor(angle).to(torch.float32)
    m = torch.eye(3, device=angle.device)
    m[0, 0], m[0, 1], m[1, 0], m[1, 1] = angle.cos(), angle.sin(), -angle.sin(), angle.cos()
    return m


# ----------------------------------------------------------------------------------------------
# Reference operators (Appendix E of the paper)


def integer_translation(x: torch.Tensor, tx, ty) -> tuple[torch.Tensor, torch.Tensor]:
    """Shift by (tx, ty) image widths rounded to whole pixels, zero fill; (shifted, valid mask)."""
    _, _, h, w = x.shape
    ix = int(torch.as_tensor(tx * w).to(torch.float32).round())
    iy = int(torch.as_tensor(ty * h).to(torch.float32).round())
    z, m = torch.zeros_like(x), torch.zeros_like(x)
    if abs(ix) < w and abs(iy) < h:
        dst = (slice(None), slice(None), slice(max(iy, 0), h + min(iy, 0)), slice(max(ix, 0), w + min(ix, 0)))
        z[dst] = x[:, :, max(-iy, 0) : h + min(-iy, 0), max(-ix, 0) : w + min(-ix, 0)]
        m[dst] = 1
    return z, m


def fractional_translation(x: torch.Tensor, tx, ty, a: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Shift by a fractional amount with a 2a-tap Lanczos filter; the mask drops pixels whose
    filter footprint reached outside the image."""
    _, _, h, w = x.shape
    tx = torch.as_tensor(tx * w).to(torch.float32)
    ty = torch.as_tensor(ty * h).to(torch.float32)
    ix, iy = int(tx.floor()), int(ty.floor())
    fx, fy = tx - ix, ty - iy
    b = a - 1
    z = torch.zeros_like(x)
    zx0, zy0, zx1, zy1 = max(ix - b, 0), max(iy - b, 0), min(ix + a, 0) + w, min(iy + a, 0) + h
    if zx0 < zx1 and zy0 < zy1:
        taps = torch.arange(a * 2, device=x.device) - b
        fx_taps = (sinc(taps - fx) * sinc((taps - fx) / a)).unsqueeze(0)  # [1, 2a]
        fy_taps = (sinc(taps - fy) * sinc((taps - fy) / a)).unsqueeze(1)  # [2a, 1]
        y = filter2d(x, fx_taps / fx_taps.sum(), padding=[b, a, 0, 0])
        y = filter2d(y, fy_taps / fy_taps.sum(), padding=[0, 0, b, a])
        z[:, :, zy0:zy1, zx0:zx1] = y[
            :, :, max(b - iy, 0) : h + b + a + min(-iy - a, 0), max(b - ix, 0) : w + b + a + min(-ix - a, 0)
        ]
    m = torch.zeros_like(x)
    mx0, my0, mx1, my1 = max(ix + a, 0), max(iy + a, 0), min(ix - b, 0) + w, min(iy - b, 0) + h
    if mx0 < mx1 and my0 < my1:
        m[:, :, my0:my1, mx0:mx1] = 1
    return z, m


def affine_bandlimit_filter(mat, a=3, amax=16, aflt=64, up=4, cutoff_in=1, cutoff_out=1) -> torch.Tensor:
    """An oriented low-pass that band-limits w.r.t. both the input grid and the grid transformed
    by `mat`: the convolution of two oriented sinc filters, windowed by the convolution of two
    oriented Lanczos windows (both computed by FFT), cropped to 2*amax*up - 1 taps."""
    assert a <= amax < aflt
    mat = torch.as_tensor(mat).to(torch.float32)
    taps = ((torch.arange(aflt * up * 2 - 1, device=mat.device) + 1) / up - aflt).roll(1 - aflt * up)
    yi, xi = torch.meshgrid(taps, taps, indexing="ij")
    xo, yo = (torch.stack([xi, yi], dim=2) @ mat[:2, :2].t()).unbind(2)

    def fft_conv(p, q):
        return torch.fft.ifftn(torch.fft.fftn(p) * torch.fft.fftn(q)).real

    f = fft_conv(sinc(xi * cutoff_in) * sinc(yi * cutoff_in), sinc(xo * cutoff_out) * sinc(yo * cutoff_out))
    f = f * fft_conv(lanczos_window(xi, a) * lanczos_window(yi, a), lanczos_window(xo, a) * lanczos_window(yo, a))
    c = (aflt - amax) * up
    f = f.roll([aflt * up - 1] * 2, dims=[0, 1])[c:-c, c:-c]
    f = F.pad(f, [0, 1, 0, 1]).reshape(amax * 2, up, amax * 2, up)
    f = f / f.sum([0, 2], keepdim=True) / (up**2)  # unit gain for every up-sampling phase
    return f.reshape(amax * 2 * up, amax * 2 * up)[:-1, :-1]


def affine_transformation(x: torch.Tensor, mat, up: int = 4, **filter_kwargs):
    """Resample `x` under `mat`: up-sample x4 with the band-limit filter, then bilinear sampling."""
    n, _, h, w = x.shape
    mat = torch.as_tensor(mat).to(dtype=torch.float32, device=x.device)
    f = affine_bandlimit_filter(mat, up=up, **filter_kwargs)
    p = f.shape[0] // 2
    theta = mat.inverse()
    theta[:2, 2] *= 2
    theta[0, 2] += 1 / up / w
    theta[1, 2] += 1 / up / h
    theta[0, :] *= w / (w + p / up * 2)
    theta[1, :] *= h / (h + p / up * 2)
    grid = F.affine_grid(theta[:2, :3].unsqueeze(0).repeat([n, 1, 1]), x.shape, align_corners=False)
    y = upsample2d(x, f, up=up, padding=p)
    z = F.grid_sample(y, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    m = torch.zeros_like(y)
    c = p * 2 + 1
    m[:, :, c:-c, c:-c] = 1
    m = F.grid_sample(m, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return z, m


def fractional_rotation(x: torch.Tensor, angle, a: int = 3):
    """The rotation operator R_alpha: (rotated image, valid mask)."""
    mat = rotation_matrix(torch.as_tensor(angle).to(dtype=torch.float32, device=x.device))
    return affine_transformation(x, mat, a=a, amax=a * 2)


def fractional_pseudo_rotation(x: torch.Tensor, angle, a: int = 3):
    """R*_alpha: the band limit a rotation by `angle` would impose, without rotating."""
    mat = rotation_matrix(-torch.as_tensor(angle).to(dtype=torch.float32, device=x.device))
    f = affine_bandlimit_filter(mat, a=a, amax=a * 2, up=1)
    y = filter2d(x, f)
    m = torch.zeros_like(y)
    c = f.shape[0] // 2
    m[:, :, c:-c, c:-c] = 1
    return y, m


# ----------------------------------------------------------------------------------------------
# The metric


def _render(G, ws: torch.Tensor, transform: torch.Tensor) -> torch.Tensor:
    G.set_transform_matrix(transform)
    return G.ws_to_image(ws)


@torch.no_grad()
def sample_sums(G, ws: torch.Tensor, metric: str, param) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample float64 (sum of masked squared errors, sum of the mask) of one batch.

    `param`: the translation t = (t_x, t_y) in image widths (eqt_int: rounded to 1/resolution
    by the caller, as the official loop does) or the angle in radians (eqr). The generator's
    stored transform is restored afterwards."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    saved = G.synthesis.input.transform.clone()
    eye = torch.eye(3, device=ws.device)
    try:
        orig = _render(G, ws, eye)
        if metric == "eqr":
            angle = torch.as_tensor(param, dtype=torch.float32).reshape([])
            img = _render(G, ws, rotation_matrix(-angle))
            ref, ref_mask = fractional_rotation(orig, angle)
            pseudo, pseudo_mask = fractional_pseudo_rotation(img, angle)
            mask = ref_mask * pseudo_mask
            err = (ref - pseudo).square() * mask
        else:
            t = torch.as_tensor(param, dtype=torch.float32).reshape(2)
            m = eye.clone()
            m[:2, 2] = -t
            img = _render(G, ws, m)
            op = integer_translation if metric == "eqt_int" else fractional_translation
            ref, mask = op(orig, t[0], t[1])
            err = (ref - img).square() * mask
    finally:
        G.set_transform_matrix(saved)
    return err.to(torch.float64).sum(dim=[1, 2, 3]), mask.to(torch.float64).sum(dim=[1, 2, 3])


def pooled_psnr(sq_err_sum, mask_sum) -> float:
    """20 log10(2) - 10 log10(sum err / sum mask): images in [-1, 1], MSE pooled over samples."""
    mse = torch.as_tensor(sq_err_sum, dtype=torch.float64).sum() / torch.as_tensor(mask_sum, dtype=torch.float64).sum()
    return float(np.log10(2) * 20 - mse.log10() * 10)


def per_sample_psnr(sq_err_sum, mask_sum) -> torch.Tensor:
    mse = torch.as_tensor(sq_err_sum, dtype=torch.float64) / torch.as_tensor(mask_sum, dtype=torch.float64)
    return np.log10(2) * 20 - mse.log10() * 10


@torch.no_grad()
def equivariance_metric(
    G, metric: str, num_samples: int = 50000, batch_size: int = 4, translate_max: float = 0.125, rotate_max: float = 1.0
) -> dict:
    """The official sampling loop for one metric (draws from the global torch RNG, as the
    official code does: seed it with torch.manual_seed for a reproducible value).

    Returns {"psnr": pooled dB, "sq_err_sum", "mask_sum": per sample, "z", "param": per batch}.
    num_samples is rounded up to whole batches, as in the official loop."""
    device = next(G.parameters()).device
    errs, masks, zs, params = [], [], [], []
    for _ in range(math.ceil(num_samples / batch_size)):
        z = torch.randn([batch_size, G.z_dim], device=device)
        if metric == "eqr":
            param = (torch.rand([], device=device) * 2 - 1) * (rotate_max * np.pi)
        else:
            param = (torch.rand(2, device=device) * 2 - 1) * translate_max
            if metric == "eqt_int":
                param = (param * G.img_resolution).round() / G.img_resolution
        e, m = sample_sums(G, G.mapping(z), metric, param)
        errs.append(e)
        masks.append(m)
        zs.append(z)
        params.append(param.reshape(-1))
    sq, ms = torch.cat(errs), torch.cat(masks)
    return {
        "psnr": pooled_psnr(sq, ms),
        "sq_err_sum": sq,
        "mask_sum": ms,
        "z": torch.cat(zs),
        "param": torch.stack(params),
    }
