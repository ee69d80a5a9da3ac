# Equivariance metrics (EQ-T, EQ-T_frac, EQ-R) of a StyleGAN3 generator. In the DAG only when
# generator.family is stylegan3 (decided when the DAG is planned, before any weights exist).

if config["generator"]["family"] == "stylegan3":

    rule equivariance:
        input:
            generator=generator_weights,
        output:
            metrics=results("equivariance/metrics.json"),
            figure=report(
                results("equivariance/figure.png"),
                caption="../report/equivariance.rst",
                category="Equivariance",
            ),
            provenance=results("equivariance/provenance.json"),
        log:
            results("logs/equivariance.log"),
        benchmark:
            results("benchmarks/equivariance.tsv")
        conda:
            "../../envs/genfields.yaml"
        resources:
            gpu=1,
        params:
            equivariance=config["equivariance"],
            device=config["device"],
        script:
            "../scripts/equivariance.py"
