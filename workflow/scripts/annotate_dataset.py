"""Annotate the dataset with every configured encoder."""

from pipeline_lib.jobs import annotation
from pipeline_lib.logs import configure

configure(snakemake.log[0])
annotation.run(
    snakemake.input.faces,
    snakemake.output[0],
    snakemake.params.encoders,
    {name: snakemake.input[name] for name in snakemake.params.names},
    snakemake.params.annotation,
    snakemake.params.device,
)
