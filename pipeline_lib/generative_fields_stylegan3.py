"""The generative-fields stage for StyleGAN3: `table.csv` and a Fig. 2-like `figure.png`.

StyleGAN3 has no Eq. 1 (no skip path, no 2x up-sampling convs), so its table puts the analytic
support (`pipeline_lib.generator.stylegan3_fields`: conv kernel, up/down factors, filter taps,
margins and crops) beside the measured one, per conv layer L0..L13, with the layer's NVIDIA name
and its alias-free design (sampling rates and cutoffs). ToRGB (L14, a 1x1 conv without filters)
widens nothing and is left out, so the rows are the conv layers that S is made of.
"""

from __future__ import annotations

import torch

from pipeline_lib.atomic import atomic_path
from pipeline_lib.generative_fields import draw_field_squares, write_table_csv
from pipeline_lib.generator.stylegan3_fields import field_table
from pipeline_lib.reporting.style import new_figure, save_figure


def stylegan3_field_rows(G, measure: bool = True, seed: int = 0) -> list[dict]:
    """One row per conv layer (conv0..conv13): names, design and the three field widths."""
    specs = {s.paper_name: s for s in G.conv_layers}
    rows = []
    for row in field_table(G, measure=measure, seed=seed):
        spec = specs.get(row["layer"])
        if spec is None:  # ToRGB
            continue
        rows.append(
            {
                "layer": row["layer"],
                "nvidia_name": spec.short_name,
                "conv_index": spec.stylespace_index,
                "stylespace": row["stylespace"],
                "in_size": spec.in_size,
                "out_size": spec.out_size,
                "in_sampling_rate": spec.in_sampling_rate,
                "out_sampling_rate": spec.out_sampling_rate,
                "in_cutoff": round(spec.in_cutoff, 4),
                "out_cutoff": round(spec.out_cutoff, 4),
                "kernel_size": spec.kernel_size,
                "up": row["up"],
                "down": row["down"],
                "up_taps": row["up_taps"],
                "down_taps": row["down_taps"],
                "down_filter": row["down_filter"],
                "style_dim": spec.style_dim,
                "s_offset": spec.offset,
                "gf_analytic": row["gf_analytic"],
                "gf_unclipped": row["gf_unclipped"],
                "gf_measured": row["gf_measured"],
                "gf_measured_height": row["gf_measured_height"],
                "clipped_by_image": row["clipped_by_image"],
            }
        )
    return rows


def plot_stylegan3_fields(rows: list[dict], image: torch.Tensor, path, title: str = "") -> None:
    """Fig. 2 for StyleGAN3: each conv layer's analytic support as a centred square on a
    generated image, beside bars of the analytic (clipped, unclipped) and measured widths."""
    fig = new_figure(13, 6)
    ax_img, ax_bar = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.25]})
    squares = [
        (int(row["gf_analytic"]), f"{row['layer']} ({row['nvidia_name']}): {int(row['gf_analytic'])}") for row in rows
    ]
    R = draw_field_squares(ax_img, image, squares, "Analytic generative field of each conv layer, centred")
    x = list(range(len(rows)))
    width = 0.27
    ax_bar.bar([i - width for i in x], [int(r["gf_unclipped"]) for r in rows], width, label="analytic, unclipped")
    ax_bar.bar(x, [int(r["gf_analytic"]) for r in rows], width, label="analytic, clipped to the image")
    measured = [int(r["gf_measured"]) if r["gf_measured"] != "" else 0 for r in rows]
    ax_bar.bar([i + width for i in x], measured, width, label="measured on the network (float64)")
    ax_bar.axhline(R, color="grey", ls="--", lw=1, label=f"image size ({R})")
    ax_bar.set_yscale("log")
    ax_bar.set_xticks(x, [r["layer"] for r in rows], rotation=45)
    ax_bar.set_ylabel("pixels (one side)")
    ax_bar.legend(fontsize=8)
    ax_bar.set_title("Generative field sizes")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def write_stylegan3_fields(G, table_path, figure_path, seed: int = 0, measure: bool = True) -> list[dict]:
    """The generative-fields stage of a StyleGAN3 generator: table and figure, atomically."""
    rows = stylegan3_field_rows(G, measure=measure, seed=seed)
    with atomic_path(table_path) as tmp:
        write_table_csv(rows, tmp)
    with torch.no_grad():
        z = torch.randn([1, G.z_dim], generator=torch.Generator().manual_seed(seed))
        image = G(z.to(next(G.parameters()).device))[0]
    kind = f"StyleGAN3-{G.config_name.upper()}"
    title = f"{kind} {G.img_resolution}x{G.img_resolution}, {len(rows)} conv layers, dim S = {G.style_dim}"
    plot_stylegan3_fields(rows, image, figure_path, title=title)
    return rows
