"""Rule `annotate_dataset`: landmarks, pose, identity embeddings and attribute features of every
dataset face, with every configured encoder, once."""

from __future__ import annotations

import json

from pipeline_lib.dataset.annotation import annotate_faces
from pipeline_lib.devices import resolve_device
from pipeline_lib.encoders import build_encoder
from pipeline_lib.encoders.inference import EncoderRunner
from pipeline_lib.provenance import file_sha256, write_job_provenance
from pipeline_lib.settings import AnnotationSettings, EncoderSettings


def run(faces, out_path, encoders: dict, files: dict, annotation: dict, device: str) -> dict:
    enc = EncoderSettings.parse(encoders)
    settings = AnnotationSettings.parse(annotation)
    settings.validate()
    torch_device = resolve_device(device)
    fast = torch_device.type == "cuda"  # CPUs run the float32 reference path

    def runner(kind: str) -> EncoderRunner:
        precision = settings.precision_on(kind, torch_device.type)
        return EncoderRunner(build_encoder(kind, files, torch_device), precision, fast, fast and settings.compile)

    kinds = dict.fromkeys([enc.landmarks_train, enc.landmarks_eval])
    landmark_encoders = {kind: runner(kind) for kind in kinds}
    attrs = {
        "landmarks_train": enc.landmarks_train,
        "landmarks_eval": enc.landmarks_eval,
        "identity_encoder": enc.identity,
        "attribute_encoder": enc.attribute,
        "weights_sha256": json.dumps({name: file_sha256(path) for name, path in sorted(files.items())}),
    }
    summary = annotate_faces(
        faces,
        out_path,
        landmark_encoders,
        runner(enc.identity),
        runner(enc.attribute),
        settings.batch_size,
        torch_device,
        attrs,
    )
    write_job_provenance(out_path, {"encoders": encoders, "annotation": annotation}, {"faces": faces, **files})
    return summary
