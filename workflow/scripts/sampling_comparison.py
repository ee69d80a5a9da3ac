"""W&T Fig. 4: raw, truncated and log-compressed samples; FID and diversity per method."""

from pipeline_lib.jobs import latent
from pipeline_lib.logs import configure

configure(snakemake.log[0])
latent.sampling_comparison(
    snakemake.input.generator,
    snakemake.input.gaussian,
    snakemake.input.fid_inception,
    snakemake.input.reference,
    snakemake.input.real_features,
    snakemake.output.metrics,
    snakemake.output.figure,
    snakemake.params.sampling_comparison,
    snakemake.params.dataset,
    snakemake.params.device,
    vgg16=snakemake.input.get("vgg16"),
)
