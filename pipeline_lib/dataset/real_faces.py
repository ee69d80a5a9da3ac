"""Real aligned faces (FFHQ) into one HDF5 file, for FID and the edit evaluation.

Sources: a folder of PNG/JPG files (searched recursively, sorted by path) or a StyleGAN2-ADA
dataset zip. Every image is made 256x256 RGB uint8: grey-scale, palette, alpha and CMYK
images are converted; larger squares are resized with PIL's Lanczos filter (the filter
StyleGAN2-ADA's dataset tool uses by default); unreadable, truncated, non-square or smaller
files are skipped. Each conversion or skip is one log line, the counts come at the end, and a
bad file never stops the run.
"""

from __future__ import annotations

import io
import logging
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


def list_sources(source) -> list[tuple[str, callable]]:
    """(name, read-bytes) for every image of a folder or dataset zip, in a fixed order."""
    source = Path(source)
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
        return [(str(p.relative_to(source)), p.read_bytes) for p in files]
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


def load_face(data: bytes) -> tuple[np.ndarray, str | None]:
    """(256x256x3 uint8, a note of what was converted or None); raises SkipFace."""
    try:
        img = Image.open(io.BytesIO(data))
        img.load()  # decodes everything: a truncated file fails here, not later
    except Exception as exc:
        raise SkipFace(f"unreadable ({type(exc).__name__}: {exc})") from None
    note = None
    if img.mode != "RGB":
        note = f"converted {img.mode} to RGB"
        img = img.convert("RGB")
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
