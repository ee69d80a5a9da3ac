"""Download one registry file and verify it."""

from pipeline_lib.jobs import weights
from pipeline_lib.logs import configure

configure(snakemake.log[0])
weights.fetch(snakemake.params.name, snakemake.output[0])
