"""Rules `synthesize_shard`, `merge_dataset` and `style_statistics`: the synthetic face dataset
(paper Sec. 4) and the statistics of its styles."""

from __future__ import annotations

import logging

from pipeline_lib.dataset.statistics import compute_style_stats
from pipeline_lib.dataset.synthesis import (
    SynthesisSettings,
    check_sizes,
    dataset_id,
    merge_shards,
    shard_ranges,
    write_shard,
)
from pipeline_lib.devices import resolve_device
from pipeline_lib.generator import load_generator
from pipeline_lib.provenance import file_sha256, write_job_provenance
from pipeline_lib.settings import DatasetSamplingSettings, DatasetSettings

log = logging.getLogger(__name__)


def shard_indices(dataset: dict) -> list[int]:
    """The shards of the configured dataset (the rules expand over them); sizes checked first."""
    ds = DatasetSettings.parse(dataset)
    check_sizes(ds.num_faces, ds.faces_per_shard, ds.batch_size, ds.chunk_size)
    return list(range(len(shard_ranges(ds.num_faces, ds.faces_per_shard))))


def synthesize_shard(generator, out_path, shard: int, dataset: dict, device: str, gaussian=None) -> dict:
    ds = DatasetSettings.parse(dataset)
    check_sizes(ds.num_faces, ds.faces_per_shard, ds.batch_size, ds.chunk_size)
    ranges = shard_ranges(ds.num_faces, ds.faces_per_shard)
    if not 0 <= shard < len(ranges):
        raise ValueError(f"shard {shard} does not exist: the dataset has {len(ranges)} shards")
    start, stop = ranges[shard]
    torch_device = resolve_device(device)
    G = load_generator(generator, device=torch_device)
    log.info("shard %d: faces %d-%d of %d on %s", shard, start, stop, ds.num_faces, torch_device)
    settings = SynthesisSettings.from_dataset(ds)
    sampling, w_transform = log_compression_sampling(dataset, gaussian)
    generator_sha256 = file_sha256(generator)
    timing = write_shard(
        out_path, G, generator_sha256, start, stop, ds.num_faces, settings, ds.batch_size, device=torch_device,
        sampling=sampling, w_transform=w_transform,
    )  # fmt: skip
    derived = {"dataset_id": dataset_id(generator_sha256, settings, ds.num_faces, sampling), "faces": [start, stop]}
    inputs = {"generator": generator, **({"gaussian": gaussian} if gaussian else {})}
    write_job_provenance(out_path, {"dataset": dataset, "shard": shard}, inputs, derived)
    return timing


def log_compression_sampling(dataset: dict, gaussian) -> tuple[dict | None, object]:
    """(the sampling record, the w transform) of `dataset.sampling: log_compression` (issue 15),
    or (None, None) for truncation, so the default dataset's id and file stay as they were."""
    samp = DatasetSamplingSettings.parse(dataset)
    samp.validate(DatasetSettings.parse(dataset).truncation_psi)
    if samp.sampling == "truncation":
        return None, None
    if gaussian is None:
        raise ValueError("dataset.sampling log_compression needs the latent Gaussian (results/latent/gaussian.h5)")
    from pipeline_lib.latent.compression import compress_w
    from pipeline_lib.latent.gaussian import LatentGaussian

    model = LatentGaussian.load(gaussian)
    record = {"method": "log_compression", "tau": samp.compression_tau, "scale": 1.0,
              "gaussian_sha256": file_sha256(gaussian)}  # fmt: skip
    return record, lambda w: compress_w(w, model, samp.compression_tau)


def merge(shards, out_path, dataset: dict) -> None:
    ds = DatasetSettings.parse(dataset)
    summary = merge_shards(shards, out_path, ds.num_identity, ds.num_attribute)
    write_job_provenance(out_path, {"dataset": dataset}, {"shards": list(shards)})
    log.info("wrote %s: %d faces from %d shards", out_path, summary["faces"], summary["shards"])


def statistics(faces, out_path) -> None:
    summary = compute_style_stats(faces, out_path)
    write_job_provenance(out_path, {}, {"faces": faces})
    log.info("wrote %s from %d faces", out_path, summary["faces"])
