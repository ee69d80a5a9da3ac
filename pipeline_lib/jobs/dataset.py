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
from pipeline_lib.settings import DatasetSettings

log = logging.getLogger(__name__)


def shard_indices(dataset: dict) -> list[int]:
    """The shards of the configured dataset (the rules expand over them); sizes checked first."""
    ds = DatasetSettings.parse(dataset)
    check_sizes(ds.num_faces, ds.shard_size, ds.batch_size, ds.chunk_size)
    return list(range(len(shard_ranges(ds.num_faces, ds.shard_size))))


def synthesize_shard(generator, out_path, shard: int, dataset: dict, device: str) -> dict:
    ds = DatasetSettings.parse(dataset)
    check_sizes(ds.num_faces, ds.shard_size, ds.batch_size, ds.chunk_size)
    ranges = shard_ranges(ds.num_faces, ds.shard_size)
    if not 0 <= shard < len(ranges):
        raise ValueError(f"shard {shard} does not exist: the dataset has {len(ranges)} shards")
    start, stop = ranges[shard]
    torch_device = resolve_device(device)
    G = load_generator(generator, device=torch_device)
    log.info("shard %d: faces %d-%d of %d on %s", shard, start, stop, ds.num_faces, torch_device)
    settings = SynthesisSettings.from_dataset(ds)
    generator_sha256 = file_sha256(generator)
    timing = write_shard(
        out_path, G, generator_sha256, start, stop, ds.num_faces, settings, ds.batch_size, device=torch_device
    )
    derived = {"dataset_id": dataset_id(generator_sha256, settings, ds.num_faces), "faces": [start, stop]}
    write_job_provenance(out_path, {"dataset": dataset, "shard": shard}, {"generator": generator}, derived)
    return timing


def merge(shards, out_path, dataset: dict) -> None:
    ds = DatasetSettings.parse(dataset)
    summary = merge_shards(shards, out_path, ds.num_identity, ds.num_attribute)
    write_job_provenance(out_path, {"dataset": dataset}, {"shards": list(shards)})
    log.info("wrote %s: %d faces from %d shards", out_path, summary["faces"], summary["shards"])


def statistics(faces, out_path) -> None:
    summary = compute_style_stats(faces, out_path)
    write_job_provenance(out_path, {}, {"faces": faces})
    log.info("wrote %s from %d faces", out_path, summary["faces"])
