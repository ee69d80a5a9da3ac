"""Build the demo's random-weight generator (official initialisation, seeded)."""

from pipeline_lib.generator.loading import save_generator
from pipeline_lib.logs import configure
from pipeline_lib.generator.stylegan2 import GeneratorConfig, init_random_generator

log = configure(snakemake.log[0])
init = dict(snakemake.params.init)
seed = init.pop("seed")
cfg = GeneratorConfig(**init)
G = init_random_generator(cfg, seed=seed)
save_generator(G, snakemake.output.weights, {"random_init": snakemake.params.init})
log.info("wrote %s: random generator %s, dim S = %d", snakemake.output.weights, cfg.to_official_kwargs(), G.style_dim)
