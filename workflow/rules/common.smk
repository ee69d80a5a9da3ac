# Shared helpers for the rules: paths and inputs derived from config.

import re
from pathlib import Path

from snakemake.exceptions import WorkflowError

from pipeline_lib.dataset.real_faces import source_digest
from pipeline_lib.jobs.dataset import shard_indices
from pipeline_lib.encoders import weights_needed
from pipeline_lib.weights.registry import BY_FILENAME, REGISTRY, how_to_get

WEIGHTS_DIR = config["weights"]["dir"]
_unknown = sorted(set(config["weights"]["files"]) - set(REGISTRY))
if _unknown:
    raise WorkflowError(
        f"config weights.files names {_unknown}, which are not in the registry; "
        f"known names: {sorted(REGISTRY)}"
    )


def results(path):
    """A target under the configured results folder."""
    return f"{RESULTS}/{path}"


def weights_path(name):
    """Where registry entry `name` is read from: the user's file, or the download folder."""
    if name == "stylegan2_ffhq256":
        return config["generator"]["weights"]
    return config["weights"]["files"].get(name) or f"{WEIGHTS_DIR}/{REGISTRY[name].filename}"


def weights_input(name):
    """Input function for a registry file. A file the download rule can make is left to it;
    any other missing file stops the run before it starts, saying where to get it."""

    def path(wildcards=None):
        p = weights_path(name)
        downloadable = p == f"{WEIGHTS_DIR}/{REGISTRY[name].filename}"
        if not Path(p).exists() and not downloadable:
            raise WorkflowError(f"Missing pretrained file {p}.\n{how_to_get(REGISTRY[name], p)}")
        return p

    return path


def generator_weights(wildcards=None):
    """The generator file: the demo's random one, or the registry's (downloadable) snapshot."""
    if config["generator"].get("random_init") is not None:
        return config["generator"]["weights"]
    return weights_input("stylegan2_ffhq256")()


def dataset_shards():
    """Shard indices of the dataset; sizes are checked here so that a bad setting fails first."""
    try:
        return shard_indices(config["dataset"])
    except ValueError as exc:
        raise WorkflowError(str(exc)) from None


def encoder_weight_names():
    """Registry names of every file the configured encoders are built from."""
    enc = config["encoders"]
    kinds = [enc["landmarks"]["train"], enc["landmarks"]["eval"], enc["identity"], enc["attribute"]]
    return sorted({name for kind in kinds for name in weights_needed(kind)})


def annotation_inputs(wildcards):
    inputs = {"faces": results("dataset/faces.h5")}
    inputs.update({name: weights_input(name)() for name in encoder_weight_names()})
    return inputs


def real_faces_targets():
    """The real-faces file when a source is configured, else nothing."""
    return [results("ffhq/ffhq256.h5")] if config["ffhq"]["source"] else []


def training_weight_names():
    """Registry names of the files of the encoders that training runs on I_out."""
    enc = config["encoders"]
    return sorted({*weights_needed(enc["landmarks"]["train"]), *weights_needed(enc["identity"])})


def training_inputs(wildcards):
    inputs = {
        "faces": results("dataset/faces.h5"),
        "annotations": results("dataset/annotations.h5"),
        "stats": results("dataset/style_stats.h5"),
        "generator": generator_weights(),
    }
    inputs.update({name: weights_input(name)() for name in training_weight_names()})
    return inputs


def trained_models():
    return expand(results("models/{variant}/mref.pt"), variant=config["training"]["variants"])


def attribute_faces_path():
    """Attribute faces of the evaluation: real FFHQ when configured, else (demo) the dataset."""
    return results("ffhq/ffhq256.h5") if config["ffhq"]["source"] else results("dataset/faces.h5")


def evaluation_weight_names():
    return sorted({*encoder_weight_names(), "fid_inception"})


def evaluation_inputs(variant, fid=True):
    """Input function: a trained variant, the dataset, the attribute faces, every encoder and,
    for the jobs that compute FID/KID, the real faces' cached Inception features."""

    def inputs(wildcards):
        v = variant if variant else wildcards.variant
        files = {
            "model": results(f"models/{v}/mref.pt"),
            "faces": results("dataset/faces.h5"),
            "annotations": results("dataset/annotations.h5"),
            "attribute_faces": attribute_faces_path(),
            "generator": generator_weights(),
        }
        if fid:
            files["real_features"] = results("fid/real_features.h5")
        files.update({name: weights_input(name)() for name in evaluation_weight_names()})
        return files

    return inputs


def check_variant(section):
    name = config[section]["variant"]
    if name not in config["training"]["variants"]:
        raise WorkflowError(
            f"config {section}.variant is {name!r}, which is not in training.variants "
            f"({sorted(config['training']['variants'])})"
        )
    return name


def equivariance_targets():
    """The equivariance metrics when the generator is a StyleGAN3, else nothing."""
    if config["generator"]["family"] == "stylegan3":
        return [results("equivariance/metrics.json")]
    return []


def face_size_inputs(wildcards):
    """The face-size stage reads the real faces (and its detector's files) only when configured."""
    inputs = {
        "faces": results("dataset/faces.h5"),
        "annotations": results("dataset/annotations.h5"),
        "field_table": results("generative_fields/table.csv"),
    }
    if config["ffhq"]["source"]:
        inputs["real_faces"] = results("ffhq/ffhq256.h5")
        inputs.update({name: weights_input(name)() for name in training_detector_names()})
    return inputs


def training_detector_names():
    """Registry names of the training landmark detector's files."""
    return sorted(weights_needed(config["encoders"]["landmarks"]["train"]))
