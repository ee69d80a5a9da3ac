"""Build the demo's random-weight generator of either family (official initialisation, seeded)."""

from pipeline_lib.jobs import generator
from pipeline_lib.logs import configure

configure(snakemake.log[0])
generator.run(snakemake.output.weights, snakemake.params.generator)
