"""The layer table, the style space S and per-layer edits."""

import pytest
import torch

from pipeline_lib import layer_mask
from pipeline_lib.generator.layers import build_layer_table, channel_of, find_layer, layer_range
from pipeline_lib.generator.stylegan2 import GeneratorConfig, init_random_generator
from pipeline_lib.reporting.paper import PAPER256_GENERATIVE_FIELDS

PAPER256 = GeneratorConfig()


def test_paper256_style_space_has_4928_dims_and_matches_official_structure(paper256_structure):
    table = build_layer_table(PAPER256)
    convs = [s for s in table if s.kind == "conv"]
    rgbs = [s for s in table if s.kind == "torgb"]
    assert len(convs) == 13 and [s.paper_name for s in convs] == [f"conv{i}" for i in range(13)]
    assert sum(s.style_dim for s in convs) == 4928 == paper256_structure["conv_style_total"]
    assert sum(s.style_dim for s in rgbs) == 2496 == paper256_structure["torgb_style_total"]
    official = [(e["name"], e["kind"], e["in_channels"], e["out_channels"], e["resolution"], e["up"], e["ws_index"])
                for e in paper256_structure["layers"]]  # fmt: skip
    ours = [(s.ada_name, s.kind, s.in_channels, s.out_channels, s.resolution, s.up, s.ws_index) for s in table]
    assert ours == official
    assert max(s.ws_index for s in table) + 1 == paper256_structure["num_ws"] == 14


def test_stylespace_indices_skip_the_torgb_layers():
    table = build_layer_table(PAPER256)
    conv_idx = [s.stylespace_index for s in table if s.kind == "conv"]
    rgb_idx = [s.stylespace_index for s in table if s.kind == "torgb"]
    assert conv_idx == [0, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18]
    assert rgb_idx == [1, 4, 7, 10, 13, 16, 19]
    offsets = [s.offset for s in table if s.kind == "conv"]
    assert offsets == [0, 512, 1024, 1536, 2048, 2560, 3072, 3584, 4096, 4352, 4608, 4736, 4864]


def test_equation1_gives_the_papers_generative_fields():
    convs = [s for s in build_layer_table(PAPER256) if s.kind == "conv"]
    fields = {s.paper_name: s.generative_field for s in convs}
    for name, printed in PAPER256_GENERATIVE_FIELDS.items():
        if name == "conv0":
            assert fields[name] == 507 and printed == 506  # Eq. 1 vs the paper's printed value
        else:
            assert fields[name] == printed, name


def test_find_layer_accepts_all_three_naming_schemes():
    table = build_layer_table(PAPER256)
    spec = find_layer(table, "conv7")
    assert (
        spec is find_layer(table, "b64.conv0") is find_layer(table, "synthesis.b64.conv0") is find_layer(table, "s11")
    )
    assert channel_of(table, spec.offset + 5) == (spec, 5)
    with pytest.raises(KeyError, match="conv0, conv1"):
        find_layer(table, "conv13")


def test_layer_mask_covers_exactly_the_named_layers():
    table = build_layer_table(PAPER256)
    mask = layer_mask(table, layer_range("conv3", "conv6"))
    assert mask.shape == (4928,)
    assert mask.sum() == 4 * 512
    assert mask[1536:3584].eq(1).all() and mask[:1536].eq(0).all() and mask[3584:].eq(0).all()
    with pytest.raises(ValueError, match="torgb"):
        layer_mask(table, ["b4.torgb"])


def test_masked_edit_changes_only_what_the_mask_allows(small_G, cases):
    S, S_rgb = small_G.styles(cases["ws"])
    dS = torch.randn(S.shape, generator=torch.Generator().manual_seed(0))
    nothing = layer_mask(small_G.layers, [])
    assert torch.equal(small_G.synthesize(S + dS * nothing, S_rgb), small_G.synthesize(S, S_rgb))
    only_last = layer_mask(small_G.layers, ["conv6"])
    edited = small_G.synthesize(S + dS * only_last, S_rgb)
    assert (edited - small_G.synthesize(S, S_rgb)).abs().max() > 1e-3
    # conv6 is the last conv: its edit cannot reach earlier blocks' outputs
    _, blocks_a = small_G.synthesize(S, S_rgb, return_blocks=True)
    _, blocks_b = small_G.synthesize(S + dS * only_last, S_rgb, return_blocks=True)
    assert torch.equal(blocks_a[16][1], blocks_b[16][1])


def test_random_paper256_generator_end_to_end_shapes():
    G = init_random_generator(
        GeneratorConfig(channel_base=512, channel_max=16, z_dim=32, w_dim=32, num_mapping_layers=2), seed=0
    )
    assert [s.generative_field for s in G.conv_layers] == [507, 379, 251, 187, 123, 91, 59, 43, 27, 19, 11, 7, 3]
    with torch.no_grad():
        img = G(torch.randn(2, 32))
    assert img.shape == (2, 3, 256, 256) and torch.isfinite(img).all()
