"""Real faces into ffhq256.h5; bad files are logged and skipped, never fatal."""

from pipeline_lib.jobs import real_faces
from pipeline_lib.logs import configure

configure(snakemake.log[0])
real_faces.run(snakemake.input[0], snakemake.output[0])
