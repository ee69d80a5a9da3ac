"""Train M_ref for one variant (resuming from its newest checkpoint if there is one)."""

from pipeline_lib.logs import configure
from pipeline_lib.training.loop import run_training_job

if __name__ == "__main__":  # guard: torchrun's processes import pipeline_lib.training.loop, not this file
    configure(snakemake.log[0])
    run_training_job(
        snakemake.output.model,
        faces_path=snakemake.input.faces,
        annotations_path=snakemake.input.annotations,
        stats_path=snakemake.input.stats,
        generator_path=snakemake.input.generator,
        encoder_files={name: snakemake.input[name] for name in snakemake.params.names},
        encoders_cfg=snakemake.params.encoders,
        training_cfg=snakemake.params.training,
        variant=snakemake.wildcards.variant,
        device_name=snakemake.params.device,
    )
