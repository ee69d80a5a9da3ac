"""The folder of one training run, `results/models/{variant}/`: mref.pt (the target),
checkpoints/ (atomic, the newest two kept, removed once mref.pt exists), logs/ (losses.csv,
TensorBoard, loss_curves.png) and samples/ (identity / attribute / edited grids)."""

from __future__ import annotations

import csv
import hashlib
import json
import os
from pathlib import Path

import h5py
import numpy as np
import torch
from PIL import Image

from pipeline_lib.atomic import atomic_path, save_torch
from pipeline_lib.images import read_images, to_uint8_hwc
from pipeline_lib.reporting.style import new_figure, save_figure
from pipeline_lib.settings import TrainingSettings
from pipeline_lib.training.step import LOSS_TERMS, Trainer


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
        save_torch(state, path)
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
def sample_grid(trainer: Trainer, path, variant=None) -> None:
    """Rows: identity faces, attribute faces, edited outputs (fixed pairs, rank 0) of `variant`
    (a VariantTrainer; the Trainer's only one when left out)."""
    data = trainer.data
    v = variant or trainer.variants[0]
    k = min(v.settings.num_samples, len(data.identity_split), len(data.attribute_split))
    ids = torch.as_tensor(data.identity_split[:k], device=trainer.device)
    attrs = torch.as_tensor(data.attribute_split[:k], device=trainer.device)
    S_id, S_rgb, dS = trainer.edit_styles(ids, attrs, mapper=v.model, variant=v)
    out = trainer.edit.synthesis(S_id + dS, S_rgb, noise_mode=data.noise_mode)
    with h5py.File(data.faces_path, "r") as f:
        rows = [read_images(f["images"], ids.cpu().numpy()), read_images(f["images"], attrs.cpu().numpy())]
    rows.append(to_uint8_hwc(out.float()).cpu().numpy())
    grid = np.concatenate([np.concatenate(list(r), axis=1) for r in rows], axis=0)
    with atomic_path(path) as tmp:
        Image.fromarray(grid).save(tmp, format="PNG")


def plot_loss_curves(csv_path, out_path) -> None:
    """Every loss term per step (thin) with a running mean (thick), one panel each."""
    with open(csv_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    steps = np.array([int(r["step"]) for r in rows])
    fig = new_figure(13, 6.5, layout="constrained")
    axes = fig.subplots(2, 3)
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
    save_figure(fig, out_path, dpi=100)
