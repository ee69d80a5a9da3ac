"""Merge the shards into faces.h5 with the identity/attribute split."""

from pipeline_lib.dataset.synthesis import merge_shards
from pipeline_lib.logs import configure

log = configure(snakemake.log[0])
summary = merge_shards(
    snakemake.input, snakemake.output[0], snakemake.params.num_identity, snakemake.params.num_attribute
)
log.info("wrote %s: %d faces from %d shards", snakemake.output[0], summary["faces"], summary["shards"])
