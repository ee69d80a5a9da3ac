"""Real aligned faces (FFHQ) into one HDF5 file, for FID and the edit evaluation.

Sources: a folder of PNG/JPG files (searched recursively, sorted by path) or a StyleGAN2-ADA
dataset zip. Every image is made 256x256 RGB uint8: grey-scale, palette, CMYK and 16-bit
images are converted (16-bit values are scaled from 0..65535 to 0..255, not clipped, which
would store a 16-bit face all white); an alpha channel is dropped only where every pixel is
opaque, since what lies under a transparent pixel is undefined; larger squares are resized
with PIL's Lanczos filter (the filter StyleGAN2-ADA's dataset tool uses by default);
unreadable, truncated, transparent, non-square or smaller files and dangling links are skipped.
Every listed file gets exactly one log line (stored, converted or skipped, with the reason),
the counts come at the end, and a bad file never stops the run.

`source_listing` / `source_digest` describe every file under the source (paths, sizes,
modification times), so that the workflow can pass them as a param and rerun this stage when
a face is added, removed or replaced anywhere under the source, subfolders included.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import zipfile
from pathlib import Path

import h5py
import numpy as np
from PIL import Image
from tqdm import tqdm

from pipeline_lib.atomic import atomic_path

log = logging.getLogger(__name__)

SIZE = 256
SUFFIXES = (".png", ".jpg", ".jpeg")
RESIZE_FILTER = "PIL.Image.LANCZOS"


class SkipFace(Exception):
    """This file cannot be a 256x256 aligned face; the message says why."""


def _source_files(source: Path) -> list[Path]:
    """Every file under a folder, dangling links included (they are listed so they can be
    reported); symbolic links to folders are not followed, as in `Path.rglob`."""
    return sorted(p for p in source.rglob("*") if p.is_file() or (p.is_symlink() and not p.exists()))


def _read_file(path: Path):
    def read():
        if path.is_symlink() and not path.exists():
            raise SkipFace(f"dangling symbolic link to {os.readlink(path)}")
        return path.read_bytes()

    return read


def list_sources(source) -> list[tuple[str, callable]]:
    """(name, read-bytes) for every image of a folder or dataset zip, in a fixed order."""
    source = Path(source)
    if source.is_dir():
        files = _source_files(source)
        images = [p for p in files if p.suffix.lower() in SUFFIXES]
        others = [str(p.relative_to(source)) for p in files if p.suffix.lower() not in SUFFIXES]
        if others:
            log.info("ignored %d files that are not PNG/JPG (e.g. %s)", len(others), ", ".join(others[:3]))
        return [(str(p.relative_to(source)), _read_file(p)) for p in images]
    if source.is_file() and zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as archive:
            names = sorted(n for n in archive.namelist() if n.lower().endswith(SUFFIXES))

        def reader(name):
            def read():
                with zipfile.ZipFile(source) as archive:
                    return archive.read(name)

            return read

        return [(name, reader(name)) for name in names]
    raise FileNotFoundError(
        f"{source}: expected a folder of FFHQ images (PNG/JPG) or a StyleGAN2-ADA dataset zip; "
        "set `ffhq.source` in config.yaml"
    )


def source_listing(source) -> list[str]:
    """One line per file under `source` ("relative/path<TAB>size<TAB>mtime_ns"), sorted.

    Meant as a Snakemake param: any file added, removed, resized or touched anywhere under the
    source changes it, so the stage reruns. A missing source gives a one-line listing instead
    of an error, so that planning other targets still works; the job itself then fails with
    the message of `list_sources`.
    """
    source = Path(source)
    if source.is_dir():
        lines = []
        for path in _source_files(source):
            name = str(path.relative_to(source))
            try:
                st = path.stat()
            except OSError:  # a dangling link: its target is part of what it is
                lines.append(f"{name}\tdangling link to {os.readlink(path)}")
                continue
            lines.append(f"{name}\t{st.st_size}\t{st.st_mtime_ns}")
        return lines
    if source.is_file():
        st = source.stat()
        return [f"{source.name}\t{st.st_size}\t{st.st_mtime_ns}"]
    return [f"missing: {source}"]


def source_digest(source) -> str:
    """A short stable digest of `source_listing` (a param that does not bloat Snakemake's
    metadata with one line per FFHQ file)."""
    listing = source_listing(source)
    return f"{len(listing)} entries, sha256 {hashlib.sha256(chr(10).join(listing).encode()).hexdigest()}"


_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")


def _high_depth_to_grey(img: Image.Image) -> tuple[Image.Image, str]:
    """A single-channel image of more than 8 bits as 8-bit grey, its values scaled (not
    clipped: PIL's convert clips 16-bit values at 255, which turns a face white)."""
    values = np.asarray(img)
    if img.mode in _SIXTEEN_BIT:
        scale, what = 65535.0, "16-bit"
    elif img.mode == "I":  # 32-bit integers; PNG decoders give them for 16-bit grey files
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise SkipFace("32-bit integer pixels outside 0..65535: their range is unknown")
        scale, what = 65535.0, "integer (16-bit range)"
    else:  # "F"
        if values.size and not (np.isfinite(values).all() and values.min() >= 0 and values.max() <= 1):
            raise SkipFace("floating-point pixels outside 0..1 (or not finite): their range is unknown")
        scale, what = 1.0, "floating-point (0..1)"
    grey = np.rint(values.astype(np.float64) * (255.0 / scale)).astype(np.uint8)
    return Image.fromarray(grey, "L").convert("RGB"), f"converted {img.mode} {what} grey to RGB (scaled to 0..255)"


def _drop_alpha(img: Image.Image) -> tuple[Image.Image, str]:
    """RGB of an image with an alpha channel (or a palette transparency), if fully opaque."""
    mode = img.mode
    rgba = img.convert("RGBA")
    if np.asarray(rgba.getchannel("A")).min() < 255:
        raise SkipFace(f"{mode} image with transparent pixels (what lies under them is undefined)")
    return rgba.convert("RGB"), f"converted {mode} to RGB (alpha fully opaque, dropped)"


def to_rgb(img: Image.Image) -> tuple[Image.Image, str | None]:
    """(8-bit RGB image, a note of what was converted or None); raises SkipFace."""
    if img.mode == "RGB":
        return img, None
    if img.mode in (*_SIXTEEN_BIT, "I", "F"):
        return _high_depth_to_grey(img)
    if img.mode in ("RGBA", "LA", "La", "RGBa", "PA") or "transparency" in img.info:
        return _drop_alpha(img)
    if img.mode in ("1", "L", "P", "CMYK", "YCbCr", "LAB", "HSV"):
        return img.convert("RGB"), f"converted {img.mode} to RGB"
    raise SkipFace(f"unsupported image mode {img.mode}")


def load_face(data: bytes) -> tuple[np.ndarray, str | None]:
    """(256x256x3 uint8, a note of what was converted or None); raises SkipFace."""
    try:
        img = Image.open(io.BytesIO(data))
        img.load()  # decodes everything: a truncated file fails here, not later
    except Exception as exc:  # noqa: BLE001 - PIL raises many types for a broken file
        raise SkipFace(f"unreadable ({type(exc).__name__}: {exc})") from None
    img, note = to_rgb(img)
    w, h = img.size
    if w != h or w < SIZE:
        raise SkipFace(f"odd size {w}x{h} (aligned faces are square, at least {SIZE})")
    if w != SIZE:
        img = img.resize((SIZE, SIZE), Image.LANCZOS)
    return np.asarray(img, dtype=np.uint8), note


def prepare_real_faces(source, out_path, progress: bool = True) -> dict:
    """Write `ffhq256.h5`: `images` (N,256,256,3) uint8, one per chunk, and `names`."""
    entries = list_sources(source)
    if not entries:
        raise FileNotFoundError(f"{source}: no PNG/JPG images found")
    counts = {"written": 0, "converted": 0, "skipped": 0}
    with atomic_path(out_path) as tmp, h5py.File(tmp, "w") as out:
        images = out.create_dataset(
            "images", (0, SIZE, SIZE, 3), maxshape=(None, SIZE, SIZE, 3), dtype="u1", chunks=(1, SIZE, SIZE, 3)
        )
        names = []
        for name, read in tqdm(entries, desc="real faces", unit="img", disable=not progress):
            try:
                face, note = load_face(read())
            except SkipFace as why:
                log.warning("skipped %s: %s", name, why)
                counts["skipped"] += 1
                continue
            except OSError as exc:
                log.warning("skipped %s: could not read (%s)", name, exc)
                counts["skipped"] += 1
                continue
            if note:
                log.info("%s: %s", name, note)
                counts["converted"] += 1
            else:
                log.info("%s: stored", name)
            images.resize(len(names) + 1, axis=0)
            images[len(names)] = face
            names.append(name)
        if not names:
            raise ValueError(f"{source}: none of {len(entries)} images could be used (see the log)")
        out.create_dataset("names", data=np.array(names, dtype=object), dtype=h5py.string_dtype())
        counts["written"] = len(names)
        out.attrs.update({"source": str(source), "resize_filter": RESIZE_FILTER, "size": SIZE, **counts})
    log.info(
        "wrote %s: %d faces (%d converted), %d files skipped", out_path, counts["written"], counts["converted"],
        counts["skipped"],
    )  # fmt: skip
    return counts
