"""tables.md: our Tables 1-3 beside the paper's."""

from pipeline_lib.jobs import report
from pipeline_lib.logs import configure

configure(snakemake.log[0])
report.run(
    snakemake.output[0],
    snakemake.input.evaluations,
    snakemake.input.ablations,
    reuse=snakemake.input.reuse,
    face_size=snakemake.input.face_size,
    field_table=snakemake.input.field_table,
    variants=snakemake.params.variants,
    labels=snakemake.params.labels,
    configs=snakemake.params.configs,
    final_variant=snakemake.params.final_variant,
    detectors=snakemake.params.detectors,
    real_edits=snakemake.input.get("real_edits"),
)
