"""Rule `random_generator` (demo profile only): a random-weight generator of the configured shape."""

from __future__ import annotations

import logging

from pipeline_lib.generator import save_generator
from pipeline_lib.generator.stylegan2 import GeneratorConfig, init_random_generator
from pipeline_lib.settings import RandomGeneratorSettings

log = logging.getLogger(__name__)


def run(out_weights, init: dict) -> None:
    settings = RandomGeneratorSettings.parse(init)
    cfg = GeneratorConfig(**settings.generator_kwargs())
    G = init_random_generator(cfg, seed=settings.seed)
    save_generator(G, out_weights, {"random_init": init})
    log.info("wrote %s: random generator %s, dim S = %d", out_weights, cfg.to_official_kwargs(), G.style_dim)
