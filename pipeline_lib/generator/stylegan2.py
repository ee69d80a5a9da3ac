"""StyleGAN2 (NVIDIA StyleGAN2-ADA, `skip` generator) in plain PyTorch.

Module and parameter names follow the official `training.networks.Generator`, so an official
state_dict loads with `load_state_dict(strict=True)`. Every numeric convention (FC gains, the
transposed-conv up-sampling, the FIR filters, noise, clamping) is the one stated in
`../shared/fixtures/stylegan2_ref/README.md` and is checked against those fixtures in
`tests/test_stylegan2_fixtures.py`.

The forward pass is split at the style space: `mapping` (z -> ws), `styles` (ws -> S, S_rgb)
and `synthesize` (S, S_rgb -> image), so that an edit is simply `synthesize(S + dS, S_rgb)`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from pipeline_lib.generator.layers import LayerSpec, build_layer_table
from pipeline_lib.generator.ops import (  # noqa: F401 (re-exported for the fast path)
    LRELU_GAIN,
    LRELU_SLOPE,
    bias_act,
    fir_filter_2d,
    normalize_2nd_moment,
    polyphase_up_weight,
    upsample2d,
)

RESAMPLE_TAPS = (1.0, 3.0, 3.0, 1.0)
NOISE_MODES = ("const", "random", "none")
# train.py runs the top 4 resolutions in fp16 for every configuration (unless --fp32); the
# value assumed for a generator whose stored kwargs do not say (random stand-ins, old exports).
TRAIN_PY_NUM_FP16_RES = 4


@dataclass(frozen=True)
class GeneratorConfig:
    """Constructor arguments of an unconditional StyleGAN2-ADA generator (official names)."""

    z_dim: int = 512
    w_dim: int = 512
    img_resolution: int = 256
    img_channels: int = 3
    num_mapping_layers: int = 8
    channel_base: int = 16384
    channel_max: int = 512
    conv_clamp: float | None = 256.0
    mapping_lr_multiplier: float = 0.01
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def block_resolutions(self) -> list[int]:
        log2 = int(math.log2(self.img_resolution))
        if 2**log2 != self.img_resolution or log2 < 2:
            raise ValueError(f"img_resolution must be a power of two >= 4, got {self.img_resolution}")
        return [2**i for i in range(2, log2 + 1)]

    def channels(self, res: int) -> int:
        return min(self.channel_base // res, self.channel_max)

    @property
    def num_fp16_res(self) -> int:
        return int(self.extra.get("num_fp16_res", TRAIN_PY_NUM_FP16_RES))

    def fp16_resolution(self, num_fp16_res: int | None = None) -> int:
        """The smallest block resolution NVIDIA's code runs in fp16 on a GPU (`use_fp16` is
        res >= this; above img_resolution when num_fp16_res is 0). Only the fast path's mixed
        precision mode reads it: this implementation computes in float32."""
        n = self.num_fp16_res if num_fp16_res is None else num_fp16_res
        return max(2 ** (int(math.log2(self.img_resolution)) + 1 - n), 8)

    def to_official_kwargs(self) -> dict:
        """The kwargs `training.networks.Generator` takes, as stored in `_init_kwargs`."""
        return {
            "z_dim": self.z_dim,
            "c_dim": 0,
            "w_dim": self.w_dim,
            "img_resolution": self.img_resolution,
            "img_channels": self.img_channels,
            "mapping_kwargs": {
                "num_layers": self.num_mapping_layers,
                "lr_multiplier": self.mapping_lr_multiplier,
            },
            "synthesis_kwargs": {
                "channel_base": self.channel_base,
                "channel_max": self.channel_max,
                "conv_clamp": self.conv_clamp,
                **self.extra,
            },
        }

    @classmethod
    def from_official_kwargs(cls, kwargs: dict) -> GeneratorConfig:
        mk = dict(kwargs.get("mapping_kwargs") or {})
        sk = dict(kwargs.get("synthesis_kwargs") or {})
        if int(kwargs.get("c_dim", 0) or 0) != 0:
            raise ValueError("conditional generators (c_dim > 0) are not supported")
        arch = sk.get("architecture", "skip")
        if arch != "skip":
            raise ValueError(f"only the 'skip' generator architecture is supported, got {arch!r}")
        clamp = sk.get("conv_clamp", None)
        known = {"channel_base", "channel_max", "conv_clamp"}
        return cls(
            z_dim=int(kwargs["z_dim"]),
            w_dim=int(kwargs["w_dim"]),
            img_resolution=int(kwargs["img_resolution"]),
            img_channels=int(kwargs.get("img_channels", 3)),
            num_mapping_layers=int(mk.get("num_layers", 8)),
            channel_base=int(sk.get("channel_base", 32768)),
            channel_max=int(sk.get("channel_max", 512)),
            conv_clamp=None if clamp is None else float(clamp),
            mapping_lr_multiplier=float(mk.get("lr_multiplier", 0.01)),
            extra={k: v for k, v in sk.items() if k not in known},
        )

    def to_json_dict(self) -> dict:
        return asdict(self)


# ----------------------------------------------------------------------------------------------
# Layers


class FullyConnectedLayer(nn.Module):
    """Equalised-learning-rate FC: effective weight W*lr_mul/sqrt(in), bias b*lr_mul."""

    def __init__(self, in_features, out_features, lrelu=False, bias_init=0.0, lr_multiplier=1.0):
        super().__init__()
        self.lrelu = lrelu
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init)))
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x):
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias.to(x.dtype) * self.bias_gain
        if not self.lrelu:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act(x.matmul(w.t()), b, lrelu=True, gain=LRELU_GAIN)


class MappingNetwork(nn.Module):
    def __init__(self, z_dim, w_dim, num_ws, num_layers=8, lr_multiplier=0.01):
        super().__init__()
        self.z_dim, self.w_dim, self.num_ws, self.num_layers = z_dim, w_dim, num_ws, num_layers
        features = [z_dim] + [w_dim] * num_layers
        for idx in range(num_layers):
            layer = FullyConnectedLayer(features[idx], features[idx + 1], lrelu=True, lr_multiplier=lr_multiplier)
            setattr(self, f"fc{idx}", layer)
        self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(self, z, truncation_psi=1.0, truncation_cutoff=None):
        x = normalize_2nd_moment(z.to(torch.float32))
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)
        x = x.unsqueeze(1).repeat([1, self.num_ws, 1])
        if truncation_psi != 1:
            rows = slice(None) if truncation_cutoff is None else slice(0, truncation_cutoff)
            x[:, rows] = self.w_avg.lerp(x[:, rows], truncation_psi)
        return x


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (optionally up-sampling x2), noise, bias, leaky ReLU, clamp.

    The modulation is applied to the activations and the demodulation as a per-sample output
    scale, which equals modulating the weights (the official grouped conv) up to rounding.
    """

    # "transpose": the official steps (transposed conv, then the FIR); "polyphase": the same
    # linear map as four 3x3 convs at low resolution and a pixel shuffle (much faster on GPUs).
    up_impl = "transpose"

    def __init__(self, in_channels, out_channels, w_dim, resolution, up=1, conv_clamp=None):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.resolution, self.up, self.conv_clamp = resolution, up, conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1.0)
        # registration order = the official state_dict order
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, 3, 3]))
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.register_buffer("resample_filter", _resample_filter())
        self.register_buffer("noise_const", torch.randn([resolution, resolution]))

    def forward(self, x, style, noise_mode="const"):
        n = x.shape[0]
        weight = self.weight.to(x.dtype)
        style = style.to(x.dtype)
        # Demodulation coefficients of the modulated weight W*s, per sample and output channel.
        dcoefs = (weight.square().sum(dim=[2, 3]) @ style.square().t() + 1e-8).rsqrt().t()  # [N, O]
        x = x * style.reshape(n, -1, 1, 1)
        if self.up == 1:
            x = F.conv2d(x, weight, padding=1)
        elif self.up_impl == "polyphase":
            x = F.pixel_shuffle(F.conv2d(x, polyphase_up_weight(weight, self.resample_filter), padding=1), 2)
        else:
            x = F.conv_transpose2d(x, weight.transpose(0, 1), stride=2)
            x = fir_filter_2d(x, self.resample_filter, pad=(1, 1), gain=4.0)
        x = x * dcoefs.reshape(n, -1, 1, 1)
        if noise_mode == "const":
            x = x + self.noise_const.to(x.dtype) * self.noise_strength.to(x.dtype)
        elif noise_mode == "random":
            noise = torch.randn([n, 1, self.resolution, self.resolution], device=x.device, dtype=x.dtype)
            x = x + noise * self.noise_strength.to(x.dtype)
        elif noise_mode != "none":
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        return bias_act(x, self.bias.to(x.dtype), lrelu=True, gain=LRELU_GAIN, clamp=self.conv_clamp)


class ToRGBLayer(nn.Module):
    """Modulated 1x1 conv without demodulation; the style is scaled by 1/sqrt(C_in)."""

    def __init__(self, in_channels, out_channels, w_dim, conv_clamp=None):
        super().__init__()
        self.in_channels, self.conv_clamp = in_channels, conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, 1, 1]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1.0 / math.sqrt(in_channels)

    def forward(self, x, style):
        s = style.to(x.dtype) * self.weight_gain
        x = F.conv2d(x * s.reshape(x.shape[0], -1, 1, 1), self.weight.to(x.dtype))
        return bias_act(x, self.bias.to(x.dtype), lrelu=False, clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    def __init__(self, in_channels, out_channels, w_dim, resolution, img_channels, conv_clamp):
        super().__init__()
        self.resolution = resolution
        self.register_buffer("resample_filter", _resample_filter())
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=2, conv_clamp=conv_clamp)
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution, conv_clamp=conv_clamp)
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)
        self.conv_layers = ["conv1"] if in_channels == 0 else ["conv0", "conv1"]


class SynthesisNetwork(nn.Module):
    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        self.block_resolutions = cfg.block_resolutions
        for res in self.block_resolutions:
            in_ch = 0 if res == 4 else cfg.channels(res // 2)
            block = SynthesisBlock(in_ch, cfg.channels(res), cfg.w_dim, res, cfg.img_channels, cfg.conv_clamp)
            setattr(self, f"b{res}", block)


def _resample_filter() -> torch.Tensor:
    f = torch.tensor(RESAMPLE_TAPS)
    f = torch.outer(f, f)
    return f / f.sum()


# ----------------------------------------------------------------------------------------------
# Generator


class Generator(nn.Module):
    """z -> ws -> (S, S_rgb) -> image, with the official module names."""

    family = "stylegan2"  # StyleGAN3Generator says "stylegan3": stages branch on this only

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        self.cfg = cfg
        self.z_dim, self.w_dim = cfg.z_dim, cfg.w_dim
        self.img_resolution, self.img_channels = cfg.img_resolution, cfg.img_channels
        self.layers: list[LayerSpec] = build_layer_table(cfg)
        self.num_ws = max(spec.ws_index for spec in self.layers) + 1
        self.synthesis = SynthesisNetwork(cfg)
        self.mapping = MappingNetwork(
            cfg.z_dim, cfg.w_dim, self.num_ws, cfg.num_mapping_layers, cfg.mapping_lr_multiplier
        )
        self.conv_layers = [spec for spec in self.layers if spec.kind == "conv"]
        self.rgb_layers = [spec for spec in self.layers if spec.kind == "torgb"]
        self.style_dim = sum(spec.style_dim for spec in self.conv_layers)
        self.rgb_style_dim = sum(spec.style_dim for spec in self.rgb_layers)

    def set_up_impl(self, impl: str) -> Generator:
        """Choose how the up-sampling convs run: "transpose" (official steps) or "polyphase"."""
        if impl not in ("transpose", "polyphase"):
            raise ValueError(f"up_impl must be 'transpose' or 'polyphase', got {impl!r}")
        for spec in self.conv_layers:
            self.module_of(spec).up_impl = impl
        return self

    def module_of(self, spec: LayerSpec) -> nn.Module:
        return self.get_submodule(spec.ada_name)

    def styles(self, ws: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Affine outputs of every layer: conv styles S [N, sum C_in] and torgb styles [N, ...].

        Torgb styles are the raw affine outputs (before ToRGB's 1/sqrt(C_in)), as in StyleSpace.
        """
        conv = [self.module_of(s).affine(ws[:, s.ws_index]) for s in self.conv_layers]
        rgb = [self.module_of(s).affine(ws[:, s.ws_index]) for s in self.rgb_layers]
        return torch.cat(conv, dim=1), torch.cat(rgb, dim=1)

    def styles_from_w(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`styles` of one w [N, w_dim] used at every layer (no style mixing), as the dataset
        stores it."""
        return self.styles(w[:, None, :].expand(-1, self.num_ws, -1))

    def synthesize(self, S: torch.Tensor, S_rgb: torch.Tensor, noise_mode: str = "const", return_blocks=False):
        """Image [N, C, H, W] (raw output, nominally in [-1, 1]) from the style vectors."""
        if S.shape[1] != self.style_dim or S_rgb.shape[1] != self.rgb_style_dim:
            raise ValueError(
                f"style shapes {tuple(S.shape)}, {tuple(S_rgb.shape)} do not match this generator "
                f"(expected [N, {self.style_dim}] and [N, {self.rgb_style_dim}])"
            )
        n = S.shape[0]
        blocks = {}
        x = img = None
        conv_iter = iter(self.conv_layers)
        rgb_iter = iter(self.rgb_layers)
        for res in self.synthesis.block_resolutions:
            block = getattr(self.synthesis, f"b{res}")
            if res == 4:
                x = block.const.to(S.dtype).unsqueeze(0).repeat([n, 1, 1, 1])
            for _ in block.conv_layers:
                spec = next(conv_iter)
                x = self.module_of(spec)(x, S[:, spec.offset : spec.offset + spec.style_dim], noise_mode)
            if img is not None:
                img = upsample2d(img, block.resample_filter)
            spec = next(rgb_iter)
            y = block.torgb(x, S_rgb[:, spec.offset : spec.offset + spec.style_dim])
            img = y if img is None else img + y
            if return_blocks:
                blocks[res] = (x, img)
        return (img, blocks) if return_blocks else img

    def forward(self, z, truncation_psi=1.0, truncation_cutoff=None, noise_mode="const"):
        ws = self.mapping(z, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesize(*self.styles(ws), noise_mode=noise_mode)

    def ws_to_image(self, ws, noise_mode="const"):
        return self.synthesize(*self.styles(ws), noise_mode=noise_mode)


@torch.no_grad()
def init_random_generator(cfg: GeneratorConfig, seed: int, w_avg_samples: int = 10000) -> Generator:
    """A generator with the official random initialisation, made reproducible by `seed`.

    Used for the demo profile and tests: it exercises every code path but draws no faces.
    Noise strengths and biases are perturbed (as the fixtures do) so that those paths matter.
    """
    gen = torch.Generator().manual_seed(seed)
    G = Generator(cfg)
    for name, p in G.named_parameters():
        if (
            name.endswith("affine.weight")
            or name.endswith(".const")
            or name.startswith("synthesis")
            and name.endswith(".weight")
        ):
            p.copy_(torch.randn(p.shape, generator=gen))
        elif name.startswith("mapping") and name.endswith(".weight"):
            p.copy_(torch.randn(p.shape, generator=gen) / cfg.mapping_lr_multiplier)
        elif name.endswith("affine.bias"):
            p.copy_(1 + 0.1 * torch.randn(p.shape, generator=gen))
        elif name.endswith("noise_strength") or name.endswith(".bias"):
            p.copy_(0.1 * torch.randn(p.shape, generator=gen))
    for name, b in G.named_buffers():
        if name.endswith("noise_const"):
            b.copy_(torch.randn(b.shape, generator=gen))
    z = torch.randn([w_avg_samples, cfg.z_dim], generator=gen)
    G.mapping.w_avg.copy_(G.mapping(z)[:, 0].mean(dim=0))
    return G.eval().requires_grad_(False)
