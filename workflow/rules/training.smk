# The reference mapping network M_ref, one job per variant of config `training.variants`
# (paper Table 2). Checkpoints, logs and samples sit beside the target and are not outputs,
# so a failed or killed job keeps them and its rerun resumes from the newest checkpoint.


rule train_mref:
    input:
        unpack(training_inputs),
    output:
        model=results("models/{variant}/mref.pt"),
        samples=report(
            results("models/{variant}/samples/final.png"),
            caption="../report/training_samples.rst",
            category="Training",
            subcategory="{variant}",
        ),
        curves=report(
            results("models/{variant}/logs/loss_curves.png"),
            caption="../report/loss_curves.rst",
            category="Training",
            subcategory="{variant}",
        ),
    log:
        results("logs/train_mref/{variant}.log"),
    benchmark:
        results("benchmarks/train_mref/{variant}.tsv")
    wildcard_constraints:
        variant="|".join(config["training"]["variants"]),
    conda:
        "../../envs/genfields.yaml"
    resources:
        gpu=config["training"]["gpus"],
    params:
        training=config["training"],
        encoders=config["encoders"],
        device=config["device"],
        names=training_weight_names(),
    script:
        "../scripts/train_mref.py"
