"""Regenerate docs/landmarks_overlay.png: 3DDFA_V2 landmarks and pose on real aligned faces.

The figure is how the fixed face box (pipeline_lib/encoders/tddfa.py, ALIGNED_FACE_BOX) was
checked by eye. It reads the third-party test assets in ../shared/assets (research use only,
see PROVENANCE.md there); nothing from them is copied into the repository except this picture.

    .venv/bin/python docs/make_landmark_overlay.py [--assets ../shared/assets] [--out docs/landmarks_overlay.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pipeline_lib.encoders.overlay import save_landmark_overlay
from pipeline_lib.encoders.tddfa import TDDFA, aligned_face_boxes

REPO = Path(__file__).resolve().parents[1]

# Photographs from each source, frontal and turned both ways, and one painting.
FACES = (
    "barbershop_15",
    "dps_00003",
    "dps_00015",
    "idinvert_000002",
    "idinvert_000006",
    "idinvert_000013",
    "idinvert_000017",
    "stargan_ref_female_030321",
    "stargan_ref_female_042373",
    "stargan_ref_female_058881",
    "stargan_ref_female_135626",
    "stargan_ref_male_060259",
    "stargan_ref_male_083510",
    "stargan_ref_male_164930",
    "stargan_src_female_039913",
    "stargan_src_male_005735",
)


def load_faces(folder: Path, names) -> torch.Tensor:
    """PNG files -> [N,3,H,W] RGB in [-1, 1], the library's image convention."""
    arrays = [np.asarray(Image.open(folder / f"{name}.png").convert("RGB")) for name in names]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 127.5 - 1


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", type=Path, default=REPO.parent / "shared" / "assets")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "landmarks_overlay.png")
    args = parser.parse_args(argv)

    weights = args.assets / "3ddfa_v2"
    encoder = TDDFA.from_files(
        weights / "mb05_120x120.pth", weights / "param_mean_std_62d_120x120.pkl", weights / "bfm_68_landmarks.npz"
    )
    images = load_faces(args.assets / "faces256", FACES)
    with torch.no_grad():
        landmarks, poses = encoder.landmarks_and_pose(images)
    boxes = aligned_face_boxes(len(FACES), images.shape[2], images.shape[3])
    save_landmark_overlay(args.out, images, landmarks, poses, titles=list(FACES), boxes=boxes, dpi=90)
    for name, (yaw, pitch, roll) in zip(FACES, poses.tolist()):
        print(f"{name:28s} yaw {yaw:+6.1f}  pitch {pitch:+6.1f}  roll {roll:+6.1f}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
