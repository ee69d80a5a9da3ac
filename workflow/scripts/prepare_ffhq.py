"""Real faces into ffhq256.h5; bad files are logged and skipped, never fatal."""

from pipeline_lib.logs import configure
from pipeline_lib.dataset.real_faces import prepare_real_faces

configure(snakemake.log[0])
prepare_real_faces(snakemake.input[0], snakemake.output[0])
