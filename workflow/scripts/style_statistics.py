"""Per-channel statistics of S (Eq. 12) and the Gaussian model of v (Wulff & Torralba)."""

from pipeline_lib.jobs import dataset
from pipeline_lib.logs import configure

configure(snakemake.log[0])
dataset.statistics(snakemake.input.faces, snakemake.output[0])
