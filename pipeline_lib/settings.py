"""The validated config as frozen dataclasses, parsed once.

`config.yaml` is the only place a default lives; `workflow/schemas/config.schema.yaml` checks
its shape before any job runs; this module turns each section into a typed, frozen object so
that no job re-casts raw values or looks a key up twice. A rule passes the sections a job reads
as `params` (so that changing one reruns exactly the jobs that read it) and the job parses them
here with `<Section>.parse(params.<section>)`.

Every field has a short comment, as NVIDIA's constructors do; the config file's comments say
which values are the paper's and which are ours.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import yaml

CONFIG_FILE = Path(__file__).resolve().parents[1] / "config.yaml"


def _convert(value, annotation: str, where: str):
    """Cast one validated value to its field's type (YAML gives lists and ints for floats)."""
    if annotation.startswith("tuple"):
        return tuple(value)
    if annotation == "float":
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"config {where} is {value}: it must be a finite number")
        return value
    if annotation == "int":
        return int(value)
    if annotation == "bool":
        return bool(value)
    if annotation == "str":
        return str(value)
    return value


class Section:
    """Base of the section dataclasses: `parse` takes exactly the keys the dataclass names."""

    SECTION = ""

    @classmethod
    def parse(cls, raw: dict, where: str | None = None):
        where = where or cls.SECTION
        hints = {f.name: f.type for f in dataclasses.fields(cls)}
        missing = [name for name in hints if name not in raw]
        if missing:
            raise KeyError(f"config {where} lacks {missing}; config.yaml holds every default")
        values = {name: _convert(raw[name], str(hints[name]), f"{where}.{name}") for name in hints}
        return cls(**values)


@dataclass(frozen=True)
class DatasetSettings(Section):
    SECTION = "dataset"
    num_identity: int  # identity images (paper Sec. 4: 36,000)
    num_attribute: int  # attribute images (paper Sec. 4: 12,000)
    seed: int  # face i is drawn from a random stream seeded by (seed, i)
    truncation_psi: float  # 1.0 = no truncation
    noise_mode: str  # the synthesis noise: const (the stored noise maps), random or none
    shard_size: int  # faces per shard job; a multiple of chunk_size
    batch_size: int  # faces per write step; a multiple of chunk_size
    chunk_size: int  # faces per network evaluation: fixed, so a face never depends on batching
    dtype: str  # compute dtype of the synthesis convolutions
    compile: bool  # torch.compile the synthesis network (GPU)

    @property
    def num_faces(self) -> int:
        return self.num_identity + self.num_attribute


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

    @classmethod
    def parse(cls, raw: dict, where: str | None = None):
        raw = dict(raw)
        clamp = raw.pop("conv_clamp", None)
        obj = super().parse({**raw, "conv_clamp": 0.0}, where)
        return dataclasses.replace(obj, conv_clamp=None if clamp is None else float(clamp))

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


# Keys of the `training` section that are not per-variant settings of the run.
_TRAINING_META = ("variants",)


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
    batch_size: int  # edits per batch
    grid: tuple  # rows (identity faces) x columns (attribute faces) of the edit grid


@dataclass(frozen=True)
class SparsitySettings(Section):
    SECTION = "sparsity"
    variant: str  # trained variant whose dS is analysed
    histogram_tests: int  # edits of one identity face for Fig. 7; 0 = every attribute face
    bins: int  # histogram bins of Fig. 7
    threshold: float  # Fig. 7's dashed line: channels above it "do" the edit
    reuse_tests: int  # tests of Fig. 8 (Eqs. 13-15)
    top_k: int  # channels per test in Fig. 8


# ---- StyleGAN3 (issue 14): the generator family, its random demo generator, equivariance ----

FAMILIES = ("stylegan2", "stylegan3")


@dataclass(frozen=True)
class RandomStyleGAN3Settings(Section):
    """`generator.random_init` of a StyleGAN3 demo (told apart from StyleGAN2's by `config`)."""

    SECTION = "generator.random_init"
    seed: int  # seed of the official random initialisation
    config: str  # "t" (3x3 convs) or "r" (1x1 convs, radial filters, channels doubled)
    z_dim: int  # latent z width
    w_dim: int  # intermediate latent w width
    img_resolution: int  # output resolution
    num_mapping_layers: int  # mapping network depth (official: 2)
    num_layers: int  # synthesis layers L0..L(n-1) (official: 14)
    margin_size: int  # extra pixels around the internal feature maps (official: 10)
    channel_base: int  # channels = rint(min(channel_base / 2 / cutoff, channel_max))
    channel_max: int  # channel cap
    conv_clamp: float  # clamp of every layer's output (official: 256)

    def stylegan3_config(self):
        """The `StyleGAN3Config` of this shape (config R: 1x1 convs and radial filters)."""
        from pipeline_lib.generator.stylegan3_layers import StyleGAN3Config

        if self.config not in ("t", "r"):
            raise ValueError(f"config generator.random_init.config must be t or r, got {self.config!r}")
        kwargs = dataclasses.asdict(self)
        for key in ("seed", "config"):
            kwargs.pop(key)
        return StyleGAN3Config(
            **kwargs, conv_kernel=1 if self.config == "r" else 3, use_radial_filters=self.config == "r"
        )


def generator_family(generator: dict) -> str:
    """The configured family (`generator.family`), checked against the random_init's shape.

    Why a setting and not read from the weights: the DAG (whether `equivariance` exists) is
    planned before the weights are downloaded, and unpickling a 1024 px snapshot at every
    planning is slow. The generative_fields job checks it against the tensors."""
    family = generator["family"]
    if family not in FAMILIES:
        raise ValueError(f"config generator.family must be one of {FAMILIES}, got {family!r}")
    init = generator.get("random_init")
    if init is not None and ("config" in init) != (family == "stylegan3"):
        shape = "StyleGAN3 (it has `config`)" if "config" in init else "StyleGAN2 (it has no `config`)"
        raise ValueError(
            f"config generator.random_init describes a {shape} generator, but generator.family is {family}"
        )
    return family


def parse_random_init(generator: dict):
    """The random-generator settings of either family."""
    if generator_family(generator) == "stylegan3":
        return RandomStyleGAN3Settings.parse(generator["random_init"])
    return RandomGeneratorSettings.parse(generator["random_init"])


@dataclass(frozen=True)
class EquivarianceSettings(Section):
    SECTION = "equivariance"
    metrics: tuple  # which of eqt_int (EQ-T), eqt_frac (EQ-T_frac), eqr (EQ-R)
    num_samples: int  # images per metric (official: 50,000), rounded up to whole batches
    batch_size: int  # images per batch (official: 4; the draw order depends on it)
    seed: int  # torch seed of the sampling loop (z, then the translation or angle per batch)
    examples: int  # example pairs per metric in the figure

    def validate(self) -> None:
        from pipeline_lib.generator.equivariance import METRICS

        unknown = [m for m in self.metrics if m not in METRICS]
        if unknown or not self.metrics:
            raise ValueError(f"config equivariance.metrics must be a non-empty list of {METRICS}, got {self.metrics}")


# ---- end StyleGAN3 block ----


def load_config(path=CONFIG_FILE) -> dict:
    """config.yaml as a dict (tests and benchmarks; the workflow has Snakemake's merged config)."""
    with open(path) as fh:
        return yaml.safe_load(fh)


def training_variants(training: dict) -> list[str]:
    """Names of the variants a config defines (a null entry drops one)."""
    return [name for name, entry in training["variants"].items() if entry is not None]


def check_all(config: dict) -> None:
    """Parse every section once, so that a bad value stops the run before any job starts."""
    DatasetSettings.parse(config["dataset"])
    EncoderSettings.parse(config["encoders"])
    EvaluationSettings.parse(config["evaluation"])
    SparsitySettings.parse(config["sparsity"])
    if config["generator"].get("random_init") is not None:
        parse_random_init(config["generator"])  # StyleGAN3 block: either family's shape
    generator_family(config["generator"])
    EquivarianceSettings.parse(config["equivariance"]).validate()
    for variant in training_variants(config["training"]):
        TrainingSettings.for_variant(config["training"], variant)
