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
        params:
            # Any file added, removed or changed anywhere under the source (subfolders too)
            # changes this digest, so the stage reruns: a folder's mtime alone would miss them.
            listing=source_digest(config["ffhq"]["source"]),
        script:
            "../scripts/prepare_ffhq.py"
