"""What a training step reads: the batch plan of each step (a function of (seed, step) only),
the dataset's w, splits and annotations in memory, and a thread that prepares the next batches.

Because a batch depends only on (seed, step), a resumed run and any number of GPUs draw the same
batches as one uninterrupted run.
"""

from __future__ import annotations

import queue
import threading

import h5py
import numpy as np
import torch

from pipeline_lib.dataset.store import read_annotations, read_faces, read_style_stats
from pipeline_lib.images import read_images
from pipeline_lib.settings import TrainingSettings


def batch_plan(step: int, settings: TrainingSettings, identity_split: np.ndarray, attribute_split: np.ndarray):
    """(identity indices, attribute indices, cross) of global step `step`: a function of
    (seed, step) only, so that a resumed run and any number of GPUs draw the same batches."""
    rng = np.random.default_rng([settings.seed, step])
    ids = identity_split[rng.integers(0, len(identity_split), settings.batch_size)]
    cross = step % settings.cross_frequency == 0
    attrs = attribute_split[rng.integers(0, len(attribute_split), settings.batch_size)] if cross else ids
    return ids, attrs, cross


class TrainingData:
    """The dataset's w, splits and annotations in memory (on the training device), and its
    images on disk for the reconstruction targets and the sample grids."""

    def __init__(self, faces_path, annotations_path, stats_path, landmark_detector: str, device):
        faces = read_faces(faces_path)
        self.faces_path = faces.path
        self.w = torch.from_numpy(faces.w).to(device)
        self.identity_split, self.attribute_split = faces.identity_split, faces.attribute_split
        self.noise_mode, self.truncation_psi = faces.noise_mode, faces.truncation_psi
        notes = read_annotations(annotations_path, faces, detectors=[landmark_detector], device=device)
        self.identity, self.attribute = notes["identity"], notes["attribute"]
        self.landmarks, self.pose = notes[f"landmarks/{landmark_detector}"], notes[f"pose/{landmark_detector}"]
        self.style_mean, self.style_std = read_style_stats(stats_path, faces, device)


class Prefetcher:
    """Prepares the batches of steps [start, stop) on a thread: indices (pinned) and, on
    reconstruction steps, the target images read from disk, so the GPU never waits on h5py.

    `close()` (the loop calls it in a `finally`) stops and joins the thread even when the loop
    ends before it has consumed every batch (an error, an interrupt): otherwise the thread sits
    blocked on the full queue with the faces file open until the interpreter exits.
    """

    def __init__(
        self, data: TrainingData, settings: TrainingSettings, start: int, stop: int, rank: int, world: int, pin: bool
    ):
        self.data, self.settings, self.pin = data, settings, pin
        self.rank_slice = slice(rank * settings.batch_size // world, (rank + 1) * settings.batch_size // world)
        self.queue: queue.Queue = queue.Queue(maxsize=4)
        self.error: BaseException | None = None
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(start, stop), daemon=True, name="prefetch")
        self.thread.start()

    def _put(self, item) -> bool:
        """Queue `item` unless asked to stop; False once stopping."""
        while not self.stopping.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, start: int, stop: int) -> None:
        try:
            with h5py.File(self.data.faces_path, "r") as f:
                images = f["images"]
                for step in range(start, stop):
                    ids, attrs, cross = batch_plan(
                        step, self.settings, self.data.identity_split, self.data.attribute_split
                    )
                    ids, attrs = ids[self.rank_slice], attrs[self.rank_slice]
                    target = None if cross else self._tensor(read_images(images, attrs))
                    if not self._put((step, self._tensor(ids), self._tensor(attrs), cross, target)):
                        return
        except BaseException as exc:  # surfaced in the training loop
            self.error = exc
            self._put(None)

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(array)
        return t.pin_memory() if self.pin else t

    def get(self):
        item = self.queue.get()
        if item is None:
            raise RuntimeError("reading training batches failed") from self.error
        return item

    def close(self) -> None:
        """Stop the thread (it may be blocked on the full queue) and wait for it."""
        self.stopping.set()
        self.thread.join()
