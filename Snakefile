# genfields: the generative-fields reproduction as a DAG of cached file targets.
# Rules only wire files to workflow/scripts/*, which call pipeline_lib (see DESIGN in README).

import os

from snakemake.utils import min_version, validate


min_version("8.0")


configfile: "config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")

# Scripts import pipeline_lib from this checkout, also inside conda envs and cluster jobs.
os.environ["PYTHONPATH"] = os.pathsep.join(
    filter(None, [workflow.basedir, os.environ.get("PYTHONPATH")])
)

RESULTS = config["results"]


include: "workflow/rules/common.smk"
include: "workflow/rules/generator.smk"
include: "workflow/rules/generative_fields.smk"


rule all:
    input:
        rules.generative_fields.output,
    default_target: True
