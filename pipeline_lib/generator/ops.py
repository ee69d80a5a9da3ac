"""The elementwise and filtering operations of StyleGAN2-ADA, as its reference (non-CUDA) paths
compute them: bias + activation with gain and clamp, FIR filtering and up-sampling with the
[1, 3, 3, 1] filter, and the polyphase form of the up-sampling conv used by the fast path."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)


def normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


def bias_act(x, bias, lrelu: bool, gain: float = 1.0, clamp: float | None = None):
    """The official `bias_act` reference path: add bias, optional leaky ReLU, gain, clamp."""
    x = x + bias.reshape([1, -1] + [1] * (x.ndim - 2))
    if lrelu:
        x = F.leaky_relu(x, LRELU_SLOPE)
    if gain != 1.0:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


def fir_filter_2d(x: torch.Tensor, f: torch.Tensor, pad: tuple[int, int], gain: float) -> torch.Tensor:
    """Depthwise 'valid' correlation with the 2-D filter `f` after padding (before, after)."""
    c = x.shape[1]
    x = F.pad(x, [pad[0], pad[1], pad[0], pad[1]])
    kernel = (f * gain).to(x.dtype).flip([0, 1])[None, None].repeat(c, 1, 1, 1)
    return F.conv2d(x, kernel, groups=c)


def upsample2d(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """Zero-insertion x2 up-sampling then the 4x4 FIR (pad 2 before, 1 after, gain 4)."""
    n, c, h, w = x.shape
    up = x.new_zeros([n, c, h, 2, w, 2])
    up[:, :, :, 0, :, 0] = x
    up = up.reshape(n, c, 2 * h, 2 * w)
    return fir_filter_2d(up, f, pad=(2, 1), gain=4.0)


def polyphase_up_weight(weight: torch.Tensor, resample_filter: torch.Tensor) -> torch.Tensor:
    """The up-sampling conv as four 3x3 phase kernels: [O, I, 3, 3] -> [O*4, I, 3, 3].

    A stride-2 transposed 3x3 conv followed by the padded 4x4 FIR (gain 4) is one 6x6 kernel
    c = W (x) g (full correlation) applied at stride 2. Output pixel (2j+p, 2k+q) of it is a
    3x3 correlation of the low-resolution input (padding 1) with c[4+p-2a, 4+q-2b], a, b = 0..2;
    stacking the four phases as channels o*4 + 2p + q lets `pixel_shuffle(2)` interleave them.
    """
    o, i, kh, kw = weight.shape
    g = (resample_filter * 4.0).to(weight.dtype)
    flat = F.pad(weight.reshape(o * i, 1, kh, kw), [3, 3, 3, 3])
    c = F.conv2d(flat, g[None, None]).reshape(o, i, 6, 6)  # c[m] = composite tap m - 3
    phases = []
    for p in (0, 1):
        for q in (0, 1):
            rows = torch.tensor([4 + p, 2 + p, p], device=weight.device)
            cols = torch.tensor([4 + q, 2 + q, q], device=weight.device)
            phases.append(c.index_select(2, rows).index_select(3, cols))
    return torch.stack(phases, dim=1).reshape(o * 4, i, 3, 3)
