"""Download one registry file and verify it."""

from pipeline_lib.logs import configure
from pipeline_lib.weights.registry import REGISTRY, download

configure(snakemake.log[0])
download(REGISTRY[snakemake.params.name], snakemake.output[0])
