"""One shard of the synthetic face dataset."""

from pipeline_lib.jobs import dataset
from pipeline_lib.logs import configure

configure(snakemake.log[0])
dataset.synthesize_shard(
    snakemake.input.generator,
    snakemake.output[0],
    int(snakemake.wildcards.shard),
    snakemake.params.dataset,
    snakemake.params.device,
    gaussian=snakemake.input.get("gaussian"),
)
