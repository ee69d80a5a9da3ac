"""Figs. 7-8: sparsity and reuse of the final variant's style offsets."""

from pipeline_lib.jobs import evaluation
from pipeline_lib.logs import configure

configure(snakemake.log[0])
evaluation.sparsity_analyses(
    snakemake.input.model,
    snakemake.input.faces,
    snakemake.input.annotations,
    snakemake.input.attribute_faces,
    snakemake.input.generator,
    {name: snakemake.input[name] for name in snakemake.params.names},
    snakemake.params.encoders,
    snakemake.params.sparsity,
    snakemake.params.evaluation,
    snakemake.params.encoder_precision,
    dict(snakemake.output.items()),
    device=snakemake.params.device,
)
