"""Rule `train_mref`: train M_ref for one variant (resuming from its newest checkpoint), in this
process or under torchrun with one process per GPU."""

from __future__ import annotations

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
    return start_training(
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
