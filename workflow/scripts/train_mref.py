"""Train M_ref for one variant (resuming from its newest checkpoint if there is one)."""

from pipeline_lib.jobs import training
from pipeline_lib.logs import configure

if __name__ == "__main__":  # guard: torchrun processes import pipeline_lib.training.launch, not this file
    configure(snakemake.log[0])
    training.run(
        snakemake.output.model,
        faces=snakemake.input.faces,
        annotations=snakemake.input.annotations,
        stats=snakemake.input.stats,
        generator=snakemake.input.generator,
        files={name: snakemake.input[name] for name in snakemake.params.names},
        encoders=snakemake.params.encoders,
        training=snakemake.params.training,
        variant=snakemake.wildcards.variant,
        device=snakemake.params.device,
    )
