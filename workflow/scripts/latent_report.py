"""report/latent.md: the Wulff & Torralba section of the report."""

from pipeline_lib.jobs import real_edits
from pipeline_lib.logs import configure

configure(snakemake.log[0])
real_edits.latent_report(
    snakemake.output[0],
    snakemake.input.gaussianity,
    snakemake.input.evaluation,
    snakemake.input.sampling,
    snakemake.input.real_edits,
)
