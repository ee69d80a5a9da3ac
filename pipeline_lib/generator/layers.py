"""The layer table: the one place that maps between the three naming schemes of a layer.

- StyleGAN2-ADA module names (`synthesis.b64.conv0`), used by the weights;
- StyleSpace indices (Wu et al.): every affine layer in forward order is s0, s1, ...; the conv
  layers take s0, s2, s3, s5, ... and the torgb layers the skipped s1, s4, s7, ...;
- the paper's conv0..conv12 (conv layers only, in forward order).

The conv styles concatenated in forward order form the style space S (4928 dims for paper256);
each row also carries its slice of S (`offset`, `style_dim`) and its generative field (Eq. 1).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from pipeline_lib.generator.stylegan2 import GeneratorConfig


def equation1_fields(kernel_sizes: Sequence[int], input_resolutions: Sequence[int], img_resolution: int) -> list[int]:
    """Eq. 1: GF_l = 1 + sum_{m >= l} (k_m - 1) * R / r_m, with r_m the input resolution of layer m.

    A k x k kernel at resolution r widens the field by k - 1 units, each of which spans R / r
    output pixels. For paper256 this gives 507, 379, 251, ..., 7, 3 for conv0..conv12.
    """
    fields, total = [], 1
    for k, r in zip(reversed(kernel_sizes), reversed(input_resolutions)):
        total += (k - 1) * (img_resolution // r)
        fields.append(total)
    return fields[::-1]


@dataclass(frozen=True)
class LayerSpec:
    ada_name: str  # official module path, e.g. "synthesis.b64.conv0"
    kind: str  # "conv" or "torgb"
    stylespace_index: int  # s<k> in StyleSpace numbering
    paper_name: str  # "conv0".."conv12" for conv layers, "torgb0".. for torgb layers
    offset: int  # start of this layer's slice in S (conv) or in S_rgb (torgb)
    style_dim: int  # = in_channels
    in_channels: int
    out_channels: int
    resolution: int  # output resolution
    up: int
    kernel_size: int
    ws_index: int
    generative_field: int | None  # Eq. 1, conv layers only

    @property
    def short_name(self) -> str:
        return self.ada_name.removeprefix("synthesis.")

    @property
    def stylespace_name(self) -> str:
        return f"s{self.stylespace_index}"

    @property
    def input_resolution(self) -> int:
        return self.resolution // self.up

    def as_row(self) -> dict:
        row = asdict(self)
        row["stylespace_name"] = self.stylespace_name
        return row


def build_layer_table(cfg: GeneratorConfig) -> list[LayerSpec]:
    """Every affine layer of the `skip` generator, in forward order."""
    raw = []  # (ada_name, kind, in, out, res, up, k, ws_index)
    ws_index = 0
    for res in cfg.block_resolutions:
        out_ch = cfg.channels(res)
        if res == 4:
            convs = [("conv1", out_ch, 1)]
        else:
            convs = [("conv0", cfg.channels(res // 2), 2), ("conv1", out_ch, 1)]
        for i, (name, in_ch, up) in enumerate(convs):
            raw.append((f"synthesis.b{res}.{name}", "conv", in_ch, out_ch, res, up, 3, ws_index + i))
        raw.append((f"synthesis.b{res}.torgb", "torgb", out_ch, cfg.img_channels, res, 1, 1, ws_index + len(convs)))
        ws_index += len(convs)

    conv_rows = [r for r in raw if r[1] == "conv"]
    fields = equation1_fields(
        kernel_sizes=[r[6] for r in conv_rows],
        input_resolutions=[r[4] // r[5] for r in conv_rows],
        img_resolution=cfg.img_resolution,
    )
    table, offsets, counts = [], {"conv": 0, "torgb": 0}, {"conv": 0, "torgb": 0}
    for s_index, (name, kind, in_ch, out_ch, res, up, k, wi) in enumerate(raw):
        table.append(
            LayerSpec(
                ada_name=name,
                kind=kind,
                stylespace_index=s_index,
                paper_name=f"{kind}{counts[kind]}",
                offset=offsets[kind],
                style_dim=in_ch,
                in_channels=in_ch,
                out_channels=out_ch,
                resolution=res,
                up=up,
                kernel_size=k,
                ws_index=wi,
                generative_field=fields[counts["conv"]] if kind == "conv" else None,
            )
        )
        offsets[kind] += in_ch
        counts[kind] += 1
    return table


def conv_layers(table: Iterable[LayerSpec]) -> list[LayerSpec]:
    return [spec for spec in table if spec.kind == "conv"]


def find_layer(table: Iterable[LayerSpec], name: str) -> LayerSpec:
    """Look a layer up by any of its names: `conv3`, `b16.conv0`, `synthesis.b16.conv0` or `s5`."""
    for spec in table:
        if name in (spec.paper_name, spec.short_name, spec.ada_name, spec.stylespace_name):
            return spec
    known = ", ".join(s.paper_name for s in table if s.kind == "conv")
    raise KeyError(f"no layer named {name!r}; conv layers are {known} (or ADA / StyleSpace names)")


def layer_mask(table: Iterable[LayerSpec], layers: Iterable[str], device=None) -> torch.Tensor:
    """A [dim S] 0/1 mask that keeps the style channels of the named conv layers.

    Editing with a subset of layers is `G.synthesize(S + dS * mask, S_rgb)`.
    """
    table = list(table)
    convs = conv_layers(table)
    mask = torch.zeros(sum(s.style_dim for s in convs), device=device)
    for name in layers:
        spec = find_layer(table, name)
        if spec.kind != "conv":
            raise ValueError(f"{name!r} is a torgb layer; S holds conv styles only")
        mask[spec.offset : spec.offset + spec.style_dim] = 1.0
    return mask


def layer_range(first: str, last: str) -> list[str]:
    """`layer_range('conv3', 'conv6')` -> ['conv3', 'conv4', 'conv5', 'conv6'] (paper names)."""
    a, b = int(first.removeprefix("conv")), int(last.removeprefix("conv"))
    return [f"conv{i}" for i in range(a, b + 1)]


def channel_of(table: Iterable[LayerSpec], s_column: int) -> tuple[LayerSpec, int]:
    """Which conv layer and channel a column of S belongs to."""
    for spec in conv_layers(table):
        if spec.offset <= s_column < spec.offset + spec.style_dim:
            return spec, s_column - spec.offset
    raise IndexError(f"column {s_column} is outside S")
