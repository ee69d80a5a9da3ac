"""The training loop of M_ref, readable top to bottom: resume, then step, log, checkpoint and
sample until `num_steps`, then write mref.pt. Every `cross_frequency`-th step (index divisible
by it) pairs different identity and attribute faces; the others use the same face for both and
add the reconstruction loss (paper Sec. 3.5).

Restartable: a checkpoint (model, optimiser, scheduler, RNG states, step) is written atomically
every `checkpoint_every` steps; a restarted job continues from the newest one whose settings and
inputs match, and reaches the same weights as an uninterrupted run.

Several variants can be trained together (config `training.together`): one Trainer steps them
all with one generator pass, and each keeps its own run folder, checkpoints, logs and target,
written as its own job would write them.
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
from pipeline_lib.training.data import Prefetcher, TrainingData
from pipeline_lib.training.run_folder import RunFolder, fingerprint_of, plot_loss_curves, sample_grid
from pipeline_lib.training.step import LOSS_TERMS, Trainer, VariantTrainer
from pipeline_lib.weights.checkpoints import load_tensors_only

log = logging.getLogger(__name__)


class VariantRun:
    """One variant's files: its run folder, fingerprint, loss CSV and TensorBoard writer."""

    def __init__(self, variant: VariantTrainer, out_path, input_checksums: dict, rank: int):
        self.variant, self.settings, self.rank = variant, variant.settings, rank
        self.folder = RunFolder(out_path)
        self.fingerprint = fingerprint_of(self.settings, input_checksums)
        self.tb = None

    def matching_checkpoints(self) -> dict:
        """{step: path} of the checkpoints made with these settings and inputs."""
        found = {}
        for path in sorted(self.folder.checkpoints.glob("step_*.pt")):
            state = load_tensors_only(path, "a genfields training checkpoint")
            if state["fingerprint"] == self.fingerprint:
                found[int(state["step"])] = path
            else:
                log.warning("%s was made with other settings or inputs; not resumed", path)
        return found

    def start_logs(self) -> None:
        if self.rank != 0:
            return
        self.folder.start_csv(self.variant.step)
        self.folder.samples.mkdir(parents=True, exist_ok=True)
        self.tb = SummaryWriter(str(self.folder.logs / "tensorboard"), purge_step=self.variant.step)

    def write_rows(self, rows: list[dict]) -> None:
        if self.rank != 0 or not rows:
            return
        self.folder.append_csv(rows)
        for r in rows:
            for term in LOSS_TERMS:
                if math.isfinite(r[term]):
                    self.tb.add_scalar(f"loss/{term}", r[term], r["step"])
            self.tb.add_scalar("lr", r["lr"], r["step"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
            self.tb = None


def resume(trainer: Trainer, runs: list[VariantRun], rank: int) -> None:
    """Load the newest step at which every variant has a matching checkpoint (one variant:
    its newest matching one); with none, start afresh and drop the stale checkpoints."""
    found = [run.matching_checkpoints() for run in runs]
    common = set(found[0]).intersection(*found[1:])
    if common:
        step = max(common)
        for run, paths in zip(runs, found):
            trainer.load_state(load_tensors_only(paths[step], "a genfields training checkpoint"), run.variant)
            log.info(
                "resuming %s from %s (step %d of %d)", run.settings.variant, paths[step], step, run.settings.num_steps
            )
        return
    for run in runs:
        if any(run.folder.checkpoints.glob("step_*.pt")):
            log.warning("no checkpoint of %s to resume with the others; starting it afresh", run.settings.variant)
            if rank == 0:
                run.folder.clear_checkpoints()


def train(
    G,
    identity_encoder,
    landmark_encoder,
    data: TrainingData,
    settings,
    out_path,
    input_checksums: dict,
    device,
    rank: int = 0,
    world: int = 1,
    progress: bool = True,
    stop_after: int | None = None,
) -> Path | list[Path]:
    """Train (or resume) and write `out_path` (mref.pt), its loss curves and final samples.

    `settings` and `out_path` are one variant's, or lists of the variants trained together
    (then the list of targets is returned). `stop_after` ends the run early after that step
    without writing the targets (tests).
    """
    many = isinstance(settings, (list, tuple))
    all_settings, out_paths = (list(settings), list(out_path)) if many else ([settings], [out_path])
    if len({s.num_steps for s in all_settings}) != 1:
        raise ValueError("variants trained together must have the same num_steps")
    # CUDA graphs (compile mode "reduce-overhead") remove the launch overhead that dominates
    # small batches: 10x the straightforward step at the paper's batch 6 on an H200
    # (benchmarks/training_benchmark.py). Not under DDP, whose gradient hooks run outside graphs.
    cuda_graphs = torch.device(device).type == "cuda" and world == 1
    mode = "reduce-overhead" if cuda_graphs else None
    trainer = Trainer(
        G, identity_encoder, landmark_encoder, data, all_settings if many else settings, device, rank, world, mode
    )
    runs = [VariantRun(v, p, input_checksums, rank) for v, p in zip(trainer.variants, out_paths)]
    resume(trainer, runs, rank)
    if world > 1:
        dist.barrier()
    first_settings = all_settings[0]
    num_steps = first_settings.num_steps
    for run in runs:
        run.start_logs()
    if rank == 0:
        log.info(
            "training %s: %d steps, batch %d on %d %s process(es), %s, compile=%s",
            "+".join(s.variant for s in all_settings),
            num_steps,
            first_settings.batch_size,
            world,
            trainer.device.type,
            first_settings.precision,
            first_settings.compile,
        )
    start = trainer.variants[0].step
    stop = num_steps if stop_after is None else min(num_steps, stop_after)
    pin = trainer.device.type == "cuda"
    prefetchers = []
    t0 = time.perf_counter()
    try:
        prefetchers = [Prefetcher(data, s, start, stop, rank, world, pin=pin) for s in all_settings]
        first_done = _loop(trainer, runs, prefetchers, start, stop, rank, world, progress)
    finally:
        for p in prefetchers:
            p.close()
        for run in runs:
            run.close()
    t1 = time.perf_counter()
    if rank == 0 and stop > start:
        # The first step of a process compiles (minutes on a GPU): the rate of the others is the
        # job's speed (benchmarks/two_gpu_check.py compares it between one and two GPUs).
        later = f"{(stop - start - 1) / (t1 - first_done):.2f}" if stop - start > 1 else "-"
        log.info(
            "%d steps in %.1f s (%.2f steps/s; first step %.1f s, the others %s steps/s)",
            stop - start, t1 - t0, (stop - start) / (t1 - t0), first_done - t0, later,
        )  # fmt: skip
    if stop < num_steps:
        return out_paths if many else out_paths[0]
    if rank == 0:
        for run in runs:
            finish(trainer, run, input_checksums, landmark_encoder)
    if world > 1:
        dist.barrier()
    targets = [run.folder.out for run in runs]
    return targets if many else targets[0]


def _loop(trainer: Trainer, runs: list[VariantRun], prefetchers, start: int, stop: int, rank, world, progress):
    """Steps [start, stop): step, log, checkpoint and sample every variant. Returns the time
    (perf_counter) when the first of them was done, losses synchronised."""
    name = "+".join(run.settings.variant for run in runs)
    bar = tqdm(total=stop, initial=start, desc=f"train {name}", unit="step", disable=not progress or rank != 0)
    first_done = time.perf_counter()
    for k in range(start, stop):
        batches = []
        for run, prefetch in zip(runs, prefetchers):
            step, ids, attrs, cross, image = prefetch.get()
            assert step == run.variant.step
            batches.append((ids, attrs, cross, image))
        trainer.train_steps(batches)
        done = trainer.variants[0].step
        bar.update(1)
        for run in runs:
            v, rs = run.variant, run.settings
            if done % rs.log_every == 0 or done == stop:
                run.write_rows(trainer.flush_losses(v))
            if done % rs.checkpoint_every == 0 and done < rs.num_steps:
                run.write_rows(trainer.flush_losses(v))
                if rank == 0:
                    run.folder.save_checkpoint(trainer.state(run.fingerprint, v))
                if world > 1:
                    dist.barrier()
            if rank == 0 and done % rs.sample_every == 0:
                sample_grid(trainer, run.folder.samples / f"step_{done:09d}.png", v)
        if k == start:
            for run in runs:  # a sync, so that the first step's time holds its GPU work
                run.write_rows(trainer.flush_losses(run.variant))
            first_done = time.perf_counter()
    bar.close()
    for run in runs:
        run.write_rows(trainer.flush_losses(run.variant))
    return first_done


def finish(trainer: Trainer, run: VariantRun, input_checksums: dict, landmark_encoder) -> None:
    """The final samples, loss curves and mref.pt of one variant; its checkpoints removed."""
    folder = run.folder
    sample_grid(trainer, folder.samples / "final.png", run.variant)
    plot_loss_curves(folder.csv, folder.logs / "loss_curves.png")
    metadata = {
        "settings": asdict(run.settings),
        "inputs": input_checksums,
        "fingerprint": run.fingerprint,
        "landmark_detector": getattr(landmark_encoder, "name", type(landmark_encoder).__name__),
    }
    save_mapper(folder.out, run.variant.model, metadata)
    folder.clear_checkpoints()  # the target now holds the weights; checkpoints only guard a crash
