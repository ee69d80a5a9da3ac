"""tables.md: our Tables 1-3 beside the paper's."""

import json

from pipeline_lib.logs import configure
from pipeline_lib.reporting.tables import write_tables

configure(snakemake.log[0])
evaluations = {v: json.load(open(p)) for v, p in zip(snakemake.params.variants, snakemake.input.evaluations)}
ablations = {c: json.load(open(p)) for c, p in zip(snakemake.params.configs, snakemake.input.ablations)}
sources = sorted({m.get("attribute_source", "?") for m in [*evaluations.values(), *ablations.values()]})
write_tables(
    snakemake.output[0],
    evaluations,
    ablations,
    variant_labels=snakemake.params.labels,
    ablation_ranges=snakemake.params.configs,
    final_variant=snakemake.params.final_variant,
    detectors=snakemake.params.detectors,
    notes=[f"Attribute faces: {', '.join(sources)}."],
)
