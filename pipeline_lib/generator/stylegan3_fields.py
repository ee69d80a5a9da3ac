"""Generative fields of StyleGAN3: how many output pixels one unit at a layer's input can reach.

StyleGAN3 has no skip path and no Eq. 1 geometry: each layer is a k x k conv (padding k - 1, so
the map grows by k - 1), zero-insertion up-sampling, a pad/crop, an `up_taps` FIR, the leaky ReLU,
a `down_taps` FIR and decimation. Interval arithmetic over those steps gives the exact support of
one input sample on every later grid (`analytic_fields`); the 10-pixel margins and the final crop
are part of the index maps. The filters are long (12-24 taps at the higher rate), so even the
last layers' fields are wide, unlike StyleGAN2's 3x3 ones.

`measured_fields` perturbs one unit at the centre of each layer's input (float64) and counts the
output pixels that change, as `pipeline_lib.generative_fields.measured_fields` does for StyleGAN2.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from pipeline_lib.generator.perturbation import perturbation_support

if TYPE_CHECKING:
    from pipeline_lib.generator.stylegan3 import StyleGAN3Generator
    from pipeline_lib.generator.stylegan3_layers import StyleGAN3LayerSpec


def _ceil_div(a: int, b: int) -> int:
    return -((-a) // b)


def layer_interval(spec: StyleGAN3LayerSpec, lo: int, hi: int) -> tuple[int, int]:
    """Output samples of one layer reached by input samples lo..hi (one axis, unclipped)."""
    px0 = spec.padding[0]
    lo_t = lo * spec.up + px0 - (spec.up_taps - 1) - (spec.down_taps - 1)  # conv adds 0 below
    hi_t = (hi + spec.kernel_size - 1) * spec.up + px0  # ...and k - 1 above
    return _ceil_div(lo_t, spec.down), hi_t // spec.down


def analytic_fields(rows: Sequence[StyleGAN3LayerSpec], clip: bool = True) -> list[int]:
    """Width on the output image of the support of the centre unit of each row's input.

    `rows` are the synthesis layers L0..L14 in order (the input row, if present, is skipped).
    clip=True bounds the interval to each feature map (what a measurement can see);
    clip=False ignores the borders (the field as Eq. 1 would state it).
    """
    rows = [r for r in rows if r.kind != "input"]
    widths = []
    for start, spec in enumerate(rows):
        lo = hi = spec.in_size // 2
        for later in rows[start:]:
            lo, hi = layer_interval(later, lo, hi)
            if clip:
                lo, hi = max(lo, 0), min(hi, later.out_size - 1)
        widths.append(max(hi - lo + 1, 0))
    return widths


@torch.no_grad()
def measured_fields(G: StyleGAN3Generator, seed: int = 0) -> list[tuple[int, int]]:
    """(width, height) of the changed output region for a unit perturbed at each layer input
    (L0..L14, all channels, at index in_size // 2), in float64."""
    return perturbation_support(G, [s for s in G.layers if s.kind != "input"], seed)


def field_table(G: StyleGAN3Generator, measure: bool = True, seed: int = 0) -> list[dict]:
    """One row per synthesis layer (L0..L14), with columns that line up with StyleGAN2's
    `generative_fields.field_table` where they mean the same thing."""
    layers = [s for s in G.layers if s.kind != "input"]
    clipped = analytic_fields(layers, clip=True)
    unclipped = analytic_fields(layers, clip=False)
    measured = measured_fields(G, seed) if measure else [(None, None)] * len(layers)
    out = []
    for spec, a, u, (mw, mh) in zip(layers, clipped, unclipped, measured):
        out.append(
            {
                "layer": spec.paper_name,
                "ada_name": spec.short_name,
                "stylespace": spec.stylespace_name,
                "input_resolution": spec.in_size,
                "resolution": spec.out_size,
                "up": spec.up,
                "down": spec.down,
                "kernel_size": spec.kernel_size,
                "up_taps": spec.up_taps,
                "down_taps": spec.down_taps,
                "down_filter": "radial" if spec.down_radial else ("separable" if spec.down_taps > 1 else "none"),
                "padding": list(spec.padding),
                "style_dim": spec.style_dim,
                "s_offset": spec.offset,
                "gf_analytic": a,
                "gf_unclipped": u,
                "gf_measured": "" if mw is None else mw,
                "gf_measured_height": "" if mh is None else mh,
                "clipped_by_image": u > G.img_resolution,
            }
        )
    return out
