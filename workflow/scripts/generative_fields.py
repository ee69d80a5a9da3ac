"""Generative-fields stage: table.csv, figure.png and their provenance."""

from pipeline_lib.jobs import generative_fields
from pipeline_lib.logs import configure

configure(snakemake.log[0])
generative_fields.run(
    snakemake.input.generator,
    snakemake.output.table,
    snakemake.output.figure,
    snakemake.output.provenance,
    seed=snakemake.params.seed,
    measure=snakemake.params.measure,
    family=snakemake.params.family,
)
