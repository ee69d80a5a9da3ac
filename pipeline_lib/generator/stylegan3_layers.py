"""StyleGAN3's configuration and layer table.

`StyleGAN3Config` holds the official constructor arguments (flat, as `G.init_kwargs` stores them);
`synthesis_geometry` derives every layer's sampling rate, cutoff, stop band, size and channel count
with the official float64 formulas; `build_stylegan3_layer_table` turns that into rows that are
`LayerSpec`s (so the StyleGAN2 helpers - find_layer, layer_mask, layer_range - work unchanged)
with the alias-free quantities added.

Naming: the input affine is kind "input" (paper name `input`); L0..L13 are kind "conv" with paper
names conv0..conv13; L14 is the ToRGB ("torgb", `torgb0`). StyleSpace indices follow the style
vectors in the order `G.styles` returns them: s0..s13 = L0..L13, s14 = ToRGB, s15 = input.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass

import numpy as np

from pipeline_lib.generator.layers import LayerSpec
from pipeline_lib.generator.stylegan3_fields import analytic_fields


@dataclass(frozen=True)
class StyleGAN3Config:
    """Constructor arguments of an unconditional official StyleGAN3 `Generator` (official names)."""

    z_dim: int = 512
    w_dim: int = 512
    img_resolution: int = 1024
    img_channels: int = 3
    channel_base: int = 32768  # channels = rint(min(channel_base / 2 / cutoff, channel_max))
    channel_max: int = 512
    num_mapping_layers: int = 2  # mapping_kwargs.num_layers
    mapping_lr_multiplier: float = 0.01
    num_layers: int = 14  # synthesis layers, excluding the Fourier input and ToRGB
    num_critical: int = 2  # critically sampled layers at the end
    first_cutoff: float = 2.0
    first_stopband: float = 2**2.1
    last_stopband_rel: float = 2**0.3
    margin_size: int = 10  # extra pixels on each side of the internal feature maps
    output_scale: float = 0.25
    num_fp16_res: int = 4  # only recorded (use_fp16 flags); this implementation runs float32
    conv_kernel: int = 3  # 3 for T, 1 for R
    filter_size: int = 6  # filter taps per unit of the lower sampling rate
    lrelu_upsampling: int = 2  # the leaky ReLU runs at twice the higher sampling rate
    use_radial_filters: bool = False  # True for R: jinc down filters in non-critical layers
    conv_clamp: float | None = 256.0
    magnitude_ema_beta: float = 0.999  # training only

    @property
    def config_name(self) -> str:
        return "r" if self.use_radial_filters else "t"

    @property
    def num_ws(self) -> int:
        return self.num_layers + 2

    _MAPPING = ("num_layers", "lr_multiplier")
    _SYNTH = (
        "channel_base", "channel_max", "num_layers", "num_critical", "first_cutoff", "first_stopband",
        "last_stopband_rel", "margin_size", "output_scale", "num_fp16_res", "conv_kernel", "filter_size",
        "lrelu_upsampling", "use_radial_filters", "conv_clamp", "magnitude_ema_beta",
    )  # fmt: skip

    def to_official_kwargs(self) -> dict:
        """The kwargs of `training.networks_stylegan3.Generator` (synthesis/layer kwargs flat)."""
        out = {"z_dim": self.z_dim, "c_dim": 0, "w_dim": self.w_dim, "img_resolution": self.img_resolution}
        out["img_channels"] = self.img_channels
        out["mapping_kwargs"] = {"num_layers": self.num_mapping_layers, "lr_multiplier": self.mapping_lr_multiplier}
        out.update({k: getattr(self, k) for k in self._SYNTH})
        return out

    @classmethod
    def from_official_kwargs(cls, kwargs: dict) -> StyleGAN3Config:
        kwargs = dict(kwargs)
        if int(kwargs.get("c_dim", 0) or 0) != 0:
            raise ValueError("conditional generators (c_dim > 0) are not supported")
        flat = {**dict(kwargs.pop("synthesis_kwargs", None) or {}), **kwargs}  # accept a nested form too
        mk = dict(flat.get("mapping_kwargs") or {})
        known = {f.name for f in dataclasses.fields(cls)}
        args = {k: flat[k] for k in cls._SYNTH if k in flat}
        args.update({k: flat[k] for k in ("z_dim", "w_dim", "img_resolution", "img_channels") if k in flat})
        if "num_layers" in mk:
            args["num_mapping_layers"] = mk["num_layers"]
        if "lr_multiplier" in mk:
            args["mapping_lr_multiplier"] = mk["lr_multiplier"]
        unknown = sorted(set(flat) - known - {"c_dim", "mapping_kwargs", "synthesis_kwargs"})
        if unknown:
            raise ValueError(f"unknown StyleGAN3 generator kwargs {unknown}")
        return cls(**args)

    def to_json_dict(self) -> dict:
        return asdict(self)


def synthesis_geometry(cfg: StyleGAN3Config) -> dict[str, np.ndarray]:
    """Per-layer arrays (index 0..num_layers; the last entry is ToRGB), official formulas."""
    n = cfg.num_layers
    last_cutoff = cfg.img_resolution / 2
    last_stopband = last_cutoff * cfg.last_stopband_rel
    exponents = np.minimum(np.arange(n + 1) / (n - cfg.num_critical), 1)
    cutoffs = cfg.first_cutoff * (last_cutoff / cfg.first_cutoff) ** exponents
    stopbands = cfg.first_stopband * (last_stopband / cfg.first_stopband) ** exponents
    rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, cfg.img_resolution))))
    half_widths = np.maximum(stopbands, rates / 2) - cutoffs
    sizes = rates + cfg.margin_size * 2
    sizes[-2:] = cfg.img_resolution
    channels = np.rint(np.minimum((cfg.channel_base / 2) / cutoffs, cfg.channel_max))
    channels[-1] = cfg.img_channels
    return {"cutoffs": cutoffs, "stopbands": stopbands, "sampling_rates": rates, "half_widths": half_widths,
            "sizes": sizes, "channels": channels}  # fmt: skip


@dataclass(frozen=True)
class StyleGAN3LayerSpec(LayerSpec):
    """A `LayerSpec` (same fields, same meaning) plus the alias-free design of the layer."""

    in_size: int  # input feature map side, margins included
    out_size: int  # = resolution
    in_sampling_rate: int
    out_sampling_rate: int
    tmp_sampling_rate: int  # rate of the leaky ReLU
    in_cutoff: float
    out_cutoff: float
    in_half_width: float
    out_half_width: float
    down: int
    up_taps: int  # 1 = no filter
    down_taps: int
    down_radial: bool
    padding: tuple  # [x0, x1, y0, y1] w.r.t. the up-sampled map (negative = crop)
    critically_sampled: bool
    use_fp16: bool  # the official flag (fp16 on CUDA); informational here

    @property
    def input_resolution(self) -> int:
        return self.in_size


def layer_design(cfg: StyleGAN3Config, geo: dict, idx: int) -> dict:
    """Constructor quantities of layer `idx` (ToRGB when idx == num_layers), as the official
    SynthesisLayer derives them."""
    prev = max(idx - 1, 0)
    is_torgb = idx == cfg.num_layers
    crit = idx >= cfg.num_layers - cfg.num_critical
    rates, sizes = geo["sampling_rates"], geo["sizes"]
    in_rate, out_rate = int(rates[prev]), int(rates[idx])
    tmp_rate = max(in_rate, out_rate) * (1 if is_torgb else cfg.lrelu_upsampling)
    up, down = int(np.rint(tmp_rate / in_rate)), int(np.rint(tmp_rate / out_rate))
    k = 1 if is_torgb else cfg.conv_kernel
    up_taps = cfg.filter_size * up if up > 1 and not is_torgb else 1
    down_taps = cfg.filter_size * down if down > 1 and not is_torgb else 1
    in_size, out_size = int(sizes[prev]), int(sizes[idx])
    pad_total = (out_size - 1) * down + 1 - (in_size + k - 1) * up + up_taps + down_taps - 2
    pad_lo = (pad_total + up) // 2  # the symmetric interpretation of sample locations
    pad_hi = pad_total - pad_lo
    return {
        "is_torgb": is_torgb, "critically_sampled": crit, "in_channels": int(geo["channels"][prev]),
        "out_channels": int(geo["channels"][idx]), "in_size": in_size, "out_size": out_size,
        "in_sampling_rate": in_rate, "out_sampling_rate": out_rate, "tmp_sampling_rate": tmp_rate,
        "in_cutoff": float(geo["cutoffs"][prev]), "out_cutoff": float(geo["cutoffs"][idx]),
        "in_half_width": float(geo["half_widths"][prev]), "out_half_width": float(geo["half_widths"][idx]),
        "up": up, "down": down, "kernel_size": k, "up_taps": up_taps, "down_taps": down_taps,
        "down_radial": bool(cfg.use_radial_filters and not crit), "padding": (pad_lo, pad_hi, pad_lo, pad_hi),
        "use_fp16": bool(rates[idx] * 2**cfg.num_fp16_res > cfg.img_resolution),
    }  # fmt: skip


def layer_name(design: dict, idx: int) -> str:
    """The official module name `L{idx}_{out_size}_{out_channels}`."""
    return f"L{idx}_{design['out_size']}_{design['out_channels']}"


def build_stylegan3_layer_table(cfg: StyleGAN3Config) -> list[StyleGAN3LayerSpec]:
    """Input affine, L0..L13 (conv), ToRGB, in forward order."""
    geo = synthesis_geometry(cfg)
    n = cfg.num_layers
    designs = [layer_design(cfg, geo, i) for i in range(n + 1)]
    rows, s_offset = [], 0
    rgb = designs[n]
    rgb_width = rgb["in_channels"]
    for i, d in enumerate(designs):
        kind = "torgb" if d["is_torgb"] else "conv"
        fields = {k: v for k, v in d.items() if k not in ("is_torgb", "in_channels", "out_channels", "kernel_size")}
        fields.pop("up")
        rows.append(
            StyleGAN3LayerSpec(
                ada_name=f"synthesis.{layer_name(d, i)}", kind=kind, stylespace_index=i,
                paper_name="torgb0" if kind == "torgb" else f"conv{i}", offset=0 if kind == "torgb" else s_offset,
                style_dim=d["in_channels"], in_channels=d["in_channels"], out_channels=d["out_channels"],
                resolution=d["out_size"], up=d["up"], kernel_size=d["kernel_size"], ws_index=i + 1,
                generative_field=None, **fields,
            )
        )  # fmt: skip
        if kind == "conv":
            s_offset += d["in_channels"]
    size0, rate0, cut0 = int(geo["sizes"][0]), int(geo["sampling_rates"][0]), float(geo["cutoffs"][0])
    input_row = StyleGAN3LayerSpec(
        ada_name="synthesis.input", kind="input", stylespace_index=n + 1, paper_name="input", offset=rgb_width,
        style_dim=4, in_channels=0, out_channels=int(geo["channels"][0]), resolution=size0, up=1, kernel_size=1,
        ws_index=0, generative_field=None, in_size=size0, out_size=size0, in_sampling_rate=rate0,
        out_sampling_rate=rate0, tmp_sampling_rate=rate0, in_cutoff=cut0, out_cutoff=cut0, in_half_width=0.0,
        out_half_width=0.0, down=1, up_taps=1, down_taps=1, down_radial=False, padding=(0, 0, 0, 0),
        critically_sampled=False, use_fp16=False,
    )  # fmt: skip
    convs = [r for r in rows if r.kind == "conv"]
    widths = analytic_fields(rows, clip=False)
    rows = [dataclasses.replace(r, generative_field=w) if r.kind == "conv" else r for r, w in zip(rows, widths)]
    assert len(convs) == n
    return [input_row] + rows
