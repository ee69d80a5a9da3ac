"""Annotations of the dataset's faces, computed once so that training and evaluation reuse them:
68 landmarks and head pose from each landmark detector, identity embeddings and attribute
features, in `annotations.h5`.

On a GPU the stage is a pipeline (issue 16): a thread reads the next batch from HDF5 into pinned
memory while the GPU runs every encoder on the current one, and the results come back by
asynchronous copies that are written one batch later, so neither the disk nor the host waits on
the other. Encoders may come as `EncoderRunner`s (reduced precision, channels-last, compiled:
`encoders/inference.py`); plain encoders run as the float32 reference.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time

import h5py
import numpy as np
import torch
from tqdm import tqdm

from pipeline_lib.atomic import atomic_path
from pipeline_lib.dataset.store import open_faces
from pipeline_lib.encoders.base import encoder_view
from pipeline_lib.encoders.inference import EncoderRunner
from pipeline_lib.images import from_uint8_hwc

log = logging.getLogger(__name__)

# Pinned batch buffers the reader cycles through: one on the GPU, one being read, one spare.
READ_BUFFERS = 3


def as_runner(encoder) -> EncoderRunner:
    return encoder if isinstance(encoder, EncoderRunner) else EncoderRunner(encoder)


class BatchReader:
    """Batches of uint8 NHWC faces read by a background thread into reusable (pinned) buffers.

    Iterating yields (start, count, buffer): the faces are the buffer's first `count` rows;
    `release(buffer)` hands it back once the device no longer reads it. With `pad`, the rows
    after them are zeros, so that a compiled encoder can take the whole buffer: one shape.
    """

    def __init__(self, images, batch_size: int, pad: bool, pin: bool):
        self.images, self.batch_size, self.pad = images, batch_size, pad
        shape = (batch_size, *images.shape[1:])
        self._free: queue.Queue = queue.Queue()
        for _ in range(READ_BUFFERS):
            buf = torch.empty(shape, dtype=torch.uint8)
            self._free.put(buf.pin_memory() if pin else buf)
        self._ready: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for a in range(0, len(self.images), self.batch_size):
                buf = self._free.get()
                if self._stop.is_set():
                    return
                count = min(self.batch_size, len(self.images) - a)
                self.images.read_direct(buf.numpy(), np.s_[a : a + count], np.s_[0:count])
                if self.pad:
                    buf[count:] = 0
                self._ready.put((a, count, buf))
            self._ready.put(None)
        except BaseException as exc:  # handed to the consumer, which raises it
            self._ready.put(exc)

    def __iter__(self):
        while (item := self._ready.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item

    def release(self, buf: torch.Tensor) -> None:
        self._free.put(buf)

    def close(self) -> None:
        self._stop.set()
        for _ in range(READ_BUFFERS):
            self._free.put(torch.empty(0, dtype=torch.uint8))  # unblocks a reader waiting for a buffer
        self._thread.join()


@torch.no_grad()
def annotate_images(images, out: h5py.File, jobs, batch_size: int, device, progress: bool = True) -> int:
    """Run every job's encoder over `images` (uint8 NHWC, h5py dataset) and write `out`.

    jobs: [(EncoderRunner, {output name: dataset in out})]. Returns how many (batch, encoder)
    results were recomputed in float32 because a reduced-precision output was not finite.
    """
    device = torch.device(device)
    cuda = device.type == "cuda"
    reader = BatchReader(images, batch_size, pad=any(r.compiled for r, _ in jobs), pin=cuda)
    fallbacks = 0

    def finish(batch) -> None:
        nonlocal fallbacks
        a, count, buf, x, host, event = batch
        if event is not None:
            event.synchronize()  # waits without holding the GIL, so the reader keeps reading
        for runner, names in jobs:
            arrays = {o: host[d][:count].numpy() for o, d in names.items()}
            if runner.overflowed(arrays):
                log.warning(
                    "%s overflowed in %s on faces %d-%d: recomputed in float32", names, runner.precision, a, a + count
                )
                fallbacks += 1
                arrays = {o: v[:count].cpu().numpy() for o, v in runner.reference(x).items()}
            for o, dataset in names.items():
                out[dataset][a : a + count] = arrays[o]
        reader.release(buf)
        bar.update(count)

    bar = tqdm(total=len(images), desc="annotating faces", unit="face", disable=not progress)
    pending = None
    try:
        for a, count, buf in reader:
            batch = buf if reader.pad else buf[:count]
            x = encoder_view(from_uint8_hwc(batch.to(device, non_blocking=cuda)))
            host = {}
            for runner, names in jobs:
                for o, value in runner(x).items():
                    host[names[o]] = value.to("cpu", non_blocking=cuda)  # pinned, asynchronous on CUDA
            event = None
            if cuda:
                event = torch.cuda.Event()
                event.record()
            if pending is not None:
                finish(pending)  # the previous batch, while the GPU runs this one
            pending = (a, count, buf, x, host, event)
        if pending is not None:
            finish(pending)
    finally:
        reader.close()
        bar.close()
    return fallbacks


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

    landmark_encoders: {name: LandmarkEncoder or EncoderRunner}, stored under `landmarks/<name>`,
    `pose/<name>`. Faces are fed in the encoders' 256x256 frame (`encoder_view`), so landmarks
    are in 256-frame pixels whatever the generator's resolution. How each encoder ran (dtype,
    fast mode, compilation) is recorded in the attribute `encoder_inference`.
    """
    t0 = time.perf_counter()
    runners = {k: as_runner(e) for k, e in landmark_encoders.items()}
    identity, attribute = as_runner(identity_encoder), as_runner(attribute_encoder)
    jobs = [(r, {"landmarks": f"landmarks/{k}", "pose": f"pose/{k}"}) for k, r in runners.items()]
    jobs += [(identity, {"embedding": "identity"}), (attribute, {"embedding": "attribute"})]
    inference = {k: r.describe() for k, r in {**runners, "identity": identity, "attribute": attribute}.items()}
    with open_faces(faces_path) as faces, atomic_path(out_path) as tmp, h5py.File(tmp, "w") as out:
        images = faces["images"]
        n = len(images)
        for name in landmark_encoders:
            out.create_dataset(f"landmarks/{name}", (n, 68, 3), dtype="f4")
            out.create_dataset(f"pose/{name}", (n, 3), dtype="f4")
        out.create_dataset("identity", (n, identity.encoder.dim), dtype="f4")
        out.create_dataset("attribute", (n, attribute.encoder.dim), dtype="f4")
        fallbacks = annotate_images(images, out, jobs, batch_size, device, progress)
        out.attrs.update(
            {
                "num_faces": n,
                "source_dataset_id": faces.attrs["dataset_id"],
                "pose_order": "yaw, pitch, roll (degrees)",
                "encoder_inference": json.dumps(inference, sort_keys=True),
                **(attrs or {}),
            }
        )
    seconds = time.perf_counter() - t0
    log.info("annotated %d faces in %.1f s (%.1f faces/s) into %s", n, seconds, n / seconds, out_path)
    return {"faces": n, "seconds": seconds, "float32_fallbacks": fallbacks}
