# genfields: the generative-fields reproduction as a DAG of cached file targets.
# Rules only wire files to workflow/scripts/*, each one call into pipeline_lib.jobs (README: Layout).

import os
import sys

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

sys.path.insert(0, workflow.basedir)  # the rules read pipeline_lib's registry and settings

min_version("9.0")


configfile: os.path.join(workflow.basedir, "config.yaml")


validate(config, "workflow/schemas/config.schema.yaml")
# A config file can drop a variant or ablation configuration of config.yaml by setting it to
# null (config files are merged key by key, so leaving it out would keep it).
for section, key in (("training", "variants"), ("ablation", "configs")):
    config[section][key] = {k: v for k, v in config[section][key].items() if v is not None}

from pipeline_lib.settings import check_all

try:  # every section parsed once, so that a bad value stops the run before any job starts
    check_all(config)
except (KeyError, ValueError) as exc:
    raise WorkflowError(f"config: {exc}") from None


report: "workflow/report/workflow.rst"


# Scripts import pipeline_lib through the link workflow/scripts/pipeline_lib: Snakemake puts
# a script's folder on sys.path, so this checkout's library is used in any environment.
RESULTS = config["results"]


include: "workflow/rules/common.smk"
include: "workflow/rules/latent_common.smk"  # issue 15: Wulff & Torralba
include: "workflow/rules/weights.smk"
include: "workflow/rules/generator.smk"
include: "workflow/rules/generative_fields.smk"
include: "workflow/rules/dataset.smk"
include: "workflow/rules/annotation.smk"
include: "workflow/rules/real_faces.smk"
include: "workflow/rules/training.smk"
include: "workflow/rules/evaluation.smk"
include: "workflow/rules/latent.smk"  # issue 15: Wulff & Torralba
include: "workflow/rules/equivariance.smk"


rule all:
    default_target: True
    input:
        rules.generative_fields.output,
        rules.style_statistics.output,
        rules.annotate_dataset.output,
        real_faces_targets(),
        trained_models(),
        rules.report_tables.output,
        rules.sparsity.output,
        rules.face_size.output,
        rules.latent_report.output,  # issue 15
        equivariance_targets(),
