"""Rule `face_size` (paper Sec. 4.2.2): the temple-to-temple distance of the dataset's faces with
the training detector, beside the paper's 141.68 px and the generative fields of Table 3."""

from __future__ import annotations

import csv
import logging

from pipeline_lib.dataset.store import read_annotations, read_faces
from pipeline_lib.evaluation.face_size import face_size_summary, write_face_size
from pipeline_lib.generative_fields import field_of_row
from pipeline_lib.provenance import write_job_provenance
from pipeline_lib.settings import EncoderSettings

log = logging.getLogger(__name__)


def run(faces, annotations, field_table, out_json, out_figure, encoders: dict, configs: dict) -> dict:
    detector = EncoderSettings.parse(encoders).landmarks_train
    notes = read_annotations(annotations, read_faces(faces), names=(), detectors=[detector])
    with open(field_table, newline="") as fh:
        fields = {row["layer"]: field_of_row(row) for row in csv.DictReader(fh)}  # either family
    summary = face_size_summary(
        notes[f"landmarks/{detector}"].numpy(), dataset="synthetic (faces.h5)", detector=detector,
        fields=fields, configs=configs,
    )  # fmt: skip
    write_face_size(summary, out_json, out_figure)
    params = {"encoders": encoders, "configs": configs}
    write_job_provenance(out_json, params, {"faces": faces, "annotations": annotations, "field_table": field_table})
    log.info("face size %.2f ± %.2f px (paper 141.68 px) with %s", summary["mean"], summary["std"], detector)
    return summary
