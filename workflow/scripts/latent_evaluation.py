"""W&T's evaluation: projection errors with and without the prior, interpolation midpoints."""

from pipeline_lib.jobs import latent
from pipeline_lib.logs import configure

configure(snakemake.log[0])
latent.latent_evaluation(
    snakemake.input.generated,
    snakemake.input.real,
    snakemake.input.generator,
    snakemake.input.gaussian,
    snakemake.input.fid_inception,
    snakemake.input.reference[0] if snakemake.input.reference else None,
    snakemake.output.metrics,
    snakemake.output.figure,
    snakemake.output.strips,
    device=snakemake.params.device,
    batch=snakemake.params.batch,
)
