"""Rule `prepare_ffhq`: real aligned faces into ffhq256.h5; bad files are logged and skipped."""

from __future__ import annotations

from pipeline_lib.dataset.real_faces import prepare_real_faces, source_digest
from pipeline_lib.provenance import write_job_provenance


def run(source, out_path) -> dict:
    summary = prepare_real_faces(source, out_path)
    write_job_provenance(out_path, {"source": str(source), "listing": source_digest(source)}, {})
    return summary
