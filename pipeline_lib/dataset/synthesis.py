"""The synthetic face dataset: z, w, S and images of N generated faces in HDF5.

Determinism: face i depends only on (global seed, i). Its latent comes from its own random
stream (`latents`), and the networks always run on *chunks* of `chunk_size` consecutive
indices aligned to multiples of `chunk_size` (the last chunk is padded with the following
indices and the padding dropped). Matrix and convolution kernels round differently for
different batch shapes, so fixing the kernel batch is what makes a face bit-identical whatever
the shard size, the write batch size or the number of parallel jobs. `chunk_size` itself is
a numerical setting like the dtype: it is recorded in the file, and merging refuses shards
made with different settings. On a CPU the number of threads is one too (oneDNN partitions
some convolutions by it), so it is recorded as well.
"""

from __future__ import annotations

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
from pipeline_lib.generator.fast import FastSynthesis
from pipeline_lib.images import to_uint8_hwc
from pipeline_lib.generator.stylegan2 import Generator

log = logging.getLogger(__name__)

FORMAT = "genfields-faces/1"
ARRAYS = ("z", "w", "styles", "images", "seed")
# Settings every shard of one dataset must share.
SHARED_ATTRS = ("generator_sha256", "global_seed", "truncation_psi", "noise_mode", "chunk_size", "dtype", "num_faces", "dataset_id")


@dataclass(frozen=True)
class SynthesisSettings:
    global_seed: int = 0
    truncation_psi: float = 1.0
    chunk_size: int = 256
    dtype: str = "bfloat16"  # compute dtype of the synthesis convs; styles are always float32
    noise_mode: str = "const"
    compile: bool = False  # torch.compile the synthesis network (GPU)

    @property
    def torch_dtype(self) -> torch.dtype:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[self.dtype]


def dataset_id(generator_sha256: str, settings: SynthesisSettings, num_faces: int) -> str:
    """Identity of a dataset: a hash of everything that determines its contents."""
    spec = {"generator_sha256": generator_sha256, "num_faces": num_faces, "format": FORMAT}
    spec.update({k: v for k, v in asdict(settings).items() if k != "compile"})
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def latents(global_seed: int, indices, z_dim: int) -> np.ndarray:
    """z for each global index, from a random stream of its own (seeded by (global_seed, i))."""
    out = np.empty((len(indices), z_dim), dtype=np.float32)
    for row, i in enumerate(indices):
        out[row] = np.random.default_rng([int(global_seed), int(i)]).standard_normal(z_dim, dtype=np.float32)
    return out


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

    def __init__(self, G: Generator, settings: SynthesisSettings, device, cuda_graph: bool | None = None):
        self.G, self.settings, self.device = G, settings, torch.device(device)
        cuda = self.device.type == "cuda"
        self.fast = FastSynthesis(G, dtype=settings.torch_dtype, channels_last=cuda).to(self.device)
        self.synthesize = torch.compile(self.fast, dynamic=False) if settings.compile else self.fast
        self.cuda_graph = cuda and not settings.compile if cuda_graph is None else cuda_graph
        self._graph = None

    def _compute(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        ws = self.G.mapping(z, truncation_psi=self.settings.truncation_psi)
        S, S_rgb = self.G.styles(ws)
        img = self.synthesize(S, S_rgb, noise_mode=self.settings.noise_mode)
        return {"z": z, "w": ws[:, 0].contiguous(), "styles": S, "images": to_uint8_hwc(img)}

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
        z = torch.from_numpy(latents(s.global_seed, idx, self.G.z_dim))
        if self.cuda_graph:
            if self._graph is None:
                self._capture()
            self._static_z.copy_(z.pin_memory(), non_blocking=True)
            self._graph.replay()
            out = dict(self._static_out)
        else:
            out = self._compute(z.to(self.device))
        out["seed"] = torch.from_numpy(idx)
        return out


def _layer_table_json(G: Generator) -> str:
    return json.dumps([spec.as_row() for spec in G.layers])


def _create_arrays(f: h5py.File, n: int, G: Generator) -> None:
    res, ch = G.img_resolution, G.img_channels
    f.create_dataset("z", (n, G.z_dim), dtype="f4")
    f.create_dataset("w", (n, G.w_dim), dtype="f4")
    f.create_dataset("styles", (n, G.style_dim), dtype="f4", chunks=(min(n, 256), G.style_dim))
    f.create_dataset("images", (n, res, res, ch), dtype="u1", chunks=(1, res, res, ch))
    f.create_dataset("seed", (n,), dtype="i8")


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
) -> dict:
    """Generate faces [start, stop) into one HDF5 shard, atomically; returns timing figures.

    The device computes chunk k+1 while a writer thread copies chunk k to the file, so that
    the GPU never waits for the disk.
    """
    if start % settings.chunk_size or batch_size % settings.chunk_size or not 0 <= start < stop <= num_faces:
        raise ValueError(
            f"shard [{start}, {stop}) of {num_faces} faces with batch_size {batch_size}: the start and the batch "
            f"size must be multiples of chunk_size {settings.chunk_size}"
        )
    synth = synthesizer or ChunkSynthesizer(G, settings, device)
    n = stop - start
    t0 = time.perf_counter()
    writer_busy = [0.0]
    pending: queue.Queue = queue.Queue(maxsize=3)
    errors: list[BaseException] = []
    bar = tqdm(total=n, desc=f"faces {start}-{stop}", unit="img", disable=not progress, smoothing=0.1)

    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            _create_arrays(f, n, G)

            def writer():
                try:
                    while (item := pending.get()) is not None:
                        offset, host, event = item
                        if event is not None:
                            event.synchronize()
                        t_write = time.perf_counter()
                        count = min(len(host["seed"]), n - offset)
                        for name in ARRAYS:
                            f[name][offset : offset + count] = host[name][:count].numpy()
                        writer_busy[0] += time.perf_counter() - t_write
                        bar.update(count)
                except BaseException as exc:  # surfaced in the main thread
                    errors.append(exc)
                    while pending.get() is not None:
                        pass

            thread = threading.Thread(target=writer, daemon=True)
            thread.start()
            in_flight: deque = deque()
            try:
                for batch_start in range(start, stop, batch_size):
                    for chunk_start in range(batch_start, min(batch_start + batch_size, stop), settings.chunk_size):
                        out = synth.run(chunk_start)
                        pin = synth.device.type == "cuda"
                        host = {k: v.to("cpu", non_blocking=pin) if pin else v.cpu() for k, v in out.items()}
                        event = None
                        if pin:
                            event = torch.cuda.Event()
                            event.record()
                            # Keep two chunks queued on the GPU, no more: a thread that runs further
                            # ahead blocks inside kernel launches holding the GIL and starves the writer.
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
            f.attrs.update(
                {
                    "format": FORMAT,
                    "generator_sha256": generator_sha256,
                    "num_faces": num_faces,
                    "start": start,
                    "stop": stop,
                    "dataset_id": dataset_id(generator_sha256, settings, num_faces),
                    "layer_table": _layer_table_json(G),
                    "device_type": synth.device.type,
                    "cpu_threads": torch.get_num_threads() if synth.device.type == "cpu" else 0,
                    **{k: v for k, v in asdict(settings).items() if k != "compile"},
                }
            )
    seconds = time.perf_counter() - t0
    log.info(
        "wrote %s: faces %d-%d in %.1f s (%.1f images/s; the writer was busy %.1f s)",
        path, start, stop, seconds, n / seconds, writer_busy[0],
    )  # fmt: skip
    return {"faces": n, "seconds": seconds, "images_per_second": n / seconds, "writer_busy_s": writer_busy[0]}


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
        for key in SHARED_ATTRS:
            if meta[key] != first[key]:
                raise ValueError(f"{p}: {key}={meta[key]!r} differs from {metas_sorted[0][1]}: {first[key]!r}")
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
        for m, p in metas_sorted
    ]
    with atomic_path(out_path) as tmp:
        with h5py.File(tmp, "w") as out:
            for name in ARRAYS:
                shape, dtype = first["shapes"][name]
                layout = h5py.VirtualLayout(shape=(total,) + tuple(shape[1:]), dtype=dtype)
                for src in sources:
                    n = src["stop"] - src["start"]
                    layout[src["start"] : src["stop"]] = h5py.VirtualSource(src["path"], name, shape=(n,) + tuple(shape[1:]))
                out.create_virtual_dataset(name, layout)
            out.create_dataset("split/identity", data=np.arange(0, num_identity, dtype=np.int64))
            out.create_dataset("split/attribute", data=np.arange(num_identity, total, dtype=np.int64))
            out.attrs.update({k: v for k, v in first.items() if k not in ("start", "stop", "shapes")})
            out.attrs.update(
                {
                    "num_shards": len(sources),
                    "shards": json.dumps(sources),
                    "num_identity": num_identity,
                    "num_attribute": num_attribute,
                }
            )
    return {"faces": total, "shards": len(sources)}


def open_faces(path) -> h5py.File:
    """Open `faces.h5` for reading after checking that every shard it reads from is there and
    is the shard it was merged from (same dataset and face range)."""
    path = Path(path)
    f = h5py.File(path, "r")
    try:
        for src in json.loads(f.attrs["shards"]):
            shard = path.parent / src["path"]
            if not shard.exists():
                raise FileNotFoundError(
                    f"{path} reads faces {src['start']}-{src['stop']} from {shard}, which is missing; "
                    f"regenerate it (snakemake {shard}) or rerun the dataset stage"
                )
            with h5py.File(shard, "r") as s:
                same = s.attrs.get("dataset_id") == f.attrs["dataset_id"] and (
                    int(s.attrs["start"]),
                    int(s.attrs["stop"]),
                ) == (src["start"], src["stop"])
            if not same:
                raise ValueError(f"{shard} is not the shard {path} was merged from; rerun the merge_dataset rule")
    except BaseException:
        f.close()
        raise
    return f


# ----------------------------------------------------------------------------------------------
# Statistics (Eq. 12's per-channel mean/std of S; Wulff & Torralba's Gaussian model of v)


def invert_last_lrelu(w: np.ndarray, slope: float = 0.2) -> np.ndarray:
    """v = w with negative entries divided by the leaky-ReLU slope (x5): the Gaussianized space."""
    return np.where(w < 0, w / slope, w)


class RunningMoments:
    """Streaming mean and (co)variance in float64 by Chan et al.'s pairwise update."""

    def __init__(self, dim: int, covariance: bool):
        self.n = 0
        self.mean = np.zeros(dim)
        self.m2 = np.zeros((dim, dim) if covariance else dim)
        self.covariance = covariance

    def update(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float64)
        nb = len(x)
        if nb == 0:
            return
        mean_b = x.mean(axis=0)
        centred = x - mean_b
        m2_b = centred.T @ centred if self.covariance else (centred**2).sum(axis=0)
        delta = mean_b - self.mean
        total = self.n + nb
        correction = np.outer(delta, delta) if self.covariance else delta**2
        self.m2 += m2_b + correction * (self.n * nb / total)
        self.mean += delta * (nb / total)
        self.n = total

    def variance(self, ddof: int = 1) -> np.ndarray:
        return self.m2 / (self.n - ddof)


def compute_style_stats(faces_path, out_path, block: int = 2048, ddof: int = 1) -> dict:
    """`style_stats.h5`: S mean/std over all faces; v mean, covariance and its eigenbasis."""
    with open_faces(faces_path) as f:
        styles, w = f["styles"], f["w"]
        s_moments = RunningMoments(styles.shape[1], covariance=False)
        v_moments = RunningMoments(w.shape[1], covariance=True)
        for a in tqdm(range(0, len(styles), block), desc="style statistics", unit="block"):
            s_moments.update(styles[a : a + block])
            v_moments.update(invert_last_lrelu(w[a : a + block]))
        source = {k: f.attrs[k] for k in ("dataset_id", "generator_sha256", "truncation_psi", "global_seed")}
    cov = v_moments.variance(ddof)
    eigenvalues, eigenvectors = np.linalg.eigh(cov)
    order = np.argsort(eigenvalues)[::-1]
    with atomic_path(out_path) as tmp:
        with h5py.File(tmp, "w") as out:
            out["S/mean"] = s_moments.mean
            out["S/std"] = np.sqrt(s_moments.variance(ddof))
            out["V/mean"] = v_moments.mean
            out["V/covariance"] = cov
            out["V/eigenvalues"] = eigenvalues[order]
            out["V/eigenvectors"] = eigenvectors[:, order]  # columns, by decreasing eigenvalue
            out.attrs.update({"num_faces": s_moments.n, "ddof": ddof, "lrelu_slope_inverted": 0.2})
            out.attrs.update({f"source_{k}": v for k, v in source.items()})
    return {"faces": s_moments.n}


# ----------------------------------------------------------------------------------------------
# Entry points of the Snakemake jobs


def settings_from_config(dataset_cfg: dict) -> SynthesisSettings:
    return SynthesisSettings(
        global_seed=int(dataset_cfg["seed"]),
        truncation_psi=float(dataset_cfg["truncation_psi"]),
        chunk_size=int(dataset_cfg["chunk_size"]),
        dtype=str(dataset_cfg["dtype"]),
        compile=bool(dataset_cfg["compile"]),
    )


def num_faces_of(dataset_cfg: dict) -> int:
    return int(dataset_cfg["num_identity"]) + int(dataset_cfg["num_attribute"])


def run_shard_job(generator_path, out_path, shard_index: int, dataset_cfg: dict, device_name: str = "auto") -> dict:
    """One `synthesize_shard` job: shard `shard_index` of the dataset that `dataset_cfg` describes."""
    from pipeline_lib.devices import resolve_device
    from pipeline_lib.provenance import file_sha256
    from pipeline_lib.generator.loading import load_generator

    device = resolve_device(device_name)
    n = num_faces_of(dataset_cfg)
    check_sizes(n, int(dataset_cfg["shard_size"]), int(dataset_cfg["batch_size"]), int(dataset_cfg["chunk_size"]))
    ranges = shard_ranges(n, int(dataset_cfg["shard_size"]))
    if not 0 <= shard_index < len(ranges):
        raise ValueError(f"shard {shard_index} does not exist: the dataset has {len(ranges)} shards")
    start, stop = ranges[shard_index]
    G = load_generator(generator_path, device=device)
    log.info("shard %d: faces %d-%d of %d on %s", shard_index, start, stop, n, device)
    return write_shard(
        out_path,
        G,
        file_sha256(generator_path),
        start,
        stop,
        n,
        settings_from_config(dataset_cfg),
        int(dataset_cfg["batch_size"]),
        device=device,
    )
