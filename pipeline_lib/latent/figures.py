"""Figures of the W&T stages: reconstruction and latent errors with and without the prior (their
Fig. 2), interpolation strips (Fig. 3) and the sampling comparison (Fig. 4). All drawn on Agg
through `reporting.style` and written atomically."""

from __future__ import annotations

import numpy as np

from pipeline_lib.reporting.style import new_figure, save_figure

PANELS = (("psnr", "PSNR (dB), higher is better"), ("lpips", "LPIPS"), ("w_l2", "latent error in W (L2)"),
          ("v_mahalanobis", "latent error in V (Mahalanobis)"))  # fmt: skip


def reconstruction_figure(summary: dict, path, title: str = "") -> None:
    """Bars of each metric for W and W+, without and with the prior, with standard errors.

    `summary` is {run name ("w/prior"...): {metric: {"mean", "se"}}}; metrics absent from every
    run (LPIPS without its weights) are left out."""
    panels = [(k, label) for k, label in PANELS if any(k in m for m in summary.values())]
    fig = new_figure(3.2 * len(panels), 3.2)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    spaces = sorted({name.split("/")[0] for name in summary}, key=lambda s: (len(s), s))
    for ax, (key, label) in zip(axes, panels):
        for j, prior in enumerate(("no_prior", "prior")):
            vals = [summary.get(f"{s}/{prior}", {}).get(key, {"mean": np.nan, "se": 0}) for s in spaces]
            x = np.arange(len(spaces)) + (j - 0.5) * 0.38
            means = [np.nan if v["mean"] is None else v["mean"] for v in vals]
            ax.bar(x, means, 0.36, yerr=[v["se"] or 0.0 for v in vals], capsize=3,
                   color=f"C{j}", label="with prior" if prior == "prior" else "without prior")  # fmt: skip
        ax.set_xticks(np.arange(len(spaces)))
        ax.set_xticklabels([s.upper() for s in spaces])
        ax.set_title(label, fontsize=9)
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


def _mosaic(rows: np.ndarray, gap: int) -> np.ndarray:
    """[R, C, H, W, 3] uint8 -> one image with white gaps."""
    R, C, H, W, _ = rows.shape
    out = np.full((R * H + (R - 1) * gap, C * W + (C - 1) * gap, 3), 255, dtype=np.uint8)
    for r in range(R):
        for c in range(C):
            out[r * (H + gap) : r * (H + gap) + H, c * (W + gap) : c * (W + gap) + W] = rows[r, c]
    return out


def interpolation_strips(strips: np.ndarray, labels: list[str], alphas, path, title: str = "") -> None:
    """Rows of interpolations ([R, len(alphas), H, W, 3] uint8), one label per row."""
    strips = np.asarray(strips)
    R, C, H = strips.shape[:3]
    tile = min(H, 128) / 100
    fig = new_figure(C * tile + 1.8, R * tile + 0.8)
    ax = fig.add_axes((1.7 / (C * tile + 1.8), 0.05, C * tile / (C * tile + 1.8), R * tile / (R * tile + 0.8)))
    gap = max(2, H // 64)
    ax.imshow(_mosaic(strips, gap), interpolation="antialiased")
    ax.set_xticks([(c + 0.5) * (H + gap) for c in range(C)])
    ax.set_xticklabels([f"{a:.2g}" for a in alphas], fontsize=7)
    ax.set_yticks([(r + 0.5) * (H + gap) for r in range(R)])
    ax.set_yticklabels(labels, fontsize=7)
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=9)
    save_figure(fig, path)


def sampling_figure(means: dict, stds: dict, numbers: dict, path, title: str = "") -> None:
    """W&T Fig. 4: per method, the mean image (top) and the per-pixel standard deviation
    (bottom, one shared colour scale), with its FID and diversity in the column title."""
    methods = list(means)
    fig = new_figure(3.0 * len(methods), 6.4)
    axes = fig.subplots(2, len(methods), squeeze=False)
    vmax = max(float(s.max()) for s in stds.values()) or 1.0
    for j, m in enumerate(methods):
        axes[0, j].imshow(np.clip(means[m], 0, 255).astype(np.uint8))
        n = numbers.get(m, {})
        axes[0, j].set_title(f"{m}\nFID {n.get('fid', float('nan')):.1f}, diversity {n.get('diversity', float('nan')):.3f}",
                             fontsize=8)  # fmt: skip
        im = axes[1, j].imshow(stds[m].mean(-1), cmap="viridis", vmin=0, vmax=vmax)
        axes[1, j].set_title("per-pixel std", fontsize=8)
        for ax in axes[:, j]:
            ax.set_axis_off()
    fig.colorbar(im, ax=list(axes[1]), shrink=0.8)
    if title:
        fig.suptitle(title, fontsize=9)
    save_figure(fig, path)
