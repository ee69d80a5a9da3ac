# Helpers of the Wulff & Torralba rules (issue 15): which faces each projection set reads, and
# the inputs that exist only when a setting asks for them.

PROJECTION_SETS = ("generated", "real", "identities")


def projection_source(set_name):
    """(path, kind) of a projection set's faces: the dataset for the generated set; for the real
    and identity sets FFHQ when configured, else the user's folder, else the dataset (demo)."""
    if set_name == "generated":
        return results("dataset/faces.h5"), "dataset"
    if config["ffhq"]["source"]:
        return results("ffhq/ffhq256.h5"), "ffhq"
    key = ("projection", "images") if set_name == "real" else ("editing", "identity_images")
    folder = config[key[0]][key[1]]
    return (folder, "folder") if folder else (results("dataset/faces.h5"), "dataset")


def vgg16_input(needed):
    """The LPIPS backbone as an input only when a setting asks for LPIPS."""
    return {"vgg16": weights_input("vgg16_lpips")()} if needed else {}


def projection_inputs(wildcards):
    return {
        "generator": generator_weights(),
        "gaussian": results("latent/gaussian.h5"),
        "source": projection_source(wildcards.set)[0],
        **vgg16_input(config["projection"]["loss"] == "lpips"),
    }


def projection_count(wildcards):
    if wildcards.set == "identities":
        return config["editing"]["num_identities"]
    return config["projection"]["num_images"]


def folder_digest(wildcards):
    """A user folder's listing digest, so that adding a photo reruns the set."""
    path, kind = projection_source(wildcards.set)
    return source_digest(path) if kind == "folder" else ""


# issue 15: log-compression sampling reads the latent Gaussian; the default does not.
def shard_inputs(wildcards):
    inputs = {"generator": generator_weights()}
    if config["dataset"]["sampling"] == "log_compression":
        inputs["gaussian"] = results("latent/gaussian.h5")
    return inputs
