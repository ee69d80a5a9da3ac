# Real aligned faces (FFHQ) from a user-supplied folder or dataset zip, for FID and evaluation.

if config["ffhq"]["source"]:

    rule prepare_ffhq:
        input:
            config["ffhq"]["source"],
        output:
            results("ffhq/ffhq256.h5"),
        log:
            results("logs/prepare_ffhq.log"),
        benchmark:
            results("benchmarks/prepare_ffhq.tsv")
        conda:
            "../../envs/genfields.yaml"
        script:
            "../scripts/prepare_ffhq.py"
