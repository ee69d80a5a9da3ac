"""The sections of the paper's pipeline: dataset, demo generator, encoders, training variants,
evaluation and sparsity."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from pipeline_lib.settings.base import Section

# The precision modes of the StyleGAN2 fast synthesis (pipeline_lib/generator/fast.py PRECISIONS,
# which tests/test_fast_synthesis.py checks against this list; settings import no torch).
SYNTHESIS_PRECISIONS = ("float32", "bfloat16", "float16", "float16-mixed")


@dataclass(frozen=True)
class DatasetSettings(Section):
    SECTION = "dataset"
    num_identity: int  # identity images (paper Sec. 4: 36,000)
    num_attribute: int  # attribute images (paper Sec. 4: 12,000)
    seed: int  # face i is drawn from a random stream seeded by (seed, i)
    truncation_psi: float  # 1.0 = no truncation
    noise_mode: str  # the synthesis noise: const (the stored noise maps), random or none
    shard_size: int  # faces per shard job; a multiple of chunk_size (used when num_shards is None)
    num_shards: int | None  # shard jobs; None = as many as shard_size gives
    batch_size: int  # faces per write step; a multiple of chunk_size
    chunk_size: int  # faces per network evaluation: fixed, so a face never depends on batching
    dtype: str  # synthesis precision mode: float32, bfloat16, float16 or float16-mixed
    compile: bool  # torch.compile the synthesis network (GPU)
    latent_rng: str  # counter (Philox on the device) or numpy (per-face streams of older datasets)

    def __post_init__(self):
        if self.dtype not in SYNTHESIS_PRECISIONS:
            raise ValueError(f"dataset.dtype must be one of {', '.join(SYNTHESIS_PRECISIONS)}, got {self.dtype!r}")

    @property
    def num_faces(self) -> int:
        return self.num_identity + self.num_attribute

    @property
    def faces_per_shard(self) -> int:
        """shard_size, or with num_shards the whole chunks that split the faces into that many
        shards (the last may be shorter). Faces do not depend on it (synthesis.py)."""
        if self.num_shards is None:
            return self.shard_size
        chunks = -(-self.num_faces // self.chunk_size)
        return -(-chunks // self.num_shards) * self.chunk_size

    def validate(self) -> None:
        from pipeline_lib.dataset.latent_rng import LATENT_RNGS

        if self.latent_rng not in LATENT_RNGS:
            raise ValueError(f"dataset.latent_rng must be one of {LATENT_RNGS}, got {self.latent_rng!r}")
        if self.num_shards is not None and self.num_shards < 1:
            raise ValueError(f"dataset.num_shards must be at least 1 (or null), got {self.num_shards}")


@dataclass(frozen=True)
class RandomGeneratorSettings(Section):
    SECTION = "generator.random_init"
    seed: int  # seed of the official random initialisation
    z_dim: int  # latent z width
    w_dim: int  # intermediate latent w width
    img_resolution: int  # output resolution
    num_mapping_layers: int  # mapping network depth
    channel_base: int  # channels = min(channel_base / resolution, channel_max)
    channel_max: int  # channel cap
    conv_clamp: float | None  # clamp of every conv output (train.py sets 256)

    def generator_kwargs(self) -> dict:
        """The GeneratorConfig arguments (everything but the seed)."""
        kwargs = dataclasses.asdict(self)
        kwargs.pop("seed")
        return kwargs


@dataclass(frozen=True)
class EncoderSettings(Section):
    SECTION = "encoders"
    landmarks_train: str  # landmark/pose detector the losses use
    landmarks_eval: str  # an independent detector for evaluation (an editor can fool its own)
    identity: str  # identity embedding network (L_id, Table 1's ID)
    attribute: str  # attribute features fed to M_ref

    @classmethod
    def parse(cls, raw: dict, where: str | None = None):
        flat = {
            "landmarks_train": raw["landmarks"]["train"],
            "landmarks_eval": raw["landmarks"]["eval"],
            "identity": raw["identity"],
            "attribute": raw["attribute"],
        }
        return super().parse(flat, where)

    @property
    def detectors(self) -> dict[str, str]:
        """{"train": kind, "eval": kind}: the two landmark detectors by role."""
        return {"train": self.landmarks_train, "eval": self.landmarks_eval}

    def kinds(self) -> list[str]:
        return [self.landmarks_train, self.landmarks_eval, self.identity, self.attribute]


@dataclass(frozen=True)
class AnnotationSettings(Section):
    SECTION = "annotation"
    batch_size: int  # faces per batch (on a GPU with compile: the one static shape)
    precision: dict  # encoder kind -> compute dtype of its networks on GPUs (CPUs run float32)
    compile: bool  # torch.compile each encoder (GPU)

    def validate(self) -> None:
        from pipeline_lib.encoders import BACKENDS, PRECISIONS

        if self.batch_size < 1:
            raise ValueError(f"annotation.batch_size must be at least 1, got {self.batch_size}")
        if set(self.precision) != set(BACKENDS):
            raise ValueError(f"annotation.precision needs exactly one entry per encoder {sorted(BACKENDS)}")
        for kind, name in self.precision.items():
            if name not in PRECISIONS:
                raise ValueError(f"annotation.precision.{kind} must be one of {PRECISIONS}, got {name!r}")

    def precision_on(self, kind: str, device_type: str) -> str:
        """The dtype `kind` runs in on this device: the configured one on GPUs, else float32."""
        return self.precision[kind] if device_type == "cuda" else "float32"


# Keys of the `training` section that are not per-variant settings of the run.
_TRAINING_META = ("variants", "together")


@dataclass(frozen=True)
class TrainingSettings(Section):
    """One variant's settings: the `training` section with the variant's entries on top."""

    SECTION = "training"
    variant: str  # its name: results/models/{variant}/mref.pt
    label: str  # its name in reports
    input_features: str  # "attribute" or "identity+attribute" (feature concatenation)
    hidden: tuple  # hidden widths of the M_ref MLP
    lambda_id: float  # weight of L_id (Eq. 7)
    lambda_attr: float  # weight of L_attr (Eq. 8)
    lambda_rec: float  # weight of L_rec (Eqs. 9-11), reconstruction steps only
    lambda_reg: float  # weight of Eq. 12's -L(S); 0 = off
    alpha: float  # MS-SSIM share of L_rec
    euler_loss: bool  # add the Euler-angle term to L_attr (Eq. 8)
    batch_size: int  # global batch, split evenly over the GPUs
    num_steps: int  # optimiser steps
    lr: float  # learning rate at step 0
    lr_end: float  # learning rate at the last step (exponential decay)
    betas: tuple  # Adam's betas
    cross_frequency: int  # steps whose index divides by it pair different faces
    seed: int  # seed of the initialisation and of every batch
    precision: str  # compute dtype of the frozen generator and encoders
    compile: bool  # torch.compile the step (GPU)
    gpus: int  # processes (GPUs) of one training job
    checkpoint_every: int  # steps between checkpoints
    log_every: int  # steps between loss flushes
    sample_every: int  # steps between sample grids

    num_samples = 4  # pairs in each sample grid (a figure setting, not a config key)

    @classmethod
    def for_variant(cls, training: dict, variant: str) -> TrainingSettings:
        variants = training["variants"]
        if variant not in variants or variants[variant] is None:
            raise KeyError(f"no training variant {variant!r} in config.yaml; defined: {sorted(variants)}")
        merged = {k: v for k, v in training.items() if k not in _TRAINING_META}
        merged.setdefault("lambda_reg", 0.0)
        merged.setdefault("euler_loss", False)
        merged.update(variants[variant])
        merged.setdefault("label", variant)
        settings = cls.parse({**merged, "variant": variant}, f"training.variants.{variant}")
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.input_features not in ("attribute", "identity+attribute"):
            raise ValueError(f"input_features must be attribute or identity+attribute, got {self.input_features!r}")
        if self.precision not in ("float32", "bfloat16"):
            raise ValueError(f"precision must be float32 or bfloat16, got {self.precision!r}")
        if self.batch_size % self.gpus:
            raise ValueError(f"batch_size {self.batch_size} must be a multiple of gpus {self.gpus}")
        if self.num_steps < 1 or self.cross_frequency < 1:
            raise ValueError("num_steps and cross_frequency must be at least 1")

    def fingerprint_dict(self) -> dict:
        """What the weights depend on; logging cadence, GPU count and names are left out."""
        d = dataclasses.asdict(self)
        for key in ("checkpoint_every", "log_every", "sample_every", "gpus", "compile", "label"):
            d.pop(key)
        return d


@dataclass(frozen=True)
class EvaluationSettings(Section):
    SECTION = "evaluation"
    num_pairs: int  # (identity, attribute) pairs per trained variant (Tables 1-2: 1,000)
    seed: int  # seed of the pairs
    batch_size: int  # edits per batch (also Inception's batch for FID)
    grid: tuple  # rows (identity faces) x columns (attribute faces) of the edit grid
    precision: str  # synthesis mode of the edited faces on GPUs (dataset.dtype's modes); CPUs run float32
    compile: bool  # torch.compile the synthesis and the encoders (GPU)

    def validate(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"evaluation.batch_size must be at least 1, got {self.batch_size}")
        if self.precision not in SYNTHESIS_PRECISIONS:
            raise ValueError(
                f"evaluation.precision must be one of {', '.join(SYNTHESIS_PRECISIONS)}, got {self.precision!r}"
            )

    def synthesis_on(self, device_type: str) -> str:
        """The synthesis mode on this device: the configured one on GPUs, float32 on CPUs (the
        reference, and the fast choice there: half-precision convolutions are slow on CPUs)."""
        return self.precision if device_type == "cuda" else "float32"


@dataclass(frozen=True)
class SparsitySettings(Section):
    SECTION = "sparsity"
    variant: str  # trained variant whose dS is analysed
    histogram_tests: int  # edits of one identity face for Fig. 7; 0 = every attribute face
    bins: int  # histogram bins of Fig. 7
    threshold: float  # Fig. 7's dashed line: channels above it "do" the edit
    reuse_tests: int  # tests of Fig. 8 (Eqs. 13-15)
    top_k: int  # channels per test in Fig. 8
