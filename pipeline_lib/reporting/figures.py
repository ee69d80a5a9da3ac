"""Edit grids (paper Figs. 5, 6 and 9): identity images down the left, attribute images along the
top, and at each (row, column) the identity face edited towards that attribute face.

One layout serves every trained variant and every generative-field ablation, so the grids can be
compared side by side. Images are composed into one mosaic at their own pixel size and shown
with a single `imshow`, so the faces are not resampled per panel. Drawn on an Agg canvas
without pyplot.
"""

from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pipeline_lib.atomic import atomic_path


def _check_uint8(name: str, arr, ndim: int) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.dtype != np.uint8:
        raise TypeError(f"{name} must be uint8 NHWC RGB (as on disk), got dtype {arr.dtype}")
    if arr.ndim != ndim or arr.shape[-1] != 3:
        raise ValueError(f"{name} must have {ndim} dimensions ending in 3 (RGB), got shape {arr.shape}")
    return arr


def edit_mosaic(identity_images, attribute_images, edited, gap: int = 4, background: int = 255) -> np.ndarray:
    """The grid as one uint8 HWC image: a blank corner, attribute images across the top row,
    identity images down the first column, edited faces in the body; `gap` pixels between tiles."""
    ident = _check_uint8("identity_images", identity_images, 4)
    attr = _check_uint8("attribute_images", attribute_images, 4)
    out = _check_uint8("edited", edited, 5)
    R, C = len(ident), len(attr)
    if R == 0 or C == 0:
        raise ValueError("need at least one identity image and one attribute image")
    H, W = ident.shape[1:3]
    if attr.shape[1:3] != (H, W) or out.shape[2:4] != (H, W):
        raise ValueError(f"all images must be {H}x{W}: attribute {attr.shape[1:3]}, edited {out.shape[2:4]}")
    if out.shape[:2] != (R, C):
        raise ValueError(f"edited must be [{R} identity rows, {C} attribute columns, H, W, 3], got {out.shape}")
    step_y, step_x = H + gap, W + gap
    mosaic = np.full(((R + 1) * step_y - gap, (C + 1) * step_x - gap, 3), background, dtype=np.uint8)
    for c in range(C):
        mosaic[0:H, (c + 1) * step_x : (c + 1) * step_x + W] = attr[c]
    for r in range(R):
        y = (r + 1) * step_y
        mosaic[y : y + H, 0:W] = ident[r]
        for c in range(C):
            mosaic[y : y + H, (c + 1) * step_x : (c + 1) * step_x + W] = out[r, c]
    return mosaic


def edit_grid(
    identity_images, attribute_images, edited, path, title: str | None = None, max_tile_px: int = 256
) -> None:
    """Write the edit grid as a PNG.

    identity_images [R,H,W,3], attribute_images [C,H,W,3], edited [R,C,H,W,3], all uint8.
    Each tile is drawn at min(H, `max_tile_px`) pixels, so a 1024-pixel generator does not make
    a poster-sized file.
    """
    ident = _check_uint8("identity_images", identity_images, 4)
    gap = max(2, ident.shape[1] // 64)
    mosaic = edit_mosaic(identity_images, attribute_images, edited, gap=gap)
    R, C = ident.shape[0], np.asarray(attribute_images).shape[0]
    H = ident.shape[1]
    dpi = 100
    scale = min(1.0, max_tile_px / H)
    img_w, img_h = mosaic.shape[1] * scale / dpi, mosaic.shape[0] * scale / dpi
    # margins (inches) for the labels: left for "identity", top for "attribute" and the title
    left, top, right, bottom = 0.45, 0.75 if title else 0.45, 0.1, 0.1
    fig = Figure(figsize=(img_w + left + right, img_h + top + bottom))
    FigureCanvasAgg(fig)
    fw, fh = fig.get_size_inches()
    ax = fig.add_axes((left / fw, bottom / fh, img_w / fw, img_h / fh))
    ax.imshow(mosaic, interpolation="antialiased" if scale < 1 else "nearest")
    ax.set_axis_off()
    tile_w, tile_h = 1.0 / (C + 1), 1.0 / (R + 1)
    size = 11 if H * scale >= 96 else 8
    ax.text(0.5 + tile_w / 2, 1.0 + 0.06 / img_h, "attribute →", transform=ax.transAxes, ha="center", va="bottom",
            fontsize=size, weight="bold")  # fmt: skip
    ax.text(-0.06 / img_w, 0.5 - tile_h / 2, "identity →", transform=ax.transAxes, ha="right", va="center",
            rotation=270, fontsize=size, weight="bold")  # fmt: skip
    ax.text(tile_w / 2, 1.0 - tile_h / 2, f"rows: identity\ncolumns: attribute\ncells: edited\n{R} x {C}",
            transform=ax.transAxes, ha="center", va="center", fontsize=size - 2, color="0.3")  # fmt: skip
    if title:
        fig.text(0.5, 1.0 - 0.08 / fh, title, ha="center", va="top", fontsize=12)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi)
