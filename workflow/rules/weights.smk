# Pretrained files. Normally downloaded from the registry's URL into the weights folder and
# verified (the only rule that touches the network); the demo writes random stand-ins instead.

if config["weights"].get("random_init"):

    rule random_weights:
        output:
            f"{WEIGHTS_DIR}/{{filename}}",
        log:
            results("logs/random_weights/{filename}.log"),
        wildcard_constraints:
            filename="|".join(re.escape(f) for f in BY_FILENAME),
        conda:
            "../../envs/genfields.yaml"
        params:
            name=lambda wildcards: BY_FILENAME[wildcards.filename].name,
        script:
            "../scripts/random_weights.py"

else:

    # On the machine that runs Snakemake (a cluster's login node), which usually has internet.
    localrules:
        download_weights,

    rule download_weights:
        output:
            f"{WEIGHTS_DIR}/{{filename}}",
        log:
            results("logs/download_weights/{filename}.log"),
        wildcard_constraints:
            filename="|".join(re.escape(f) for f in BY_FILENAME),
        conda:
            "../../envs/genfields.yaml"
        params:
            name=lambda wildcards: BY_FILENAME[wildcards.filename].name,
        script:
            "../scripts/download_weights.py"
