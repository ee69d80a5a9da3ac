"""Project one face set (generated, real or identities) with the batched projector."""

from pipeline_lib.jobs import latent
from pipeline_lib.logs import configure

configure(snakemake.log[0])
latent.project_faces(
    snakemake.wildcards.set,
    snakemake.input.generator,
    snakemake.input.gaussian,
    snakemake.input.source,
    snakemake.params.kind,
    snakemake.output[0],
    snakemake.params.projection,
    snakemake.params.device,
    num_images=snakemake.params.num_images,
    vgg16=snakemake.input.get("vgg16"),
)
