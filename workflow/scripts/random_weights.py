"""Demo only: a random-weight stand-in for one pretrained file, in its upstream format."""

from pipeline_lib.jobs import weights
from pipeline_lib.logs import configure

configure(snakemake.log[0])
weights.random_stand_in(snakemake.params.name, snakemake.output[0])
