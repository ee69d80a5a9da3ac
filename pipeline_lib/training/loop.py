"""Training of the reference mapping network M_ref (paper Sec. 3.3-3.5).

One step: identity faces I_id (styles S_id from their stored w) and attribute faces I_attr,
dS = M_ref(features), I_out = G(S_id + dS), and the losses of `losses.py`. Every
`cross_frequency`-th step (index divisible by it) pairs different identity and attribute
faces; the others use the same face for both and add the reconstruction loss.

What makes it fast without changing what it computes:
- The inputs' encoder outputs (E_id(I_id), E_attr(I_attr), landmarks and pose of I_attr) are
  the dataset's annotations, computed once; only I_out goes through the encoders each step.
- The frozen generator runs as `FastSynthesis` (bf16 convolutions, float32 styles and
  demodulation, channels-last), the encoders under bf16 autocast with their geometry in
  float32, optionally `torch.compile`d; the losses are float32.
- No host synchronisation inside the loop: batches are drawn from (seed, step) on a prefetch
  thread, loss terms stay on the GPU until a log flush.

Restartable: a checkpoint (model, optimiser, scheduler, RNG states, step) is written
atomically every `checkpoint_every` steps; a restarted job continues from the newest one and
reaches the same weights as an uninterrupted run, because batch composition depends only on
(seed, step). Multi-GPU: one process per GPU under torchrun (DDP); the global batch is split
evenly, so results do not depend on the number of GPUs beyond reduction order.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import os
import queue
import random
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import h5py
import numpy as np
import torch
import torch.distributed as dist

from pipeline_lib.atomic import atomic_path
from pipeline_lib.dataset.synthesis import open_faces
from pipeline_lib.generator.fast import FastSynthesis
from pipeline_lib.images import from_uint8_hwc, read_images, to_uint8_hwc
from pipeline_lib.training.losses import (
    LossWeights,
    euler_loss,
    identity_loss,
    landmark_loss,
    reconstruction_loss,
    style_negative_log_likelihood,
    total_loss,
)
from pipeline_lib.mref import INPUT_FEATURES, ReferenceMapper, mapper_input, save_mapper

log = logging.getLogger(__name__)

LOSS_TERMS = ("total", "identity", "landmark", "euler", "reconstruction", "style_nll")


# ----------------------------------------------------------------------------------------------
# Settings


@dataclass(frozen=True)
class TrainingSettings:
    variant: str = "final"
    input_features: str = "attribute"
    hidden: tuple = (2048, 2048, 2048)
    losses: LossWeights = field(default_factory=LossWeights)
    batch_size: int = 6
    num_steps: int = 200_000
    lr: float = 5e-6
    lr_end: float = 1e-7
    betas: tuple = (0.9, 0.999)
    cross_frequency: int = 3
    seed: int = 0
    precision: str = "bfloat16"  # of the frozen generator and encoders; M_ref and losses stay float32
    compile: bool = True
    gpus: int = 1
    checkpoint_every: int = 2000
    log_every: int = 100
    sample_every: int = 5000
    num_samples: int = 4

    def fingerprint_dict(self) -> dict:
        """What the weights depend on; logging cadence and GPU count are left out."""
        d = asdict(self)
        for key in ("checkpoint_every", "log_every", "sample_every", "num_samples", "gpus", "compile"):
            d.pop(key)
        return d

    def validate(self) -> None:
        if self.input_features not in INPUT_FEATURES:
            raise ValueError(f"input_features must be one of {INPUT_FEATURES}, got {self.input_features!r}")
        if self.precision not in ("float32", "bfloat16"):
            raise ValueError(f"precision must be float32 or bfloat16, got {self.precision!r}")
        if self.batch_size % self.gpus:
            raise ValueError(f"batch_size {self.batch_size} must be a multiple of gpus {self.gpus}")
        if self.num_steps < 1 or self.cross_frequency < 1:
            raise ValueError("num_steps and cross_frequency must be at least 1")


def settings_from_config(training_cfg: dict, variant: str) -> TrainingSettings:
    """The settings of `variant`: the `training` section with the variant's entries on top."""
    variants = training_cfg["variants"]
    if variant not in variants:
        raise KeyError(f"no training variant {variant!r} in config.yaml; defined: {sorted(variants)}")
    cfg = {k: v for k, v in training_cfg.items() if k != "variants"}
    cfg.update({k: v for k, v in variants[variant].items() if k != "label"})
    weights = LossWeights(
        lambda_id=float(cfg["lambda_id"]),
        lambda_attr=float(cfg["lambda_attr"]),
        lambda_rec=float(cfg["lambda_rec"]),
        lambda_reg=float(cfg.get("lambda_reg", 0.0)),
        alpha=float(cfg["alpha"]),
        euler=bool(cfg.get("euler_loss", False)),
    )
    settings = TrainingSettings(
        variant=variant,
        input_features=str(cfg["input_features"]),
        hidden=tuple(int(h) for h in cfg["hidden"]),
        losses=weights,
        batch_size=int(cfg["batch_size"]),
        num_steps=int(cfg["num_steps"]),
        lr=float(cfg["lr"]),
        lr_end=float(cfg["lr_end"]),
        betas=tuple(float(b) for b in cfg["betas"]),
        cross_frequency=int(cfg["cross_frequency"]),
        seed=int(cfg["seed"]),
        precision=str(cfg["precision"]),
        compile=bool(cfg["compile"]),
        gpus=int(cfg["gpus"]),
        checkpoint_every=int(cfg["checkpoint_every"]),
        log_every=int(cfg["log_every"]),
        sample_every=int(cfg["sample_every"]),
    )
    settings.validate()
    return settings


def lr_factor(step: int, settings: TrainingSettings) -> float:
    """Exponential decay from `lr` at step 0 to `lr_end` at the last step."""
    if settings.num_steps == 1:
        return 1.0
    return (settings.lr_end / settings.lr) ** (step / (settings.num_steps - 1))


# ----------------------------------------------------------------------------------------------
# Data


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
        self.faces_path = Path(faces_path)
        with open_faces(faces_path) as f:
            self.w = torch.from_numpy(f["w"][:]).to(device)
            self.identity_split = f["split/identity"][:]
            self.attribute_split = f["split/attribute"][:]
            dataset_id = f.attrs["dataset_id"]
            self.noise_mode = str(f.attrs["noise_mode"])
            self.truncation_psi = float(f.attrs["truncation_psi"])
        with h5py.File(annotations_path, "r") as a:
            if a.attrs["source_dataset_id"] != dataset_id:
                raise ValueError(f"{annotations_path} annotates another dataset than {faces_path}; rerun annotate_dataset")
            if f"landmarks/{landmark_detector}" not in a:
                have = sorted(a["landmarks"].keys())
                raise KeyError(f"{annotations_path} has no landmarks of {landmark_detector!r} (has {have})")
            self.identity = torch.from_numpy(a["identity"][:]).to(device)
            self.attribute = torch.from_numpy(a["attribute"][:]).to(device)
            self.landmarks = torch.from_numpy(a[f"landmarks/{landmark_detector}"][:]).to(device)
            self.pose = torch.from_numpy(a[f"pose/{landmark_detector}"][:]).to(device)
        with h5py.File(stats_path, "r") as s:
            if s.attrs["source_dataset_id"] != dataset_id:
                raise ValueError(f"{stats_path} was computed on another dataset than {faces_path}; rerun style_statistics")
            self.style_mean = torch.from_numpy(s["S/mean"][:]).float().to(device)
            self.style_std = torch.from_numpy(s["S/std"][:]).float().clamp_min(1e-8).to(device)


class Prefetcher:
    """Prepares the batches of steps [start, stop) on a thread: indices (pinned) and, on
    reconstruction steps, the target images read from disk, so the GPU never waits on h5py."""

    def __init__(self, data: TrainingData, settings: TrainingSettings, start: int, stop: int, rank: int, world: int, pin: bool):
        self.data, self.settings, self.pin = data, settings, pin
        self.rank_slice = slice(rank * settings.batch_size // world, (rank + 1) * settings.batch_size // world)
        self.queue: queue.Queue = queue.Queue(maxsize=4)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(start, stop), daemon=True, name="prefetch")
        self.thread.start()

    def _run(self, start: int, stop: int) -> None:
        try:
            with h5py.File(self.data.faces_path, "r") as f:
                images = f["images"]
                for step in range(start, stop):
                    ids, attrs, cross = batch_plan(step, self.settings, self.data.identity_split, self.data.attribute_split)
                    ids, attrs = ids[self.rank_slice], attrs[self.rank_slice]
                    target = None if cross else self._tensor(read_images(images, attrs))
                    item = (step, self._tensor(ids), self._tensor(attrs), cross, target)
                    self.queue.put(item)
        except BaseException as exc:  # surfaced in the training loop
            self.error = exc
            self.queue.put(None)

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(array)
        return t.pin_memory() if self.pin else t

    def get(self):
        item = self.queue.get()
        if item is None:
            raise RuntimeError("reading training batches failed") from self.error
        return item


# ----------------------------------------------------------------------------------------------
# The step


class EditModel(torch.nn.Module):
    """The frozen half of a step: I_out = G(S_id + dS) and the encoders' view of I_out."""

    def __init__(self, G, identity_encoder, landmark_encoder, precision: str, device):
        super().__init__()
        cuda = torch.device(device).type == "cuda"
        self.dtype = torch.bfloat16 if precision == "bfloat16" else torch.float32
        channels_last = cuda and self.dtype == torch.bfloat16  # float32 convs are slower channels-last
        self.synthesis = FastSynthesis(G, dtype=self.dtype, channels_last=channels_last).to(device).requires_grad_(False)
        self.identity_encoder = identity_encoder
        self.landmark_encoder = landmark_encoder
        self.G = G

    def styles(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            return self.G.styles_from_w(w)

    def forward(self, S: torch.Tensor, S_rgb: torch.Tensor, noise_mode: str):
        # Clamped as the saved faces are, so the encoders see I_out as they saw the dataset.
        img = self.synthesis(S, S_rgb, noise_mode=noise_mode).clamp(-1, 1)
        autocast = self.dtype == torch.bfloat16
        with torch.autocast(img.device.type, dtype=torch.bfloat16, enabled=autocast):
            embedding = self.identity_encoder.embed(img)
            landmarks, pose = self.landmark_encoder.landmarks_and_pose(img)
        return img, embedding.float(), landmarks.float(), pose.float()


def loss_terms(img, embedding, landmarks, pose, S_out, targets: dict, data: TrainingData, alpha: float, reconstruction: bool):
    """Every loss term of one step (float32), whether or not its weight is zero: all are logged."""
    terms = {
        "identity": identity_loss(targets["identity"], embedding),
        "landmark": landmark_loss(targets["landmarks"], landmarks),
        "euler": euler_loss(targets["pose"], pose),
        "style_nll": style_negative_log_likelihood(S_out, data.style_mean, data.style_std),
    }
    if reconstruction:
        terms["reconstruction"] = reconstruction_loss(targets["image"], img, alpha)
    return terms


class Trainer:
    def __init__(
        self, G, identity_encoder, landmark_encoder, data, settings: TrainingSettings, device, rank=0, world=1, compile_mode=None
    ):
        self.settings, self.data, self.device, self.rank, self.world = settings, data, torch.device(device), rank, world
        torch.manual_seed(settings.seed)
        in_dim = data.attribute.shape[1] + (data.identity.shape[1] if settings.input_features != "attribute" else 0)
        self.model = ReferenceMapper(in_dim, G.style_dim, settings.hidden).to(self.device)
        self.ddp = None
        if world > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = DistributedDataParallel(self.model, device_ids=ids)
        fused = self.device.type == "cuda"
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=settings.lr, betas=settings.betas, fused=fused)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: lr_factor(s, settings))
        self.edit = EditModel(G, identity_encoder, landmark_encoder, settings.precision, self.device)
        # The whole forward (styles, M_ref, generator, encoders, losses) is compiled as one graph
        # per step kind (cross / reconstruction); the optimiser step stays eager (fused Adam).
        self.forward = torch.compile(self._forward, dynamic=False, mode=compile_mode) if settings.compile else self._forward
        self.step = 0
        self._pending: list[tuple[int, float, bool, torch.Tensor]] = []

    @property
    def mapper(self):
        return self.ddp if self.ddp is not None else self.model

    def targets(self, ids: torch.Tensor, attrs: torch.Tensor, image) -> dict:
        t = {
            "identity": self.data.identity[ids],
            "landmarks": self.data.landmarks[attrs],
            "pose": self.data.pose[attrs],
        }
        if image is not None:
            t["image"] = from_uint8_hwc(image)
        return t

    def edit_styles(self, ids: torch.Tensor, attrs: torch.Tensor, mapper=None):
        """S_id, S_rgb, dS for identity faces `ids` and attribute faces `attrs`."""
        S_id, S_rgb = self.edit.styles(self.data.w[ids])
        features = mapper_input(self.data.identity[ids], self.data.attribute[attrs], self.settings.input_features)
        dS = (mapper or self.mapper)(features)
        return S_id, S_rgb, dS

    def _forward(self, ids, attrs, image, reconstruction: bool):
        """Total loss and the row of every term, for one batch."""
        S_id, S_rgb, dS = self.edit_styles(ids, attrs)
        S_out = S_id + dS
        img, embedding, landmarks, pose = self.edit(S_out, S_rgb, self.data.noise_mode)
        w = self.settings.losses
        terms = loss_terms(img, embedding, landmarks, pose, S_out, self.targets(ids, attrs, image), self.data, w.alpha, reconstruction)
        total = total_loss(terms, w, reconstruction_step=reconstruction)
        nan = torch.full((), float("nan"), device=total.device)
        return total, torch.stack([total.detach()] + [terms.get(k, nan).detach() for k in LOSS_TERMS[1:]])

    def train_step(self, ids, attrs, cross: bool, image) -> torch.Tensor:
        ids = ids.to(self.device, non_blocking=True)
        attrs = attrs.to(self.device, non_blocking=True)
        if image is not None:
            image = image.to(self.device, non_blocking=True)
        total, row = self.forward(ids, attrs, image, not cross)
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.optimizer.step()
        lr = self.scheduler.get_last_lr()[0]
        self.scheduler.step()
        self._pending.append((self.step, lr, cross, row.clone()))  # clone: a CUDA graph reuses its outputs
        self.step += 1
        return total

    def flush_losses(self) -> list[dict]:
        """The pending steps' loss terms as rows (averaged over GPUs); the loop's only sync."""
        if not self._pending:
            return []
        values = torch.stack([p[3] for p in self._pending])
        if self.world > 1:
            dist.all_reduce(values)
            values /= self.world
        values = values.cpu().numpy()
        rows = []
        for (step, lr, cross, _), v in zip(self._pending, values):
            rows.append({"step": step, "lr": lr, "cross": int(cross), **dict(zip(LOSS_TERMS, map(float, v)))})
        self._pending.clear()
        bad = [r["step"] for r in rows if not math.isfinite(r["total"])]
        if bad:
            raise FloatingPointError(f"the loss is not finite at step {bad[0]}; the last checkpoint is kept")
        return rows

    # -- checkpoints --------------------------------------------------------------------------

    def state(self, fingerprint: str) -> dict:
        return {
            "step": self.step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                "numpy": json.dumps(_jsonable(np.random.get_state())),
                "python": json.dumps(_jsonable(random.getstate())),
            },
            "fingerprint": fingerprint,
        }

    def load_state(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = int(state["step"])
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        np_state = json.loads(rng["numpy"])
        np.random.set_state((np_state[0], np.array(np_state[1], dtype=np.uint32), *np_state[2:]))
        py_state = json.loads(rng["python"])
        random.setstate((py_state[0], tuple(py_state[1]), py_state[2]))


def _jsonable(x):
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (tuple, list)):
        return [_jsonable(v) for v in x]
    return x


# ----------------------------------------------------------------------------------------------
# Checkpoint files, logs, samples


class RunFolder:
    """`results/models/{variant}/`: mref.pt (the target), checkpoints/, logs/, samples/."""

    def __init__(self, out_path):
        self.out = Path(out_path)
        self.root = self.out.parent
        self.checkpoints = self.root / "checkpoints"
        self.logs = self.root / "logs"
        self.samples = self.root / "samples"
        self.csv = self.logs / "losses.csv"

    def latest_checkpoint(self) -> Path | None:
        found = sorted(self.checkpoints.glob("step_*.pt"))
        return found[-1] if found else None

    def save_checkpoint(self, state: dict, keep: int = 2) -> Path:
        path = self.checkpoints / f"step_{state['step']:09d}.pt"
        with atomic_path(path) as tmp:
            torch.save(state, tmp)
        for old in sorted(self.checkpoints.glob("step_*.pt"))[:-keep]:
            old.unlink()
        return path

    def clear_checkpoints(self) -> None:
        for old in self.checkpoints.glob("step_*.pt"):
            old.unlink()

    def start_csv(self, resume_step: int) -> None:
        """Keep the rows of the steps before `resume_step` (those a checkpoint covers)."""
        self.logs.mkdir(parents=True, exist_ok=True)
        kept = []
        if resume_step > 0 and self.csv.exists():
            with open(self.csv, newline="") as fh:
                kept = [row for row in csv.DictReader(fh) if int(row["step"]) < resume_step]
        with atomic_path(self.csv) as tmp, open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
            writer.writeheader()
            writer.writerows(kept)

    def append_csv(self, rows: list[dict]) -> None:
        with open(self.csv, "a", newline="") as fh:
            csv.DictWriter(fh, fieldnames=CSV_FIELDS).writerows(rows)
            fh.flush()
            os.fsync(fh.fileno())


CSV_FIELDS = ("step", "lr", "cross") + LOSS_TERMS


def fingerprint_of(settings: TrainingSettings, input_checksums: dict) -> str:
    blob = json.dumps({"settings": settings.fingerprint_dict(), "inputs": input_checksums}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


@torch.no_grad()
def sample_grid(trainer: Trainer, path) -> None:
    """Rows: identity faces, attribute faces, edited outputs (fixed pairs, rank 0)."""
    from PIL import Image

    data = trainer.data
    k = min(trainer.settings.num_samples, len(data.identity_split), len(data.attribute_split))
    ids = torch.as_tensor(data.identity_split[:k], device=trainer.device)
    attrs = torch.as_tensor(data.attribute_split[:k], device=trainer.device)
    S_id, S_rgb, dS = trainer.edit_styles(ids, attrs, mapper=trainer.model)
    out = trainer.edit.synthesis(S_id + dS, S_rgb, noise_mode=data.noise_mode)
    with h5py.File(data.faces_path, "r") as f:
        rows = [read_images(f["images"], ids.cpu().numpy()), read_images(f["images"], attrs.cpu().numpy())]
    rows.append(to_uint8_hwc(out.float()).cpu().numpy())
    grid = np.concatenate([np.concatenate(list(r), axis=1) for r in rows], axis=0)
    with atomic_path(path) as tmp:
        Image.fromarray(grid).save(tmp, format="PNG")


def plot_loss_curves(csv_path, out_path) -> None:
    """Every loss term per step (thin) with a running mean (thick), one panel each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(csv_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    steps = np.array([int(r["step"]) for r in rows])
    fig, axes = plt.subplots(2, 3, figsize=(13, 6.5), constrained_layout=True)
    for ax, term in zip(axes.flat, LOSS_TERMS):
        y = np.array([float(r[term]) for r in rows])
        ok = np.isfinite(y)
        ax.plot(steps[ok], y[ok], lw=0.4, alpha=0.5, color="tab:blue")
        if ok.sum() > 10:
            width = max(ok.sum() // 50, 1)
            smooth = np.convolve(y[ok], np.ones(width) / width, mode="valid")
            ax.plot(steps[ok][width - 1 :], smooth, lw=1.6, color="tab:red")
        ax.set_title(term + (" (reconstruction steps)" if term == "reconstruction" else ""))
        ax.set_xlabel("step")
    fig.suptitle(f"M_ref training losses ({Path(csv_path).parent.parent.name})")
    with atomic_path(out_path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------
# The job


def train(
    G,
    identity_encoder,
    landmark_encoder,
    data: TrainingData,
    settings: TrainingSettings,
    out_path,
    input_checksums: dict,
    device,
    rank: int = 0,
    world: int = 1,
    progress: bool = True,
    stop_after: int | None = None,
) -> Path:
    """Train (or resume) and write `out_path` (mref.pt), its loss curves and final samples.

    `stop_after` ends the run early after that step without writing the target (tests).
    """
    from tqdm import tqdm

    folder = RunFolder(out_path)
    fingerprint = fingerprint_of(settings, input_checksums)
    # CUDA graphs (compile mode "reduce-overhead") remove the launch overhead that dominates
    # small batches: 10x the straightforward step at the paper's batch 6 on an H200
    # (benchmarks/training_benchmark.py). Not under DDP, whose gradient hooks run outside graphs.
    cuda_graphs = torch.device(device).type == "cuda" and world == 1
    trainer = Trainer(
        G, identity_encoder, landmark_encoder, data, settings, device, rank, world,
        compile_mode="reduce-overhead" if cuda_graphs else None,
    )
    latest = folder.latest_checkpoint()
    if latest is not None:
        state = torch.load(latest, map_location="cpu", weights_only=True)
        if state["fingerprint"] == fingerprint:
            trainer.load_state(state)
            log.info("resuming %s from %s (step %d of %d)", settings.variant, latest, trainer.step, settings.num_steps)
        else:
            log.warning("%s was made with other settings or inputs; starting %s afresh", latest, settings.variant)
            if rank == 0:
                folder.clear_checkpoints()
        del state
    if world > 1:
        dist.barrier()
    tb = None
    if rank == 0:
        folder.start_csv(trainer.step)
        folder.samples.mkdir(parents=True, exist_ok=True)
        from torch.utils.tensorboard import SummaryWriter

        tb = SummaryWriter(str(folder.logs / "tensorboard"), purge_step=trainer.step)
        log.info(
            "training %s: %d steps, batch %d on %d %s process(es), %s, compile=%s",
            settings.variant, settings.num_steps, settings.batch_size, world, trainer.device.type,
            settings.precision, settings.compile,
        )

    def flush():
        rows = trainer.flush_losses()
        if rank == 0 and rows:
            folder.append_csv(rows)
            for r in rows:
                for term in LOSS_TERMS:
                    if math.isfinite(r[term]):
                        tb.add_scalar(f"loss/{term}", r[term], r["step"])
                tb.add_scalar("lr", r["lr"], r["step"])

    stop = settings.num_steps if stop_after is None else min(settings.num_steps, stop_after)
    prefetch = Prefetcher(data, settings, trainer.step, stop, rank, world, pin=trainer.device.type == "cuda")
    t0, first = time.perf_counter(), trainer.step
    bar = tqdm(total=stop, initial=trainer.step, desc=f"train {settings.variant}", unit="step", disable=not progress or rank != 0)
    while trainer.step < stop:
        step, ids, attrs, cross, image = prefetch.get()
        assert step == trainer.step
        trainer.train_step(ids, attrs, cross, image)
        done = trainer.step
        bar.update(1)
        if done % settings.log_every == 0 or done == stop:
            flush()
        if done % settings.checkpoint_every == 0 and done < settings.num_steps:
            flush()
            if rank == 0:
                folder.save_checkpoint(trainer.state(fingerprint))
            if world > 1:
                dist.barrier()
        if rank == 0 and done % settings.sample_every == 0:
            sample_grid(trainer, folder.samples / f"step_{done:09d}.png")
    bar.close()
    flush()
    seconds = time.perf_counter() - t0
    if rank == 0 and trainer.step > first:
        log.info("%d steps in %.1f s (%.2f steps/s)", trainer.step - first, seconds, (trainer.step - first) / seconds)
    if tb is not None:
        tb.close()
    if trainer.step < settings.num_steps:
        return folder.out
    if rank == 0:
        sample_grid(trainer, folder.samples / "final.png")
        plot_loss_curves(folder.csv, folder.logs / "loss_curves.png")
        metadata = {
            "settings": asdict(settings),
            "inputs": input_checksums,
            "fingerprint": fingerprint,
            "landmark_detector": getattr(landmark_encoder, "name", type(landmark_encoder).__name__),
        }
        save_mapper(folder.out, trainer.model, metadata)
        folder.clear_checkpoints()  # the target now holds the weights; checkpoints only guard a crash
    if world > 1:
        dist.barrier()
    return folder.out


def run_training_job(
    out_path,
    faces_path,
    annotations_path,
    stats_path,
    generator_path,
    encoder_files: dict,
    encoders_cfg: dict,
    training_cfg: dict,
    variant: str,
    device_name: str = "auto",
    stop_after: int | None = None,
) -> Path:
    """The `train_mref` job. With `gpus` > 1 it relaunches itself under torchrun, one process
    per GPU; otherwise it trains in this process. The inputs' checksums (which decide whether a
    checkpoint may be resumed) are computed here, once, not by every process."""
    from pipeline_lib.provenance import file_sha256

    settings = settings_from_config(training_cfg, variant)
    inputs = {
        "faces": faces_path,
        "annotations": annotations_path,
        "style_stats": stats_path,
        "generator": generator_path,
        **encoder_files,
    }
    checksums = {name: file_sha256(p) for name, p in sorted(inputs.items())}
    checksums["landmark_detector"] = encoders_cfg["landmarks"]["train"]
    args = {
        "out_path": str(out_path),
        "faces_path": str(faces_path),
        "annotations_path": str(annotations_path),
        "stats_path": str(stats_path),
        "generator_path": str(generator_path),
        "encoder_files": {k: str(v) for k, v in encoder_files.items()},
        "encoders_cfg": encoders_cfg,
        "training_cfg": training_cfg,
        "variant": variant,
        "device_name": device_name,
        "stop_after": stop_after,
        "input_checksums": checksums,
    }
    if settings.gpus > 1:
        if device_name in ("auto", "cuda"):
            from pipeline_lib.devices import claim_gpus

            claim_gpus(settings.gpus)  # torchrun's processes inherit the claimed GPUs
        return launch_distributed(args, settings.gpus)
    return _train_process(args, rank=0, world=1)


def launch_distributed(args: dict, nproc: int) -> Path:
    """torchrun --standalone (a free rendezvous port per job, so concurrent jobs on one node do
    not collide), one process per GPU, each running `python -m pipeline_lib.training.loop`."""
    from pipeline_lib.provenance import PROJECT_ROOT

    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(args, fh)
        args_file = fh.name
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m", "pipeline_lib.training.loop", args_file]
    log.info("launching %d training processes: %s", nproc, " ".join(cmd))
    try:
        proc = subprocess.run(cmd, env=env)
    finally:
        os.unlink(args_file)
    if proc.returncode != 0:
        raise RuntimeError(f"distributed training failed (exit {proc.returncode}); see the log above")
    return Path(args["out_path"])


def _train_process(args: dict, rank: int, world: int) -> Path:
    from pipeline_lib.devices import resolve_device
    from pipeline_lib.encoders import build_encoder
    from pipeline_lib.generator.loading import load_generator

    settings = settings_from_config(args["training_cfg"], args["variant"])
    device = resolve_device(args["device_name"])
    if world > 1 and device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", rank))
        if local >= torch.cuda.device_count():
            raise RuntimeError(f"{world} training processes but only {torch.cuda.device_count()} visible GPUs")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    G = load_generator(args["generator_path"], device=device)
    detector = args["encoders_cfg"]["landmarks"]["train"]
    identity_encoder = build_encoder(args["encoders_cfg"]["identity"], args["encoder_files"], device)
    landmark_encoder = build_encoder(detector, args["encoder_files"], device)
    landmark_encoder.name = detector
    data = TrainingData(args["faces_path"], args["annotations_path"], args["stats_path"], detector, device)
    return train(
        G, identity_encoder, landmark_encoder, data, settings, args["out_path"], args["input_checksums"], device, rank,
        world, stop_after=args.get("stop_after"),
    )


def _distributed_main(args_file: str) -> None:
    """Entry point of each torchrun process."""
    from pipeline_lib.logs import configure

    configure()
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    with open(args_file) as fh:
        args = json.load(fh)
    backend = "nccl" if args["device_name"] != "cpu" and torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group(backend)
    try:
        _train_process(args, rank, world)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    _distributed_main(sys.argv[1])

