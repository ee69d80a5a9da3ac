"""Evaluate the edits of one trained variant, or of one generative-field ablation configuration."""

from pipeline_lib.jobs import evaluation
from pipeline_lib.logs import configure

configure(snakemake.log[0])
evaluation.evaluate_edits(
    snakemake.input.model,
    snakemake.input.faces,
    snakemake.input.annotations,
    snakemake.input.attribute_faces,
    snakemake.input.real_features,
    snakemake.input.generator,
    {name: snakemake.input[name] for name in snakemake.params.names},
    snakemake.params.encoders,
    snakemake.params.evaluation,
    snakemake.params.encoder_precision,
    snakemake.output.metrics,
    snakemake.output.grid,
    device=snakemake.params.device,
    layers=snakemake.params.layers,
    num_pairs=snakemake.params.num_pairs,
    title=snakemake.params.title,
    where=f"ablation.configs.{getattr(snakemake.wildcards, 'ablation', '')}",
)
