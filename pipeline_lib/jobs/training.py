"""Rule `train_mref`: train M_ref for one variant (resuming from its newest checkpoint), in this
process or under torchrun with one process per GPU. Rule `train_mref_together` (config
`training.together`): every variant in one process, one generator pass per step."""

from __future__ import annotations

from pathlib import Path

from pipeline_lib.mref import load_mapper
from pipeline_lib.provenance import write_job_provenance
from pipeline_lib.training.launch import start_training


def run(
    out_path,
    faces,
    annotations,
    stats,
    generator,
    files: dict,
    encoders: dict,
    training: dict,
    variant: str,
    device: str,
    stop_after: int | None = None,
):
    path = start_training(
        out_path,
        faces_path=faces,
        annotations_path=annotations,
        stats_path=stats,
        generator_path=generator,
        encoder_files=files,
        encoders_cfg=encoders,
        training_cfg=training,
        variant=variant,
        device_name=device,
        stop_after=stop_after,
    )
    _provenance(out_path, faces, annotations, stats, generator, files, encoders, training, variant)
    return path


def run_together(
    out_paths: list,
    faces,
    annotations,
    stats,
    generator,
    files: dict,
    encoders: dict,
    training: dict,
    variants: list,
    device: str,
    stop_after: int | None = None,
):
    """Every variant of `variants` in this process; `out_paths[i]` is variant i's mref.pt, with
    the same provenance as its own `run` would write."""
    paths = start_training(
        list(out_paths),
        faces_path=faces,
        annotations_path=annotations,
        stats_path=stats,
        generator_path=generator,
        encoder_files=files,
        encoders_cfg=encoders,
        training_cfg=training,
        variant=list(variants),
        device_name=device,
        stop_after=stop_after,
    )
    for out_path, variant in zip(out_paths, variants):
        _provenance(out_path, faces, annotations, stats, generator, files, encoders, training, variant)
    return paths


def _provenance(out_path, faces, annotations, stats, generator, files, encoders, training, variant) -> None:
    if Path(out_path).exists():  # not when stopped early (tests)
        meta = load_mapper(out_path)[1]
        inputs = {"faces": faces, "annotations": annotations, "style_stats": stats, "generator": generator, **files}
        params = {"training": training, "variant": variant, "encoders": encoders}
        write_job_provenance(out_path, params, inputs, {"fingerprint": meta["fingerprint"]})
