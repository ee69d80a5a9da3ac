"""Equivariance stage (StyleGAN3): metrics.json, figure.png and their provenance."""

from pipeline_lib.jobs import equivariance
from pipeline_lib.logs import configure

configure(snakemake.log[0])
equivariance.run(
    snakemake.input.generator,
    snakemake.output.metrics,
    snakemake.output.figure,
    snakemake.output.provenance,
    equivariance=snakemake.params.equivariance,
    device=snakemake.params.device,
)
