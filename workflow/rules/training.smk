# The reference mapping network M_ref (paper Table 2's variants, config `training.variants`).
# Checkpoints, logs and samples sit beside the target and are not outputs, so a failed or
# killed job keeps them and its rerun resumes from the newest checkpoint.
# training.together (read at parse time) picks one of two rules for the same files: one job
# per variant (train_mref), or one job that trains every variant in one process
# (train_mref_together, one generator pass per step for all of them).


if config["training"]["together"]:

    rule train_mref_together:
        input:
            unpack(training_inputs),
        output:
            models=expand(
                results("models/{variant}/mref.pt"), variant=config["training"]["variants"]
            ),
            samples=report(
                expand(
                    results("models/{variant}/samples/final.png"),
                    variant=config["training"]["variants"],
                ),
                caption="../report/training_samples.rst",
                category="Training",
            ),
            curves=report(
                expand(
                    results("models/{variant}/logs/loss_curves.png"),
                    variant=config["training"]["variants"],
                ),
                caption="../report/loss_curves.rst",
                category="Training",
            ),
        log:
            results("logs/train_mref/together.log"),
        benchmark:
            results("benchmarks/train_mref/together.tsv")
        conda:
            "../../envs/genfields.yaml"
        resources:
            gpu=1,
        params:
            training=config["training"],
            variants=list(config["training"]["variants"]),
            encoders=config["encoders"],
            device=config["device"],
            names=training_weight_names(),
        script:
            "../scripts/train_mref_together.py"

else:

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
