# Edit evaluation of every trained variant (Tables 1-2), the generative-field ablation of the
# final variant (Table 3), and the sparsity of its style offsets (Figs. 7-8).


rule real_features:
    input:
        attribute_faces=attribute_faces_path(),
        weights=weights_input("fid_inception"),
    output:
        results("fid/real_features.h5"),
    log:
        results("logs/real_features.log"),
    benchmark:
        results("benchmarks/real_features.tsv")
    conda:
        "../../envs/genfields.yaml"
    resources:
        gpu=1,
    params:
        batch_size=config["evaluation"]["batch_size"],
        device=config["device"],
    script:
        "../scripts/real_features.py"


rule evaluate_variant:
    input:
        unpack(evaluation_inputs(None)),
    output:
        metrics=results("eval/{variant}/metrics.json"),
        grid=report(
            results("eval/{variant}/edit_grid.png"),
            caption="../report/edit_grid.rst",
            category="Edits",
            subcategory="{variant}",
        ),
    log:
        results("logs/evaluate_variant/{variant}.log"),
    benchmark:
        results("benchmarks/evaluate_variant/{variant}.tsv")
    wildcard_constraints:
        variant="|".join(config["training"]["variants"]),
    conda:
        "../../envs/genfields.yaml"
    resources:
        gpu=1,
    params:
        evaluation=config["evaluation"],
        encoder_precision=config["annotation"]["precision"],
        encoders=config["encoders"],
        device=config["device"],
        names=evaluation_weight_names(),
        layers=None,
        num_pairs=config["evaluation"]["num_pairs"],
        title=lambda wildcards: config["training"]["variants"][wildcards.variant].get(
            "label", wildcards.variant
        ),
    script:
        "../scripts/evaluate_edits.py"


rule ablation:
    input:
        unpack(evaluation_inputs(check_variant("ablation"))),
    output:
        metrics=results("ablation/{ablation}/metrics.json"),
        grid=report(
            results("ablation/{ablation}/edit_grid.png"),
            caption="../report/ablation_grid.rst",
            category="Generative-field ablation",
            subcategory="{ablation}",
        ),
    log:
        results("logs/ablation/{ablation}.log"),
    benchmark:
        results("benchmarks/ablation/{ablation}.tsv")
    wildcard_constraints:
        ablation="|".join(config["ablation"]["configs"]),
    conda:
        "../../envs/genfields.yaml"
    resources:
        gpu=1,
    params:
        evaluation=config["evaluation"],
        encoder_precision=config["annotation"]["precision"],
        encoders=config["encoders"],
        device=config["device"],
        names=evaluation_weight_names(),
        layers=lambda wildcards: config["ablation"]["configs"][wildcards.ablation],
        num_pairs=config["ablation"]["num_pairs"],
        title=lambda wildcards: "dS on {} to {}".format(
            *config["ablation"]["configs"][wildcards.ablation]
        ),
    script:
        "../scripts/evaluate_edits.py"


rule sparsity:
    input:
        unpack(evaluation_inputs(check_variant("sparsity"), fid=False)),
    output:
        histogram_csv=results("analysis/histogram.csv"),
        histogram_summary=results("analysis/histogram_summary.json"),
        histogram_png=report(
            results("analysis/histogram.png"),
            caption="../report/histogram.rst",
            category="Sparsity",
        ),
        reuse_csv=results("analysis/reuse.csv"),
        reuse_png=report(
            results("analysis/reuse.png"), caption="../report/reuse.rst", category="Sparsity"
        ),
    log:
        results("logs/sparsity.log"),
    benchmark:
        results("benchmarks/sparsity.tsv")
    conda:
        "../../envs/genfields.yaml"
    resources:
        gpu=1,
    params:
        sparsity=config["sparsity"],
        evaluation=config["evaluation"],
        encoder_precision=config["annotation"]["precision"],
        encoders=config["encoders"],
        device=config["device"],
        names=evaluation_weight_names(),
    script:
        "../scripts/sparsity.py"


rule report_tables:
    input:
        evaluations=expand(
            results("eval/{variant}/metrics.json"), variant=config["training"]["variants"]
        ),
        ablations=expand(
            results("ablation/{ablation}/metrics.json"), ablation=config["ablation"]["configs"]
        ),
        reuse=results("analysis/reuse.csv"),
        face_size=results("analysis/face_size.json"),
        field_table=results("generative_fields/table.csv"),
        # Table 1's extra row: every run makes the real-face edits (rule all asks for the latent
        # report, which reads them), so the tables wait for them too
        real_edits=results("latent/real_edits.json"),
    output:
        report(results("report/tables.md"), caption="../report/tables.rst", category="Tables"),
    log:
        results("logs/report_tables.log"),
    conda:
        "../../envs/genfields.yaml"
    params:
        variants=list(config["training"]["variants"]),
        labels={k: v.get("label", k) for k, v in config["training"]["variants"].items()},
        final_variant=config["ablation"]["variant"],
        configs=config["ablation"]["configs"],
        detectors=[
            config["encoders"]["landmarks"]["train"],
            config["encoders"]["landmarks"]["eval"],
        ],
    script:
        "../scripts/report_tables.py"


rule face_size:
    input:
        unpack(face_size_inputs),
    output:
        json=results("analysis/face_size.json"),
        figure=report(
            results("analysis/face_size.png"),
            caption="../report/face_size.rst",
            category="Face size",
        ),
    log:
        results("logs/face_size.log"),
    conda:
        "../../envs/genfields.yaml"
    resources:
        gpu=1 if config["ffhq"]["source"] else 0,  # the detector runs only on real faces
    params:
        encoders=config["encoders"],
        configs=config["ablation"]["configs"],
        names=training_detector_names(),
        batch_size=config["annotation"]["batch_size"],
        device=config["device"],
    script:
        "../scripts/face_size.py"
