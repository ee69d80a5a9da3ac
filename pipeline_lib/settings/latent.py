"""Wulff & Torralba (issue 15): the latent model, projection, real-face editing and sampling."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from pipeline_lib.settings.base import Section
from pipeline_lib.settings.paper import DatasetSettings

# ---- Wulff & Torralba's Gaussianized latent space, projection, real-face editing (issue 15) ----


@dataclass(frozen=True)
class DatasetSamplingSettings(Section):
    """How the dataset's w are drawn, beside `truncation_psi` (keys of the `dataset` section;
    kept out of DatasetSettings so that the default dataset's identity is untouched)."""

    SECTION = "dataset"
    sampling: str  # truncation (uses truncation_psi; 1.0 = raw) or log_compression (W&T, ours)
    compression_tau: float  # log-compression threshold in normalised PCA units of V

    def validate(self, truncation_psi: float) -> None:
        if self.sampling not in ("truncation", "log_compression"):
            raise ValueError(f"dataset.sampling must be truncation or log_compression, got {self.sampling!r}")
        if self.sampling == "log_compression" and truncation_psi != 1.0:
            raise ValueError("dataset.sampling log_compression replaces truncation: set dataset.truncation_psi to 1.0")


@dataclass(frozen=True)
class LatentSettings(Section):
    SECTION = "latent"
    num_samples: int  # mapping samples the Gaussian of V is fitted to (ours: 10^6; W&T's count unknown)
    seed: int  # seed of their z
    batch: int  # mapping samples per step


@dataclass(frozen=True)
class ProjectionSettings(Section):
    SECTION = "projection"
    space: str  # w, w+ or s: the space of the real-face projections (the generated set does w and w+)
    steps: int  # optimiser steps (NVIDIA: 1000)
    lr: float  # Adam's peak learning rate (NVIDIA: 0.1)
    prior_weight: float  # lambda of the W&T prior (ours)
    loss: str  # image loss: lpips (VGG16, NVIDIA's) or pixel (L2, no download)
    precision: str  # float32 (the reference step) or bfloat16 (the fast step)
    compile: bool  # torch.compile the step's objective (GPU only)
    num_images: int  # faces projected per set
    batch: int  # faces optimised together
    seed: int  # per-image random streams are seeded by seed + image index
    w_avg_samples: int  # mapping samples for w_avg and w_std (NVIDIA: 10,000)
    images: str | None  # a folder of the user's aligned photos for the real set (when ffhq.source is empty)

    @classmethod
    def parse(cls, raw: dict, where: str | None = None):
        raw = dict(raw)
        images = raw.pop("images", None)
        obj = super().parse({**raw, "images": ""}, where)
        obj = dataclasses.replace(obj, images=None if images in (None, "") else str(images))
        if obj.space not in ("w", "w+", "s"):
            raise ValueError(f"projection.space must be w, w+ or s, got {obj.space!r}")
        if obj.loss not in ("lpips", "pixel"):
            raise ValueError(f"projection.loss must be lpips or pixel, got {obj.loss!r}")
        if obj.precision not in ("float32", "bfloat16"):
            raise ValueError(f"projection.precision must be float32 or bfloat16, got {obj.precision!r}")
        return obj


@dataclass(frozen=True)
class EditingSettings(Section):
    SECTION = "editing"
    identity_images: str | None  # a folder of the user's aligned identity photos (when ffhq.source is empty)
    num_identities: int  # real identity faces projected and edited

    @classmethod
    def parse(cls, raw: dict, where: str | None = None):
        raw = dict(raw)
        images = raw.pop("identity_images", None)
        obj = super().parse({**raw, "identity_images": ""}, where)
        return dataclasses.replace(obj, identity_images=None if images in (None, "") else str(images))


@dataclass(frozen=True)
class SamplingComparisonSettings(Section):
    SECTION = "sampling_comparison"
    num_images: int  # faces per sampling method (the same z for every method)
    psi: float  # truncation psi of the truncation row (W&T Fig. 4: 0.7)
    batch: int  # faces per synthesis batch
    seed: int  # seed of the z
    diversity: str  # lpips (needs the VGG16 weights) or pixel (RMS difference, no download)


def check_latent(config: dict) -> None:
    """The issue-15 sections (called by check_all)."""
    ds = DatasetSettings.parse(config["dataset"])
    DatasetSamplingSettings.parse(config["dataset"]).validate(ds.truncation_psi)
    LatentSettings.parse(config["latent"])
    ProjectionSettings.parse(config["projection"])
    EditingSettings.parse(config["editing"])
    cmp = SamplingComparisonSettings.parse(config["sampling_comparison"])
    if cmp.diversity not in ("lpips", "pixel"):
        raise ValueError(f"sampling_comparison.diversity must be lpips or pixel, got {cmp.diversity!r}")


# ---- end of issue 15 ----
