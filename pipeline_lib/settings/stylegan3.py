"""StyleGAN3 (issue 14): the generator family, its random demo generator, equivariance."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from pipeline_lib.settings.base import Section
from pipeline_lib.settings.paper import RandomGeneratorSettings

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
