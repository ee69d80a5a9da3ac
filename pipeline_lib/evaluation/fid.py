"""FID and KID from Inception features computed once per image set.

Every `evaluate_variant` and `ablation` job compares its edited faces with the same real faces
(all of FFHQ256: 70,000 images); their Inception features are a cached target of their own
(`<results>/fid/real_features.h5`, rule `real_features`), so each job only runs Inception on its
own edits. The same file holds the real side's FID statistics (mean and covariance: a 2048 x
2048 covariance of 70,000 rows, which each job would otherwise recompute; `statistics_b` of
`fid_kid`). The arithmetic is torch-fidelity's (its TF-compatible Inception, `fid_statistics_to_
metric`, `kid_features_to_metric`), so the numbers equal `metrics.compute_fid` on the same
images (tests/test_fid_cache.py checks this within 1e-3 relative).

The cached file records the fingerprint of the image file it was computed from, and the reader
refuses features of another file, so a changed real-face set can never be paired with stale
features.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import h5py
import numpy as np
import torch

from pipeline_lib.atomic import atomic_path
from pipeline_lib.dataset.annotation import BatchReader
from pipeline_lib.evaluation.metrics import (
    FID_FEATURE_DIM,
    FID_FEATURE_EXTRACTOR,
    FID_RESIZE,
    KID_SUBSET_SIZE,
    KID_SUBSETS,
    _check_images,
)
from pipeline_lib.files import open_h5
from pipeline_lib.provenance import file_fingerprint

log = logging.getLogger(__name__)

FORMAT = "genfields-inception-features/1"


def inception_features(images, weights_path, device="cpu", batch_size: int = 64) -> np.ndarray:
    """[N, 2048] float64 pool features of uint8 [N, H, W, 3] images: a torch tensor (host or
    device), a numpy array or an h5py dataset.

    torch-fidelity's extractor in float32, fed exactly what its own loader feeds it (contiguous
    uint8 NCHW batches of `batch_size`, in order), so the features are torch-fidelity's
    (tests/test_fid_cache.py). Only the feeding is ours: its loader reads one image per item in
    the main thread; here an h5py dataset is read in whole batches by a thread into pinned
    buffers (annotation's `BatchReader`) and a tensor is sliced, so that large batches keep the
    device busy."""
    from torch_fidelity import utils

    weights = Path(weights_path)
    if not weights.is_file():
        raise FileNotFoundError(f"FID Inception weights not found: {weights} (registry entry 'fid_inception')")
    if isinstance(images, torch.Tensor):
        _check_images(images[:2].cpu(), "images")  # shape and dtype, without copying them all
        if len(images) < 2:
            raise ValueError(f"compute_fid: images has {len(images)} image(s); a covariance needs at least 2")
    else:
        images = _check_images(images, "images")
    device = torch.device(device)
    cuda = device.type == "cuda"
    with torch.cuda.device(device) if cuda else contextlib.nullcontext():
        extractor = utils.create_feature_extractor(
            FID_FEATURE_EXTRACTOR, [str(FID_FEATURE_DIM)], cuda=cuda, feature_extractor_weights_path=str(weights),
            verbose=False,
        )  # fmt: skip
        features = []
        with torch.no_grad():
            for batch in _nchw_batches(images, batch_size, device):
                out = extractor.convert_features_tuple_to_dict(extractor(batch))
                features.append(out[str(FID_FEATURE_DIM)])
    return torch.cat(features).double().cpu().numpy()


def _nchw_batches(images, batch_size: int, device: torch.device):
    """Contiguous uint8 [B, 3, H, W] batches on `device`, in order."""
    if isinstance(images, h5py.Dataset):
        reader = BatchReader(images, batch_size, pad=False, pin=device.type == "cuda")
        try:
            for _, count, buf in reader:
                batch = buf[:count].to(device, copy=True)  # a synchronous copy: the buffer can go back at once
                reader.release(buf)
                yield batch.permute(0, 3, 1, 2).contiguous()
        finally:
            reader.close()
        return
    images = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(images))
    for a in range(0, len(images), batch_size):
        yield images[a : a + batch_size].to(device).permute(0, 3, 1, 2).contiguous()


def feature_statistics(features) -> dict:
    """{"mu", "sigma"}: torch-fidelity's FID statistics (float64 mean and covariance) of [N, D] features."""
    from torch_fidelity import metric_fid

    return metric_fid.fid_features_to_statistics(torch.from_numpy(np.asarray(features)))


def fid_kid(
    features_a: np.ndarray,
    features_b: np.ndarray,
    kid_subset_size: int = KID_SUBSET_SIZE,
    kid_subsets: int = KID_SUBSETS,
    statistics_b: dict | None = None,
) -> dict:
    """FID and KID between two feature sets, with torch-fidelity's formulas and defaults;
    `statistics_b`: b's `feature_statistics` if already known (the cached real faces')."""
    import torch_fidelity
    from torch_fidelity import metric_fid, metric_kid

    a, b = torch.from_numpy(np.asarray(features_a)), torch.from_numpy(np.asarray(features_b))
    stats_b = feature_statistics(features_b) if statistics_b is None else statistics_b
    fid = metric_fid.fid_statistics_to_metric(feature_statistics(features_a), stats_b, False)[
        torch_fidelity.KEY_METRIC_FID
    ]
    subset = int(min(kid_subset_size, len(a), len(b)))
    kid = metric_kid.kid_features_to_metric(a, b, kid_subset_size=subset, kid_subsets=kid_subsets, verbose=False)
    return {
        "fid": float(fid),
        "kid": float(kid[torch_fidelity.KEY_METRIC_KID_MEAN]),
        "kid_std": float(kid[torch_fidelity.KEY_METRIC_KID_STD]),
        "kid_subset_size": subset,
        "kid_subsets": int(kid_subsets),
        "num_a": int(len(a)),
        "num_b": int(len(b)),
        "feature_extractor": FID_FEATURE_EXTRACTOR,
        "feature_layer": str(FID_FEATURE_DIM),
        "resize": FID_RESIZE,
        "torch_fidelity_version": torch_fidelity.__version__,
    }


def write_real_features(images_path, weights_path, out_path, device="cpu", batch_size: int = 64) -> dict:
    """`real_features.h5`: the Inception features of every attribute face of `images_path` (all
    of ffhq256.h5, or the demo's attribute split of faces.h5), with the source's fingerprint."""
    from pipeline_lib.editing import AttributeFaces  # the same selection of faces as the evaluation

    faces = AttributeFaces(images_path)
    with open_h5(images_path, "the attribute faces") as f:
        features = inception_features(faces.all_images(f), weights_path, device, batch_size)
    source = file_fingerprint(images_path)
    statistics = feature_statistics(features.astype(np.float64))
    with atomic_path(out_path) as tmp, h5py.File(tmp, "w") as out:
        out.create_dataset("features", data=features.astype(np.float64))
        for name, value in statistics.items():  # "mu", "sigma"
            out.create_dataset(name, data=value)
        out.attrs.update(
            {
                "format": FORMAT,
                "source_path": source["path"],
                "source_size": source["size"],
                "source_sha256": source["sha256"],
                "feature_extractor": FID_FEATURE_EXTRACTOR,
                "weights_file": Path(weights_path).name,
                "attribute_source": faces.source,
            }
        )
    log.info("Inception features of %d faces of %s -> %s", len(features), images_path, out_path)
    return {"faces": len(features)}


def read_real(path, images_path) -> tuple[np.ndarray, dict]:
    """(features, their FID statistics) from the cached file, after checking it was computed from
    `images_path` as it is now. A file written before the statistics were cached with the
    features gets them computed here."""
    source = file_fingerprint(images_path)
    with open_h5(path, "the cached Inception features of the real faces", "real_features") as f:
        if f.attrs.get("format") != FORMAT:
            raise ValueError(f"{path}: not a genfields features file (format {f.attrs.get('format')!r})")
        stored = (int(f.attrs["source_size"]), str(f.attrs["source_sha256"]))
        if stored != (source["size"], source["sha256"]):
            raise ValueError(
                f"{path} holds the features of another version of {images_path}; rerun the real_features rule "
                "(snakemake --forcerun real_features)"
            )
        features = f["features"][()]
        if "mu" in f and "sigma" in f:
            return features, {"mu": f["mu"][()], "sigma": f["sigma"][()]}
    return features, feature_statistics(features)
