# Landmarks, pose, identity embeddings and attribute features of every dataset face, once.


rule annotate_dataset:
    input:
        unpack(annotation_inputs),
    output:
        results("dataset/annotations.h5"),
    log:
        results("logs/annotate_dataset.log"),
    benchmark:
        results("benchmarks/annotate_dataset.tsv")
    conda:
        "../../envs/genfields.yaml"
    resources:
        gpu=1,
    params:
        encoders=config["encoders"],
        annotation=config["annotation"],
        device=config["device"],
        names=encoder_weight_names(),
    script:
        "../scripts/annotate_dataset.py"
