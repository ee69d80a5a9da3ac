"""Face size (Sec. 4.2.2): hand-made landmarks, and 3DDFA_V2 on real faces."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import shared_path
from PIL import Image

from pipeline_lib.evaluation.face_size import (
    PAPER_FACE_SIZE,
    face_size_figure,
    face_size_summary,
    face_sizes,
    write_face_size,
)


def landmarks_with_temples(points_1, points_17, depth=0.0):
    lm = np.full((len(points_1), 68, 3), 128.0)
    lm[:, 0, :2], lm[:, 16, :2] = points_1, points_17
    lm[:, 16, 2] = depth
    return lm


def test_face_size_is_the_xy_distance_between_landmarks_1_and_17():
    lm = landmarks_with_temples([[50, 100], [60, 100]], [[190, 100], [60 + 90, 100 + 120]], depth=40.0)
    np.testing.assert_allclose(face_sizes(lm), [140.0, 150.0])  # 3-4-5 triangle x 30; depth ignored
    np.testing.assert_allclose(face_sizes(torch.from_numpy(lm[..., :2])), [140.0, 150.0])
    with pytest.raises(ValueError):
        face_sizes(lm[:, :51])


def test_summary_by_hand_and_table3_comparison():
    lm = landmarks_with_temples([[0, 0]] * 3, [[100, 0], [140, 0], [180, 0]])
    lm[1, 5] = np.nan  # another point: ignored
    s = face_size_summary(lm, dataset="hand", detector="none")
    assert s["mean"] == pytest.approx(140.0) and s["std"] == pytest.approx(np.std([100, 140, 180]))
    assert s["n"] == 3 and s["n_dropped"] == 0 and s["paper"] == PAPER_FACE_SIZE == 141.68
    assert s["difference_from_paper"] == pytest.approx(140.0 - 141.68)
    rows = {r["config"]: r for r in s["table3"]}
    # Appendix Table 1: config.5 (conv6-conv11) tops at 59 px, config.4 (conv3-conv6) at 187 px.
    assert rows["config.5"]["largest_field"] == 59 and rows["config.5"]["largest_below_face"]
    assert rows["config.4"]["largest_field"] == 187 and not rows["config.4"]["largest_below_face"]
    assert rows["config.3"]["smallest_field"] == 251 and rows["config.3"]["smallest_above_face"]
    assert [r["config"] for r in s["table3"] if r["largest_below_face"]] == ["config.5"]
    assert sum(s["histogram"]["counts"]) == 3
    nan_temple = landmarks_with_temples([[0, 0], [np.nan, 0]], [[120, 0], [120, 0]])
    s = face_size_summary(nan_temple, configs={"mine": ("conv7", "conv9")})
    assert s["n"] == 1 and s["n_dropped"] == 1 and s["table3"][0]["largest_field"] == 43


def test_write_face_size_json_and_figure(tmp_path):
    lm = landmarks_with_temples([[0, 0]] * 50, np.stack([np.linspace(120, 160, 50), np.zeros(50)], 1))
    s = face_size_summary(lm)
    write_face_size(s, tmp_path / "analysis" / "face_size.json", tmp_path / "analysis" / "face_size.png")
    assert json.loads((tmp_path / "analysis" / "face_size.json").read_text())["mean"] == pytest.approx(140.0)
    assert (tmp_path / "analysis" / "face_size.png").read_bytes()[:4] == b"\x89PNG"
    assert face_size_figure(s).axes[0].get_xlabel().startswith("face size")


def test_face_size_of_real_faces_with_3ddfa_v2(capsys):
    from pipeline_lib.encoders.tddfa import TDDFA

    weights = shared_path("assets", "3ddfa_v2")
    encoder = TDDFA.from_files(
        weights / "mb05_120x120.pth", weights / "param_mean_std_62d_120x120.pkl", weights / "bfm_68_landmarks.npz"
    )
    files = sorted(shared_path("assets", "faces256").glob("*.png"))
    faces = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
    x = torch.from_numpy(faces).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        landmarks = torch.cat([encoder.landmarks(x[i : i + 16]) for i in range(0, len(x), 16)])
    s = face_size_summary(landmarks, dataset="shared faces256", detector="3DDFA_V2")
    with capsys.disabled():
        print(f"\nface size, 3DDFA_V2 on {s['n']} real faces: {s['mean']:.2f} ± {s['std']:.2f} px (paper 141.68)")
    # FFHQ-aligned 256 px faces: the temples are roughly 0.5-0.6 of the image width apart.
    assert s["n"] == len(files) >= 50 and s["n_dropped"] == 0
    assert 110 < s["mean"] < 175 and 0 < s["std"] < 40
