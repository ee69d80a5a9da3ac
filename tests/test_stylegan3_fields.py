"""Generative fields of StyleGAN3: the analytic support (interval arithmetic over convs, filters
and crops) equals the measured one (float64 perturbation) on a small random generator."""

import pytest
from stylegan3_fixtures import generator

from pipeline_lib.generator.stylegan3 import init_random_stylegan3
from pipeline_lib.generator.stylegan3_fields import analytic_fields, field_table
from pipeline_lib.generator.stylegan3_layers import StyleGAN3Config

# 6 layers, 4-pixel margins: every kind of layer (critical, up-sampling, cropping) in little CPU time
TINY = {"z_dim": 8, "w_dim": 8, "img_resolution": 16, "channel_base": 64, "channel_max": 4, "num_layers": 6,
        "margin_size": 4}  # fmt: skip


@pytest.mark.parametrize("radial", [False, True])
def test_analytic_fields_equal_measured(radial):
    cfg = StyleGAN3Config(**TINY, conv_kernel=1 if radial else 3, use_radial_filters=radial)
    G = init_random_stylegan3(cfg, seed=0, w_avg_samples=256)
    rows = field_table(G, measure=True)
    assert len(rows) == cfg.num_layers + 1
    for row in rows:
        assert row["gf_measured"] == row["gf_measured_height"] == row["gf_analytic"], row
        assert row["gf_analytic"] <= row["gf_unclipped"]
    assert rows[-1]["gf_analytic"] == 1  # ToRGB is 1x1 without filters


def test_fields_of_the_fixture_generators_shrink_towards_the_output():
    G = generator("t")
    widths = analytic_fields(G.layers, clip=False)
    assert [s.generative_field for s in G.conv_layers] == widths[:-1]
    assert widths == sorted(widths, reverse=True)
    assert widths[-1] == 1
