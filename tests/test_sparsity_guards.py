"""The Fig. 8 reuse analysis counts no zeros and no tie-breaks as "reuse", and says so; the
Fig. 7 histogram still accounts for every channel."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline_lib.evaluation.sparsity import (
    channel_reuse,
    dS_histogram,
    plot_reuse,
    reuse_notes,
    reuse_summary,
    write_reuse_csv,
    write_reuse_summary,
)
from pipeline_lib.generator.layers import build_layer_table
from pipeline_lib.generator.stylegan2 import GeneratorConfig

DIM_S = 4928


@pytest.fixture(scope="module")
def table():
    return build_layer_table(GeneratorConfig())


def test_all_zero_dS_reuses_nothing(table, tmp_path):
    res = channel_reuse(np.zeros((10, DIM_S)), top_k=50)
    assert res["channels"].size == 0 and res["reuse_rate"].size == 0  # not conv0 channels 0-49 at 100%
    assert res["all_zero"].all() and (res["selected"] == 0).all() and (res["topk"] == -1).all()
    assert reuse_notes(res) == ["10 of 10 tests have dS = 0 everywhere and contribute no channel"]
    write_reuse_csv(res, table, tmp_path / "reuse.csv")
    assert (tmp_path / "reuse.csv").read_text().strip().count("\n") == 0  # the header only
    plot_reuse(res, table, tmp_path / "reuse.png")
    assert (tmp_path / "reuse.png").read_bytes()[:4] == b"\x89PNG"


def test_zero_channels_never_enter_a_top_k():
    dS = np.zeros((3, 20))
    dS[0, [4, 9]] = [2.0, -1.0]  # two non-zero channels, k = 5
    dS[1, 4] = 3.0
    res = channel_reuse(dS, top_k=5)  # test 2 is all zero
    rates = dict(zip(res["channels"].tolist(), res["reuse_rate"].tolist()))
    assert rates == {4: pytest.approx(2 / 3), 9: pytest.approx(1 / 3)}
    assert res["selected"].tolist() == [2, 1, 0]
    assert res["topk"][0].tolist() == [4, 9, -1, -1, -1]
    notes = reuse_notes(res)
    assert "1 of 3 tests have dS = 0 everywhere and contribute no channel" in notes
    assert "2 of 3 tests have fewer than 5 non-zero channels; only those are selected" in notes


def test_ties_at_the_kth_value_are_all_selected_and_reported(tmp_path):
    dS = np.zeros((2, 30))
    dS[0, :10] = 1.0  # ten channels tie for a top 3
    dS[1, [20, 21, 22]] = [3.0, 2.0, 1.0]  # no tie
    res = channel_reuse(dS, top_k=3)
    rates = dict(zip(res["channels"].tolist(), res["reuse_rate"].tolist()))
    assert set(rates) == set(range(10)) | {20, 21, 22}  # not just columns 0-2
    assert res["selected"].tolist() == [10, 3] and res["tied_at_kth"].tolist() == [True, False]
    assert reuse_notes(res) == ["1 of 2 tests have ties at the 3-th |dS|: all tied channels selected (up to 10)"]
    write_reuse_summary(res, tmp_path / "reuse.json")
    summary = json.loads((tmp_path / "reuse.json").read_text())
    assert summary == reuse_summary(res)
    assert summary["tests_tied_at_kth"] == [0] and summary["channels_selected_per_test"] == [10, 3]
    assert summary["union_channels"] == 13 and summary["notes"]


def test_a_plain_case_has_no_notes():
    dS = np.random.default_rng(0).standard_normal((4, 100))
    res = channel_reuse(dS, top_k=5)
    assert reuse_notes(res) == [] and (res["selected"] == 5).all()


def test_the_histogram_still_counts_every_channel():
    dS = np.zeros((3, DIM_S))
    dS[1, :7] = 1.0  # ties at the maximum
    hist = dS_histogram(dS, bins=10)
    assert (hist["counts"].sum(axis=1) == DIM_S).all()
    assert hist["counts"][0, 0] == DIM_S and hist["counts"][1, -1] == 7
    assert hist["above_threshold"].tolist() == [0, 7, 0]
