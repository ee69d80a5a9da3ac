"""Inference-only synthesis for throughput (dataset generation, evaluation).

The same arithmetic as `Generator.synthesize` with the polyphase up-sampling, prepared once:
conv weights cast to the compute dtype (bf16 on GPUs) and laid out as phase kernels, the
per-(output, input) weight norms that demodulation needs precomputed in float32, the
constant noise folded with its strength, and activations kept channels-last. Styles stay
float32; demodulation, noise, bias, activation and clamp run in float32 and are fused by
`torch.compile` when it is used. With dtype float32 it equals the reference generator to
rounding (tests/test_fast_synthesis.py).

`forward(..., noise=maps)` replaces the folded constant noise by per-image maps (one
[N or 1, 1, H, W] tensor per conv layer, in layer-table order, scaled by the layer's noise
strength as the reference does): the projector optimises those maps (latent/objective.py).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from pipeline_lib.generator.stylegan2 import LRELU_GAIN, LRELU_SLOPE, Generator, polyphase_up_weight, upsample2d


class FastSynthesis(nn.Module):
    def __init__(self, G: Generator, dtype: torch.dtype = torch.float32, channels_last: bool = False):
        super().__init__()
        self.dtype = dtype
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.style_dim, self.rgb_style_dim = G.style_dim, G.rgb_style_dim
        self.conv_clamp = G.cfg.conv_clamp
        self.convs = []  # (offset, dim, up, resolution, out_channels)
        self.rgbs = []  # (offset, dim, gain, resolution)
        self.register_buffer("const", G.synthesis.b4.const.detach().float().clone())
        self.register_buffer("resample_filter", G.synthesis.b4.resample_filter.detach().float().clone())
        with torch.no_grad():
            for i, spec in enumerate(G.conv_layers):
                layer = G.module_of(spec)
                w = layer.weight.detach().float()
                kernel = polyphase_up_weight(w, layer.resample_filter.float()) if layer.up == 2 else w
                self.register_buffer(f"conv{i}_weight", kernel.to(dtype).contiguous(memory_format=self.memory_format))
                self.register_buffer(f"conv{i}_wsq", w.square().sum(dim=[2, 3]).t().contiguous())  # [I, O]
                self.register_buffer(f"conv{i}_noise", (layer.noise_const * layer.noise_strength).detach().float())
                self.register_buffer(f"conv{i}_bias", layer.bias.detach().float().clone())
                self.register_buffer(f"conv{i}_noise_strength", layer.noise_strength.detach().float().clone())
                self.convs.append((spec.offset, spec.style_dim, layer.up, spec.resolution, spec.out_channels))
            for i, spec in enumerate(G.rgb_layers):
                layer = G.module_of(spec)
                weight = layer.weight.detach().float().to(dtype).contiguous(memory_format=self.memory_format)
                self.register_buffer(f"rgb{i}_weight", weight)
                self.register_buffer(f"rgb{i}_bias", layer.bias.detach().float().clone())
                self.rgbs.append((spec.offset, spec.style_dim, layer.weight_gain, spec.resolution))

    def _conv(self, i: int, x: torch.Tensor, s: torch.Tensor, noise: bool, noise_map=None) -> torch.Tensor:
        _, _, up, _, _ = self.convs[i]
        dcoefs = (s.square() @ getattr(self, f"conv{i}_wsq") + 1e-8).rsqrt()  # [N, O], float32
        x = x * s.to(self.dtype)[:, :, None, None]
        x = F.conv2d(x, getattr(self, f"conv{i}_weight"), padding=1)
        if up == 2:
            x = F.pixel_shuffle(x, 2)
        y = x.float() * dcoefs[:, :, None, None]
        if noise_map is not None:
            y = y + noise_map * getattr(self, f"conv{i}_noise_strength")
        elif noise:
            y = y + getattr(self, f"conv{i}_noise")
        y = F.leaky_relu(y + getattr(self, f"conv{i}_bias")[None, :, None, None], LRELU_SLOPE) * LRELU_GAIN
        if self.conv_clamp is not None:
            y = y.clamp(-self.conv_clamp, self.conv_clamp)
        return y.to(self.dtype).contiguous(memory_format=self.memory_format)

    def _torgb(self, i: int, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        gain = self.rgbs[i][2]
        y = F.conv2d(x * (s * gain).to(self.dtype)[:, :, None, None], getattr(self, f"rgb{i}_weight"))
        y = y.float() + getattr(self, f"rgb{i}_bias")[None, :, None, None]
        if self.conv_clamp is not None:
            y = y.clamp(-self.conv_clamp, self.conv_clamp)
        return y

    def forward(self, S: torch.Tensor, S_rgb: torch.Tensor, noise_mode: str = "const", noise=None) -> torch.Tensor:
        if noise_mode not in ("const", "none"):
            raise ValueError("the fast synthesis path supports noise_mode 'const' and 'none'")
        if noise is not None and (noise_mode != "const" or len(noise) != len(self.convs)):
            raise ValueError(f"noise: one map per conv layer ({len(self.convs)}), with noise_mode 'const'")
        noise_on = noise_mode == "const"
        n = S.shape[0]
        x = self.const.to(self.dtype).unsqueeze(0).expand(n, -1, -1, -1).contiguous(memory_format=self.memory_format)
        img = None
        rgb = 0
        for i, (off, dim, _, res, _) in enumerate(self.convs):
            x = self._conv(i, x, S[:, off : off + dim], noise_on, None if noise is None else noise[i])
            block_end = i + 1 == len(self.convs) or self.convs[i + 1][3] != res
            if block_end:
                r_off, r_dim, _, _ = self.rgbs[rgb]
                y = self._torgb(rgb, x, S_rgb[:, r_off : r_off + r_dim])
                img = y if img is None else upsample2d(img, self.resample_filter) + y
                rgb += 1
        return img


class ReferenceSynthesis(nn.Module):
    """StyleGAN3's synthesis behind the `FastSynthesis` call signature: `G.synthesize(S, S_rest)`
    in float32, whatever dtype is asked for (the reference is float32 only). Why a module: the
    stages hold `self.synthesis` as an nn.Module (`.to(device)`, `requires_grad_`, compile)."""

    def __init__(self, G):
        super().__init__()
        self.G = G
        self.style_dim, self.rgb_style_dim = G.style_dim, G.rgb_style_dim

    def forward(self, S: torch.Tensor, S_rest: torch.Tensor, noise_mode: str = "const") -> torch.Tensor:
        return self.G.synthesize(S.float(), S_rest.float(), noise_mode=noise_mode)


def fast_synthesis(G, dtype: torch.dtype = torch.float32, channels_last: bool = False) -> nn.Module:
    """The fastest synthesis module of G's family, called as `module(S, S_rest, noise_mode=...)`:
    `FastSynthesis` for StyleGAN2; for StyleGAN3 the float32 reference (dtype and channels_last
    do not apply to it yet). Every stage that synthesises goes through here, so a faster path
    is plugged in once for all of them."""
    if getattr(G, "family", "stylegan2") == "stylegan3":
        return ReferenceSynthesis(G)  # hook: return StyleGAN3FastSynthesis(G, dtype, channels_last) once merged
    return FastSynthesis(G, dtype=dtype, channels_last=channels_last)


def flops_per_image(G: Generator) -> float:
    """Multiply-adds x 2 of the convs as the fast path runs them (polyphase counts 4 phases)."""
    total = 0.0
    for spec in G.conv_layers:
        in_res = spec.input_resolution
        phases = 4 if spec.up == 2 else 1
        total += 2 * phases * spec.out_channels * spec.in_channels * spec.kernel_size**2 * in_res * in_res
    for spec in G.rgb_layers:
        total += 2 * spec.out_channels * spec.in_channels * spec.resolution**2
    return total


def psnr(a: torch.Tensor, b: torch.Tensor, peak: float = 2.0) -> float:
    mse = (a.float() - b.float()).square().mean().item()
    return math.inf if mse == 0 else 10 * math.log10(peak**2 / mse)
