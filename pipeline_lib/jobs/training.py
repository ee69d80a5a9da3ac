"""Rule `train_mref`: train M_ref for one variant (resuming from its newest checkpoint), in this
process or under torchrun with one process per GPU."""

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
    if Path(out_path).exists():  # not when stopped early (tests)
        meta = load_mapper(out_path)[1]
        inputs = {"faces": faces, "annotations": annotations, "style_stats": stats, "generator": generator, **files}
        params = {"training": training, "variant": variant, "encoders": encoders}
        write_job_provenance(out_path, params, inputs, {"fingerprint": meta["fingerprint"]})
    return path
