"""Rule `annotate_dataset`: landmarks, pose, identity embeddings and attribute features of every
dataset face, with every configured encoder, once."""

from __future__ import annotations

import json

from pipeline_lib.dataset.annotation import annotate_faces
from pipeline_lib.devices import resolve_device
from pipeline_lib.encoders import build_encoder
from pipeline_lib.provenance import file_sha256, write_job_provenance
from pipeline_lib.settings import EncoderSettings


def run(faces, out_path, encoders: dict, files: dict, batch_size: int, device: str) -> dict:
    enc = EncoderSettings.parse(encoders)
    torch_device = resolve_device(device)
    kinds = dict.fromkeys([enc.landmarks_train, enc.landmarks_eval])
    landmark_encoders = {kind: build_encoder(kind, files, torch_device) for kind in kinds}
    identity = build_encoder(enc.identity, files, torch_device)
    attribute = build_encoder(enc.attribute, files, torch_device)
    attrs = {
        "landmarks_train": enc.landmarks_train,
        "landmarks_eval": enc.landmarks_eval,
        "identity_encoder": enc.identity,
        "attribute_encoder": enc.attribute,
        "weights_sha256": json.dumps({name: file_sha256(path) for name, path in sorted(files.items())}),
    }
    summary = annotate_faces(faces, out_path, landmark_encoders, identity, attribute, batch_size, torch_device, attrs)
    write_job_provenance(out_path, {"encoders": encoders, "batch_size": batch_size}, {"faces": faces, **files})
    return summary
