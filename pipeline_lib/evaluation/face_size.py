"""Face size (paper Sec. 4.2.2): the scale against which generative fields are judged.

Sec. 4.2.2's hypothesis is that an edit can only control features smaller than the generative
fields (Eq. 1) of the conv layers it acts on: if the largest field of a configuration is below
the size of the face, head pose cannot be moved. The paper measures the face as the distance
between the 1st and 17th of the 68 landmarks (1-based; the left and right temples, the ends of
the jaw line) and reports an average of 141.68 px on FFHQ256 and its synthetic dataset.

Our choices where the paper is silent: the distance is measured in the image plane, (x, y)
pixels, ignoring the detector's depth (a face size is what the generator must paint, and a
depth term would grow with yaw); the spread is the population standard deviation (ddof=0);
faces whose landmarks are not finite are dropped and counted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from pipeline_lib.atomic import atomic_path, write_json_atomic

PAPER_FACE_SIZE = 141.68  # px, Sec. 4.2.2 (FFHQ256 and the synthetic dataset)
TEMPLES = (0, 16)  # landmarks 1 and 17, 1-based
HISTOGRAM_BINS = 40

# Table 3's configurations (Sec. 4.2.2): the conv layers whose dS is kept.
PAPER_TABLE3_RANGES = {
    "config.1": ("conv0", "conv7"),
    "config.2": ("conv0", "conv4"),
    "config.3": ("conv0", "conv2"),
    "config.4": ("conv3", "conv6"),
    "config.5": ("conv6", "conv11"),
}


def face_sizes(landmarks) -> np.ndarray:
    """[N, 68, 2|3] landmarks in pixels -> [N] distances between landmarks 1 and 17 in (x, y)."""
    lm = np.asarray(landmarks.detach().cpu() if hasattr(landmarks, "detach") else landmarks, dtype=np.float64)
    if lm.ndim != 3 or lm.shape[1] != 68 or lm.shape[2] < 2:
        raise ValueError(f"face_sizes: expected [N, 68, 2 or 3] landmarks, got {lm.shape}")
    a, b = lm[:, TEMPLES[0], :2], lm[:, TEMPLES[1], :2]
    return np.linalg.norm(a - b, axis=1)


def _fields_of(first: str, last: str, fields: Mapping[str, int]) -> list[int]:
    a, b = int(first.removeprefix("conv")), int(last.removeprefix("conv"))
    return [int(fields[f"conv{i}"]) for i in range(min(a, b), max(a, b) + 1)]


def compare_with_configurations(face_size: float, fields: Mapping[str, int] | None = None,
                                configs: Mapping[str, Sequence[str]] | None = None) -> list[dict]:  # fmt: skip
    """For each Table 3 configuration: its largest and smallest generative field and whether the
    largest is below `face_size` (then the hypothesis says it cannot control head pose) and
    whether the smallest is above it (then it cannot control finer features, appendix Fig. 1)."""
    if fields is None:
        from pipeline_lib.reporting.paper import PAPER256_GENERATIVE_FIELDS as fields
    rows = []
    for name, spec in (configs or PAPER_TABLE3_RANGES).items():
        spec = list(spec.split("-") if isinstance(spec, str) else spec)
        gfs = _fields_of(spec[0], spec[-1], fields)
        rows.append(
            {
                "config": name,
                "layers": f"{spec[0]}-{spec[-1]}",
                "largest_field": max(gfs),
                "smallest_field": min(gfs),
                "largest_below_face": bool(max(gfs) < face_size),
                "smallest_above_face": bool(min(gfs) > face_size),
            }
        )
    return rows


def face_size_summary(
    landmarks,
    paper: float = PAPER_FACE_SIZE,
    *,
    dataset: str = "",
    detector: str = "",
    fields: Mapping[str, int] | None = None,
    configs: Mapping[str, Sequence[str]] | None = None,
    bins: int = HISTOGRAM_BINS,
) -> dict:
    """The face-size record (JSON-ready): mean ± std of the temple distance, the paper's value
    beside it, the Table 3 comparison against the measured mean, and a histogram (so the figure
    can be redrawn from the JSON alone).

    `fields` maps conv layer -> generative field (default: the paper's appendix Table 1);
    `configs` maps configuration -> (first, last) conv layer (default: the paper's Table 3).
    """
    sizes = face_sizes(landmarks)
    finite = np.isfinite(sizes)
    good = sizes[finite]
    if good.size == 0:
        raise ValueError("face_size_summary: no face with finite landmarks")
    mean = float(good.mean())
    counts, edges = np.histogram(good, bins=bins)
    return {
        "mean": mean,
        "std": float(good.std()),
        "median": float(np.median(good)),
        "min": float(good.min()),
        "max": float(good.max()),
        "n": int(good.size),
        "n_dropped": int((~finite).sum()),
        "unit": "pixels (x, y) between landmarks 1 and 17 (1-based; temples)",
        "dataset": dataset,
        "detector": detector,
        "paper": float(paper),
        "paper_source": "Sec. 4.2.2 (FFHQ256 and the synthetic dataset)",
        "difference_from_paper": mean - float(paper),
        "table3": compare_with_configurations(mean, fields, configs),
        "histogram": {"edges": edges.tolist(), "counts": counts.tolist()},
    }


def face_size_figure(summary: dict):
    """Histogram of the face sizes with the measured mean (± std) and the paper's 141.68 px."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    edges = np.asarray(summary["histogram"]["edges"])
    counts = np.asarray(summary["histogram"]["counts"])
    ax.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color="#6a8fb3", edgecolor="white", lw=0.5)
    mean, std = summary["mean"], summary["std"]
    ax.axvspan(mean - std, mean + std, color="#6a8fb3", alpha=0.15, label=f"ours ± std ({std:.1f} px)")
    ax.axvline(mean, color="#1f4e79", lw=2, label=f"ours: mean {mean:.2f} px (n={summary['n']})")
    ax.axvline(summary["paper"], color="#c0392b", ls="--", lw=2, label=f"paper: {summary['paper']:.2f} px")
    ax.set_xlabel("face size: distance between landmarks 1 and 17 (px)")
    ax.set_ylabel("faces")
    what = " / ".join(x for x in (summary.get("dataset"), summary.get("detector")) if x)
    ax.set_title("Face size (Sec. 4.2.2)" + (f": {what}" if what else ""))
    ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def write_face_size(summary: dict, json_path, figure_path=None) -> None:
    """`face_size.json` and, if `figure_path` is given, the histogram PNG, each atomically."""
    write_json_atomic(json_path, summary)
    if figure_path is not None:
        fig = face_size_figure(summary)
        with atomic_path(figure_path) as tmp:
            fig.savefig(tmp, dpi=110)
