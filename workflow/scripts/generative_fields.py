"""Generative-fields stage: table.csv, figure.png and their provenance."""

from pipeline_lib.generative_fields import write_generative_fields
from pipeline_lib.generator.loading import load_generator
from pipeline_lib.logs import configure
from pipeline_lib.provenance import write_provenance

log = configure(snakemake.log[0])
G = load_generator(snakemake.input.generator)
rows = write_generative_fields(
    G, snakemake.output.table, snakemake.output.figure, seed=snakemake.params.seed, measure=snakemake.params.measure
)
for row in rows:
    log.info(
        "%-6s %-10s Eq.1 %4d  paper %4s  exact %4d  measured %4s",
        row["layer"], row["ada_name"], row["gf_eq1"], row["gf_paper"], row["gf_fir"], row["gf_measured"],
    )
write_provenance(
    snakemake.output.provenance,
    params={"seed": snakemake.params.seed, "measure": snakemake.params.measure},
    inputs={"generator": snakemake.input.generator},
)
log.info("wrote %s and %s", snakemake.output.table, snakemake.output.figure)
