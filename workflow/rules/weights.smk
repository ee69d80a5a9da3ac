# Pretrained files: downloaded from the registry's URL into the weights folder and verified.
# The only rule that touches the network.


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
