"""Edit-evaluation metrics of He, Henderson & Pugeault (2025), Table 1.

An edit takes the identity from one face (the identity image) and the expression and pose from
another (the attribute image). The paper scores the edited image with:

- identity: cosine similarity between the ArcFace embeddings of the identity image and the edited
  image (higher is better; the paper's final model scores 0.82);
- expression: Euclidean distance between the landmarks of the attribute image and the edited
  image, normalised by the image resolution (lower is better; 0.017). The paper does not say 2D
  or 3D; it normalises "for the consistency of comparison with previous methods" (LORD, FSGAN,
  IDDISEN), whose landmarks are 2D, so we use (x, y) only (our reading);
- pose: mean squared error of the Euler angles (yaw, pitch, roll, degrees) of the attribute image
  and the edited image (lower is better; 1.67);
- FID between the edited images and real faces, with torch-fidelity's TensorFlow-compatible
  Inception; beside it KID (ours: the paper reports FID only), which is unbiased, because FID
  from 1,000 edits is biased upwards and a reader must be able to judge the comparison.

The per-pair functions return one value per pair, so that reports can give standard errors, not
just means. Their reductions are fixed here (see each function) because the paper gives the
definitions in words only.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import torch

from pipeline_lib.encoders.base import INNER_LANDMARKS  # the 51 inner points (18-68): expression, not outline

log = logging.getLogger(__name__)

NUM_LANDMARKS = 68

FID_FEATURE_EXTRACTOR = "inception-v3-compat"
FID_FEATURE_DIM = 2048
# KID (Binkowski et al. 2018), torch-fidelity's defaults: 100 subsets of 1000 samples, each
# capped at the smaller set's size (KID needs subsets no larger than the sets).
KID_SUBSET_SIZE = 1000
KID_SUBSETS = 100
FID_INPUT_SIZE = 299
# What torch-fidelity 0.4.0's FeatureExtractorInceptionV3.forward does to the uint8 images (read
# from its source; tests/test_edit_metrics.py re-derives the sampling numerically).
FID_RESIZE = (
    "uint8 pixels cast to float32, resized to 299x299 with torch-fidelity's "
    "interpolate_bilinear_2d_like_tensorflow1x(align_corners=False, method='slow'): TensorFlow 1.x "
    "tf.image.resize_bilinear semantics, i.e. output pixel i samples input coordinate i * (in_size / 299) "
    "(no half-pixel offset), linear between floor and floor + 1 (clamped at the last row/column), no "
    "antialiasing; then scaled to (x - 128) / 128"
)


def _as_float64(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _paired(a, b, name: str) -> tuple[np.ndarray, np.ndarray]:
    a, b = _as_float64(a), _as_float64(b)
    if a.shape != b.shape:
        raise ValueError(f"{name}: the two sides must pair up one to one, got shapes {a.shape} and {b.shape}")
    return a, b


def identity_similarity(emb_a, emb_b) -> np.ndarray:
    """[N, D] x [N, D] -> [N] cosine similarities (paper: identity, identity image vs edit).

    A zero embedding has no direction, so its similarity is nan rather than a made-up number.
    """
    a, b = _paired(emb_a, emb_b, "identity_similarity")
    if a.ndim != 2:
        raise ValueError(f"identity_similarity: expected [N, D] embeddings, got {a.shape}")
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    dots = np.einsum("nd,nd->n", a, b)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norms > 0, dots / np.where(norms > 0, norms, 1.0), np.nan)


def expression_distance(landmarks_a, landmarks_b, resolution) -> np.ndarray:
    """[N, 68, 2|3] x [N, 68, 2|3] -> [N] (paper: expression, attribute image vs edit).

    Per pair: mean over the 51 INNER_LANDMARKS of the point-to-point Euclidean distance in (x, y)
    pixels, divided by `resolution` (the image side), so that scores compare across resolutions.
    Depth is ignored (our reading of Sec. 4.1: the landmarks are normalised for comparison with
    the 2D-landmark metrics of LORD, FSGAN and IDDISEN; the loss, Eq. 8, uses 3D points).
    """
    a, b = _paired(landmarks_a, landmarks_b, "expression_distance")
    if a.ndim != 3 or a.shape[1] != NUM_LANDMARKS or a.shape[2] < 2:
        raise ValueError(f"expression_distance: expected [N, 68, 2 or 3] landmarks, got {a.shape}")
    if not resolution > 0:
        raise ValueError(f"expression_distance: resolution must be positive, got {resolution}")
    diff = a[:, INNER_LANDMARKS, :2] - b[:, INNER_LANDMARKS, :2]
    return np.linalg.norm(diff, axis=2).mean(axis=1) / float(resolution)


def pose_error(pose_a, pose_b) -> np.ndarray:
    """[N, 3] x [N, 3] (yaw, pitch, roll, degrees) -> [N] (paper: pose, attribute image vs edit).

    Per pair: mean over the three angles of the squared difference, in squared degrees.
    """
    a, b = _paired(pose_a, pose_b, "pose_error")
    if a.ndim != 2 or a.shape[1] != 3:
        raise ValueError(f"pose_error: expected [N, 3] Euler angles, got {a.shape}")
    return ((a - b) ** 2).mean(axis=1)


def mean_and_standard_error(values) -> tuple[float, float]:
    """Mean and standard error of the mean, std(ddof=1) / sqrt(n); nan where undefined (n < 2)."""
    v = _as_float64(values).ravel()
    n = v.size
    mean = float(v.mean()) if n else math.nan
    sem = float(v.std(ddof=1) / math.sqrt(n)) if n >= 2 else math.nan
    return mean, sem


def summarise(per_pair: dict) -> dict:
    """{name: per-pair values} -> {name: {"mean", "sem", "n"}} as plain Python numbers for JSON.

    Non-finite results (an empty set, a single pair's sem) become None, which JSON can hold; a
    bare NaN would make the file invalid JSON for strict readers.
    """
    out = {}
    for name, values in per_pair.items():
        mean, sem = mean_and_standard_error(values)
        out[name] = {
            "mean": mean if math.isfinite(mean) else None,
            "sem": sem if math.isfinite(sem) else None,
            "n": int(_as_float64(values).size),
        }
    return out


class _UInt8ImagesCHW(torch.utils.data.Dataset):
    """[N, H, W, 3] uint8 array or h5py dataset -> one uint8 [3, H, W] tensor per index.

    torch-fidelity's loader asks for single items in order; reading a whole block on a miss turns
    that into one slice read per batch, so an h5py dataset is never loaded whole.
    """

    def __init__(self, images, block: int):
        self.images = images
        self.block = max(1, int(block))
        self._start, self._data = 0, None

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> torch.Tensor:
        if self._data is None or not self._start <= index < self._start + len(self._data):
            self._start = index
            self._data = np.asarray(self.images[index : min(index + self.block, len(self))])
        return torch.from_numpy(np.ascontiguousarray(self._data[index - self._start].transpose(2, 0, 1)))


def _check_images(images, name: str):
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().numpy()
    shape, dtype = tuple(getattr(images, "shape", ())), getattr(images, "dtype", None)
    if len(shape) != 4 or shape[3] != 3 or dtype != np.uint8:
        raise ValueError(f"compute_fid: {name} must be uint8 [N, H, W, 3] (RGB), got {dtype} {shape}")
    if shape[0] < 2:
        raise ValueError(f"compute_fid: {name} has {shape[0]} image(s); a covariance needs at least 2")
    return images


def compute_fid(
    images_a,
    images_b,
    inception_weights_path,
    device="cpu",
    batch_size: int = 64,
    kid_subset_size: int = KID_SUBSET_SIZE,
    kid_subsets: int = KID_SUBSETS,
) -> dict:
    """FID and KID between two image sets with torch-fidelity's TF-compatible Inception, never the network.

    Returns {"fid", "kid", "kid_std", "kid_subset_size", "kid_subsets", "num_a", "num_b", ...}:
    both metrics from the same Inception features, with the sample counts, so that a reader can
    judge a comparison with the paper's FID (biased upwards with few samples; KID is unbiased).
    KID is the mean over `kid_subsets` random subsets of min(kid_subset_size, num_a, num_b)
    samples, and kid_std the standard deviation over the subsets.

    The weights file is always passed explicitly: with none, torch-fidelity would download it.
    Sets smaller than the 2048 feature dimensions give singular covariances; torch-fidelity still
    returns a number (the demo relies on it), so the counts are recorded and a warning logged.
    """
    import torch_fidelity

    weights = Path(inception_weights_path)
    if not weights.is_file():
        raise FileNotFoundError(
            f"FID Inception weights not found: {weights} (torch-fidelity's "
            "weights-inception-2015-12-05-6726825d.pth, registry entry 'fid_inception'); refusing to let "
            "torch-fidelity download it"
        )
    images_a, images_b = _check_images(images_a, "images_a"), _check_images(images_b, "images_b")
    size_a, size_b = list(images_a.shape[1:3]), list(images_b.shape[1:3])
    if size_a != size_b:
        raise ValueError(f"compute_fid: image sizes differ, {size_a} vs {size_b}; resize to one size first")
    num_a, num_b = int(images_a.shape[0]), int(images_b.shape[0])
    for name, num in (("images_a", num_a), ("images_b", num_b)):
        if num < FID_FEATURE_DIM:
            log.warning(
                "FID: %s has %d images, fewer than the %d Inception feature dimensions: its covariance is "
                "singular and the FID is biased (fine for the demo, not comparable with the paper)",
                name,
                num,
                FID_FEATURE_DIM,
            )
    device = torch.device(device)
    cuda = device.type == "cuda"
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"compute_fid: torch-fidelity runs on cpu or cuda only, not {device}")
    subset_size = int(min(kid_subset_size, num_a, num_b))
    kwargs = {
        "input1": _UInt8ImagesCHW(images_a, batch_size),
        "input2": _UInt8ImagesCHW(images_b, batch_size),
        "fid": True,
        "kid": True,
        "kid_subset_size": subset_size,
        "kid_subsets": int(kid_subsets),
        "feature_extractor": FID_FEATURE_EXTRACTOR,
        "feature_extractor_weights_path": str(weights),
        "cuda": cuda,
        "batch_size": int(batch_size),
        "verbose": False,
        "cache": False,  # no feature/statistics files under ~/.cache/torch (Dataset inputs are uncached anyway)
        "datasets_download": False,
        "save_cpu_ram": True,  # num_workers=0: h5py handles must not cross a fork
    }
    if cuda:  # torch-fidelity moves everything with .cuda(), i.e. to the current device
        with torch.cuda.device(device):
            metrics = torch_fidelity.calculate_metrics(**kwargs)
    else:
        metrics = torch_fidelity.calculate_metrics(**kwargs)
    return {
        "fid": float(metrics[torch_fidelity.KEY_METRIC_FID]),
        "kid": float(metrics[torch_fidelity.KEY_METRIC_KID_MEAN]),
        "kid_std": float(metrics[torch_fidelity.KEY_METRIC_KID_STD]),
        "kid_subset_size": subset_size,
        "kid_subsets": int(kid_subsets),
        "num_a": num_a,
        "num_b": num_b,
        "feature_extractor": FID_FEATURE_EXTRACTOR,
        "feature_layer": str(FID_FEATURE_DIM),
        "resize": FID_RESIZE,
        "image_size": size_a,
        "weights_file": weights.name,
        "torch_fidelity_version": torch_fidelity.__version__,
    }
