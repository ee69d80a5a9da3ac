"""The elementwise and filtering operations of StyleGAN2-ADA, as its reference (non-CUDA) paths
compute them: bias + activation with gain and clamp, FIR filtering and up-sampling with the
[1, 3, 3, 1] filter, and the two forms of the up-sampling conv the fast path can run: polyphase
(the conv and the FIR as one 6x6 kernel, four 3x3 phases) and transposed-conv phases (the conv's
nine taps as four 2x2 phase kernels, the FIR applied afterwards to the phase maps)."""

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


# Row taps of the transposed conv's two output parities, as a 2-tap correlation over
# (x[i-1], x[i]): t[2i] = x[i] w[0] + x[i-1] w[2] and t[2i+1] = x[i] w[1] (None = a zero tap).
_PARITY_TAPS = {0: (2, 0), 1: (None, 1)}


def transpose_phase_weight(weight: torch.Tensor) -> torch.Tensor:
    """The stride-2 transposed 3x3 conv (NVIDIA's, before its FIR) as 2x2 phase kernels:
    [O, I, 3, 3] -> [4*O, I, 2, 2], output channel (2r + c) * O + o for output parity (r, c).

    A conv of the low-resolution input with these kernels (padding 1) yields the four parity
    maps t[2i + r, 2k + c], each [H + 1, W + 1]; the odd maps' last row/column is zero, as the
    FIR's padding needs. 16 of the 36 taps polyphase needs (9 are non-zero): the FIR is left
    out of the channel-mixing conv and done by `fir_up_from_phases` at a pass's cost.
    """
    o, i = weight.shape[:2]
    k = weight.new_zeros(2, 2, o, i, 2, 2)
    for r, c in ((0, 0), (0, 1), (1, 0), (1, 1)):
        for a, ra in enumerate(_PARITY_TAPS[r]):
            for b, cb in enumerate(_PARITY_TAPS[c]):
                if ra is not None and cb is not None:
                    k[r, c, :, :, a, b] = weight[:, :, ra, cb]
    return k.reshape(4 * o, i, 2, 2)


def _fir_up_1d(even: torch.Tensor, odd: torch.Tensor, taps: tuple[float, ...], dim: int):
    """Both output parities of 'pad 1, correlate with the 4 taps' over the signal interleaved
    from `even` and `odd` (n + 1 samples each, odd's last one zero): y[2j + p], j < n."""
    n = even.shape[dim] - 1
    e0, e1 = even.narrow(dim, 0, n), even.narrow(dim, 1, n)
    d0, d1 = odd.narrow(dim, 0, n), odd.narrow(dim, 1, n)
    pad = [0, 0] * (even.ndim - 1 - dim % even.ndim) + [1, 0]
    d_prev = F.pad(odd.narrow(dim, 0, n - 1), pad)  # odd[j - 1], zero before the start
    g0, g1, g2, g3 = taps
    return g0 * d_prev + g1 * e0 + g2 * d0 + g3 * e1, g0 * e0 + g1 * d0 + g2 * e1 + g3 * d1


def fir_up_taps(resample_filter: torch.Tensor) -> tuple[float, ...]:
    """The 1-D taps, in correlation order and with the gain 2 per axis, of the separable 4x4
    up-sampling filter (python floats: read once, not inside a compiled graph)."""
    f1 = resample_filter.sum(dim=1)
    if f1.numel() != 4 or not torch.allclose(torch.outer(f1, f1), resample_filter):
        raise ValueError("the transposed-conv up-sampling forms need a separable 4-tap resample filter")
    return tuple(float(v) * 2.0 for v in f1.flip(0))


def fir_up_from_phases(phases: list[list[torch.Tensor]], taps: tuple[float, ...]) -> torch.Tensor:
    """NVIDIA's FIR after the transposed conv (pad 1, 4x4 filter, gain 4; `taps` from
    `fir_up_taps`) computed from the parity maps `phases[r][c]` [N, C, H + 1, W + 1] of its
    input: image [N, C, 2H, 2W].

    The filter is separable, so each output parity is a 4-term sum over two parity maps per
    axis; `torch.compile` turns the slices and sums into passes fused with the epilogue.
    """
    rows = [_fir_up_1d(phases[0][c], phases[1][c], taps, dim=2) for c in (0, 1)]  # [c][p]
    out = [_fir_up_1d(rows[0][p], rows[1][p], taps, dim=3) for p in (0, 1)]  # [p][q]
    n, ch, h, w = out[0][0].shape
    grid = torch.stack([torch.stack(out[p], dim=-1) for p in (0, 1)], dim=3)  # [N, C, H, 2, W, 2]
    return grid.reshape(n, ch, 2 * h, 2 * w)
