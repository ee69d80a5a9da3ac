"""The equivariance stage of a StyleGAN3 generator: EQ-T, EQ-T_frac and EQ-R as the official
`metrics/equivariance.py` computes them (`pipeline_lib.generator.equivariance`), with a progress
bar, a metrics record and a figure of example pairs and their difference maps.

The sampling loop is the official one, run one batch per call of `equivariance_metric` (each
call draws z, then t or the angle, from the global torch RNG, exactly as one long call would),
so that the loop can report progress; squared errors and mask counts are pooled over all
samples before the PSNR is taken, as the official metric does.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from tqdm import tqdm

from pipeline_lib.generator.equivariance import (
    equivariance_metric,
    fractional_pseudo_rotation,
    fractional_rotation,
    fractional_translation,
    integer_translation,
    per_sample_psnr,
    pooled_psnr,
    rotation_matrix,
)
from pipeline_lib.reporting.style import new_figure, save_figure

NAMES = {"eqt_int": "EQ-T", "eqt_frac": "EQ-T_frac", "eqr": "EQ-R"}
TRANSLATE_MAX = 0.125  # image widths, the official default
ROTATE_MAX = 1.0  # x 180 degrees, the official default


def measure(G, metric: str, num_samples: int, batch_size: int, seed: int, progress: bool = True) -> dict:
    """One metric over ceil(num_samples / batch_size) batches: pooled PSNR (dB) and per-sample
    PSNRs (for their spread; the metric is the pooled value)."""
    torch.manual_seed(seed)
    errs, masks = [], []
    batches = math.ceil(num_samples / batch_size)
    for _ in tqdm(range(batches), desc=NAMES[metric], unit="batch", disable=not progress):
        out = equivariance_metric(G, metric, num_samples=batch_size, batch_size=batch_size)
        errs.append(out["sq_err_sum"].cpu())
        masks.append(out["mask_sum"].cpu())
    sq, ms = torch.cat(errs), torch.cat(masks)
    per_sample = per_sample_psnr(sq, ms)
    return {
        "name": NAMES[metric],
        "psnr_db": pooled_psnr(sq, ms),
        "num_samples": len(sq),
        "per_sample_psnr_db": {
            "min": float(per_sample.min()),
            "median": float(per_sample.median()),
            "max": float(per_sample.max()),
        },
    }


def measure_all(G, metrics, num_samples: int, batch_size: int, seed: int, progress: bool = True) -> dict:
    """The metrics record of `metrics.json` (each metric seeded alike, so a value does not depend
    on which other metrics were asked for)."""
    results = {m: measure(G, m, num_samples, batch_size, seed, progress) for m in metrics}
    return {
        "family": G.family,
        "config": G.config_name,
        "resolution": G.img_resolution,
        "batch_size": batch_size,
        "seed": seed,
        "definition": "PSNR = 20 log10(2) - 10 log10(MSE), MSE pooled over the masked pixels of all samples",
        "metrics": results,
    }


@torch.no_grad()
def example_pairs(G, metric: str, count: int, seed: int) -> list[dict]:
    """`count` examples of one metric: the reference moved by the image-space operator, the image
    re-rendered with the transformed input, and |difference| under the validity mask."""
    gen = torch.Generator().manual_seed(seed + 1)
    device = next(G.parameters()).device
    saved = G.synthesis.input.transform.clone()
    out = []
    try:
        for _ in range(count):
            z = torch.randn([1, G.z_dim], generator=gen).to(device)
            ws = G.mapping(z)
            G.set_transform_matrix(torch.eye(3))
            orig = G.ws_to_image(ws)
            if metric == "eqr":
                angle = float((torch.rand([], generator=gen) * 2 - 1) * ROTATE_MAX * np.pi)
                G.set_transform_matrix(rotation_matrix(-angle))
                ref, ref_mask = fractional_rotation(orig, angle)
                img, img_mask = fractional_pseudo_rotation(G.ws_to_image(ws), angle)
                mask, label = ref_mask * img_mask, f"{math.degrees(angle):.1f} deg"
            else:
                t = (torch.rand(2, generator=gen) * 2 - 1) * TRANSLATE_MAX
                if metric == "eqt_int":
                    t = (t * G.img_resolution).round() / G.img_resolution
                m = torch.eye(3)
                m[:2, 2] = -t
                G.set_transform_matrix(m)
                img = G.ws_to_image(ws)
                op = integer_translation if metric == "eqt_int" else fractional_translation
                ref, mask = op(orig, t[0], t[1])
                label = f"t = ({t[0] * G.img_resolution:.2f}, {t[1] * G.img_resolution:.2f}) px"
            diff = ((ref - img).abs() * mask).mean(dim=1)[0]
            out.append({"reference": ref[0], "rendered": img[0], "diff": diff, "label": label})
    finally:
        G.set_transform_matrix(saved)
    return out


def _rgb(img: torch.Tensor) -> np.ndarray:
    return img.detach().float().clamp(-1, 1).add(1).div(2).permute(1, 2, 0).cpu().numpy()


def plot_examples(examples: dict[str, list[dict]], record: dict, path) -> None:
    """One row per example: transformed reference, re-rendered image, |difference| map."""
    rows = [(metric, ex) for metric, exs in examples.items() for ex in exs]
    fig = new_figure(7.5, 2.4 * len(rows) + 0.6)
    axes = fig.subplots(len(rows), 3, squeeze=False)
    vmax = max(float(ex["diff"].max()) for _, ex in rows) or 1.0
    for r, (metric, ex) in enumerate(rows):
        name = NAMES[metric]
        axes[r, 0].imshow(_rgb(ex["reference"]))
        axes[r, 0].set_title(f"{name}: reference moved, {ex['label']}", fontsize=8)
        axes[r, 1].imshow(_rgb(ex["rendered"]))
        axes[r, 1].set_title("re-rendered with the input transformed", fontsize=8)
        im = axes[r, 2].imshow(ex["diff"].cpu().numpy(), cmap="magma", vmin=0, vmax=vmax)
        axes[r, 2].set_title("|difference| (masked, channel mean)", fontsize=8)
        fig.colorbar(im, ax=axes[r, 2], fraction=0.046)
        for ax in axes[r]:
            ax.axis("off")
    values = ", ".join(f"{v['name']} {v['psnr_db']:.2f} dB" for v in record["metrics"].values())
    fig.suptitle(f"StyleGAN3-{record['config'].upper()} {record['resolution']} px: {values}", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
