"""Rule `prepare_ffhq`: real aligned faces into ffhq256.h5; bad files are logged and skipped."""

from __future__ import annotations

from pipeline_lib.dataset.real_faces import prepare_real_faces


def run(source, out_path) -> dict:
    return prepare_real_faces(source, out_path)
