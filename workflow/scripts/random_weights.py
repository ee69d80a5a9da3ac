"""Demo only: a random-weight stand-in for one pretrained file, in its upstream format."""

from pipeline_lib.encoders.random_weights import random_weights_file
from pipeline_lib.logs import configure

log = configure(snakemake.log[0])
random_weights_file(snakemake.params.name, snakemake.output[0])
log.info("wrote a random stand-in for %s at %s", snakemake.params.name, snakemake.output[0])
