# Wulff & Torralba's Gaussianized latent space (issue 15): the latent model, the batched
# projector's cached sets, W&T's evaluation (Figs. 2-3), real-face editing with the final M_ref,
# the sampling comparison (Fig. 4) and the report section.


rule latent_model:
    input:
        generator=generator_weights,
    output:
        gaussian=results("latent/gaussian.h5"),
        figure=report(
            results("latent/gaussianity.png"),
            caption="../report/gaussianity.rst",
            category="Gaussianized latent space",
        ),
        summary=results("latent/gaussianity.json"),
    log:
        results("logs/latent_model.log"),
    benchmark:
        results("benchmarks/latent_model.tsv")
    conda:
        "../../envs/genfields.yaml"
    resources:
        gpu=1,
    params:
        latent=config["latent"],
        device=config["device"],
    script:
        "../scripts/latent_model.py"


rule project_faces:
    input:
        unpack(projection_inputs),
    output:
        results("projection/{set}.h5"),
    log:
        results("logs/project_faces/{set}.log"),
    benchmark:
        results("benchmarks/project_faces/{set}.tsv")
    wildcard_constraints:
        set="|".join(PROJECTION_SETS),
    conda:
        "../../envs/genfields.yaml"
    resources:
        gpu=1,
    params:
        projection=config["projection"],
        device=config["device"],
        kind=lambda wildcards: projection_source(wildcards.set)[1],
        num_images=projection_count,
        digest=folder_digest,
    script:
        "../scripts/project_faces.py"


rule latent_evaluation:
    input:
        generated=results("projection/generated.h5"),
        real=results("projection/real.h5"),
        generator=generator_weights,
        gaussian=results("latent/gaussian.h5"),
        fid_inception=weights_input("fid_inception"),
        reference=real_faces_targets(),
    output:
        metrics=results("latent/evaluation.json"),
        figure=report(
            results("latent/reconstruction.png"),
            caption="../report/latent_reconstruction.rst",
            category="Gaussianized latent space",
        ),
        strips=report(
            results("latent/interpolation.png"),
            caption="../report/latent_interpolation.rst",
            category="Gaussianized latent space",
        ),
    log:
        results("logs/latent_evaluation.log"),
    benchmark:
        results("benchmarks/latent_evaluation.tsv")
    conda:
        "../../envs/genfields.yaml"
    resources:
        gpu=1,
    params:
        device=config["device"],
        batch=config["projection"]["batch"],
    script:
        "../scripts/latent_evaluation.py"


rule sampling_comparison:
    input:
        **vgg16_input(config["sampling_comparison"]["diversity"] == "lpips"),
        generator=generator_weights,
        gaussian=results("latent/gaussian.h5"),
        fid_inception=weights_input("fid_inception"),
        reference=attribute_faces_path(),
        real_features=results("fid/real_features.h5"),
    output:
        metrics=results("latent/sampling.json"),
        figure=report(
            results("latent/sampling.png"),
            caption="../report/latent_sampling.rst",
            category="Gaussianized latent space",
        ),
    log:
        results("logs/sampling_comparison.log"),
    benchmark:
        results("benchmarks/sampling_comparison.tsv")
    conda:
        "../../envs/genfields.yaml"
    resources:
        gpu=1,
    params:
        sampling_comparison=config["sampling_comparison"],
        dataset=config["dataset"],
        device=config["device"],
    script:
        "../scripts/sampling_comparison.py"


rule edit_real_faces:
    input:
        unpack(evaluation_inputs(check_variant("ablation"))),
        identities=results("projection/identities.h5"),
    output:
        metrics=results("latent/real_edits.json"),
        grid=report(
            results("latent/real_edit_grid.png"),
            caption="../report/real_edit_grid.rst",
            category="Gaussianized latent space",
        ),
    log:
        results("logs/edit_real_faces.log"),
    benchmark:
        results("benchmarks/edit_real_faces.tsv")
    conda:
        "../../envs/genfields.yaml"
    resources:
        gpu=1,
    params:
        evaluation=config["evaluation"],
        encoders=config["encoders"],
        device=config["device"],
        names=evaluation_weight_names(),
    script:
        "../scripts/edit_real_faces.py"


rule latent_report:
    input:
        gaussianity=results("latent/gaussianity.json"),
        evaluation=results("latent/evaluation.json"),
        sampling=results("latent/sampling.json"),
        real_edits=results("latent/real_edits.json"),
    output:
        report(results("report/latent.md"), caption="../report/latent.rst", category="Tables"),
    log:
        results("logs/latent_report.log"),
    conda:
        "../../envs/genfields.yaml"
    script:
        "../scripts/latent_report.py"
