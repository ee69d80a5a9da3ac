# The synthetic face dataset (paper Sec. 4): shards on the GPU, merged, then S statistics.


rule synthesize_shard:
    input:
        unpack(shard_inputs),
    output:
        results("dataset/shards/{shard}.h5"),
    log:
        results("logs/synthesize_shard/{shard}.log"),
    benchmark:
        results("benchmarks/synthesize_shard/{shard}.tsv")
    wildcard_constraints:
        shard=r"\d+",
    conda:
        "../../envs/genfields.yaml"
    resources:
        gpu=1,
    params:
        dataset=config["dataset"],
        device=config["device"],
    script:
        "../scripts/synthesize_shard.py"


rule merge_dataset:
    input:
        expand(results("dataset/shards/{shard}.h5"), shard=dataset_shards()),
    output:
        results("dataset/faces.h5"),
    log:
        results("logs/merge_dataset.log"),
    benchmark:
        results("benchmarks/merge_dataset.tsv")
    conda:
        "../../envs/genfields.yaml"
    params:
        dataset=config["dataset"],
    script:
        "../scripts/merge_dataset.py"


rule style_statistics:
    input:
        faces=results("dataset/faces.h5"),
    output:
        results("dataset/style_stats.h5"),
    log:
        results("logs/style_statistics.log"),
    benchmark:
        results("benchmarks/style_statistics.tsv")
    conda:
        "../../envs/genfields.yaml"
    script:
        "../scripts/style_statistics.py"
