"""Inception features of the real attribute faces, once for every FID/KID of the evaluation."""

from pipeline_lib.jobs import evaluation
from pipeline_lib.logs import configure

configure(snakemake.log[0])
evaluation.real_features(
    snakemake.input.attribute_faces,
    snakemake.input.weights,
    snakemake.output[0],
    batch_size=snakemake.params.batch_size,
    device=snakemake.params.device,
)
