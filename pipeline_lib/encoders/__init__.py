"""Face encoders behind one interface (`base.py`), chosen by name in config.yaml.

Each backend names the registry files it is built from (`pipeline_lib/weights_registry.py`),
so the workflow can declare them as inputs and the library can build the encoder from paths.
"""

from __future__ import annotations

LANDMARK_BACKENDS = {
    "3ddfa_mb1": ("tddfa_mb1", "tddfa_param_mean_std", "bfm_68_landmarks"),
    "3ddfa_mb05": ("tddfa_mb05", "tddfa_param_mean_std", "bfm_68_landmarks"),
    "fan": ("fan_3d", "fan_depth", "bfm_68_landmarks"),
}
IDENTITY_BACKENDS = {"arcface_ir_se50": ("arcface_ir_se50",)}
ATTRIBUTE_BACKENDS = {"inception_v3": ("inception_v3_imagenet",)}
BACKENDS = {**LANDMARK_BACKENDS, **IDENTITY_BACKENDS, **ATTRIBUTE_BACKENDS}
# Compute dtypes an encoder's networks can run in for annotation (`inference.py`).
PRECISIONS = ("float32", "bfloat16", "float16")


def weights_needed(kind: str) -> tuple[str, ...]:
    try:
        return BACKENDS[kind]
    except KeyError:
        raise ValueError(f"unknown encoder {kind!r}; known: {sorted(BACKENDS)}") from None


def build_encoder(kind: str, files: dict[str, str], device="cpu"):
    """The frozen encoder `kind` (a LandmarkEncoder or EmbeddingEncoder, see base.py), built
    from `files` (registry name -> local path). Imports torch only here, so that the workflow
    can read the tables above cheaply."""
    import torch

    paths = [files[name] for name in weights_needed(kind)]
    if kind.startswith("3ddfa"):
        from pipeline_lib.encoders.tddfa import TDDFA

        encoder = TDDFA.from_files(*paths)
    elif kind == "fan":
        from pipeline_lib.encoders.fan import FANLandmarks

        encoder = FANLandmarks.from_files(*paths)
    elif kind == "arcface_ir_se50":
        from pipeline_lib.encoders.arcface import IdentityEncoder

        encoder = IdentityEncoder.from_file(*paths)
    else:
        from pipeline_lib.encoders.inception import AttributeEncoder

        encoder = AttributeEncoder.from_file(*paths)
    return encoder.to(torch.device(device)).eval().requires_grad_(False)
