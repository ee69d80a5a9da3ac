"""StyleGAN3 (alias-free, configs T and R) in plain PyTorch, float32, with the official names.

Module and buffer names follow `training.networks_stylegan3.Generator`, so an official state_dict
loads with `load_state_dict(strict=True)`. The numeric conventions are those of
`../shared/fixtures/stylegan3_ref/README.md` (the official CPU reference ops), checked in
`tests/test_stylegan3_fixtures.py`.

The public API is the StyleGAN2 `Generator`'s, split at the style space:
`mapping` (z -> ws), `styles` (ws -> S, S_rest), `synthesize` (S, S_rest -> image).
- S: the 14 conv layers' (L0..L13) affine outputs, concatenated in forward order;
- S_rest: the ToRGB affine output (raw, before its 1/sqrt(C_in)), then the input layer's four
  raw affine numbers (r_c, r_s, t_x, t_y), before their normalisation by |(r_c, r_s)|.
  `rgb_style_dim` = ToRGB width + 4; `split_rest` separates the two parts.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline_lib.generator.stylegan2 import FullyConnectedLayer, MappingNetwork
from pipeline_lib.generator.stylegan3_filters import design_lowpass_filter, filtered_lrelu
from pipeline_lib.generator.stylegan3_layers import (
    StyleGAN3Config,
    StyleGAN3LayerSpec,
    build_stylegan3_layer_table,
    layer_design,
    layer_name,
    synthesis_geometry,
)

INPUT_STYLE_DIM = 4  # (r_c, r_s, t_x, t_y)


def modulated_conv2d(x, weight, styles, demodulate: bool, padding: int, input_gain):
    """The official modulated conv: per-sample weights through one grouped conv.

    With demodulation, W and s are first normalised (W per output channel, s by the RMS of the
    whole [N, C_in] batch tensor: a batch-wide scalar that cancels in the demodulation up to
    the 1e-8), and the input gain is applied after the demodulation, so it is not normalised away.
    """
    n, c_in = styles.shape
    o, i, kh, kw = weight.shape
    if x.shape[:2] != (n, i) or c_in != i:
        raise ValueError(f"x {tuple(x.shape)}, styles {tuple(styles.shape)} do not fit weight {tuple(weight.shape)}")
    if demodulate:
        weight = weight * weight.square().mean([1, 2, 3], keepdim=True).rsqrt()
        styles = styles * styles.square().mean().rsqrt()
    w = weight.unsqueeze(0) * styles.reshape(n, 1, i, 1, 1)  # [N, O, I, k, k]
    if demodulate:
        w = w * (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt().reshape(n, o, 1, 1, 1)
    if input_gain is not None:
        w = w * input_gain
    x = F.conv2d(x.reshape(1, n * i, *x.shape[2:]), w.reshape(n * o, i, kh, kw).to(x.dtype), padding=padding, groups=n)
    return x.reshape(n, o, *x.shape[2:])


class SynthesisInput(nn.Module):
    """Fourier features of random frequencies in a disc of radius `bandwidth`, rotated and
    translated per sample by the affine of ws[:, 0] and globally by the `transform` buffer."""

    def __init__(self, w_dim, channels, size, sampling_rate, bandwidth):
        super().__init__()
        self.w_dim = w_dim  # affine input width
        self.channels = channels  # number of Fourier features = output channels
        self.size = int(size)  # output side in samples (margins included)
        self.sampling_rate = float(sampling_rate)  # samples per image unit
        self.bandwidth = float(bandwidth)  # max frequency (cycles per unit), the first cutoff
        freqs = torch.randn([channels, 2])
        radii = freqs.square().sum(dim=1, keepdim=True).sqrt()
        freqs = freqs / (radii * radii.square().exp().pow(0.25)) * bandwidth
        phases = torch.rand([channels]) - 0.5  # (drawn in the official order: same init per seed)
        self.weight = nn.Parameter(torch.randn([channels, channels]))
        self.affine = FullyConnectedLayer(w_dim, INPUT_STYLE_DIM)
        with torch.no_grad():  # official init: the identity transform for every w
            self.affine.weight.zero_()
            self.affine.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0]))
        # "user-specified inverse transform w.r.t. the resulting image" (official comment)
        self.register_buffer("transform", torch.eye(3, 3))
        self.register_buffer("freqs", freqs)
        self.register_buffer("phases", phases)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """`t` = raw affine output [N, 4] -> features [N, C, size, size]."""
        n = t.shape[0]
        if t.shape[1:] != (INPUT_STYLE_DIM,):
            raise ValueError(f"input styles must be [N, 4], got {tuple(t.shape)}")
        t = t / t[:, :2].norm(dim=1, keepdim=True)  # unit rotation (r_c, r_s)
        m_r = torch.eye(3, device=t.device, dtype=t.dtype).repeat(n, 1, 1)
        m_r[:, 0, 0], m_r[:, 0, 1], m_r[:, 1, 0], m_r[:, 1, 1] = t[:, 0], -t[:, 1], t[:, 1], t[:, 0]
        m_t = torch.eye(3, device=t.device, dtype=t.dtype).repeat(n, 1, 1)
        m_t[:, 0, 2], m_t[:, 1, 2] = -t[:, 2], -t[:, 3]
        transforms = m_r @ m_t @ self.transform.to(t.dtype).unsqueeze(0)  # rotate, translate, then the user's
        freqs = self.freqs.to(t.dtype).unsqueeze(0)  # [1, C, 2] row vectors
        phases = self.phases.to(t.dtype).unsqueeze(0) + (freqs @ transforms[:, :2, 2:]).squeeze(2)
        freqs = freqs @ transforms[:, :2, :2]
        # fade out frequencies that the user transform pushed beyond the band
        amplitudes = (1 - (freqs.norm(dim=2) - self.bandwidth) / (self.sampling_rate / 2 - self.bandwidth)).clamp(0, 1)
        theta = torch.eye(2, 3, device=t.device, dtype=t.dtype)
        theta[0, 0] = theta[1, 1] = 0.5 * self.size / self.sampling_rate  # pixel j at (j + 0.5 - size/2) / rate
        grid = F.affine_grid(theta.unsqueeze(0), [1, 1, self.size, self.size], align_corners=False)
        x = (grid.unsqueeze(3) @ freqs.permute(0, 2, 1).unsqueeze(1).unsqueeze(2)).squeeze(3)  # [N, H, W, C]
        x = torch.sin((x + phases.unsqueeze(1).unsqueeze(2)) * (np.pi * 2)) * amplitudes.unsqueeze(1).unsqueeze(2)
        x = x @ (self.weight.to(t.dtype) / np.sqrt(self.channels)).t()
        return x.permute(0, 3, 1, 2)


class SynthesisLayer(nn.Module):
    """Modulated conv, then the filtered leaky ReLU: bias, up-sample (FIR), lrelu x sqrt 2,
    clamp, FIR and down-sample. ToRGB is the same with a 1x1 conv, no demodulation, no filters
    and a linear activation."""

    def __init__(self, spec: StyleGAN3LayerSpec, w_dim: int, conv_clamp: float | None, is_torgb: bool):
        super().__init__()
        self.spec = spec  # the row of the layer table: sizes, rates, cutoffs, taps, padding
        self.is_torgb = is_torgb  # last layer: no demodulation, linear, no resampling
        self.in_channels, self.out_channels = spec.in_channels, spec.out_channels
        self.conv_kernel = spec.kernel_size
        self.conv_clamp = conv_clamp  # applied at the up-sampled rate, before the down filter
        self.affine = FullyConnectedLayer(w_dim, spec.in_channels, bias_init=1.0)
        self.weight = nn.Parameter(
            torch.randn([spec.out_channels, spec.in_channels, spec.kernel_size, spec.kernel_size])
        )
        self.bias = nn.Parameter(torch.zeros([spec.out_channels]))
        self.register_buffer("magnitude_ema", torch.ones([]))  # running mean square of the input
        fs = spec.tmp_sampling_rate
        self.register_buffer(
            "up_filter", design_lowpass_filter(spec.up_taps, spec.in_cutoff, spec.in_half_width * 2, fs)
        )
        self.register_buffer(
            "down_filter",
            design_lowpass_filter(spec.down_taps, spec.out_cutoff, spec.out_half_width * 2, fs, spec.down_radial),
        )
        self.padding = list(spec.padding)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        s = self.spec
        if x.shape[1:] != (s.in_channels, s.in_size, s.in_size) or style.shape != (x.shape[0], s.in_channels):
            raise ValueError(f"{s.short_name}: got x {tuple(x.shape)} and style {tuple(style.shape)}")
        input_gain = self.magnitude_ema.to(x.dtype).rsqrt()  # eval mode: the stored estimate
        style = style.to(x.dtype)
        if self.is_torgb:
            style = style * (1 / np.sqrt(s.in_channels * s.kernel_size**2))
        x = modulated_conv2d(x, self.weight.to(x.dtype), style, not self.is_torgb, s.kernel_size - 1, input_gain)
        up_f = None if self.up_filter is None else self.up_filter.to(x.dtype)
        down_f = None if self.down_filter is None else self.down_filter.to(x.dtype)
        x = filtered_lrelu(
            x, up_f, down_f, self.bias, up=s.up, down=s.down, padding=self.padding,
            gain=1.0 if self.is_torgb else math.sqrt(2), slope=1.0 if self.is_torgb else 0.2, clamp=self.conv_clamp,
        )  # fmt: skip
        return x


class SynthesisNetwork(nn.Module):
    """Holds the official submodules `input` and `L{i}_{size}_{channels}`; the Generator runs them."""

    def __init__(self, cfg: StyleGAN3Config, table: list[StyleGAN3LayerSpec]):
        super().__init__()
        geo = synthesis_geometry(cfg)
        self.output_scale = cfg.output_scale
        self.input = SynthesisInput(
            cfg.w_dim, int(geo["channels"][0]), int(geo["sizes"][0]), geo["sampling_rates"][0], geo["cutoffs"][0]
        )
        self.layer_names = []
        for idx in range(cfg.num_layers + 1):
            name = layer_name(layer_design(cfg, geo, idx), idx)
            spec = next(r for r in table if r.ada_name == f"synthesis.{name}")
            setattr(self, name, SynthesisLayer(spec, cfg.w_dim, cfg.conv_clamp, idx == cfg.num_layers))
            self.layer_names.append(name)


def make_transform(translate=(0.0, 0.0), angle_deg: float = 0.0) -> np.ndarray:
    """gen_images.py's forward transform (float64): rotate by angle, then translate (image widths)."""
    a = angle_deg / 360.0 * np.pi * 2
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, s, translate[0]], [-s, c, translate[1]], [0.0, 0.0, 1.0]])


class StyleGAN3Generator(nn.Module):
    """z -> ws -> (S, S_rest) -> image, with the official module names (synthesis before mapping,
    as in the official state_dict)."""

    family = "stylegan3"

    def __init__(self, cfg: StyleGAN3Config):
        super().__init__()
        self.cfg = cfg
        self.config_name = cfg.config_name
        self.z_dim, self.w_dim = cfg.z_dim, cfg.w_dim
        self.img_resolution, self.img_channels = cfg.img_resolution, cfg.img_channels
        self.layers: list[StyleGAN3LayerSpec] = build_stylegan3_layer_table(cfg)
        self.num_ws = cfg.num_ws
        self.synthesis = SynthesisNetwork(cfg, self.layers)
        self.mapping = MappingNetwork(
            cfg.z_dim, cfg.w_dim, self.num_ws, cfg.num_mapping_layers, cfg.mapping_lr_multiplier
        )
        self.input_layer = next(s for s in self.layers if s.kind == "input")
        self.conv_layers = [s for s in self.layers if s.kind == "conv"]
        self.rgb_layers = [s for s in self.layers if s.kind == "torgb"]
        self.style_dim = sum(s.style_dim for s in self.conv_layers)
        self.rgb_style_dim = sum(s.style_dim for s in self.rgb_layers) + INPUT_STYLE_DIM

    def module_of(self, spec) -> nn.Module:
        return self.get_submodule(spec.ada_name)

    # -- the user transform ----------------------------------------------------------------

    @torch.no_grad()
    def set_transform_matrix(self, m) -> StyleGAN3Generator:
        """Store `m` (3x3) as `synthesis.input.transform`. Official convention: this matrix is the
        INVERSE of the transform seen in the output image (it maps output coordinates to the
        coordinates at which the Fourier features are sampled)."""
        m = torch.as_tensor(np.asarray(m, dtype=np.float64) if not torch.is_tensor(m) else m)
        if tuple(m.shape) != (3, 3):
            raise ValueError(f"transform must be 3x3, got {tuple(m.shape)}")
        buf = self.synthesis.input.transform
        buf.copy_(m.to(buf.dtype))
        return self

    def set_transform(self, translate=(0.0, 0.0), angle_deg: float = 0.0) -> StyleGAN3Generator:
        """Show the image translated by `translate` (image widths) and rotated by `angle_deg`:
        stores inv(make_transform(translate, angle_deg)), exactly as gen_images.py does."""
        return self.set_transform_matrix(np.linalg.inv(make_transform(translate, angle_deg)))

    # -- the split forward pass ------------------------------------------------------------

    def split_rest(self, S_rest: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """S_rest -> (ToRGB styles [N, C], input transform numbers [N, 4])."""
        k = self.rgb_style_dim - INPUT_STYLE_DIM
        return S_rest[:, :k], S_rest[:, k:]

    def styles(self, ws: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw affine outputs: S [N, style_dim] (L0..L13) and S_rest [N, rgb_style_dim]."""
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"ws must be [N, {self.num_ws}, {self.w_dim}], got {tuple(ws.shape)}")
        ws = ws.to(next(self.parameters()).dtype)
        conv = [self.module_of(s).affine(ws[:, s.ws_index]) for s in self.conv_layers]
        rest = [self.module_of(s).affine(ws[:, s.ws_index]) for s in self.rgb_layers]
        rest.append(self.synthesis.input.affine(ws[:, self.input_layer.ws_index]))
        return torch.cat(conv, dim=1), torch.cat(rest, dim=1)

    def styles_from_w(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`styles` of one w [N, w_dim] used at every layer (no style mixing)."""
        return self.styles(w[:, None, :].expand(-1, self.num_ws, -1))

    def synthesize(self, S: torch.Tensor, S_rest: torch.Tensor, noise_mode: str = "const", return_layers=False):
        """Image [N, C, H, W] (raw output, nominally in [-1, 1]) from the style vectors.

        `noise_mode` is accepted for API compatibility and ignored: StyleGAN3 has no noise.
        With return_layers, also a dict of every layer's output ('input', 'L0_36_512', ...;
        the last one before the output scale)."""
        if S.ndim != 2 or S.shape[1] != self.style_dim or S_rest.shape != (S.shape[0], self.rgb_style_dim):
            raise ValueError(
                f"style shapes {tuple(S.shape)}, {tuple(S_rest.shape)} do not match this generator "
                f"(expected [N, {self.style_dim}] and [N, {self.rgb_style_dim}])"
            )
        rgb, t = self.split_rest(S_rest)
        outputs = {}
        x = self.synthesis.input(t)
        outputs["input"] = x
        for spec in self.conv_layers + self.rgb_layers:
            source, offset = (S, spec.offset) if spec.kind == "conv" else (rgb, 0)
            x = self.module_of(spec)(x, source[:, offset : offset + spec.style_dim])
            outputs[spec.short_name] = x
        img = x * self.cfg.output_scale if self.cfg.output_scale != 1 else x
        return (img, outputs) if return_layers else img

    def forward(self, z, truncation_psi=1.0, truncation_cutoff=None, noise_mode="const"):
        ws = self.mapping(z, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesize(*self.styles(ws), noise_mode=noise_mode)

    def ws_to_image(self, ws, noise_mode="const"):
        return self.synthesize(*self.styles(ws), noise_mode=noise_mode)


@torch.no_grad()
def init_random_stylegan3(cfg: StyleGAN3Config, seed: int, w_avg_samples: int = 10000) -> StyleGAN3Generator:
    """A generator with the official random initialisation, reproducible by `seed`, made to
    look trained the way the fixtures do it (perturbed biases, a learned input transform, w_avg
    and calibrated magnitude_ema). For demos and tests: it exercises every path, draws no faces."""
    torch_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)  # the official constructors draw from the global generator
        G = StyleGAN3Generator(cfg)
    finally:
        torch.random.set_rng_state(torch_state)
    gen = torch.Generator().manual_seed(seed + 1)
    for name, p in G.named_parameters():
        if name == "synthesis.input.affine.weight":
            p.copy_(0.2 * torch.randn(p.shape, generator=gen))
        elif name == "synthesis.input.affine.bias":
            p.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0]) + 0.05 * torch.randn(p.shape, generator=gen))
        elif name.startswith("mapping") and name.endswith(".bias"):
            p.copy_(torch.randn(p.shape, generator=gen) * 10)
        elif name.endswith("affine.bias"):
            p.copy_(1 + 0.1 * torch.randn(p.shape, generator=gen))
        elif name.endswith(".bias"):
            p.copy_(0.1 * torch.randn(p.shape, generator=gen))
    z = torch.randn([w_avg_samples, cfg.z_dim], generator=gen)
    G.mapping.w_avg.copy_(G.mapping(z)[:, 0].mean(dim=0))

    def calibrate(module, args):  # in forward order: each layer sees the already-calibrated input
        module.magnitude_ema.copy_(args[0].square().mean())

    layers = G.conv_layers + G.rgb_layers
    handles = [G.module_of(s).register_forward_pre_hook(calibrate) for s in layers]
    try:
        img = G(torch.randn([16, cfg.z_dim], generator=gen))
    finally:
        for h in handles:
            h.remove()
    rgb = G.module_of(G.rgb_layers[0]).magnitude_ema
    rgb.mul_((img.std() / 0.5).square())  # output std about 0.5
    return G.eval().requires_grad_(False)
