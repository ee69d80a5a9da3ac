"""Edit projected real identity faces with the final M_ref (Table 1's extra row, ours only)."""

from pipeline_lib.jobs import real_edits
from pipeline_lib.logs import configure

configure(snakemake.log[0])
real_edits.edit_real_faces(
    snakemake.input.model,
    snakemake.input.identities,
    snakemake.input.attribute_faces,
    snakemake.input.real_features,
    snakemake.input.generator,
    {name: snakemake.input[name] for name in snakemake.params.names},
    snakemake.params.encoders,
    snakemake.params.evaluation,
    snakemake.output.metrics,
    snakemake.output.grid,
    snakemake.params.device,
)
