"""StyleGAN3's low-pass filters and the two filtering ops its layers run, without scipy.

Filter design is float64 and cast to float32 at the end, as the official code does:
- separable filters: a Kaiser-windowed sinc with unit DC gain (`firwin`), the window's beta from
  Kaiser's empirical attenuation formulas; this reproduces scipy.signal.firwin tap for tap;
- radial filters (StyleGAN3-R's non-critical down filters): a jinc (`J1(2 pi f_c r) / (pi r)`)
  times the outer product of two 1-D Kaiser windows, normalised to unit sum.

The ops are the official pure-PyTorch reference paths (`upfirdn2d` and `filtered_lrelu`),
which are what ran on CPU for the fixtures, so matching them gives bit-level agreement there.
In a released pickle the filters are stored buffers; the design only matters for new nets.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

# ----------------------------------------------------------------------------------------------
# Filter design


def kaiser_atten(numtaps: int, width: float) -> float:
    """Stop-band attenuation (dB) of a Kaiser FIR with `numtaps` taps and transition `width`
    (a fraction of the Nyquist frequency)."""
    return 2.285 * (numtaps - 1) * np.pi * width + 7.95


def kaiser_beta(atten: float) -> float:
    """Kaiser's empirical window parameter for a given attenuation in dB."""
    if atten > 50:
        return 0.1102 * (atten - 8.7)
    if atten > 21:
        return 0.5842 * (atten - 21) ** 0.4 + 0.07886 * (atten - 21)
    return 0.0


def firwin(numtaps: int, cutoff: float, width: float, fs: float) -> np.ndarray:
    """Low-pass windowed-sinc taps (float64), unit gain at DC; scipy.signal.firwin's algorithm
    for a single cutoff with a Kaiser window chosen from the transition width."""
    nyq = 0.5 * fs
    c = cutoff / nyq
    beta = kaiser_beta(kaiser_atten(numtaps, width / nyq))
    m = np.arange(numtaps) - 0.5 * (numtaps - 1)
    h = c * np.sinc(c * m)
    h = h * np.kaiser(numtaps, beta)
    return h / h.sum()


def jinc_filter(numtaps: int, cutoff: float, width: float, fs: float) -> np.ndarray:
    """Radially symmetric [numtaps, numtaps] low-pass (float64), unit sum."""
    x = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
    r = torch.from_numpy(np.hypot(*np.meshgrid(x, x)))
    arg = 2 * cutoff * (math.pi * r)
    safe_r = torch.where(r == 0, torch.ones_like(r), r)  # J1(a r)/(pi r) -> cutoff at r = 0
    f = torch.where(r == 0, torch.full_like(r, cutoff), torch.special.bessel_j1(arg) / (math.pi * safe_r)).numpy()
    beta = kaiser_beta(kaiser_atten(numtaps, width / (fs / 2)))
    w = np.kaiser(numtaps, beta)
    f = f * np.outer(w, w)
    return f / np.sum(f)


def design_lowpass_filter(numtaps: int, cutoff: float, width: float, fs: float, radial: bool = False):
    """The float32 filter buffer of a layer, or None for the identity (numtaps == 1)."""
    if numtaps < 1:
        raise ValueError(f"numtaps must be >= 1, got {numtaps}")
    if numtaps == 1:
        return None
    taps = jinc_filter(numtaps, cutoff, width, fs) if radial else firwin(numtaps, cutoff, width, fs)
    return torch.as_tensor(taps, dtype=torch.float32)


# ----------------------------------------------------------------------------------------------
# Filtering ops (the official reference paths)


def _padding4(padding) -> tuple[int, int, int, int]:
    if isinstance(padding, int):
        return padding, padding, padding, padding
    if len(padding) == 2:
        return padding[0], padding[0], padding[1], padding[1]
    x0, x1, y0, y1 = padding
    return int(x0), int(x1), int(y0), int(y1)


def upfirdn2d(x: torch.Tensor, f: torch.Tensor | None, up: int = 1, down: int = 1, padding=0, gain: float = 1.0):
    """Zero-insertion up-sampling, pad (negative = crop) [x0, x1, y0, y1], FIR, keep every
    `down`-th sample. `f` is a convolution kernel: 1-D (separable, run along W then H, each
    pass scaled by sqrt(gain)), 2-D [fh, fw] (scaled by gain), or None (identity)."""
    if x.ndim != 4:
        raise ValueError(f"upfirdn2d expects [N, C, H, W], got {tuple(x.shape)}")
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    n, c, h, w = x.shape
    px0, px1, py0, py1 = _padding4(padding)
    if up > 1:
        x = F.pad(x.reshape(n, c, h, 1, w, 1), [0, up - 1, 0, 0, 0, up - 1]).reshape(n, c, h * up, w * up)
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0) : x.shape[2] - max(-py1, 0), max(-px0, 0) : x.shape[3] - max(-px1, 0)]
    k = (f * gain ** (f.ndim / 2)).to(x.dtype).flip(list(range(f.ndim)))  # convolution, not correlation
    # Strided convs compute only the samples that the decimation keeps (the same dot products as
    # filtering everything and then keeping every `down`-th sample, at half the cost or less).
    if f.ndim == 2:
        return F.conv2d(x, k[None, None].repeat(c, 1, 1, 1), stride=down, groups=c)
    k = k[None, None].repeat(c, 1, 1)
    x = F.conv2d(x, k.unsqueeze(2), stride=(1, down), groups=c)  # along W
    return F.conv2d(x, k.unsqueeze(3), stride=(down, 1), groups=c)  # along H


def filter2d(x: torch.Tensor, f: torch.Tensor, padding=0, gain: float = 1.0) -> torch.Tensor:
    """Same-size FIR filtering (extra `padding` on top), centred the official way."""
    px0, px1, py0, py1 = _padding4(padding)
    fh, fw = (f.shape[0], f.shape[0]) if f.ndim == 1 else (f.shape[0], f.shape[1])
    pad = [px0 + fw // 2, px1 + (fw - 1) // 2, py0 + fh // 2, py1 + (fh - 1) // 2]
    return upfirdn2d(x, f, padding=pad, gain=gain)


def upsample2d(x: torch.Tensor, f: torch.Tensor, up: int = 2, padding=0) -> torch.Tensor:
    """Up-sampling by `up` with the FIR `f` (gain up**2), centred the official way."""
    px0, px1, py0, py1 = _padding4(padding)
    fh, fw = (f.shape[0], f.shape[0]) if f.ndim == 1 else (f.shape[0], f.shape[1])
    pad = [px0 + (fw + up - 1) // 2, px1 + (fw - up) // 2, py0 + (fh + up - 1) // 2, py1 + (fh - up) // 2]
    return upfirdn2d(x, f, up=up, padding=pad, gain=up * up)


def filtered_lrelu(x, fu, fd, b, up: int, down: int, padding, gain: float, slope: float, clamp: float | None):
    """Bias, up-sample by `up` with `fu` (gain up**2), leaky ReLU (`slope`) times `gain`,
    clamp to +-clamp at the up-sampled rate, then `fd` and keep every `down`-th sample."""
    x = x + b.to(x.dtype).reshape(1, -1, 1, 1)
    x = upfirdn2d(x, fu, up=up, padding=padding, gain=up**2)
    x = F.leaky_relu(x, slope) if slope != 1 else x
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return upfirdn2d(x, fd, down=down)
