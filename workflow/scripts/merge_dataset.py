"""Merge the shards into faces.h5 with the identity/attribute split."""

from pipeline_lib.jobs import dataset
from pipeline_lib.logs import configure

configure(snakemake.log[0])
dataset.merge(snakemake.input, snakemake.output[0], snakemake.params.dataset)
