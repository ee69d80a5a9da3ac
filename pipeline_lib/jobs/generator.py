"""Rule `random_generator` (demo profiles only): a random-weight generator of the configured
family and shape (StyleGAN2, or StyleGAN3 when `generator.random_init` has a `config`)."""

from __future__ import annotations

import logging

from pipeline_lib.generator import save_generator
from pipeline_lib.generator.stylegan2 import GeneratorConfig, init_random_generator
from pipeline_lib.generator.stylegan3 import init_random_stylegan3
from pipeline_lib.settings import parse_random_init

log = logging.getLogger(__name__)


def run(out_weights, generator: dict) -> None:
    """`generator`: the config's `generator` section (its family and random_init)."""
    settings = parse_random_init(generator)
    init = generator["random_init"]
    if generator["family"] == "stylegan3":
        cfg = settings.stylegan3_config()
        G = init_random_stylegan3(cfg, seed=settings.seed)
    else:
        cfg = GeneratorConfig(**settings.generator_kwargs())
        G = init_random_generator(cfg, seed=settings.seed)
    save_generator(G, out_weights, {"random_init": init})
    log.info("wrote %s: random %s %s, dim S = %d", out_weights, G.family, cfg.to_official_kwargs(), G.style_dim)
