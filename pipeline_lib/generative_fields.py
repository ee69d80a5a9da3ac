"""Generative fields: how many output pixels one unit at a conv layer's input can influence.

Three numbers per conv layer:
- `gf_eq1`: Eq. 1 of the paper, from kernel sizes and up-sampling factors only;
- `gf_fir`: the exact support of the actual network, which also counts the 4x4 FIR filters
  of the up-sampling conv and of the skip path (interval arithmetic on the layer table);
- `gf_measured`: perturb one unit at the centre of the layer's input on a real generator and
  count the output pixels that change (bounded by the image size).
"""

from __future__ import annotations

import csv
from typing import TYPE_CHECKING

import torch
from matplotlib import colormaps, patheffects
from matplotlib.patches import Rectangle

from pipeline_lib.atomic import atomic_path
from pipeline_lib.generator.perturbation import perturbation_support
from pipeline_lib.reporting.paper import PAPER256_GENERATIVE_FIELDS
from pipeline_lib.reporting.style import new_figure, save_figure

if TYPE_CHECKING:
    from pipeline_lib.generator.stylegan2 import Generator


def _conv_interval(a: int, b: int, up: int, k: int) -> tuple[int, int]:
    if up == 1:  # k x k conv, 'same' padding
        return a - (k - 1) // 2, b + k // 2
    # stride-2 transposed conv (output 2H+1: [2a, 2b+k-1]), then pad 1 and the 4-tap FIR
    return 2 * a - 2, 2 * b + k


def _skip_interval(a: int, b: int) -> tuple[int, int]:
    # zero-insertion up-sampling, pad 2 before and 1 after, 4-tap FIR
    return 2 * a - 1, 2 * b + 2


def fir_aware_fields(G: Generator) -> list[int]:
    """Exact 1-D support width on the output of one centre unit at each conv layer's input.

    Follows the main path through every later conv, plus the skip path from every later torgb;
    the result is clipped to the image, like a measurement would be.
    """
    convs = G.conv_layers
    R = G.img_resolution
    fields = []
    for start, spec in enumerate(convs):
        c = spec.input_resolution // 2
        lo, hi, res = c, c, spec.input_resolution
        img_lo, img_hi, img_res = None, None, None
        for later in convs[start:]:
            if img_res is not None and later.resolution != img_res:
                img_lo, img_hi = _skip_interval(img_lo, img_hi)
                img_res = later.resolution
            lo, hi = _conv_interval(lo, hi, later.up, later.kernel_size)
            res = later.resolution
            lo, hi = max(lo, 0), min(hi, res - 1)
            is_block_end = later is convs[-1] or convs[convs.index(later) + 1].resolution != res
            if is_block_end:  # torgb adds this block's x to the image (1x1 conv: same interval)
                if img_res is None:
                    img_lo, img_hi, img_res = lo, hi, res
                else:
                    img_lo, img_hi = min(img_lo, lo), max(img_hi, hi)
            if img_res is not None:
                img_lo, img_hi = max(img_lo, 0), min(img_hi, img_res - 1)
        while img_res < R:  # no more convs: only the skip path remains
            img_lo, img_hi = _skip_interval(img_lo, img_hi)
            img_res *= 2
            img_lo, img_hi = max(img_lo, 0), min(img_hi, img_res - 1)
        fields.append(img_hi - img_lo + 1)
    return fields


@torch.no_grad()
def measured_fields(G: Generator, seed: int = 0) -> list[tuple[int, int]]:
    """(width, height) of the changed output region for a unit perturbed at each conv input
    (noise off, so that only the perturbation changes pixels)."""
    return perturbation_support(G, G.conv_layers, seed, noise_mode="none")


def field_table(G: Generator, measure: bool = True, seed: int = 0) -> list[dict]:
    """One row per conv layer with the three field sizes and the paper's printed value."""
    paper = PAPER256_GENERATIVE_FIELDS if _is_paper256_geometry(G) else {}
    fir = fir_aware_fields(G)
    measured = measured_fields(G, seed) if measure else [(None, None)] * len(fir)
    rows = []
    for spec, f, (mw, mh) in zip(G.conv_layers, fir, measured):
        rows.append(
            {
                "layer": spec.paper_name,
                "ada_name": spec.short_name,
                "stylespace": spec.stylespace_name,
                "input_resolution": spec.input_resolution,
                "resolution": spec.resolution,
                "up": spec.up,
                "kernel_size": spec.kernel_size,
                "style_dim": spec.style_dim,
                "s_offset": spec.offset,
                "gf_eq1": spec.generative_field,
                "gf_paper": paper.get(spec.paper_name, ""),
                "gf_fir": f,
                "gf_measured": "" if mw is None else mw,
                "gf_measured_height": "" if mh is None else mh,
                "clipped_by_image": spec.generative_field >= G.img_resolution,
            }
        )
    return rows


def _is_paper256_geometry(G: Generator) -> bool:
    convs = G.conv_layers
    return (
        G.img_resolution == 256
        and len(convs) == 13
        and all(s.kernel_size == 3 for s in convs)
        and [s.up for s in convs] == [1] + [2, 1] * 6
    )


def field_of_row(row: dict) -> int | None:
    """The field width the report and the face-size comparison use, from a `table.csv` row of
    either family: StyleGAN2's Eq. 1 (`gf_eq1`), or StyleGAN3's analytic support unclipped by the
    image (`gf_unclipped`, which, like Eq. 1, may exceed the image)."""
    for key in ("gf_eq1", "gf_unclipped"):
        if row.get(key) not in (None, ""):
            return int(row[key])
    return None


def write_table_csv(rows: list[dict], path) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def draw_field_squares(ax, image: torch.Tensor, squares: list[tuple[int, str]], title: str) -> int:
    """Paper Fig. 2's left panel, for either family: one centred square per layer, of its field
    size, on a generated image; returns the image size R. `squares` is [(size, label), ...]."""
    img = image.detach().float().clamp(-1, 1).add(1).mul(127.5).round().byte().permute(1, 2, 0).cpu().numpy()
    R = img.shape[0]
    ax.imshow(img)
    cmap = colormaps["viridis"]
    for i, (gf, label) in enumerate(squares):
        colour = cmap(i / max(len(squares) - 1, 1))
        square = Rectangle((R / 2 - gf / 2, R / 2 - gf / 2), gf, gf, fill=False, lw=1.6, ec=colour, label=label)
        square.set_path_effects([patheffects.withStroke(linewidth=3.2, foreground="black")])
        ax.add_patch(square)
    ax.set_xlim(-0.5, R - 0.5)
    ax.set_ylim(R - 0.5, -0.5)
    ax.set_title(title)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    ax.axis("off")
    return R


def plot_fields(rows: list[dict], image, path, title: str = "") -> None:
    """Paper Fig. 2: squares of each layer's generative field on a generated image, beside a
    bar chart of Eq. 1, the FIR-aware support and the measurement."""
    fig = new_figure(13, 6)
    ax_img, ax_bar = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.25]})
    squares = [(row["gf_eq1"], f"{row['layer']}: {row['gf_eq1']}") for row in rows]
    R = draw_field_squares(ax_img, image, squares, "Generative field (Eq. 1) of each conv layer, centred")

    names = [r["layer"] for r in rows]
    x = range(len(rows))
    width = 0.27
    ax_bar.bar([i - width for i in x], [r["gf_eq1"] for r in rows], width, label="Eq. 1")
    ax_bar.bar(list(x), [r["gf_fir"] for r in rows], width, label="exact support incl. FIR (clipped)")
    measured = [r["gf_measured"] if r["gf_measured"] != "" else 0 for r in rows]
    ax_bar.bar([i + width for i in x], measured, width, label="measured on the network")
    ax_bar.axhline(R, color="grey", ls="--", lw=1, label=f"image size ({R})")
    ax_bar.set_yscale("log")
    ax_bar.set_xticks(list(x), names, rotation=45)
    ax_bar.set_ylabel("pixels (one side)")
    ax_bar.legend(fontsize=8)
    ax_bar.set_title("Generative field sizes")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def write_generative_fields(G: Generator, table_path, figure_path, seed: int = 0, measure: bool = True) -> list[dict]:
    """The generative-fields stage: `table.csv` and `figure.png`, each written atomically."""
    rows = field_table(G, measure=measure, seed=seed)
    with atomic_path(table_path) as tmp:
        write_table_csv(rows, tmp)
    with torch.no_grad():
        z = torch.randn([1, G.z_dim], generator=torch.Generator().manual_seed(seed))
        image = G(z.to(next(G.parameters()).device))[0]
    title = f"{G.img_resolution}x{G.img_resolution} generator, {len(rows)} conv layers, dim S = {G.style_dim}"
    with atomic_path(figure_path) as tmp:
        plot_fields(rows, image, tmp, title=title)
    return rows
