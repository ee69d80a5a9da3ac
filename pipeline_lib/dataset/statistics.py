"""Statistics of the dataset: the per-channel mean and std of S that Eq. 12 regularises with,
and the Gaussian model of v = lrelu_5(w) (Wulff & Torralba) estimated from the dataset's w."""

from __future__ import annotations

import json
import logging

import h5py
import numpy as np
from tqdm import tqdm

from pipeline_lib.atomic import atomic_path
from pipeline_lib.dataset.store import open_faces

log = logging.getLogger(__name__)

# A channel of S whose variance is below this fraction of its scale (its squared mean, or the
# median variance of all channels if larger) is constant: float32 rounding is ~1e-14 of that.
CONSTANT_RELATIVE_VARIANCE = 1e-12


def invert_last_lrelu(w: np.ndarray, slope: float = 0.2) -> np.ndarray:
    """v = w with negative entries divided by the leaky-ReLU slope (x5): the Gaussianized space."""
    return np.where(w < 0, w / slope, w)


class RunningMoments:
    """Streaming mean and (co)variance in float64 by Chan et al.'s pairwise update."""

    def __init__(self, dim: int, covariance: bool):
        self.n = 0
        self.mean = np.zeros(dim)
        self.m2 = np.zeros((dim, dim) if covariance else dim)
        self.covariance = covariance

    def update(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float64)
        nb = len(x)
        if nb == 0:
            return
        mean_b = x.mean(axis=0)
        centred = x - mean_b
        m2_b = centred.T @ centred if self.covariance else (centred**2).sum(axis=0)
        delta = mean_b - self.mean
        total = self.n + nb
        correction = np.outer(delta, delta) if self.covariance else delta**2
        self.m2 += m2_b + correction * (self.n * nb / total)
        self.mean += delta * (nb / total)
        self.n = total

    def variance(self, ddof: int = 1) -> np.ndarray:
        return self.m2 / (self.n - ddof)


def constant_channels(mean: np.ndarray, variance: np.ndarray) -> np.ndarray:
    """Indices of the channels of S that do not vary over the dataset (zero variance, or below
    `CONSTANT_RELATIVE_VARIANCE` of the channel's scale). Eq. 12 divides by their std, so they
    must be known: `read_style_stats` gives them std = inf, which leaves them out of the sum."""
    scale = np.maximum(np.square(mean), np.median(variance) if len(variance) else 0.0)
    return np.flatnonzero(variance <= CONSTANT_RELATIVE_VARIANCE * scale).astype(np.int64)


def _layers_of(channels: np.ndarray, layer_table: str | None) -> str:
    """'conv0: 2, conv5: 1' from the dataset's layer table (or the bare indices without one)."""
    rows = [r for r in json.loads(layer_table) if r.get("kind") == "conv"] if layer_table else []
    if not rows:
        return f"channels {channels[:20].tolist()}"
    counts: dict[str, int] = {}
    for c in channels:
        name = next((r["paper_name"] for r in rows if r["offset"] <= c < r["offset"] + r["style_dim"]), "?")
        counts[name] = counts.get(name, 0) + 1
    return ", ".join(f"{name}: {n}" for name, n in counts.items())


def compute_style_stats(faces_path, out_path, block: int = 2048, ddof: int = 1) -> dict:
    """`style_stats.h5`: S mean/std over all faces; v mean, covariance and its eigenbasis."""
    with open_faces(faces_path) as f:
        styles, w = f["styles"], f["w"]
        s_moments = RunningMoments(styles.shape[1], covariance=False)
        v_moments = RunningMoments(w.shape[1], covariance=True)
        for a in tqdm(range(0, len(styles), block), desc="style statistics", unit="block"):
            s_moments.update(styles[a : a + block])
            v_moments.update(invert_last_lrelu(w[a : a + block]))
        source = {k: f.attrs[k] for k in ("dataset_id", "generator_sha256", "truncation_psi", "global_seed")}
        layer_table = f.attrs.get("layer_table")
    s_variance = s_moments.variance(ddof)
    constant = constant_channels(s_moments.mean, s_variance)
    if len(constant):
        log.warning(
            "%d of %d channels of S are constant over the %d faces (%s); Eq. 12's style regulariser leaves "
            "them out of its sum (they carry no style, and 1/sigma^2 would be infinite)",
            len(constant), len(s_variance), s_moments.n, _layers_of(constant, layer_table),
        )  # fmt: skip
    cov = v_moments.variance(ddof)
    eigenvalues, eigenvectors = np.linalg.eigh(cov)
    order = np.argsort(eigenvalues)[::-1]
    with atomic_path(out_path) as tmp, h5py.File(tmp, "w") as out:
        out["S/mean"] = s_moments.mean
        out["S/std"] = np.sqrt(s_variance)
        out["S/constant_channels"] = constant  # indices into S; Eq. 12 leaves them out
        out["V/mean"] = v_moments.mean
        out["V/covariance"] = cov
        out["V/eigenvalues"] = eigenvalues[order]
        out["V/eigenvectors"] = eigenvectors[:, order]  # columns, by decreasing eigenvalue
        out.attrs.update({"num_faces": s_moments.n, "ddof": ddof, "lrelu_slope_inverted": 0.2})
        out.attrs["num_constant_channels"] = len(constant)
        out.attrs.update({f"source_{k}": v for k, v in source.items()})
    return {"faces": s_moments.n, "constant_channels": len(constant)}
