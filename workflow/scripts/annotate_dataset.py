"""Annotate the dataset with every configured encoder."""

from pipeline_lib.dataset.annotation import run_annotation_job
from pipeline_lib.logs import configure

configure(snakemake.log[0])
run_annotation_job(
    snakemake.input.faces,
    snakemake.output[0],
    snakemake.params.encoders,
    {name: snakemake.input[name] for name in snakemake.params.names},
    snakemake.params.batch_size,
    snakemake.params.device,
)
