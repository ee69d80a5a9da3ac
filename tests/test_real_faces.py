"""Real faces into HDF5: conversion, skipping bad files, folder and zip sources."""

import io
import logging
import zipfile

import h5py
import numpy as np
import pytest
from conftest import shared_path
from PIL import Image

from pipeline_lib.dataset.real_faces import SkipFace, load_face, prepare_real_faces, source_digest, source_listing


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


def encode(img, fmt="PNG", **kw):
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def test_a_16_bit_grey_png_is_scaled_not_stored_white(faces):
    grey8 = np.asarray(Image.open(faces[0]).convert("L"))
    grey16 = grey8.astype(np.uint16) * 257  # 0..255 -> 0..65535
    img16 = Image.fromarray(grey16)
    assert img16.mode == "I;16"
    face, note = load_face(encode(img16))
    assert "16-bit" in note and "scaled" in note
    assert np.array_equal(face[..., 0], grey8) and (face[..., 0] == face[..., 2]).all()


def test_32_bit_integer_and_float_images_are_scaled_or_skipped(faces):
    grey8 = np.asarray(Image.open(faces[0]).convert("L"))
    face, note = load_face(encode(Image.fromarray(grey8.astype(np.int32) * 257, "I"), "TIFF"))
    assert np.array_equal(face[..., 0], grey8) and "converted I" in note
    face, note = load_face(encode(Image.fromarray(grey8.astype(np.float32) / 255, "F"), "TIFF"))
    assert np.array_equal(face[..., 0], grey8) and "floating-point" in note
    with pytest.raises(SkipFace, match="outside 0..65535"):
        load_face(encode(Image.fromarray(np.full((256, 256), 70000, np.int32), "I"), "TIFF"))
    with pytest.raises(SkipFace, match="outside 0..1"):
        load_face(encode(Image.fromarray(np.full((256, 256), np.nan, np.float32), "F"), "TIFF"))


def test_alpha_palette_and_cmyk_images(faces):
    rgb = Image.open(faces[0]).convert("RGB")
    want = np.asarray(rgb)
    face, note = load_face(encode(rgb.convert("RGBA")))
    assert np.array_equal(face, want) and "alpha fully opaque" in note
    holed = rgb.convert("RGBA")
    holed.putpixel((0, 0), (0, 0, 0, 0))
    with pytest.raises(SkipFace, match="RGBA image with transparent pixels"):
        load_face(encode(holed))
    grey_alpha = rgb.convert("LA")
    grey_alpha.putpixel((5, 5), (10, 0))
    with pytest.raises(SkipFace, match="LA image with transparent pixels"):
        load_face(encode(grey_alpha))
    palette = rgb.convert("P")
    with pytest.raises(SkipFace, match="P image with transparent pixels"):
        load_face(encode(palette, transparency=int(np.asarray(palette)[0, 0])))
    face, note = load_face(encode(palette))
    assert face.shape == (256, 256, 3) and note == "converted P to RGB"
    face, note = load_face(encode(rgb.convert("CMYK"), "JPEG", quality=98))
    assert note == "converted CMYK to RGB" and np.abs(face.astype(int) - want).mean() < 8


def test_every_entry_is_logged_once_dangling_links_included(faces, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    src = tmp_path / "ffhq"
    src.mkdir()
    (src / "a.png").write_bytes(faces[0].read_bytes())
    Image.fromarray(np.asarray(Image.open(faces[1]).convert("L")).astype(np.uint16) * 257).save(src / "b16.png")
    (src / "c_gone.png").symlink_to(tmp_path / "nowhere.png")
    (src / "notes.txt").write_text("not a face")
    counts = prepare_real_faces(src, tmp_path / "out.h5", progress=False)
    assert counts == {"written": 2, "converted": 1, "skipped": 1}
    per_entry = [r.getMessage() for r in caplog.records if r.name.endswith("real_faces")]
    for name in ("a.png", "b16.png", "c_gone.png"):
        assert sum(name in m for m in per_entry) == 1, (name, per_entry)
    assert "skipped c_gone.png: dangling symbolic link to" in caplog.text
    assert "a.png: stored" in caplog.text
    with h5py.File(tmp_path / "out.h5", "r") as f:
        assert f["images"][1].max() < 255  # the 16-bit face is a face, not white


def test_the_source_listing_changes_when_a_file_in_a_subfolder_changes(faces, tmp_path):
    src = tmp_path / "ffhq"
    (src / "sub" / "deeper").mkdir(parents=True)
    (src / "a.png").write_bytes(faces[0].read_bytes())
    before, digest = source_listing(src), source_digest(src)
    assert before == source_listing(src) and digest == source_digest(src)  # stable
    assert [line.split("\t")[0] for line in before] == ["a.png"]
    (src / "sub" / "deeper" / "b.png").write_bytes(faces[1].read_bytes())
    after = source_listing(src)
    assert after != before and source_digest(src) != digest
    assert [line.split("\t")[0] for line in after] == ["a.png", "sub/deeper/b.png"]
    (src / "sub" / "deeper" / "b.png").write_bytes(faces[2].read_bytes()[:100])  # replaced
    assert source_listing(src) != after
    (src / "sub" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    assert any("dangling link" in line for line in source_listing(src))
    assert source_listing(tmp_path / "missing") == [f"missing: {tmp_path / 'missing'}"]
