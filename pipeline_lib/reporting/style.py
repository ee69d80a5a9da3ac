"""One way to draw and save every figure: on an Agg canvas without pyplot (no display, no global
state shared between jobs or threads), written atomically so a killed job leaves no half PNG."""

from __future__ import annotations

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pipeline_lib.atomic import atomic_path


def new_figure(width: float, height: float, **kwargs) -> Figure:
    """A figure of `width` x `height` inches attached to its own Agg canvas."""
    fig = Figure(figsize=(width, height), **kwargs)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path, dpi: int = 100, **kwargs) -> None:
    """Write `fig` to `path` atomically (the format follows the suffix)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, **kwargs)
