"""Per-channel statistics of S (Eq. 12) and the Gaussian model of v (Wulff & Torralba)."""

from pipeline_lib.dataset.synthesis import compute_style_stats
from pipeline_lib.logs import configure

log = configure(snakemake.log[0])
summary = compute_style_stats(snakemake.input[0], snakemake.output[0])
log.info("wrote %s from %d faces", snakemake.output[0], summary["faces"])
