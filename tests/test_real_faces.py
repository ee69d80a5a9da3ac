"""Real faces into HDF5: conversion, skipping bad files, folder and zip sources."""

import logging
import zipfile

import h5py
import numpy as np
import pytest
from conftest import shared_path
from PIL import Image

from pipeline_lib.dataset.real_faces import prepare_real_faces


@pytest.fixture(scope="module")
def faces():
    folder = shared_path("assets", "faces256")
    return sorted(folder.glob("*.png"))[:4]


def make_messy_folder(folder, faces):
    folder.mkdir()
    for i, path in enumerate(faces[:2]):
        (folder / f"{i:02d}.png").write_bytes(path.read_bytes())
    big = Image.open(faces[2]).resize((1024, 1024), Image.BICUBIC)
    big.save(folder / "10_big.jpg", quality=95)
    Image.open(faces[3]).convert("L").save(folder / "11_grey.png")
    truncated = (folder / "00.png").read_bytes()
    (folder / "20_truncated.png").write_bytes(truncated[: len(truncated) // 2])
    Image.new("RGB", (256, 200)).save(folder / "21_not_square.png")
    (folder / "22_text.jpg").write_text("not an image")
    sub = folder / "sub"
    sub.mkdir()
    (sub / "30.png").write_bytes(faces[0].read_bytes())


def test_a_messy_folder_is_converted_or_skipped_file_by_file(faces, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    src = tmp_path / "ffhq"
    make_messy_folder(src, faces)
    out = tmp_path / "ffhq256.h5"
    counts = prepare_real_faces(src, out, progress=False)
    assert counts == {"written": 5, "converted": 1, "skipped": 3}
    with h5py.File(out, "r") as f:
        names = [n.decode() for n in f["names"][()]]
        assert names == ["00.png", "01.png", "10_big.jpg", "11_grey.png", "sub/30.png"]
        images = f["images"][()]
        assert images.shape == (5, 256, 256, 3) and images.dtype == np.uint8 and f["images"].chunks == (1, 256, 256, 3)
        assert f.attrs["resize_filter"] == "PIL.Image.LANCZOS"
    assert np.array_equal(images[0], np.asarray(Image.open(faces[0]).convert("RGB")))  # 256 passes unchanged
    original = np.asarray(Image.open(faces[2]).convert("RGB")).astype(float)
    mse = ((images[2].astype(float) - original) ** 2).mean()
    assert 10 * np.log10(255**2 / mse) > 28  # 1024 -> 256 Lanczos recovers the face
    assert (images[3][..., 0] == images[3][..., 1]).all()  # grey-scale became grey RGB
    log = caplog.text
    for bad in ("20_truncated.png", "21_not_square.png", "22_text.jpg"):
        assert f"skipped {bad}" in log
    assert "odd size 256x200" in log and "converted L to RGB" in log


def test_a_dataset_zip_works_like_a_folder(faces, tmp_path):
    archive = tmp_path / "ffhq.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for i, path in enumerate(faces):
            z.write(path, f"00000/img{i:08d}.png")
        z.writestr("dataset.json", '{"labels": null}')
    out = tmp_path / "ffhq256.h5"
    assert prepare_real_faces(archive, out, progress=False)["written"] == 4


def test_nothing_usable_writes_nothing(tmp_path):
    src = tmp_path / "empty"
    src.mkdir()
    (src / "a.png").write_text("nope")
    with pytest.raises(ValueError, match="none of 1 images could be used"):
        prepare_real_faces(src, tmp_path / "out.h5", progress=False)
    assert not (tmp_path / "out.h5").exists()
    with pytest.raises(FileNotFoundError, match="set `ffhq.source`"):
        prepare_real_faces(tmp_path / "missing", tmp_path / "out.h5", progress=False)
