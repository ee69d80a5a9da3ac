# Shared helpers for the rules: paths and inputs derived from config.

from pathlib import Path

from snakemake.exceptions import WorkflowError


def results(path):
    """A target under the configured results folder."""
    return f"{RESULTS}/{path}"


def generator_weights(wildcards=None):
    """The generator file; its absence is explained, not reported as a bare missing input."""
    path = config["generator"]["weights"]
    if config["generator"].get("random_init") is None and not Path(path).exists():
        raise WorkflowError(
            f"Generator weights not found: {path}\n"
            "Put NVIDIA's StyleGAN2-ADA FFHQ-256 paper256 snapshot (ffhq70k-paper256-ada.pkl) there, "
            "or point `generator.weights` in config.yaml at a .pkl/.pt file. To try the pipeline "
            "without weights, run `snakemake --profile profiles/demo`."
        )
    return path


def dataset_shards():
    """Shard indices of the dataset; sizes are checked here so that a bad setting fails first."""
    ds = config["dataset"]
    n = ds["num_identity"] + ds["num_attribute"]
    for key in ("shard_size", "batch_size"):
        if ds[key] % ds["chunk_size"]:
            raise WorkflowError(
                f"dataset.{key} ({ds[key]}) must be a multiple of dataset.chunk_size ({ds['chunk_size']})"
            )
    return list(range((n + ds["shard_size"] - 1) // ds["shard_size"]))
