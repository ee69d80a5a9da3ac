"""One shard of the synthetic face dataset."""

from pipeline_lib.dataset.synthesis import run_shard_job
from pipeline_lib.logs import configure

configure(snakemake.log[0])
run_shard_job(
    snakemake.input.generator,
    snakemake.output[0],
    int(snakemake.wildcards.shard),
    snakemake.params.dataset,
    snakemake.params.device,
)
