"""Inference-only StyleGAN3 (T and R) synthesis for throughput, with the reference's call.

Why it is faster than `StyleGAN3Generator.synthesize` (which follows the official reference ops):
- The modulated conv runs as ONE ordinary conv with the shared weight (input scaled by the styles,
  output by the demodulation coefficients), not a grouped conv with per-sample weights, so cuDNN
  uses its tensor-core kernels; activations are channels-last.
- The filtered leaky ReLU never builds the zero-inserted map: the up-sampling is polyphase (for
  each output phase a short 1-D filter at the input rate, H then W), the leaky ReLU and clamp act
  on the phase maps (pointwise, so the layout does not matter), and the down-sampling reads the
  phase maps directly (the taps of a strided filter over an interleaved signal split by phase), so
  the big up-sampled image is never interleaved. All filters are depthwise/grouped convs.
- Precision as NVIDIA runs it: half precision (fp16, or bf16) only in the layers where the official
  code uses fp16 (`use_fp16`, the last `num_fp16_res` sampling rates), float32 elsewhere, the
  official conv_clamp; styles and demodulation stay float32 and the conv weight is pre-scaled by
  1/sqrt(fan-in) so that no fp16 product overflows. `mixed=False` runs every layer in `dtype`.
- `torch.compile` fuses the casts, bias, leaky ReLU and clamp around the cuDNN calls.

With dtype float32 it equals the reference to rounding (tests/test_stylegan3_fast.py).
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline_lib.generator.stylegan3 import StyleGAN3Generator
from pipeline_lib.generator.stylegan3_layers import StyleGAN3LayerSpec


def up_phase_taps(n: int, up: int, pad0: int, pad1: int, kf: np.ndarray) -> tuple[np.ndarray, int, int, int]:
    """Polyphase form of: zero-insert `up`, pad (pad0, pad1), correlate with `kf` (length L).

    Output sample up*t + p of that chain equals sum_j g[p, j] * x[t + dmin + j]. Returns g [up, J],
    the left and right zero padding of x (negative = crop) for a valid correlation that yields
    T = ceil(M / up) samples per phase, and M, the chain's output length."""
    L = len(kf)
    m = n * up + pad0 + pad1 - L + 1
    dmin = min(math.ceil((p - pad0) / up) for p in range(up))
    dmax = max((L - 1 + p - pad0) // up for p in range(up))
    J = dmax - dmin + 1
    g = np.zeros([up, J])
    for p in range(up):
        for j in range(J):
            idx = up * (dmin + j) + pad0 - p
            if 0 <= idx < L:
                g[p, j] = kf[idx]
    t = -(-m // up)
    pad_l = -dmin
    return g, pad_l, t + J - 1 - n - pad_l, m


def down_phase_taps(up: int, down: int, kd: np.ndarray) -> np.ndarray:
    """Strided correlation (stride `down`, taps `kd`) of a signal held as `up` phases, as
    a = up/down output phases: y[a*v + r] = sum_{p,j} G[r, p, j] * phase_p[v + j]."""
    a = up // down
    L = len(kd)
    J = (L - 1 + down * (a - 1)) // up + 1
    G = np.zeros([a, up, J])
    for r in range(a):
        for p in range(up):
            for j in range(J):
                idx = up * j + p - down * r
                if 0 <= idx < L:
                    G[r, p, j] = kd[idx]
    return G


class _Layer:
    """Static plan of one layer (sizes, paddings, dtypes); its tensors live in the module's buffers."""

    def __init__(self, spec: StyleGAN3LayerSpec, layer: nn.Module, dtype: torch.dtype, torgb: bool):
        self.torgb, self.dtype = torgb, dtype
        self.offset, self.dim = spec.offset, spec.style_dim
        self.k, self.c_in, self.c_out = spec.kernel_size, spec.in_channels, spec.out_channels
        self.up, self.down, self.out_size = layer.spec.up, spec.down, spec.out_size
        self.scale = 1.0 if torgb else 1 / math.sqrt(self.c_in * self.k**2)  # weight pre-scale (fp16 range)
        self.clamp = layer.conv_clamp
        self.radial = layer.down_filter is not None and layer.down_filter.ndim == 2


class StyleGAN3FastSynthesis(nn.Module):
    def __init__(
        self, G: StyleGAN3Generator, dtype: torch.dtype = torch.float16, mixed: bool = True, channels_last: bool = True
    ):
        super().__init__()
        self.dtype, self.mixed = dtype, mixed
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.style_dim, self.rgb_style_dim = G.style_dim, G.rgb_style_dim
        self.output_scale = G.cfg.output_scale
        self.split = G.rgb_style_dim - 4
        self.input = copy.deepcopy(G.synthesis.input).float()
        self.plans: list[_Layer] = []
        with torch.no_grad():
            for i, spec in enumerate(G.conv_layers + G.rgb_layers):
                self._prepare(i, spec, G.module_of(spec), spec.kind == "torgb")

    def _prepare(self, i: int, spec: StyleGAN3LayerSpec, layer: nn.Module, torgb: bool) -> None:
        dt = self.dtype if (spec.use_fp16 or not self.mixed) else torch.float32
        plan = _Layer(spec, layer, dt, torgb)
        self.plans.append(plan)
        w = layer.weight.detach().double()
        if not torgb:
            w = w * w.square().mean([1, 2, 3], keepdim=True).rsqrt()
        self.register_buffer(f"w{i}", (w * plan.scale).to(dt).contiguous(memory_format=self.memory_format))
        self.register_buffer(f"wsq{i}", w.square().sum(dim=[2, 3]).t().float().contiguous())  # [I, O]
        self.register_buffer(f"b{i}", layer.bias.detach().float().clone())
        self.register_buffer(f"gain{i}", layer.magnitude_ema.detach().double().rsqrt().float())
        if torgb:
            assert plan.up == 1 and plan.down == 1 and layer.up_filter is None and layer.down_filter is None
            return
        c, up, down = plan.c_out, plan.up, plan.down
        if up % down:
            raise ValueError(f"{spec.short_name}: up {up} is not a multiple of down {down}")
        n = spec.in_size + plan.k - 1
        kf = np.flip(layer.up_filter.double().cpu().numpy()) * up  # convolution -> correlation; gain up per pass
        pad0, pad1 = spec.padding[0], spec.padding[1]
        g, plan.pad_l, plan.pad_r, m = up_phase_taps(n, up, pad0, pad1, kf)
        t = -(-m // up)
        J = g.shape[1]
        g = torch.as_tensor(g)
        self.register_buffer(f"uh{i}", g.reshape(up, 1, J, 1).repeat(c, 1, 1, 1).to(dt))  # out ch c*up + ph
        self.register_buffer(f"uw{i}", g.reshape(up, 1, 1, J).repeat(c * up, 1, 1, 1).to(dt))  # (c, ph, pw)
        fd = layer.down_filter.double().cpu().numpy()
        a = up // down
        plan.a = a
        ld = fd.shape[0]
        plan.n_out = (m - ld) // down + 1
        if plan.n_out != spec.out_size:
            raise ValueError(f"{spec.short_name}: planned {plan.n_out} samples, the layer table says {spec.out_size}")
        v = -(-plan.n_out // a)
        gd = down_phase_taps(up, down, np.arange(ld, dtype=np.float64))  # tap indices (+ where valid)
        jd = gd.shape[2]
        plan.pad_phase = v + jd - 1 - t
        valid = down_phase_taps(up, down, np.ones(ld)) > 0
        idx = gd.astype(np.int64)
        if plan.radial:
            kd2 = np.flip(fd, (0, 1))
            k2 = np.zeros([a, a, up, up, jd, jd])
            for rh, rw, ph, pw in np.ndindex(a, a, up, up):
                mask = np.outer(valid[rh, ph], valid[rw, pw])
                k2[rh, rw, ph, pw] = np.where(mask, kd2[np.ix_(idx[rh, ph], idx[rw, pw])], 0.0)
            weight = torch.as_tensor(k2).reshape(a * a, up * up, jd, jd).repeat(c, 1, 1, 1)
            self.register_buffer(f"d2{i}", weight.to(dt))
            return
        kd = np.flip(fd).copy()
        G1 = np.where(valid, kd[idx], 0.0)  # [a, up, J]
        dw = torch.as_tensor(G1).reshape(a, up, 1, jd).repeat(c * up, 1, 1, 1)  # out (c, ph, rw), in pw
        dh = torch.zeros([a, a, up, a, jd])  # [rh, rw', ph, rw, j]
        for rh, rw in np.ndindex(a, a):
            dh[rh, rw, :, rw] = torch.as_tensor(G1[rh])
        dh = dh.reshape(a * a, up * a, jd, 1).repeat(c, 1, 1, 1)  # out (c, rh, rw'), in (ph, rw)
        self.register_buffer(f"dw{i}", dw.to(dt))
        self.register_buffer(f"dh{i}", dh.to(dt))

    def _modconv(self, i: int, plan: _Layer, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """Shared-weight conv of the style-scaled input; float32 result with demodulation and bias."""
        gain = getattr(self, f"gain{i}")
        if plan.torgb:
            s = s * (1 / math.sqrt(plan.c_in * plan.k**2))
            dcoef = torch.ones_like(s[:, :1]) / plan.scale
        else:
            s = s * s.square().mean().rsqrt()
            dcoef = (s.square() @ getattr(self, f"wsq{i}") + 1e-8).rsqrt() / plan.scale
        xs = x * (s * gain).to(x.dtype)[:, :, None, None]
        xs = xs.to(plan.dtype).contiguous(memory_format=self.memory_format)
        y = F.conv2d(xs, getattr(self, f"w{i}"), padding=plan.k - 1)
        return y.float() * dcoef[:, :, None, None] + getattr(self, f"b{i}")[None, :, None, None]

    def _filtered_lrelu(self, i: int, plan: _Layer, x: torch.Tensor) -> torch.Tensor:
        c, up, a = plan.c_out, plan.up, plan.a
        x = F.pad(x.to(plan.dtype), [plan.pad_l, plan.pad_r, plan.pad_l, plan.pad_r])
        x = F.conv2d(x, getattr(self, f"uh{i}"), groups=c)  # [N, C*up, T, W]
        x = F.conv2d(x, getattr(self, f"uw{i}"), groups=c * up)  # [N, C*up*up, T, T] phase maps
        x = F.leaky_relu(x, 0.2) * math.sqrt(2)
        if plan.clamp is not None:
            x = x.clamp(-plan.clamp, plan.clamp)
        if plan.pad_phase:
            x = F.pad(x, [0, plan.pad_phase, 0, plan.pad_phase])
        if plan.radial:
            x = F.conv2d(x, getattr(self, f"d2{i}"), groups=c)
        else:
            x = F.conv2d(x, getattr(self, f"dw{i}"), groups=c * up)  # [N, C*up*a, T', V]
            x = F.conv2d(x, getattr(self, f"dh{i}"), groups=c)  # [N, C*a*a, V, V]
        if a > 1:
            x = F.pixel_shuffle(x, a)
        return x[:, :, : plan.n_out, : plan.n_out]

    def forward(self, S: torch.Tensor, S_rest: torch.Tensor, noise_mode: str = "const") -> torch.Tensor:
        """Image [N, C, H, W] float32, as `StyleGAN3Generator.synthesize(S, S_rest)`."""
        S, S_rest = S.float(), S_rest.float()
        x = self.input(S_rest[:, self.split :])
        for i, plan in enumerate(self.plans):
            src = S_rest if plan.torgb else S
            s = src[:, plan.offset : plan.offset + plan.dim]
            x = self._modconv(i, plan, x, s)
            if plan.torgb:
                x = x.clamp(-plan.clamp, plan.clamp) if plan.clamp is not None else x
            else:
                x = self._filtered_lrelu(i, plan, x)
        return x.float() * self.output_scale


def flops_per_image(G: StyleGAN3Generator) -> tuple[float, float]:
    """(modulated-conv FLOPs, FIR FLOPs) per image as the fast path runs them (2 x multiply-adds)."""
    conv = fir = 0.0
    for spec in G.conv_layers + G.rgb_layers:
        n = spec.in_size + spec.kernel_size - 1
        conv += 2 * spec.out_channels * spec.in_channels * spec.kernel_size**2 * n * n
        if spec.kind == "conv":
            up, down, c = G.module_of(spec).spec.up, spec.down, spec.out_channels
            taps_u, taps_d = -(-spec.up_taps // up), spec.down_taps
            t = n * up
            fir += 2 * c * (taps_u * (n * t + t * t))  # polyphase H then W
            fir += (
                2
                * c
                * (taps_d * (t * t / down + t * t / down**2) if not spec.down_radial else taps_d**2 * (t / down) ** 2)
            )
    return conv, fir
