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
import json
import math
from dataclasses import dataclass
from pathlib import Path

import yaml

from pipeline_lib.config_checks import check_finite

CONFIG_FILE = Path(__file__).resolve().parents[1] / "config.yaml"


def _convert(value, annotation: str, where: str):
    """Cast one validated value to its field's type (YAML gives lists and ints for floats)."""
    if value is None and annotation.endswith("| None"):
        return None
    annotation = annotation.removesuffix(" | None")
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
    check_finite(config)
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
    check_ablation(config)


# --- Ablation layer ranges (issue 13) ---------------------------------------------------------
# A range written backwards used to give an empty mask, so that the unedited face was reported
# as an ablation result; an unknown layer failed only after training. Both are refused here,
# before any job, and again by `editing.layers_mask` against the loaded generator.

MAX_CONV_LAYERS = 17  # StyleGAN2 at 1024 px, the largest generator the pipeline loads: conv0..conv16


def check_layer_range(layers, where: str, num_conv: int | None = None, generator: str = "") -> tuple[str, str]:
    """(first, last) of a `[convA, convB]` range after checking the names, their order and, with
    `num_conv`, that `generator` has both layers. `where` is the config key, for the message."""
    if not isinstance(layers, (list, tuple)) or len(layers) != 2:
        raise ValueError(f"config {where} is {layers!r}: give the first and last conv layer, e.g. [conv0, conv7]")
    indices = []
    for name in layers:
        digits = str(name).removeprefix("conv")
        if not str(name).startswith("conv") or not digits.isdigit():
            raise ValueError(f"config {where} names {name!r}, which is not a conv layer (conv0, conv1, ...)")
        indices.append(int(digits))
    first, last = (str(name) for name in layers)
    if indices[0] > indices[1]:
        raise ValueError(
            f"config {where} is [{first}, {last}]: the range is written backwards ({first} comes after {last}) "
            f"and would keep dS on no layer; write [{last}, {first}]"
        )
    if num_conv is None:
        has = f"no generator the pipeline loads has it (the largest, StyleGAN2 at 1024 px, has conv0..conv{MAX_CONV_LAYERS - 1})"
    else:
        has = f"{generator} has {num_conv} conv layers: conv0..conv{num_conv - 1}"
    for name, index in zip((first, last), indices):
        if index >= (MAX_CONV_LAYERS if num_conv is None else num_conv):
            raise ValueError(f"config {where} names {name}, but {has}")
    return first, last


@dataclass(frozen=True)
class AblationSettings(Section):
    SECTION = "ablation"
    variant: str  # trained variant whose dS is masked
    num_pairs: int  # (identity, attribute) pairs per configuration
    configs: dict  # name -> (first, last) conv layer (paper names) that keep dS; Table 3

    @classmethod
    def parse(cls, raw: dict, where: str | None = None):
        where = where or cls.SECTION
        obj = super().parse(raw, where)
        configs = {
            name: check_layer_range(layers, f"{where}.configs.{name}")
            for name, layers in obj.configs.items()
            if layers is not None  # null drops a configuration of config.yaml
        }
        return dataclasses.replace(obj, configs=configs)

    def check_generator(self, num_conv: int, generator: str, where: str | None = None) -> None:
        """Every range against a generator's conv layer count (known at DAG time only sometimes)."""
        for name, layers in self.configs.items():
            check_layer_range(layers, f"{where or self.SECTION}.configs.{name}", num_conv, generator)


# The registry's generator snapshots (weights/registry.py), by file name.
KNOWN_GENERATORS = {
    "ffhq70k-paper256-ada.pkl": (13, "the paper's StyleGAN2 generator ffhq70k-paper256-ada.pkl (256 px)")
}


def generator_conv_layers(generator: dict) -> tuple[int, str] | None:
    """(conv layer count, description) of the configured generator when it is known without
    loading it: a `random_init` StyleGAN2, a registry snapshot, or a `.pt`/`.pth` file whose
    JSON sidecar already exists. None otherwise (another `.pkl`, a file not made yet): the job
    that loads the generator checks the ranges then (`editing.layers_mask`)."""
    random_init = generator.get("random_init")
    try:
        if random_init is not None:
            res = int(random_init["img_resolution"])
            if generator.get("family") == "stylegan3":
                layers = int(random_init.get("num_layers", 14))
                return layers, f"the random StyleGAN3 generator of generator.random_init ({res} px)"
            return 2 * int(math.log2(res)) - 3, f"the random StyleGAN2 generator of generator.random_init ({res} px)"
        path = Path(generator["weights"])
        if path.name in KNOWN_GENERATORS:
            return KNOWN_GENERATORS[path.name]
        sidecar = path.with_suffix(".json")
        if path.suffix not in (".pt", ".pth") or not path.exists() or not sidecar.exists():
            return None
        meta = json.loads(sidecar.read_text())
        kwargs = meta.get("official_kwargs", meta)
        res = int(kwargs["img_resolution"])
        if meta.get("family", "stylegan2") == "stylegan3":
            layers = int({**kwargs.get("synthesis_kwargs", {}), **kwargs}.get("num_layers", 14))
            return layers, f"the StyleGAN3 generator {path} ({res} px)"
        return 2 * int(math.log2(res)) - 3, f"the StyleGAN2 generator {path} ({res} px)"
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # unreadable here: the job that loads the generator checks the ranges


def check_ablation(config: dict) -> None:
    """The ablation's layer ranges: names and order always, layer counts when known now."""
    ablation = AblationSettings.parse(config["ablation"])
    known = generator_conv_layers(config["generator"])
    if known is not None:
        ablation.check_generator(*known)
    check_latent(config)  # issue 15


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
