# Generative field of every conv layer: Eq. 1, the exact support and a measurement (Fig. 2);
# for StyleGAN3 the analytic support beside the measurement.


rule generative_fields:
    input:
        generator=generator_weights,
    output:
        table=results("generative_fields/table.csv"),
        figure=report(
            results("generative_fields/figure.png"),
            caption="../report/generative_fields.rst",
            category="Generative fields",
        ),
        provenance=results("generative_fields/provenance.json"),
    log:
        results("logs/generative_fields.log"),
    benchmark:
        results("benchmarks/generative_fields.tsv")
    conda:
        "../../envs/genfields.yaml"
    params:
        seed=config["generative_fields"]["seed"],
        measure=config["generative_fields"]["measure"],
        family=config["generator"]["family"],
    script:
        "../scripts/generative_fields.py"
