"""Inference-only synthesis for throughput (dataset generation, evaluation).

The same arithmetic as `Generator.synthesize`, prepared once: conv weights cast to the compute
dtype and laid out for the up-sampling form in use, the per-(output, input) weight norms that
demodulation needs precomputed in float32, the constant noise folded with its strength, and
activations kept channels-last. Styles stay float32; demodulation, noise, bias, activation and
clamp run in float32 and are fused by `torch.compile` when it is used. With dtype float32 it
equals the reference generator to rounding (tests/test_fast_synthesis.py).

Precision modes (`dataset.dtype`; each name fixes the whole arithmetic, so the name recorded in
a dataset says how its pixels were computed):
- float32, bfloat16: every conv in that dtype, polyphase up-sampling (the earlier arithmetic).
- float16: every conv in fp16; float16-mixed: fp16 only where NVIDIA runs fp16 (the blocks of the
  last `num_fp16_res` resolutions, StyleGAN2-ADA's `use_fp16`), float32 elsewhere. In fp16 layers
  the weights (per output channel, to 1/sqrt(fan-in)) and the styles (per sample, to 1) are
  pre-scaled by powers of two, as NVIDIA scales them by their inf-norms, so that with conv_clamp
  no product or sum can overflow (|out| <= clamp * sqrt(fan-in) < 65504); the scales are undone
  exactly in the float32 demodulation coefficient. Both use the transposed-conv up-sampling
  (`transpose_phase_weight`: 16 taps instead of polyphase's 36, the FIR fused into the epilogue)
  and a ToRGB as one batched matrix product of the activations with per-sample weights.

`forward(..., noise=maps)` replaces the folded constant noise by per-image maps (one
[N or 1, 1, H, W] tensor per conv layer, in layer-table order, scaled by the layer's noise
strength as the reference does): the projector optimises those maps (latent/objective.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pipeline_lib.generator.ops import fir_up_from_phases, fir_up_taps, transpose_phase_weight
from pipeline_lib.generator.stylegan2 import LRELU_GAIN, LRELU_SLOPE, Generator, polyphase_up_weight, upsample2d
from pipeline_lib.generator.stylegan3_fast import StyleGAN3FastSynthesis

UP_IMPLS = ("polyphase", "phase2x2", "phases4", "transpose")  # see `FastSynthesis.__init__`
RGB_IMPLS = ("conv", "bmm")


@dataclass(frozen=True)
class Precision:
    half: torch.dtype  # dtype of the convs (of the fp16 layers when mixed)
    mixed: bool  # half precision only in NVIDIA's fp16 blocks, float32 elsewhere
    up_impl: str  # how the up-sampling convs run (UP_IMPLS)
    rgb_impl: str  # how ToRGB runs (RGB_IMPLS)


PRECISIONS = {
    "float32": Precision(torch.float32, False, "polyphase", "conv"),
    "bfloat16": Precision(torch.bfloat16, False, "polyphase", "conv"),
    "float16": Precision(torch.float16, False, "phase2x2", "bmm"),
    "float16-mixed": Precision(torch.float16, True, "phase2x2", "bmm"),
}
_BY_DTYPE = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}


def precision_name(dtype: str | torch.dtype) -> str:
    """The mode name of a `dataset.dtype` string or of a torch dtype (callers that pass one)."""
    name = _BY_DTYPE.get(dtype, dtype) if isinstance(dtype, torch.dtype) else dtype
    if name not in PRECISIONS:
        raise ValueError(f"unknown synthesis precision {dtype!r}; known: {', '.join(PRECISIONS)}")
    return name


def _pow2_scale(amax: torch.Tensor) -> torch.Tensor:
    """2^-e with amax * 2^-e <= 1: an exact scale (a power of two changes no fp16 rounding)."""
    return torch.exp2(-torch.ceil(torch.log2(amax.clamp_min(2.0**-24))))


@dataclass(frozen=True)
class _ConvPlan:
    offset: int  # slice of S
    dim: int
    up: int
    resolution: int  # output resolution
    dtype: torch.dtype
    scaled: bool  # fp16 pre-scaling of weights and styles


@dataclass(frozen=True)
class _RgbPlan:
    offset: int  # slice of S_rgb
    dim: int
    gain: float  # ToRGB's 1/sqrt(C_in) on the style
    dtype: torch.dtype
    scaled: bool


class FastSynthesis(nn.Module):
    def __init__(
        self,
        G: Generator,
        dtype: str | torch.dtype = "float32",
        channels_last: bool = False,
        up_impl: str | None = None,
        rgb_impl: str | None = None,
        num_fp16_res: int | None = None,
    ):
        """`dtype`: a precision mode (PRECISIONS) or a torch dtype (its all-layer mode).
        `up_impl`, `rgb_impl`: override the mode's choice (benchmarks compare them):
        polyphase = one 3x3 conv with 4*O outputs of the composite conv+FIR kernel, then a pixel
        shuffle; phase2x2 = one 2x2 conv with 4*O outputs (the transposed conv's parities), FIR
        in the epilogue; phases4 = the same parities as four convs of their exact sizes (2x2,
        2x1, 1x2, 1x1: the 9 taps only, but 4 reads of the input); transpose = cuDNN's stride-2
        transposed conv, FIR in the epilogue.
        `num_fp16_res`: the mixed modes' fp16 resolutions (default: the generator's own)."""
        super().__init__()
        self.precision = precision_name(dtype)
        mode = PRECISIONS[self.precision]
        self.up_impl, self.rgb_impl = up_impl or mode.up_impl, rgb_impl or mode.rgb_impl
        if self.up_impl not in UP_IMPLS or self.rgb_impl not in RGB_IMPLS:
            raise ValueError(f"up_impl must be one of {UP_IMPLS} and rgb_impl one of {RGB_IMPLS}")
        self.dtype = mode.half
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.style_dim, self.rgb_style_dim = G.style_dim, G.rgb_style_dim
        self.conv_clamp = G.cfg.conv_clamp
        fp16_res = G.cfg.fp16_resolution(num_fp16_res) if mode.mixed else 0

        def dtype_at(res: int) -> torch.dtype:
            return mode.half if res >= fp16_res else torch.float32

        self.convs: list[_ConvPlan] = []
        self.rgbs: list[_RgbPlan] = []
        self.register_buffer("const", G.synthesis.b4.const.detach().float().clone())
        self.register_buffer("resample_filter", G.synthesis.b4.resample_filter.detach().float().clone())
        self.fir_taps = fir_up_taps(self.resample_filter) if self.up_impl != "polyphase" else None
        with torch.no_grad():
            for i, spec in enumerate(G.conv_layers):
                layer = G.module_of(spec)
                dt = dtype_at(spec.resolution)
                plan = _ConvPlan(spec.offset, spec.style_dim, layer.up, spec.resolution, dt, dt == torch.float16)
                self.convs.append(plan)
                w = layer.weight.detach().float()
                wscale = torch.ones(w.shape[0], device=w.device)
                if plan.scaled:  # per output channel: max |w| * sqrt(fan-in) <= 1
                    wscale = _pow2_scale(w.abs().amax(dim=[1, 2, 3]) * math.sqrt(w[0].numel()))
                weight = self._conv_weight(layer, w * wscale[:, None, None, None], dt)
                for k, part in enumerate(weight if isinstance(weight, list) else [weight]):
                    self.register_buffer(f"conv{i}_weight{k or ''}", part)
                self.register_buffer(f"conv{i}_unscale", 1.0 / wscale)  # [O], exact
                self.register_buffer(f"conv{i}_wsq", w.square().sum(dim=[2, 3]).t().contiguous())  # [I, O]
                self.register_buffer(f"conv{i}_noise", (layer.noise_const * layer.noise_strength).detach().float())
                self.register_buffer(f"conv{i}_bias", layer.bias.detach().float().clone())
                self.register_buffer(f"conv{i}_noise_strength", layer.noise_strength.detach().float().clone())
            for i, spec in enumerate(G.rgb_layers):
                layer = G.module_of(spec)
                dt = dtype_at(spec.resolution)
                self.rgbs.append(_RgbPlan(spec.offset, spec.style_dim, layer.weight_gain, dt, dt == torch.float16))
                weight = layer.weight.detach().float()
                if self.rgb_impl == "conv":
                    weight = weight.to(dt).contiguous(memory_format=self.memory_format)
                self.register_buffer(f"rgb{i}_weight", weight)
                self.register_buffer(f"rgb{i}_bias", layer.bias.detach().float().clone())

    def _conv_weight(self, layer, w: torch.Tensor, dt: torch.dtype) -> torch.Tensor:
        if layer.up == 2 and self.up_impl == "polyphase":
            w = polyphase_up_weight(w, layer.resample_filter.float())
        elif layer.up == 2 and self.up_impl == "phase2x2":
            w = transpose_phase_weight(w)
        elif layer.up == 2 and self.up_impl == "phases4":  # drop the zero taps: rows/cols of odd parity have 1
            k = transpose_phase_weight(w).reshape(2, 2, *w.shape[:2], 2, 2)
            parts = [k[0, 0], k[0, 1][..., 1:], k[1, 0][..., 1:, :], k[1, 1][..., 1:, 1:]]
            return [p.to(dt).contiguous(memory_format=self.memory_format) for p in parts]
        elif layer.up == 2:
            w = w.transpose(0, 1)  # conv_transpose2d's [I, O, 3, 3]
        return w.to(dt).contiguous(memory_format=self.memory_format)

    @property
    def arithmetic(self) -> str:
        """What computes the pixels, in words (recorded with a dataset)."""
        halves = sorted({p.resolution for p in self.convs if p.dtype != torch.float32})
        half = str(self.dtype).removeprefix("torch.")
        if len(halves) == len({p.resolution for p in self.convs}):
            where = f"{half} convs in every layer"
        else:
            where = f"{half} convs in blocks {halves}, float32 in the others" if halves else "float32 convs"
        scaled = "; fp16 weights and styles pre-scaled by powers of two" if any(p.scaled for p in self.convs) else ""
        return (
            f"FastSynthesis {self.precision}: {where}{scaled}; up-sampling {self.up_impl}; ToRGB {self.rgb_impl}; "
            "float32 styles, demodulation and epilogues"
        )

    def _modulate(self, x: torch.Tensor, s: torch.Tensor, dt: torch.dtype) -> torch.Tensor:
        """x * s rounded once to the conv dtype (float32 styles times the stored activations)."""
        return (x * s[:, :, None, None]).to(dt).contiguous(memory_format=self.memory_format)

    def _conv(self, i: int, x: torch.Tensor, s: torch.Tensor, noise: bool, noise_map=None) -> torch.Tensor:
        plan = self.convs[i]
        coef = (s.square() @ getattr(self, f"conv{i}_wsq") + 1e-8).rsqrt()  # [N, O], float32
        if plan.scaled:
            sscale = _pow2_scale(s.abs().amax(dim=1, keepdim=True))  # [N, 1]
            s = s * sscale
            coef = coef * getattr(self, f"conv{i}_unscale") / sscale
        elif plan.dtype != torch.float32:
            s = s.to(plan.dtype)  # the earlier bf16 arithmetic: styles rounded before the product
        x = self._modulate(x, s, plan.dtype)
        weight = getattr(self, f"conv{i}_weight")
        if plan.up == 1:
            x = F.conv2d(x, weight, padding=1)
        elif self.up_impl == "polyphase":
            x = F.pixel_shuffle(F.conv2d(x, weight, padding=1), 2)
        else:
            if self.up_impl == "phase2x2":
                maps = F.conv2d(x, weight, padding=1).float().chunk(4, dim=1)
            elif self.up_impl == "phases4":  # each parity map padded to [H + 1, W + 1] (odd ones end in a zero)
                pads = [(1, 1), (1, 0), (0, 1), (0, 0)]
                parts = [weight] + [getattr(self, f"conv{i}_weight{k}") for k in (1, 2, 3)]
                maps = [F.conv2d(x, wk, padding=pad).float() for wk, pad in zip(parts, pads)]
                maps = [F.pad(m, [0, x.shape[3] + 1 - m.shape[3], 0, x.shape[2] + 1 - m.shape[2]]) for m in maps]
            else:
                t = F.pad(F.conv_transpose2d(x, weight, stride=2).float(), [0, 1, 0, 1])
                maps = [t[:, :, r::2, c::2] for r in (0, 1) for c in (0, 1)]
            x = fir_up_from_phases([[maps[0], maps[1]], [maps[2], maps[3]]], self.fir_taps)
        y = x.float() * coef[:, :, None, None]
        if noise_map is not None:
            y = y + noise_map * getattr(self, f"conv{i}_noise_strength")
        elif noise:
            y = y + getattr(self, f"conv{i}_noise")
        y = F.leaky_relu(y + getattr(self, f"conv{i}_bias")[None, :, None, None], LRELU_SLOPE) * LRELU_GAIN
        if self.conv_clamp is not None:
            y = y.clamp(-self.conv_clamp, self.conv_clamp)
        return y.to(plan.dtype).contiguous(memory_format=self.memory_format)

    def _torgb(self, i: int, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        plan = self.rgbs[i]
        weight = getattr(self, f"rgb{i}_weight")
        if self.rgb_impl == "conv":
            y = F.conv2d(x * (s * plan.gain).to(plan.dtype)[:, :, None, None], weight)
        else:  # per-sample [C, 3] weights; channels-last x is already the [N, H*W, C] matrix
            n, c, h, w = x.shape
            wn = weight[None, :, :, 0, 0] * (s * plan.gain)[:, None, :]  # [N, 3, C] float32
            unscale = torch.ones_like(wn[:, :1, :1])
            if plan.scaled:  # sum over C of |x * wn| <= max |x|
                scale = _pow2_scale(wn.abs().amax(dim=[1, 2], keepdim=True) * c)
                wn, unscale = wn * scale, 1.0 / scale
            y = torch.bmm(x.permute(0, 2, 3, 1).reshape(n, h * w, c), wn.to(plan.dtype).transpose(1, 2))
            y = (y.float() * unscale).reshape(n, h, w, -1).permute(0, 3, 1, 2)
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
        S, S_rgb = S.float(), S_rgb.float()
        n = S.shape[0]
        x = self.const.to(self.convs[0].dtype).unsqueeze(0).expand(n, -1, -1, -1)
        x = x.contiguous(memory_format=self.memory_format)
        img = None
        rgb = 0
        for i, plan in enumerate(self.convs):
            x = self._conv(
                i, x, S[:, plan.offset : plan.offset + plan.dim], noise_on, None if noise is None else noise[i]
            )
            if i + 1 == len(self.convs) or self.convs[i + 1].resolution != plan.resolution:
                r = self.rgbs[rgb]
                y = self._torgb(rgb, x, S_rgb[:, r.offset : r.offset + r.dim])
                img = y if img is None else upsample2d(img, self.resample_filter) + y
                rgb += 1
        return img


def fast_synthesis(G, dtype: str | torch.dtype = torch.float32, channels_last: bool = False) -> nn.Module:
    """The fastest synthesis module of G's family, called as `module(S, S_rest, noise_mode=...)`:
    `FastSynthesis` for StyleGAN2 (dtype: a precision mode name or a torch dtype);
    `StyleGAN3FastSynthesis` for StyleGAN3, whose half precision is always NVIDIA's layout (half
    only in the layers the official code runs in fp16, `mixed=True`), so both fp16 mode names mean
    the same there; float32 equals the reference to rounding. Every stage that synthesises goes
    through here, so a faster path is plugged in once for all of them."""
    if getattr(G, "family", "stylegan2") == "stylegan3":
        half = PRECISIONS[precision_name(dtype)].half
        return StyleGAN3FastSynthesis(G, dtype=half, mixed=True, channels_last=channels_last)
    return FastSynthesis(G, dtype=dtype, channels_last=channels_last)


def flops_per_image(G: Generator, up_impl: str = "polyphase") -> float:
    """Multiply-adds x 2 of the convs as the fast path runs them: an up-sampling conv costs 4
    phases of 3x3 taps (36) polyphase, 4 of 2x2 (16) as phase2x2, and its 9 taps as phases4 or transposed.
    The polyphase count (56.3 GFLOP for paper256) is the yardstick the benchmarks' % of peak use."""
    up_taps = {"polyphase": 36, "phase2x2": 16, "phases4": 9, "transpose": 9}[up_impl]
    total = 0.0
    for spec in G.conv_layers:
        in_res = spec.input_resolution
        taps = up_taps if spec.up == 2 else spec.kernel_size**2
        total += 2 * taps * spec.out_channels * spec.in_channels * in_res * in_res
    for spec in G.rgb_layers:
        total += 2 * spec.out_channels * spec.in_channels * spec.resolution**2
    return total


def psnr(a: torch.Tensor, b: torch.Tensor, peak: float = 2.0) -> float:
    mse = (a.float() - b.float()).square().mean().item()
    return math.inf if mse == 0 else 10 * math.log10(peak**2 / mse)
