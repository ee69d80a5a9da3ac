"""The validated config as frozen dataclasses, parsed once.

`config.yaml` is the only place a default lives; `workflow/schemas/config.schema.yaml` checks
its shape before any job runs; this module turns each section into a typed, frozen object so
that no job re-casts raw values or looks a key up twice. A rule passes the sections a job reads
as `params` (so that changing one reruns exactly the jobs that read it) and the job parses them
here with `<Section>.parse(params.<section>)`.

Every field has a short comment, as NVIDIA's constructors do; the config file's comments say
which values are the paper's and which are ours.
"""

from pipeline_lib.config_checks import check_finite
from pipeline_lib.settings.ablation import AblationSettings, check_ablation, check_layer_range, generator_conv_layers
from pipeline_lib.settings.base import CONFIG_FILE, Section, load_config
from pipeline_lib.settings.latent import (
    DatasetSamplingSettings,
    EditingSettings,
    LatentSettings,
    ProjectionSettings,
    SamplingComparisonSettings,
    check_latent,
)
from pipeline_lib.settings.paper import (
    AnnotationSettings,
    DatasetSettings,
    EncoderSettings,
    EvaluationSettings,
    RandomGeneratorSettings,
    SparsitySettings,
    TrainingSettings,
)
from pipeline_lib.settings.stylegan3 import (
    FAMILIES,
    EquivarianceSettings,
    RandomStyleGAN3Settings,
    generator_family,
    parse_random_init,
)

__all__ = [
    "CONFIG_FILE",
    "FAMILIES",
    "AblationSettings",
    "AnnotationSettings",
    "DatasetSamplingSettings",
    "DatasetSettings",
    "EditingSettings",
    "EncoderSettings",
    "EquivarianceSettings",
    "EvaluationSettings",
    "LatentSettings",
    "ProjectionSettings",
    "RandomGeneratorSettings",
    "RandomStyleGAN3Settings",
    "SamplingComparisonSettings",
    "Section",
    "SparsitySettings",
    "TrainingSettings",
    "check_all",
    "check_together",
    "check_layer_range",
    "generator_conv_layers",
    "generator_family",
    "load_config",
    "parse_random_init",
    "training_variants",
]


def training_variants(training: dict) -> list[str]:
    """Names of the variants a config defines (a null entry drops one)."""
    return [name for name, entry in training["variants"].items() if entry is not None]


def check_together(training: dict) -> None:
    """`training.together` trains every variant in one process on one device, so they must
    share what that process shares: one GPU, the schedule length, precision and compile."""
    if not isinstance(training["together"], bool):
        raise ValueError(f"training.together must be true or false, got {training['together']!r}")
    if not training["together"]:
        return
    settings = [TrainingSettings.for_variant(training, v) for v in training_variants(training)]
    for key in ("gpus", "num_steps", "precision", "compile"):
        values = {getattr(s, key) for s in settings}
        if len(values) > 1:
            raise ValueError(f"training.together: the variants must share {key}, got {sorted(map(str, values))}")
    if settings[0].gpus != 1:
        raise ValueError("training.together trains in one process on one GPU: set training.gpus to 1")


def check_all(config: dict) -> None:
    """Parse every section once, so that a bad value stops the run before any job starts."""
    check_finite(config)
    DatasetSettings.parse(config["dataset"]).validate()
    EncoderSettings.parse(config["encoders"])
    AnnotationSettings.parse(config["annotation"]).validate()
    EvaluationSettings.parse(config["evaluation"]).validate()
    SparsitySettings.parse(config["sparsity"])
    if config["generator"].get("random_init") is not None:
        parse_random_init(config["generator"])  # StyleGAN3 block: either family's shape
    generator_family(config["generator"])
    EquivarianceSettings.parse(config["equivariance"]).validate()
    for variant in training_variants(config["training"]):
        TrainingSettings.for_variant(config["training"], variant)
    check_together(config["training"])
    check_ablation(config)
    check_latent(config)
