# The generator the pipeline studies. Real weights are user-supplied; the demo builds random ones.

if config["generator"].get("random_init") is not None:

    rule random_generator:
        output:
            weights=config["generator"]["weights"],
            sidecar=str(Path(config["generator"]["weights"]).with_suffix(".json")),
        log:
            results("logs/random_generator.log"),
        benchmark:
            results("benchmarks/random_generator.tsv")
        conda:
            "../../envs/genfields.yaml"
        params:
            generator=config["generator"],
        script:
            "../scripts/random_generator.py"
