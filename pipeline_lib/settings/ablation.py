"""The generative-field ablation's layer ranges (issue 13), checked before any job."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

from pipeline_lib.settings.base import Section

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
