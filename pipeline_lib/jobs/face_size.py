"""Rule `face_size` (paper Sec. 4.2.2): the temple-to-temple distance of the dataset's faces with
the training detector, beside the paper's 141.68 px and the generative fields of Table 3."""

from __future__ import annotations

import csv
import logging

import numpy as np
import torch
from tqdm import tqdm

from pipeline_lib.atomic import write_json_atomic
from pipeline_lib.dataset.store import read_annotations, read_faces
from pipeline_lib.devices import resolve_device
from pipeline_lib.encoders import build_encoder
from pipeline_lib.evaluation.face_size import face_size_figure, face_size_summary
from pipeline_lib.files import open_h5
from pipeline_lib.generative_fields import field_of_row
from pipeline_lib.images import from_uint8_hwc
from pipeline_lib.provenance import write_job_provenance
from pipeline_lib.reporting.style import save_figure
from pipeline_lib.settings import EncoderSettings

log = logging.getLogger(__name__)


@torch.no_grad()
def real_face_landmarks(real_faces, detector, batch_size: int, device) -> np.ndarray:
    """Landmarks [N, 68, 3] of every face of ffhq256.h5 with `detector` (an encoder)."""
    out = []
    with open_h5(real_faces, "the real faces", "prepare_ffhq") as f:
        images = f["images"]
        for a in tqdm(range(0, len(images), batch_size), desc="real-face landmarks", unit="batch"):
            batch = from_uint8_hwc(torch.from_numpy(images[a : a + batch_size]).to(device))
            out.append(detector.landmarks_and_pose(batch)[0].float().cpu().numpy())
    return np.concatenate(out)


def run(faces, annotations, field_table, out_json, out_figure, encoders: dict, configs: dict, real_faces=None,
        files: dict | None = None, batch_size: int = 64, device: str = "auto") -> dict:  # fmt: skip
    """The synthetic faces from their annotations; the real faces (when `ffhq.source` is set)
    through the same detector. The figure shows the synthetic faces' histogram; the JSON holds
    one summary per set (the real set's under "real (FFHQ)")."""
    detector = EncoderSettings.parse(encoders).landmarks_train
    notes = read_annotations(annotations, read_faces(faces), names=(), detectors=[detector])
    with open(field_table, newline="") as fh:
        fields = {row["layer"]: field_of_row(row) for row in csv.DictReader(fh)}  # either family
    summary = face_size_summary(
        notes[f"landmarks/{detector}"].numpy(), dataset="synthetic (faces.h5)", detector=detector,
        fields=fields, configs=configs,
    )  # fmt: skip
    record, inputs = summary, {"faces": faces, "annotations": annotations, "field_table": field_table}
    if real_faces is not None:
        torch_device = resolve_device(device)
        encoder = build_encoder(detector, files or {}, torch_device)
        real = face_size_summary(
            real_face_landmarks(real_faces, encoder, batch_size, torch_device), dataset="real (FFHQ)",
            detector=detector, fields=fields, configs=configs,
        )  # fmt: skip
        record = {"synthetic (faces.h5)": summary, "real (FFHQ)": real}
        inputs.update({"real_faces": real_faces, **(files or {})})
        log.info("real faces: %.2f ± %.2f px", real["mean"], real["std"])
    write_json_atomic(out_json, record)
    save_figure(face_size_figure(summary), out_figure, dpi=110)  # the synthetic faces' histogram
    params = {"encoders": encoders, "configs": configs, "batch_size": batch_size}
    write_job_provenance(out_json, params, inputs)
    log.info("face size %.2f ± %.2f px (paper 141.68 px) with %s", summary["mean"], summary["std"], detector)
    return record
