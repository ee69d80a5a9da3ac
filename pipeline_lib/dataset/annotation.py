"""Annotations of the dataset's faces, computed once so that training and evaluation reuse them:
68 landmarks and head pose from each landmark detector, identity embeddings and attribute
features, in `annotations.h5`.
"""

from __future__ import annotations

import logging
import time

import h5py
import torch
from tqdm import tqdm

from pipeline_lib.atomic import atomic_path
from pipeline_lib.dataset.store import open_faces
from pipeline_lib.encoders.base import encoder_view
from pipeline_lib.images import from_uint8_hwc

log = logging.getLogger(__name__)


@torch.no_grad()
def annotate_faces(
    faces_path,
    out_path,
    landmark_encoders: dict,
    identity_encoder,
    attribute_encoder,
    batch_size: int = 64,
    device="cpu",
    attrs: dict | None = None,
    progress: bool = True,
) -> dict:
    """Run every encoder over every face of `faces.h5` in batches and write `annotations.h5`.

    landmark_encoders: {name: LandmarkEncoder}, stored under `landmarks/<name>`, `pose/<name>`.
    Faces are fed in the encoders' 256x256 frame (`encoder_view`), so landmarks are in 256-frame
    pixels whatever the generator's resolution.
    """
    t0 = time.perf_counter()
    with open_faces(faces_path) as faces, atomic_path(out_path) as tmp, h5py.File(tmp, "w") as out:
        images = faces["images"]
        n = len(images)
        for name in landmark_encoders:
            out.create_dataset(f"landmarks/{name}", (n, 68, 3), dtype="f4")
            out.create_dataset(f"pose/{name}", (n, 3), dtype="f4")
        out.create_dataset("identity", (n, identity_encoder.dim), dtype="f4")
        out.create_dataset("attribute", (n, attribute_encoder.dim), dtype="f4")
        for a in tqdm(range(0, n, batch_size), desc="annotating faces", unit="batch", disable=not progress):
            b = min(a + batch_size, n)
            x = encoder_view(from_uint8_hwc(torch.from_numpy(images[a:b]).to(device, non_blocking=True)))
            for name, encoder in landmark_encoders.items():
                landmarks, pose = encoder.landmarks_and_pose(x)
                out[f"landmarks/{name}"][a:b] = landmarks.float().cpu().numpy()
                out[f"pose/{name}"][a:b] = pose.float().cpu().numpy()
            out["identity"][a:b] = identity_encoder.embed(x).float().cpu().numpy()
            out["attribute"][a:b] = attribute_encoder.embed(x).float().cpu().numpy()
        out.attrs.update(
            {
                "num_faces": n,
                "source_dataset_id": faces.attrs["dataset_id"],
                "pose_order": "yaw, pitch, roll (degrees)",
                **(attrs or {}),
            }
        )
    seconds = time.perf_counter() - t0
    log.info("annotated %d faces in %.1f s (%.1f faces/s) into %s", n, seconds, n / seconds, out_path)
    return {"faces": n, "seconds": seconds}
