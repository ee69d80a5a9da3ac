"""The synthetic face dataset: z, w, S and images of N generated faces in HDF5.

Determinism: face i depends only on (global seed, i). Its latent is a function of (seed, i)
(`latent_rng`: Philox on the device, or the older per-face numpy streams), and the networks
always run on *chunks* of `chunk_size` consecutive indices aligned to multiples of
`chunk_size` (the last chunk is padded with the following indices and the padding dropped).
Matrix and convolution kernels round differently for different batch shapes, so fixing the
kernel batch is what makes a face bit-identical whatever the shard size, the write batch size
or the number of parallel jobs. `chunk_size` itself is a numerical setting like the dtype: it
is recorded in the file, and merging refuses shards made with different settings. On a CPU
the number of threads is one too (oneDNN partitions some convolutions by it), so it is
recorded as well.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import queue
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path

import h5py
import numpy as np
import torch
from tqdm import tqdm

from pipeline_lib.atomic import atomic_path
from pipeline_lib.compile_cache import compiled
from pipeline_lib.dataset.integrity import check_chunk_finite, nonfinite_cause
from pipeline_lib.dataset.latent_rng import draw_latents, latents_numpy
from pipeline_lib.dataset.shard_writer import InlineWriter, ProcessWriter
from pipeline_lib.generator.fast import fast_synthesis
from pipeline_lib.generator.stylegan2 import Generator
from pipeline_lib.images import to_uint8_hwc
from pipeline_lib.settings import DatasetSettings, load_config

log = logging.getLogger(__name__)

FORMAT = "genfields-faces/1"
ARRAYS = ("z", "w", "styles", "images", "seed")
# Settings every shard of one dataset must share.
SHARED_ATTRS = (
    "generator_sha256",
    "global_seed",
    "truncation_psi",
    "noise_mode",
    "chunk_size",
    "dtype",
    "synthesis_arithmetic",
    "latent_rng",
    "num_faces",
    "dataset_id",
)
# The latent generator of every dataset made before `dataset.latent_rng` existed: such files
# carry no latent_rng attribute, and datasets made with it keep their id.
LEGACY_LATENT_RNG = "numpy"
# Faces whose latents are drawn at once (counter generator: fewer, larger kernel launches).
LATENT_BLOCK = 16384


@dataclass(frozen=True)
class SynthesisSettings:
    """What determines a face's pixels besides the generator: stored as every shard's attributes
    and hashed into its `dataset_id` (field names are part of the file format)."""

    global_seed: int  # face i is drawn from a random stream seeded by (global_seed, i)
    truncation_psi: float  # 1.0 = no truncation
    chunk_size: int  # faces per network evaluation
    dtype: str  # synthesis precision mode (generator/fast.py PRECISIONS); styles are always float32
    noise_mode: str  # const, random or none
    latent_rng: str  # counter (Philox on the device) or numpy (per-face streams, older datasets)
    compile: bool  # torch.compile the synthesis network (GPU); not part of the dataset's identity

    @classmethod
    def defaults(cls, **overrides) -> SynthesisSettings:
        """config.yaml's dataset settings with `overrides` (tests and benchmarks)."""
        return dataclasses.replace(cls.from_dataset(DatasetSettings.parse(load_config()["dataset"])), **overrides)

    @classmethod
    def from_dataset(cls, dataset: DatasetSettings) -> SynthesisSettings:
        return cls(
            global_seed=dataset.seed,
            truncation_psi=dataset.truncation_psi,
            chunk_size=dataset.chunk_size,
            dtype=dataset.dtype,
            noise_mode=dataset.noise_mode,
            latent_rng=dataset.latent_rng,
            compile=dataset.compile,
        )


def dataset_id(generator_sha256: str, settings: SynthesisSettings, num_faces: int, sampling: dict | None = None) -> str:
    """Identity of a dataset: a hash of everything that determines its contents. `sampling`
    (issue 15: log-compression) enters only when given, so default datasets keep their id."""
    spec = {"generator_sha256": generator_sha256, "num_faces": num_faces, "format": FORMAT}
    spec.update(identity_fields(settings))
    if sampling is not None:
        spec["sampling"] = sampling
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def identity_fields(settings: SynthesisSettings) -> dict:
    """The settings stored as shard attributes and hashed into `dataset_id`: all but `compile`,
    and `latent_rng` only when it is not the legacy numpy streams (older datasets keep their id)."""
    fields = {k: v for k, v in asdict(settings).items() if k != "compile"}
    if fields["latent_rng"] == LEGACY_LATENT_RNG:
        del fields["latent_rng"]
    return fields


latents = latents_numpy  # the per-face numpy streams (dataset.latent_rng: numpy)


def shard_ranges(num_faces: int, shard_size: int) -> list[tuple[int, int]]:
    return [(a, min(a + shard_size, num_faces)) for a in range(0, num_faces, shard_size)]


def check_sizes(num_faces: int, shard_size: int, batch_size: int, chunk_size: int) -> None:
    """Shards and write batches must consist of whole chunks, so chunks stay aligned."""
    if shard_size % chunk_size or batch_size % chunk_size:
        raise ValueError(
            f"dataset.shard_size ({shard_size}) and dataset.batch_size ({batch_size}) must be multiples of "
            f"dataset.chunk_size ({chunk_size}), so that every face is computed in the same chunk"
        )
    if num_faces <= 0:
        raise ValueError("the dataset needs at least one face")


class ChunkSynthesizer:
    """Runs mapping, styles and synthesis on aligned chunks; results stay on the device.

    On a GPU the whole chunk (mapping, affines, synthesis, uint8 conversion) can be captured
    once as a CUDA graph and replayed, which removes the launch overhead of ~200 small kernels.
    The outputs are then static buffers that the next replay overwrites; copies enqueued on
    the same stream before the next `run` are safe.
    """

    def __init__(
        self, G: Generator, settings: SynthesisSettings, device, cuda_graph: bool | None = None, w_transform=None
    ):
        self.G, self.settings, self.device = G, settings, torch.device(device)
        self.w_transform = w_transform  # issue 15: w [N, w_dim] -> w (log-compression); None = as mapped
        cuda = self.device.type == "cuda"
        self.fast = fast_synthesis(G, dtype=settings.dtype, channels_last=cuda).to(self.device)
        self.synthesize = compiled(self.fast, dynamic=False) if settings.compile else self.fast
        self.cuda_graph = cuda and not settings.compile if cuda_graph is None else cuda_graph
        self._graph = None
        self._z_start, self._z = 0, None  # a block of drawn latents (LATENT_BLOCK faces)

    def latents(self, chunk_start: int) -> torch.Tensor:
        """z of one chunk on the device; the counter generator draws a block of chunks at once
        (a face's z does not depend on the block, see latent_rng)."""
        s, n = self.settings, self.settings.chunk_size
        if s.latent_rng != "counter":
            return draw_latents(s.latent_rng, s.global_seed, chunk_start, n, self.G.z_dim, self.device)
        if self._z is None or not self._z_start <= chunk_start <= self._z_start + len(self._z) - n:
            count = max(n, LATENT_BLOCK // n * n) if self.device.type == "cuda" else n
            self._z_start = chunk_start
            self._z = draw_latents("counter", s.global_seed, chunk_start, count, self.G.z_dim, self.device)
        return self._z[chunk_start - self._z_start : chunk_start - self._z_start + n]

    def _compute(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        ws = self.G.mapping(z, truncation_psi=self.settings.truncation_psi)
        if self.w_transform is not None:
            ws = self.w_transform(ws[:, 0])[:, None].expand_as(ws).contiguous()
        S, S_rgb = self.G.styles(ws)
        img = self.synthesize(S, S_rgb, noise_mode=self.settings.noise_mode)
        finite = torch.isfinite(img).flatten(1).all(dim=1)  # uint8 images cannot show a NaN: checked by the writer
        return {"z": z, "w": ws[:, 0].contiguous(), "styles": S, "images": to_uint8_hwc(img), "finite_images": finite}

    def _capture(self) -> None:
        self._static_z = torch.zeros([self.settings.chunk_size, self.G.z_dim], device=self.device)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(2):  # warm-up outside the graph (cuDNN/cuBLAS handles, workspaces)
                self._compute(self._static_z)
        torch.cuda.current_stream(self.device).wait_stream(side)
        self._graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self._graph):
            self._static_out = self._compute(self._static_z)

    @torch.no_grad()
    def run(self, chunk_start: int) -> dict[str, torch.Tensor]:
        s = self.settings
        idx = np.arange(chunk_start, chunk_start + s.chunk_size)
        z = self.latents(chunk_start)
        if self.cuda_graph:
            if self._graph is None:
                self._capture()
            self._static_z.copy_(z, non_blocking=True)
            self._graph.replay()
            out = dict(self._static_out)
        else:
            out = self._compute(z)
        out["seed"] = torch.from_numpy(idx)
        return out


def _layer_table_json(G: Generator) -> str:
    return json.dumps([spec.as_row() for spec in G.layers])


def _array_specs(n: int, G: Generator) -> dict:
    """The shard's arrays (shape, dtype, HDF5 chunks), in the order `ARRAYS` names them."""
    res, ch = G.img_resolution, G.img_channels
    return {
        "z": {"shape": [n, G.z_dim], "dtype": "f4", "chunks": None},
        "w": {"shape": [n, G.w_dim], "dtype": "f4", "chunks": None},
        "styles": {"shape": [n, G.style_dim], "dtype": "f4", "chunks": [min(n, 256), G.style_dim]},
        "images": {"shape": [n, res, res, ch], "dtype": "u1", "chunks": [1, res, res, ch]},
        "seed": {"shape": [n], "dtype": "i8", "chunks": None},
    }


def write_shard(
    path,
    G: Generator,
    generator_sha256: str,
    start: int,
    stop: int,
    num_faces: int,
    settings: SynthesisSettings,
    batch_size: int,
    device="cpu",
    synthesizer: ChunkSynthesizer | None = None,
    progress: bool = True,
    sampling: dict | None = None,
    w_transform=None,
    writer: str | None = None,
) -> dict:
    """Generate faces [start, stop) into one HDF5 shard, atomically; returns timing figures.

    The device computes chunk k+1 while a feeder thread hands chunk k to the writer, so that the
    GPU never waits for the disk. `writer`: "process" (a writer process fed through shared
    memory, so that h5py never holds this process's GIL; the default on a GPU) or "inline"
    (the feeder thread writes; the default on a CPU, where synthesis is the bottleneck).
    """
    if start % settings.chunk_size or batch_size % settings.chunk_size or not 0 <= start < stop <= num_faces:
        raise ValueError(
            f"shard [{start}, {stop}) of {num_faces} faces with batch_size {batch_size}: the start and the batch "
            f"size must be multiples of chunk_size {settings.chunk_size}"
        )
    synth = synthesizer or ChunkSynthesizer(G, settings, device, w_transform=w_transform)
    writer = writer or ("process" if synth.device.type == "cuda" else "inline")
    if writer not in ("process", "inline"):
        raise ValueError(f"writer must be process or inline, got {writer!r}")
    n = stop - start
    t0 = time.perf_counter()
    pending: queue.Queue = queue.Queue(maxsize=3)
    errors: list[BaseException] = []
    bar = tqdm(total=n, desc=f"faces {start}-{stop}", unit="img", disable=not progress, smoothing=0.1)

    with atomic_path(path) as tmp:
        sink = (ProcessWriter if writer == "process" else InlineWriter)(tmp, _array_specs(n, G), settings.chunk_size)

        def feed():
            try:
                while (item := pending.get()) is not None:
                    offset, host, event = item
                    if event is not None:
                        event.synchronize()  # releases the GIL while it waits
                    count = min(len(host["seed"]), n - offset)
                    rows = {name: host[name][:count].numpy() for name in ARRAYS}
                    rows["finite_images"] = host["finite_images"][:count].numpy()
                    faces = (start + offset, start + offset + count)
                    check_chunk_finite(rows, faces, path, lambda: nonfinite_cause(G, settings.truncation_psi))
                    sink.write(offset, {name: rows[name] for name in ARRAYS})
                    bar.update(count)
            except BaseException as exc:  # surfaced in the main thread
                errors.append(exc)
                while pending.get() is not None:
                    pass

        thread = threading.Thread(target=feed, daemon=True)
        thread.start()
        in_flight: deque = deque()
        try:
            try:
                for chunk_start in range(start, stop, settings.chunk_size):
                    out = synth.run(chunk_start)
                    pin = synth.device.type == "cuda"
                    host = {k: v.to("cpu", non_blocking=pin) if pin else v.cpu() for k, v in out.items()}
                    event = None
                    if pin:
                        event = torch.cuda.Event()
                        event.record()
                        # Keep two chunks queued on the GPU, no more: a thread that runs further
                        # ahead blocks inside kernel launches holding the GIL and starves the feeder.
                        in_flight.append(event)
                        if len(in_flight) > 2:
                            in_flight.popleft().synchronize()  # releases the GIL while it waits
                    pending.put((chunk_start - start, host, event))
                    if errors:
                        raise errors[0]
            finally:
                pending.put(None)
                thread.join()
                bar.close()
            if errors:
                raise errors[0]
            attrs = {
                "format": FORMAT,
                "generator_sha256": generator_sha256,
                "num_faces": num_faces,
                "start": start,
                "stop": stop,
                "dataset_id": dataset_id(generator_sha256, settings, num_faces, sampling),
                **({"sampling": json.dumps(sampling, sort_keys=True)} if sampling is not None else {}),
                "layer_table": _layer_table_json(G),
                "device_type": synth.device.type,
                "synthesis_arithmetic": synth.fast.arithmetic,  # what `dtype` computed, in words
                "cpu_threads": torch.get_num_threads() if synth.device.type == "cpu" else 0,
                **identity_fields(settings),
            }
            result = sink.finish(attrs)
        except BaseException:
            sink.abort()  # before atomic_path removes the temporary file
            raise
    seconds = time.perf_counter() - t0
    busy = result["writer_busy_s"]
    log.info(
        "wrote %s: faces %d-%d in %.1f s (%.1f images/s; %s writer busy %.1f s)",
        path, start, stop, seconds, n / seconds, writer, busy,
    )  # fmt: skip
    return {"faces": n, "seconds": seconds, "images_per_second": n / seconds, "writer_busy_s": busy, "writer": writer}


def merge_shards(shard_paths, out_path, num_identity: int, num_attribute: int) -> dict:
    """`faces.h5`: the shards (checked contiguous and made alike) joined, plus the split.

    The arrays are HDF5 virtual datasets that read from the shard files (paths relative to
    `faces.h5`), so merging copies nothing: the images are written once. A virtual dataset
    silently reads a missing source as fill values, so always open the result with
    `open_faces`, which checks every shard first.
    """
    out_path = Path(out_path)
    shard_paths = [Path(p) for p in shard_paths]
    metas = []
    for p in shard_paths:
        with h5py.File(p, "r") as f:
            if f.attrs.get("format") != FORMAT:
                raise ValueError(f"{p}: not a genfields face shard (format {f.attrs.get('format')!r})")
            meta = {k: v.item() if isinstance(v, np.generic) else v for k, v in f.attrs.items()}
            meta["shapes"] = {name: (f[name].shape, f[name].dtype) for name in ARRAYS}
            metas.append(meta)
    metas_sorted = sorted(zip(metas, shard_paths), key=lambda mp: mp[0]["start"])
    first = metas_sorted[0][0]
    for meta, p in metas_sorted:
        for key in SHARED_ATTRS:  # .get: shards made before latent_rng existed lack it
            if meta.get(key) != first.get(key):
                raise ValueError(f"{p}: {key}={meta.get(key)!r} differs from {metas_sorted[0][1]}: {first.get(key)!r}")
    expected = 0
    for meta, p in metas_sorted:
        if meta["start"] != expected:
            raise ValueError(f"{p}: starts at face {meta['start']}, expected {expected} (a shard is missing)")
        expected = meta["stop"]
    total = int(first["num_faces"])
    if expected != total:
        raise ValueError(f"shards end at face {expected}, but the dataset has {total} faces")
    if num_identity + num_attribute != total:
        raise ValueError(f"split {num_identity} + {num_attribute} does not add up to {total} faces")
    sources = [
        {"path": os.path.relpath(p.resolve(), out_path.resolve().parent), "start": m["start"], "stop": m["stop"]}
        | ({"content_sha256": m["content_sha256"]} if "content_sha256" in m else {})
        for m, p in metas_sorted
    ]
    with atomic_path(out_path) as tmp:
        with h5py.File(tmp, "w") as out:
            for name in ARRAYS:
                shape, dtype = first["shapes"][name]
                layout = h5py.VirtualLayout(shape=(total,) + tuple(shape[1:]), dtype=dtype)
                for src in sources:
                    n = src["stop"] - src["start"]
                    layout[src["start"] : src["stop"]] = h5py.VirtualSource(
                        src["path"], name, shape=(n,) + tuple(shape[1:])
                    )
                out.create_virtual_dataset(name, layout)
            out.create_dataset("split/identity", data=np.arange(0, num_identity, dtype=np.int64))
            out.create_dataset("split/attribute", data=np.arange(num_identity, total, dtype=np.int64))
            per_shard = ("start", "stop", "shapes", "content_sha256", "array_sha256")
            out.attrs.update({k: v for k, v in first.items() if k not in per_shard})
            out.attrs.update(
                {
                    "num_shards": len(sources),
                    "shards": json.dumps(sources),
                    "num_identity": num_identity,
                    "num_attribute": num_attribute,
                }
            )
    return {"faces": total, "shards": len(sources)}
