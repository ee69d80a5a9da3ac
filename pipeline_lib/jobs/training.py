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
    variant,
    device: str,
    stop_after: int | None = None,
):
    """One variant (`variant` a name, `out_path` its mref.pt), or several trained together in this
    process (`variant` and `out_path` lists of the same length), each with its own provenance."""
    path = start_training(
        list(out_path) if isinstance(variant, (list, tuple)) else out_path,
        faces_path=faces,
        annotations_path=annotations,
        stats_path=stats,
        generator_path=generator,
        encoder_files=files,
        encoders_cfg=encoders,
        training_cfg=training,
        variant=list(variant) if isinstance(variant, (list, tuple)) else variant,
        device_name=device,
        stop_after=stop_after,
    )
    pairs = zip(out_path, variant) if isinstance(variant, (list, tuple)) else [(out_path, variant)]
    for one_path, one_variant in pairs:
        _provenance(one_path, faces, annotations, stats, generator, files, encoders, training, one_variant)
    return path


def _provenance(out_path, faces, annotations, stats, generator, files, encoders, training, variant) -> None:
    if Path(out_path).exists():  # not when stopped early (tests)
        meta = load_mapper(out_path)[1]
        inputs = {"faces": faces, "annotations": annotations, "style_stats": stats, "generator": generator, **files}
        params = {"training": training, "variant": variant, "encoders": encoders}
        write_job_provenance(out_path, params, inputs, {"fingerprint": meta["fingerprint"]})
