"""A contact sheet of faces with their 68 landmarks and head pose, for checking an encoder by eye.

Numbers alone do not show a landmark model sitting one feature too low or a face box cutting
off the chin; this figure does. The figure is drawn on an Agg canvas without pyplot, so it works
headless and leaves the process-wide matplotlib backend alone.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

# iBUG 68-point groups: (first, end, closed) — jaw, brows, nose bridge, nostrils, eyes, lips.
LANDMARK_CONTOURS = (
    (0, 17, False),
    (17, 22, False),
    (22, 27, False),
    (27, 31, False),
    (31, 36, False),
    (36, 42, True),
    (42, 48, True),
    (48, 60, True),
    (60, 68, True),
)


def _to_uint8_hwc(img: torch.Tensor) -> np.ndarray:
    """Library image (RGB, [-1, 1], CHW) -> uint8 HWC for imshow."""
    return ((img.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()


def draw_landmark_overlay(
    images: torch.Tensor,
    landmarks: torch.Tensor,
    poses: torch.Tensor,
    titles: list[str] | None = None,
    boxes: torch.Tensor | None = None,
    columns: int = 4,
    panel_inches: float = 2.4,
):
    """A figure: each face with its landmarks (joined by feature), yaw/pitch/roll and title.

    images [N,3,H,W] in [-1, 1]; landmarks [N,68,2+] in pixels; poses [N,3] degrees; boxes
    [N,4] or [4] (left, top, right, bottom), drawn dashed when given (e.g. the face box used).
    """
    n = images.shape[0]
    rows = math.ceil(n / columns)
    fig = Figure(figsize=(columns * panel_inches, rows * (panel_inches + 0.25)))
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    landmarks = landmarks.detach().float().cpu().numpy()
    poses = poses.detach().float().cpu().numpy()
    if boxes is not None:
        boxes = torch.as_tensor(boxes).detach().float().cpu().reshape(-1, 4).expand(n, 4).numpy()
    for i, ax in enumerate(axes):
        ax.axis("off")
        if i >= n:
            continue
        ax.imshow(_to_uint8_hwc(images[i]))
        ax.set_xlim(-0.5, images.shape[3] - 0.5)
        ax.set_ylim(images.shape[2] - 0.5, -0.5)
        for first, end, closed in LANDMARK_CONTOURS:
            idx = list(range(first, end)) + ([first] if closed else [])
            ax.plot(landmarks[i, idx, 0], landmarks[i, idx, 1], "-", color="white", lw=0.8, alpha=0.8)
        ax.plot(landmarks[i, :, 0], landmarks[i, :, 1], "o", ms=1.8, mfc="cyan", mec="black", mew=0.3)
        if boxes is not None:
            left, top, right, bottom = boxes[i]
            ax.add_patch(Rectangle((left, top), right - left, bottom - top, fill=False, ls="--", lw=0.8, ec="yellow"))
        yaw, pitch, roll = poses[i]
        ax.text(
            0.02,
            0.02,
            f"yaw {yaw:+.1f}\npitch {pitch:+.1f}\nroll {roll:+.1f}",
            transform=ax.transAxes,
            fontsize=6.5,
            color="white",
            va="bottom",
            bbox=dict(facecolor="black", alpha=0.55, pad=1.5, lw=0),
        )
        if titles is not None:
            ax.set_title(titles[i], fontsize=7)
    fig.tight_layout(pad=0.4)
    return fig


def save_landmark_overlay(path, *args, dpi: int = 100, **kwargs) -> Path:
    """`draw_landmark_overlay` written to `path` (format from the suffix)."""
    path = Path(path)
    draw_landmark_overlay(*args, **kwargs).savefig(path, dpi=dpi)
    return path
