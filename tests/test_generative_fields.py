"""Generative fields: Eq. 1, the exact support of the network, and its measurement."""

import csv

import torch

from pipeline_lib.generative_fields import (
    field_table,
    fir_aware_fields,
    measured_fields,
    write_generative_fields,
)
from pipeline_lib.generator.layers import equation1_fields


def test_equation1_by_hand():
    # two 3x3 convs at 4x4 then one up-sampling 3x3 conv to 8x8: 1 + 2*1 = 3, 3 + 2*2 = 7, 7 + 2*2 = 11
    assert equation1_fields([3, 3, 3], [4, 4, 8], 8) == [11, 7, 3]


def test_measurement_equals_exact_support_on_the_official_small_generator(small_G):
    measured = measured_fields(small_G)
    exact = fir_aware_fields(small_G)
    assert [w for w, _ in measured] == exact == [32, 32, 29, 22, 12, 8, 3]
    assert all(w == h for w, h in measured)
    # Eq. 1 ignores the FIR filters, so it can only under-count where the image does not clip
    eq1 = [s.generative_field for s in small_G.conv_layers]
    assert all(e <= x or x == 32 for e, x in zip(eq1, exact))


def test_measurement_leaves_the_generator_unchanged(small_G, cases):
    before = small_G(cases["z"])
    measured_fields(small_G)
    assert next(small_G.parameters()).dtype == torch.float32
    assert torch.equal(small_G(cases["z"]), before)
    assert not small_G.module_of(small_G.conv_layers[0])._forward_pre_hooks


def test_stage_writes_table_and_figure(small_G, tmp_path):
    table, figure = tmp_path / "table.csv", tmp_path / "figure.png"
    write_generative_fields(small_G, table, figure, seed=0)
    rows = list(csv.DictReader(table.open()))
    assert [r["layer"] for r in rows] == [f"conv{i}" for i in range(7)]
    assert [int(r["gf_eq1"]) for r in rows] == [59, 43, 27, 19, 11, 7, 3]
    assert rows[0]["gf_paper"] == ""  # not the paper's geometry: no printed value beside it
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*partial*"))


def test_field_table_without_measurement(small_G):
    rows = field_table(small_G, measure=False)
    assert all(r["gf_measured"] == "" for r in rows)
