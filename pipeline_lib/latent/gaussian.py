"""The Gaussianized latent space V of Wulff & Torralba (2020) and the Gaussian fitted to it.

The mapping network's last layer ends in a leaky ReLU of slope 0.2, which folds the negative
half-axis of every w coordinate into a narrow band and makes W's marginals skewed and
heavy-tailed. A leaky ReLU of slope 5 undoes that fold: v = w for w >= 0, v = 5 w for w < 0.
In V the samples of the mapping network are close to a single Gaussian (W&T Fig. 1), so a mean
and a full covariance describe them and the squared Mahalanobis distance is a usable prior.

NVIDIA's `lrelu` multiplies by sqrt(2) after the leaky ReLU, so here v = sqrt(2) x the last
pre-activation, not the pre-activation itself. That constant factor cancels in every Mahalanobis
distance and every normalised PCA coefficient as long as the mean and covariance are fitted in
this same space, which `fit_latent_gaussian` does. StyleGAN3's mapping ends the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import torch

from pipeline_lib.atomic import atomic_path

V_SLOPE = 5.0  # 1 / the mapping network's leaky ReLU slope of 0.2
FILE_FORMAT = "genfields.latent_gaussian.v1"
_MOMENTS = ("skew_w", "excess_kurtosis_w", "skew_v", "excess_kurtosis_v")


def to_v(w):
    """W -> V (torch tensor or numpy array, any shape): the inverse of the last leaky ReLU."""
    if isinstance(w, torch.Tensor):
        return torch.where(w >= 0, w, w * V_SLOPE)
    w = np.asarray(w)
    return np.where(w >= 0, w, w * V_SLOPE)


def to_w(v):
    """V -> W, the exact inverse of `to_v` (the sign is kept, so the map is a bijection)."""
    if isinstance(v, torch.Tensor):
        return torch.where(v >= 0, v, v / V_SLOPE)
    v = np.asarray(v)
    return np.where(v >= 0, v, v / V_SLOPE)


class CovarianceAccumulator:
    """Streaming mean and full covariance in float64 (Chan et al.'s pairwise merge).

    Each batch is centred on its own mean before its scatter matrix is formed, and batches are
    merged with the correction term for the difference of means, so no large raw sums of
    squares are ever subtracted from each other (the cancellation a naive E[x x^T] - m m^T has).
    """

    def __init__(self, dim: int):
        self.n = 0
        self.mean = np.zeros(dim)
        self.m2 = np.zeros((dim, dim))

    def update(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float64)
        nb = x.shape[0]
        if nb == 0:
            return
        mb = x.mean(axis=0)
        xc = x - mb
        m2b = xc.T @ xc
        n = self.n + nb
        delta = mb - self.mean
        self.m2 += m2b + np.outer(delta, delta) * (self.n * nb / n)
        self.mean = self.mean + delta * (nb / n)
        self.n = n

    def covariance(self) -> np.ndarray:
        if self.n < 2:
            raise ValueError("need at least two samples for a covariance")
        return self.m2 / (self.n - 1)


class MomentAccumulator:
    """Streaming per-dimension central moments 2-4 in float64 (Pebay's merge formulas), for the
    skewness and excess kurtosis that show how Gaussian W and V are."""

    def __init__(self, dim: int):
        self.n = 0
        self.mean = np.zeros(dim)
        self.m2, self.m3, self.m4 = np.zeros(dim), np.zeros(dim), np.zeros(dim)

    def update(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float64)
        nb = x.shape[0]
        if nb == 0:
            return
        mb = x.mean(axis=0)
        d = x - mb
        d2 = d * d
        m2b, m3b, m4b = d2.sum(0), (d2 * d).sum(0), (d2 * d2).sum(0)
        na, n = self.n, self.n + nb
        delta = mb - self.mean
        m2a, m3a, m4a = self.m2, self.m3, self.m4
        self.m4 = (
            m4a
            + m4b
            + delta**4 * na * nb * (na * na - na * nb + nb * nb) / n**3
            + 6 * delta**2 * (na * na * m2b + nb * nb * m2a) / n**2
            + 4 * delta * (na * m3b - nb * m3a) / n
        )
        self.m3 = m3a + m3b + delta**3 * na * nb * (na - nb) / n**2 + 3 * delta * (na * m2b - nb * m2a) / n
        self.m2 = m2a + m2b + delta**2 * na * nb / n
        self.mean = self.mean + delta * nb / n
        self.n = n

    def skewness(self) -> np.ndarray:
        return np.sqrt(self.n) * self.m3 / np.maximum(self.m2, 1e-300) ** 1.5

    def excess_kurtosis(self) -> np.ndarray:
        return self.n * self.m4 / np.maximum(self.m2, 1e-300) ** 2 - 3.0


def summarize_moments(skew: np.ndarray, excess_kurtosis: np.ndarray) -> dict:
    """One line of numbers per space: how far the marginals are from a Gaussian's (0, 0)."""
    s, k = np.abs(np.asarray(skew)), np.abs(np.asarray(excess_kurtosis))
    return {
        "mean_abs_skew": float(s.mean()),
        "median_abs_skew": float(np.median(s)),
        "mean_abs_excess_kurtosis": float(k.mean()),
        "median_abs_excess_kurtosis": float(np.median(k)),
    }


@dataclass(frozen=True, eq=False)
class LatentGaussian:
    """N(mean, cov) in V with its eigenbasis (eigenvalues descending, eigenvectors as columns).

    Immutable so that one fitted model can be shared by samplers and projectors; torch copies
    of the arrays are cached per (device, dtype) because the projector evaluates the prior at
    every step. Eigenvalues are floored at `EIG_FLOOR` x the largest, so a rank-deficient
    covariance (fewer samples than dimensions, dead mapping units) gives large but finite
    distances instead of infinities.
    """

    mean: np.ndarray
    cov: np.ndarray
    eigvals: np.ndarray
    eigvecs: np.ndarray
    num_samples: int
    seed: int
    gaussianity: dict = field(default_factory=dict)  # per-dimension arrays named in _MOMENTS
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    EIG_FLOOR = 1e-10

    @classmethod
    def from_moments(cls, mean, cov, num_samples: int, seed: int, gaussianity: dict | None = None):
        mean = np.asarray(mean, dtype=np.float64)
        cov = np.asarray(cov, dtype=np.float64)
        cov = 0.5 * (cov + cov.T)
        eigvals, eigvecs = np.linalg.eigh(cov)
        order = np.argsort(eigvals)[::-1]
        eigvals, eigvecs = eigvals[order], eigvecs[:, order]
        # a deterministic sign per eigenvector (largest entry positive): PCA coefficients saved
        # by one run mean the same in another
        flip = np.sign(eigvecs[np.abs(eigvecs).argmax(axis=0), np.arange(eigvecs.shape[1])])
        eigvecs = eigvecs * np.where(flip == 0, 1.0, flip)
        eigvals = np.maximum(eigvals, cls.EIG_FLOOR * max(float(eigvals[0]), 1e-300))
        return cls(mean, cov, eigvals, eigvecs, int(num_samples), int(seed), dict(gaussianity or {}))

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    to_v = staticmethod(to_v)
    to_w = staticmethod(to_w)

    def _arrays(self, like):
        """(mean, eigvecs, sqrt eigvals) as numpy float64 or as torch tensors matching `like`."""
        if not isinstance(like, torch.Tensor):
            return self.mean, self.eigvecs, np.sqrt(self.eigvals)
        dtype = like.dtype if like.is_floating_point() else torch.float32
        key = (like.device, dtype)
        if key not in self._cache:
            self._cache[key] = tuple(
                torch.as_tensor(a, dtype=dtype, device=like.device)
                for a in (self.mean, self.eigvecs, np.sqrt(self.eigvals))
            )
        return self._cache[key]

    def pca_coefficients(self, v, normalized: bool = True):
        """Coordinates of v - mean in the eigenbasis, divided by sqrt(eigenvalue) when
        `normalized` (then each coefficient of a sample of the model is N(0, 1))."""
        mean, vecs, sd = self._arrays(v)
        c = (v - mean) @ vecs
        return c / sd if normalized else c

    def from_pca(self, c, normalized: bool = True):
        """Inverse of `pca_coefficients`."""
        mean, vecs, sd = self._arrays(c)
        if normalized:
            c = c * sd
        return c @ vecs.T + mean

    def mahalanobis_sq(self, v):
        """(v - mean)^T cov^-1 (v - mean) over the last axis; differentiable for torch input.

        Computed as the squared norm of the normalised PCA coefficients, which uses the same
        floored eigenvalues as everything else here. About `dim` for a typical sample.
        """
        c = self.pca_coefficients(v, normalized=True)
        return (c * c).sum(-1)

    def gaussianity_summary(self) -> dict:
        """{"w": {...}, "v": {...}} of mean/median |skew| and |excess kurtosis| (empty if the
        per-dimension moments were not recorded)."""
        g = self.gaussianity
        if not all(k in g for k in _MOMENTS):
            return {}
        return {
            "w": summarize_moments(g["skew_w"], g["excess_kurtosis_w"]),
            "v": summarize_moments(g["skew_v"], g["excess_kurtosis_v"]),
        }

    def save(self, path) -> None:
        """Write to HDF5 atomically (temporary file in the same folder, then os.replace)."""
        with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
            f.attrs["format"] = FILE_FORMAT
            f.attrs["num_samples"] = self.num_samples
            f.attrs["seed"] = self.seed
            f.attrs["v_slope"] = V_SLOPE
            f.attrs["eig_floor"] = self.EIG_FLOOR
            for name in ("mean", "cov", "eigvals", "eigvecs"):
                f.create_dataset(name, data=getattr(self, name))
            group = f.create_group("gaussianity")
            for name, arr in self.gaussianity.items():
                group.create_dataset(name, data=np.asarray(arr, dtype=np.float64))
            for space, summary in self.gaussianity_summary().items():
                for key, value in summary.items():
                    group.attrs[f"{space}_{key}"] = value

    @classmethod
    def load(cls, path) -> LatentGaussian:
        with h5py.File(Path(path), "r") as f:
            if f.attrs.get("format") != FILE_FORMAT:
                raise ValueError(f"{path} is not a latent Gaussian file (format {f.attrs.get('format')!r})")
            arrays = {name: np.array(f[name]) for name in ("mean", "cov", "eigvals", "eigvecs")}
            gauss = {name: np.array(ds) for name, ds in f["gaussianity"].items()}
            return cls(**arrays, num_samples=int(f.attrs["num_samples"]), seed=int(f.attrs["seed"]), gaussianity=gauss)


@torch.no_grad()
def mapping_w_batches(G, num_samples: int, seed: int, batch: int = 1000, device="cpu"):
    """Yield float32 w batches [b, w_dim] of the mapping network without truncation.

    z is drawn on the CPU from one generator seeded with `seed`, batch after batch, so the
    samples do not depend on the device (they do depend on `batch`).
    """
    gen = torch.Generator().manual_seed(int(seed))
    done = 0
    while done < num_samples:
        b = min(batch, num_samples - done)
        z = torch.randn([b, G.z_dim], generator=gen).to(device)
        yield G.mapping(z, truncation_psi=1.0)[:, 0].float()
        done += b


def fit_latent_gaussian(
    G, num_samples: int = 100_000, seed: int = 0, batch: int = 1000, device="cpu", progress: bool = False
) -> LatentGaussian:
    """Fit N(mean, cov) to v = to_v(w) of `num_samples` mapping samples, in one pass.

    Also records the per-dimension skewness and excess kurtosis of w and of v (the numbers
    behind W&T Fig. 1). The default of 100,000 samples is ours: it is 200 samples per free
    covariance row at w_dim = 512, which puts the relative error of the leading eigenvalues
    near 1% and costs seconds on a GPU (third-party code used 10,000; PULSE used 10^6 with a
    diagonal model).
    """
    from tqdm import tqdm

    cov_acc = mom_w = mom_v = None
    bar = tqdm(total=num_samples, desc="mapping samples", unit="w", disable=not progress, smoothing=0.1)
    for w in mapping_w_batches(G, num_samples, seed, batch, device):
        bar.update(len(w))
        w = w.double().cpu().numpy()
        v = to_v(w)
        if cov_acc is None:
            cov_acc, mom_w, mom_v = (
                CovarianceAccumulator(w.shape[1]),
                MomentAccumulator(w.shape[1]),
                MomentAccumulator(w.shape[1]),
            )
        cov_acc.update(v)
        mom_w.update(w)
        mom_v.update(v)
    bar.close()
    if cov_acc is None:
        raise ValueError("num_samples must be positive")
    gauss = {
        "skew_w": mom_w.skewness(),
        "excess_kurtosis_w": mom_w.excess_kurtosis(),
        "skew_v": mom_v.skewness(),
        "excess_kurtosis_v": mom_v.excess_kurtosis(),
    }
    return LatentGaussian.from_moments(cov_acc.mean, cov_acc.covariance(), cov_acc.n, seed, gauss)


def gaussianity_figure(w, path, dims=(0, 1, 2, 3), pair=(0, 1), bins: int = 60, title: str | None = None) -> None:
    """W&T Fig. 1-like PNG: marginals of a few dimensions and one pairwise scatter, W (top row)
    against V (bottom row). Each dimension is centred on its mean and W and V share its range,
    so the fold of the negative half-axis (and its removal) is visible at a glance."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    w = np.asarray(w, dtype=np.float64)
    if w.ndim != 2:
        raise ValueError(f"w must be [N, w_dim], got shape {w.shape}")
    rows = {"W": w, "V": to_v(w)}
    centred = {name: x - x.mean(axis=0) for name, x in rows.items()}
    half = {
        d: max(np.percentile(np.abs(c[:, d]), 99.5) for c in centred.values()) * 1.05 for d in set(dims) | set(pair)
    }
    fig = Figure(figsize=(2.4 * (len(dims) + 1), 4.8))
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, len(dims) + 1, squeeze=False)
    for r, (name, c) in enumerate(centred.items()):
        for j, d in enumerate(dims):
            ax = axes[r, j]
            ax.hist(c[:, d], bins=bins, range=(-half[d], half[d]), color="C0" if r == 0 else "C1")
            ax.set_title(f"{name} dim {d}", fontsize=9)
            ax.set_yticks([])
        ax = axes[r, -1]
        a, b = pair
        ax.scatter(c[:, a], c[:, b], s=1, alpha=0.3, color="C0" if r == 0 else "C1", rasterized=True)
        ax.set_xlim(-half[a], half[a])
        ax.set_ylim(-half[b], half[b])
        ax.set_title(f"{name} dims {a} vs {b}", fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
