"""Fit the Gaussian of W&T's latent space V to mapping samples (issue 15)."""

from pipeline_lib.jobs import latent
from pipeline_lib.logs import configure

configure(snakemake.log[0])
latent.latent_model(
    snakemake.input.generator,
    snakemake.output.gaussian,
    snakemake.output.figure,
    snakemake.output.summary,
    snakemake.params.latent,
    snakemake.params.device,
)
