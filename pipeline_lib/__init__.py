"""genfields: StyleGAN2 style space, generative fields and the reference mapping network.

Public API (see README): `load_generator(path) -> Generator`, `G.mapping(z, truncation_psi)`,
`G.styles(ws) -> (S, S_rgb)`, `G.synthesize(S, S_rgb, noise_mode)`, and the layer table
`G.layers` with `layer_mask` for per-layer edits.
"""

from pipeline_lib.generator import load_generator, save_generator
from pipeline_lib.generator.layers import LayerSpec, build_layer_table, find_layer, layer_mask, layer_range
from pipeline_lib.generator.loading import export_snapshot
from pipeline_lib.generator.stylegan2 import Generator, GeneratorConfig, init_random_generator
from pipeline_lib.weights import WeightsError

__all__ = [
    "Generator",
    "GeneratorConfig",
    "LayerSpec",
    "WeightsError",
    "build_layer_table",
    "export_snapshot",
    "find_layer",
    "init_random_generator",
    "layer_mask",
    "layer_range",
    "load_generator",
    "save_generator",
]
