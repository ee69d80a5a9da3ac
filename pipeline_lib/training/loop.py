"""The training loop of M_ref, readable top to bottom: resume, then step, log, checkpoint and
sample until `num_steps`, then write mref.pt. Every `cross_frequency`-th step (index divisible
by it) pairs different identity and attribute faces; the others use the same face for both and
add the reconstruction loss (paper Sec. 3.5).

Restartable: a checkpoint (model, optimiser, scheduler, RNG states, step) is written atomically
every `checkpoint_every` steps; a restarted job continues from the newest one whose settings and
inputs match, and reaches the same weights as an uninterrupted run.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from pipeline_lib.mref import save_mapper
from pipeline_lib.settings import TrainingSettings
from pipeline_lib.training.data import Prefetcher, TrainingData
from pipeline_lib.training.run_folder import RunFolder, fingerprint_of, plot_loss_curves, sample_grid
from pipeline_lib.training.step import LOSS_TERMS, Trainer
from pipeline_lib.weights.checkpoints import load_tensors_only

log = logging.getLogger(__name__)


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
    folder = RunFolder(out_path)
    fingerprint = fingerprint_of(settings, input_checksums)
    # CUDA graphs (compile mode "reduce-overhead") remove the launch overhead that dominates
    # small batches: 10x the straightforward step at the paper's batch 6 on an H200
    # (benchmarks/training_benchmark.py). Not under DDP, whose gradient hooks run outside graphs.
    cuda_graphs = torch.device(device).type == "cuda" and world == 1
    trainer = Trainer(
        G,
        identity_encoder,
        landmark_encoder,
        data,
        settings,
        device,
        rank,
        world,
        compile_mode="reduce-overhead" if cuda_graphs else None,
    )
    latest = folder.latest_checkpoint()
    if latest is not None:
        state = load_tensors_only(latest, "a genfields training checkpoint")
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
        tb = SummaryWriter(str(folder.logs / "tensorboard"), purge_step=trainer.step)
        log.info(
            "training %s: %d steps, batch %d on %d %s process(es), %s, compile=%s",
            settings.variant,
            settings.num_steps,
            settings.batch_size,
            world,
            trainer.device.type,
            settings.precision,
            settings.compile,
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
    bar = tqdm(
        total=stop,
        initial=trainer.step,
        desc=f"train {settings.variant}",
        unit="step",
        disable=not progress or rank != 0,
    )
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
