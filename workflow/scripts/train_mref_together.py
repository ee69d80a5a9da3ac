"""Train M_ref for every variant in one process (config training.together), each resuming from
its checkpoints."""

from pipeline_lib.jobs import training
from pipeline_lib.logs import configure

if __name__ == "__main__":
    configure(snakemake.log[0])
    training.run(
        snakemake.output.models,
        faces=snakemake.input.faces,
        annotations=snakemake.input.annotations,
        stats=snakemake.input.stats,
        generator=snakemake.input.generator,
        files={name: snakemake.input[name] for name in snakemake.params.names},
        encoders=snakemake.params.encoders,
        training=snakemake.params.training,
        variant=list(snakemake.params.variants),
        device=snakemake.params.device,
    )
