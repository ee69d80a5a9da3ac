"""Face size of the synthetic faces (paper Sec. 4.2.2)."""

from pipeline_lib.jobs import face_size
from pipeline_lib.logs import configure

configure(snakemake.log[0])
face_size.run(
    snakemake.input.faces,
    snakemake.input.annotations,
    snakemake.input.field_table,
    snakemake.output.json,
    snakemake.output.figure,
    snakemake.params.encoders,
    snakemake.params.configs,
    real_faces=snakemake.input.get("real_faces"),
    files={name: snakemake.input[name] for name in snakemake.params.names if name in snakemake.input.keys()},
    batch_size=snakemake.params.batch_size,
    device=snakemake.params.device,
)
