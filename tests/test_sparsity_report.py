"""Sparsity analyses (Figs. 7-8), edit grids and the tables report."""

import csv
import struct

import numpy as np
import pytest

from pipeline_lib.evaluation.sparsity import (
    channel_reuse,
    dS_histogram,
    plot_histogram,
    plot_reuse,
    reuse_rows,
    write_histogram_csv,
    write_reuse_csv,
)
from pipeline_lib.generator.layers import build_layer_table
from pipeline_lib.generator.stylegan2 import GeneratorConfig
from pipeline_lib.reporting import paper as paper_reference
from pipeline_lib.reporting.figures import edit_grid, edit_mosaic
from pipeline_lib.reporting.tables import MISSING, NOT_IN_PAPER, render_tables, write_tables

PAPER256 = GeneratorConfig()  # the defaults are the paper256 shape
DIM_S = 4928


@pytest.fixture(scope="module")
def table():
    return build_layer_table(PAPER256)


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


# ----------------------------------------------------------------------------------------------
# Fig. 7


def test_histogram_counts_sum_to_dim_s_per_test():
    dS = np.random.default_rng(0).standard_normal((7, DIM_S))
    res = dS_histogram(dS, bins=20)
    assert res["counts"].shape == (7, 20)
    assert (res["counts"].sum(axis=1) == DIM_S).all()
    assert res["edges"][0] == 0 and res["edges"][-1] == 1 and len(res["edges"]) == 21
    assert res["counts"][:, -1].min() >= 1  # each test's maximum lands in the last bin


def test_histogram_of_constructed_offsets_gives_known_bins():
    # normalised values: 1.0 (test max), 0.63 and 0.61 above the threshold, 0.55, 0.02 and 95 zeros
    row = np.zeros(100)
    row[:5] = [-2.0, 1.26, 1.22, -1.1, 0.04]
    dS = np.stack([row, 3 * row])  # scaling a test changes nothing after normalisation
    res = dS_histogram(dS, bins=20)
    expected = np.zeros(20, dtype=int)
    expected[0] = 96  # 0.02 and the 95 zeros
    expected[11] = 1  # 0.55
    expected[12] = 2  # 0.61, 0.63
    expected[19] = 1  # 1.0
    np.testing.assert_array_equal(res["counts"][0], expected)
    np.testing.assert_array_equal(res["counts"][1], expected)
    np.testing.assert_allclose(res["mean_count"], expected)
    np.testing.assert_allclose(res["std_count"], 0)
    assert list(res["above_threshold"]) == [3, 3] and res["above_mean"] == 3 and res["above_std"] == 0


def test_histogram_std_across_tests_and_all_zero_test():
    a, b = np.zeros(10), np.zeros(10)
    a[0] = 1.0
    b[:3] = 1.0
    res = dS_histogram(np.stack([a, b, np.zeros(10)]), bins=4)
    np.testing.assert_array_equal(res["counts"][:, -1], [1, 3, 0])
    np.testing.assert_array_equal(res["counts"][:, 0], [9, 7, 10])
    assert res["mean_count"][-1] == pytest.approx(4 / 3)
    assert res["std_count"][-1] == pytest.approx(np.std([1, 3, 0], ddof=1))


def test_histogram_rejects_bad_input():
    with pytest.raises(ValueError):
        dS_histogram(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError):
        dS_histogram(np.zeros((2, 3, 4)))


def test_histogram_csv_and_figure(tmp_path):
    rng = np.random.default_rng(1)
    dS = rng.standard_normal((12, DIM_S)) ** 5  # heavy-tailed: a few channels dominate
    res = dS_histogram(dS)
    write_histogram_csv(res, tmp_path / "hist.csv")
    rows = list(csv.DictReader((tmp_path / "hist.csv").read_text().splitlines()))
    assert list(rows[0]) == ["bin_low", "bin_high", "mean_count", "std_count"]
    assert len(rows) == 20 and float(rows[0]["bin_low"]) == 0 and float(rows[-1]["bin_high"]) == 1
    assert sum(float(r["mean_count"]) for r in rows) == pytest.approx(DIM_S)
    plot_histogram(res, tmp_path / "hist.png")
    w, h = png_size(tmp_path / "hist.png")
    assert 600 <= w <= 2000 and 400 <= h <= 1500


# ----------------------------------------------------------------------------------------------
# Fig. 8


def test_reuse_rates_of_a_constructed_case():
    T, D, k = 10, 300, 5
    dS = np.full((T, D), 0.01)
    for t in range(T):
        dS[t, 7] = -10.0  # in every test's top k
        dS[t, 100 + 4 * t : 100 + 4 * t + 4] = 5.0  # four channels private to test t
    dS[3, 42] = 0.5  # above the background but below test 3's five channels: not chosen
    res = channel_reuse(dS, top_k=k)
    rates = dict(zip(res["channels"].tolist(), res["reuse_rate"].tolist()))
    assert rates[7] == 1.0
    assert len(rates) == 1 + 4 * T and 42 not in rates
    assert all(rates[100 + i] == pytest.approx(0.1) for i in range(4 * T))
    assert res["channels"][0] == 7  # highest reuse first
    assert res["membership"].shape == (T, 1 + 4 * T) and res["membership"][:, 0].all()
    assert (res["membership"].sum(axis=0)[1:] == 1).all() and (res["membership"].sum(axis=1) == k).all()
    assert res["mean_abs_dS"][0] == pytest.approx(10.0)


def test_reuse_ties_break_by_mean_abs_then_column():
    dS = np.zeros((2, 6))
    dS[:, 5] = 1.0
    dS[0, 2], dS[1, 2] = 3.0, 0.0
    dS[1, 4] = 2.0
    res = channel_reuse(dS, top_k=2)
    assert res["channels"].tolist() == [5, 2, 4]  # 5: rate 1; 2 and 4 rate 0.5, 2 has larger mean |dS|
    np.testing.assert_allclose(res["reuse_rate"], [1.0, 0.5, 0.5])


def test_csv_names_channels_through_the_layer_table(table, tmp_path):
    T = 10
    dS = np.zeros((T, DIM_S))
    dS[:, 0] = 5.0  # conv0 channel 0
    dS[:, 512] = 4.0  # conv1 channel 0
    dS[0, 4927] = 3.0  # conv12's last channel, one test only
    dS[:, 4864 - 1] = 2.0  # conv11's last channel
    res = channel_reuse(dS, top_k=3)
    rows = {r["s_column"]: r for r in reuse_rows(res, table)}
    assert (rows[0]["conv_layer"], rows[0]["channel"], rows[0]["stylespace_name"]) == ("conv0", 0, "s0")
    assert (rows[512]["conv_layer"], rows[512]["channel"], rows[512]["stylespace_name"]) == ("conv1", 0, "s2")
    assert (rows[4927]["conv_layer"], rows[4927]["channel"], rows[4927]["stylespace_name"]) == ("conv12", 63, "s18")
    assert rows[0]["generative_field"] == table[0].generative_field
    write_reuse_csv(res, table, tmp_path / "reuse.csv")
    out = list(csv.DictReader((tmp_path / "reuse.csv").read_text().splitlines()))
    assert list(out[0]) == [
        "s_column", "stylespace_name", "conv_layer", "channel", "reuse_rate", "mean_abs_dS", "generative_field"
    ]  # fmt: skip
    assert [int(r["s_column"]) for r in out[:2]] == [0, 512]  # rate 1.0, then larger mean |dS| first
    rates = [float(r["reuse_rate"]) for r in out]
    assert rates == sorted(rates, reverse=True) and float(out[-1]["reuse_rate"]) == pytest.approx(0.1)
    assert out[-1]["s_column"] == "4927"


def test_reuse_refuses_a_table_of_another_generator(table):
    res = channel_reuse(np.ones((2, 100)), top_k=3)
    with pytest.raises(ValueError, match="4928"):
        reuse_rows(res, table)


def test_reuse_figure(table, tmp_path):
    dS = np.random.default_rng(2).standard_normal((10, DIM_S)) ** 3
    res = channel_reuse(dS, top_k=50)
    plot_reuse(res, table, tmp_path / "reuse.png")
    w, h = png_size(tmp_path / "reuse.png")
    assert 800 <= w <= 6000 and 300 <= h <= 2000
    small = channel_reuse(dS, top_k=3)  # few channels: per-channel tick labels
    plot_reuse(small, iter(table), tmp_path / "reuse_small.png")
    assert png_size(tmp_path / "reuse_small.png")[0] >= 600


# ----------------------------------------------------------------------------------------------
# Edit grids


def faces(n, h=64, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, h, 3), dtype=np.uint8)


def test_edit_mosaic_places_images():
    ident, attr = faces(2, 16, 0), faces(3, 16, 1)
    edited = np.stack([faces(3, 16, 10 + r) for r in range(2)])
    m = edit_mosaic(ident, attr, edited, gap=2)
    assert m.shape == (3 * 16 + 2 * 2, 4 * 16 + 3 * 2, 3)
    np.testing.assert_array_equal(m[0:16, 18:34], attr[0])
    np.testing.assert_array_equal(m[36:52, 0:16], ident[1])
    np.testing.assert_array_equal(m[36:52, 54:70], edited[1, 2])
    assert (m[0:16, 0:16] == 255).all()  # blank corner


def test_edit_grid_png(tmp_path):
    ident, attr = faces(3), faces(4, seed=1)
    edited = np.stack([faces(4, seed=5 + r) for r in range(3)])
    edit_grid(ident, attr, edited, tmp_path / "grid.png", title="variant euler")
    w, h = png_size(tmp_path / "grid.png")
    assert w > h > 0 and 5 * 64 <= w <= 1200 and 4 * 64 <= h <= 1000
    with pytest.raises(ValueError):
        edit_grid(ident, attr, edited[:, :2], tmp_path / "bad.png")
    with pytest.raises(TypeError):
        edit_grid(ident.astype(np.float32), attr, edited, tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def test_edit_grid_caps_tile_size(tmp_path):
    ident, attr = faces(1, 512), faces(2, 512, 1)
    edit_grid(ident, attr, np.stack([faces(2, 512, 2)]), tmp_path / "big.png")
    w, h = png_size(tmp_path / "big.png")
    assert w < 3 * 300 and h < 2 * 300 + 100


# ----------------------------------------------------------------------------------------------
# Tables


def metrics(fid=12.345, ident=0.8123, with_eval=True):
    m = {
        "fid": {"value": fid, "num_a": 1000, "num_b": 70000},
        "identity": {"mean": ident, "sem": 0.0041, "n": 1000},
        "expression": {"train": {"mean": 0.01234, "sem": 0.0005, "n": 1000}},
        "pose": {"train": {"mean": 1.9, "sem": 0.1, "n": 1000}},
    }
    if with_eval:
        m["expression"]["eval"] = {"mean": 0.0211, "sem": 0.0009, "n": 998}
        m["pose"]["eval"] = {"mean": 2.5, "sem": 0.2, "n": 998}
    return m


def section(text, title):
    start = text.index(title)
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


def test_report_prints_ours_and_the_papers(tmp_path):
    ev = {"concat": metrics(20.0), "no_concat": metrics(30.0), "euler": metrics(9.876, 0.7777, with_eval=False)}
    ab = {"conv0-conv7": metrics(15.0), "conv6-conv11": {"identity": 0.9}}
    text = write_tables(tmp_path / "tables.md", ev, ab)
    assert (tmp_path / "tables.md").read_text() == text
    t1 = section(text, "## Table 1")
    ours = next(line for line in t1.splitlines() if line.startswith("| Ours"))
    cells = [c.strip() for c in ours.strip("|").split("|")]
    # FID ours/paper, ID ours/paper, Exp 3DDFA/FAN/paper, Pose 3DDFA/FAN/paper
    assert cells[1:] == ["9.88", "4.89", "0.778 ± 0.004", "0.82", "0.0123 ± 0.0005", MISSING, "0.017",
                         "1.90 ± 0.10", MISSING, "1.67"]  # fmt: skip
    assert "Henderson" in text and "2504.17712" in text
    assert "not in our copy of the paper" not in text  # every paper value is there (issue 12)
    for method, cells in (("LORD", "23.08 | — | 0.20 | — | — | 0.085 | — | — | 13.34"),
                          ("FSGAN", "8.90 | — | 0.35 | — | — | 0.013 | — | — | 6.73"),
                          ("IDDISEN", "4.28 | — | 0.60 | — | — | 0.017 | — | — | 9.74")):  # fmt: skip
        assert f"| {method} | — | {cells} |" in t1  # paper-only rows
    t2 = section(text, "## Table 2")
    # The paper's row names, each keyed to our variant.
    assert "| – feature concatenation | no_concat (`no_concat`) | 30.00 | 8.52 |" in t2
    style_row = next(line for line in t2.splitlines() if "+ style regularization" in line)
    assert style_row.count(MISSING) == 6 and "`style_reg`" in style_row  # no run of ours
    assert "| 4.48 |" in style_row and "| 0.83 |" in style_row and "| 0.022 |" in style_row and "| 2.33 |" in style_row
    concat_row = next(line for line in t2.splitlines() if "| default configuration |" in line)
    assert "20.00" in concat_row and "0.0211 ± 0.0009" in concat_row and "2.50 ± 0.20" in concat_row
    assert (
        "| 3.65 |" in concat_row and "| 0.84 |" in concat_row and "| 0.026 |" in concat_row and "| 3.29 |" in concat_row
    )
    assert "| + Euler angle loss | euler (`euler`) | 9.88 | 4.89 |" in t2
    t3 = section(text, "## Table 3")
    assert "| config.1 | conv0–conv7 | 506 → 43 px | (43, 506) px | 15.00 | " + NOT_IN_PAPER + " |" in t3
    assert "conv3–conv6 | 187 → 59 px | (59, 187) px" in t3 and "conv6–conv11 | 59 → 7 px | (7, 59) px" in t3
    row = next(line for line in t3.splitlines() if "| conv6–conv11 |" in line)
    assert "0.900" in row and row.count(MISSING) == 5 and row.count(NOT_IN_PAPER) == 1  # Table 3 has no FID
    assert "| 0.69 |" in row and "| 0.033 |" in row and "| 0.84 |" in row
    assert "998" in t3 and "70000" in t3  # sample sizes


def test_report_reads_compute_fid_output_and_summarise_stats():
    m = {"fid": {"fid": 6.54321, "num_a": 500, "num_b": 1000, "feature_extractor": "x"}, "identity": {"mean": 0.5,
         "sem": None, "n": 1}}  # fmt: skip
    ours = next(line for line in section(render_tables({"euler": m}, {}), "## Table 1").splitlines() if "Ours" in line)
    assert "| 6.54 | 4.89 | 0.500 | 0.82 |" in ours


def test_table1_extra_row_of_real_identities_only_when_given():
    real = {**metrics(31.5, 0.61), "row": "real identities (ours only)", "identity_source": "real (FFHQ)",
            "projection_run": "w/prior", "model": "results/models/euler/mref.pt", "num_pairs": 100}  # fmt: skip
    t1 = section(render_tables({"euler": metrics(9.876)}, {}, real_edits=real), "## Table 1")
    rows = [line for line in t1.splitlines() if line.startswith("| Ours")]
    assert len(rows) == 2 and "real identities (extra row, ours only" in rows[1]
    cells = [c.strip() for c in rows[1].strip("|").split("|")]
    assert cells[1] == "31.50" and cells[3] == "0.610 ± 0.004"
    assert [cells[i] for i in (2, 4, 7, 10)] == [NOT_IN_PAPER] * 4  # no paper values
    assert "Real identities: real (FFHQ), projected (run w/prior)" in t1 and "100 pairs" in t1
    plain = section(render_tables({"euler": metrics(9.876)}, {}), "## Table 1")
    assert "real identities" not in plain.lower()


def test_report_survives_missing_and_malformed_entries():
    text = render_tables({}, None)
    assert "## Table 1" in text and "## Table 2" in text and "## Table 3" in text
    text = render_tables({"euler": {"fid": None, "identity": {"mean": float("nan")}, "pose": "oops"}}, {})
    ours = next(line for line in section(text, "## Table 1").splitlines() if line.startswith("| Ours"))
    assert ours.count(MISSING) == 6


def test_report_uses_given_labels_ranges_and_paper_values(monkeypatch):
    monkeypatch.setitem(paper_reference.PAPER_TABLE3["conv0-conv4"], "fid", 7.5)
    monkeypatch.setattr("pipeline_lib.reporting.tables.PAPER_TABLE3", paper_reference.PAPER_TABLE3)
    text = render_tables(
        {"a": metrics(), "b": {}},
        {"conv0-conv4": metrics(8.0), "mid": metrics(9.0)},
        variant_labels={"a": "Variant A|x", "b": "Variant B"},
        ablation_ranges={"conv0-conv4": ("conv0", "conv4"), "mid": ["conv3", "conv4", "conv5"]},
        final_variant="a",
    )
    assert "Variant A\\|x" in text and "`a`" in section(text, "## Table 1")
    t3 = section(text, "## Table 3")
    assert "| config.2 | conv0–conv4 | 506 → 123 px | (123, 506) px | 8.00 | 7.50 |" in t3
    assert "| conv3–conv5 | 187 → 91 px | — (not in the paper) | 9.00 |" in t3
    assert "Without feature concatenation" not in text  # only the given variants


def test_table3_rows_meet_by_layer_range_not_by_name_and_new_sections(tmp_path):
    ab = {"config1": metrics(15.0), "config5": {"identity": 0.9}}
    ranges = {"config1": ["conv0", "conv7"], "config5": ("conv6", "conv11")}
    reuse = tmp_path / "channel_reuse.csv"
    reuse.write_text(
        "s_column,stylespace_name,conv_layer,channel,reuse_rate,mean_abs_dS,generative_field\n"
        "447,s0,conv0,447,0.9,1.0,507\n3,s0,conv0,3,0.1,0.5,507\n"
    )
    fields = tmp_path / "table.csv"
    fields.write_text("layer,gf_eq1,gf_paper\n" + "".join(f"conv{i},{600 - 40 * i},1\n" for i in range(13)))
    fs = {"mean": 141.0, "std": 8.0, "n": 81, "detector": "3DDFA_V2", "dataset": "real faces",
          "table3": [{"config": "config.5", "layers": "conv6-conv11", "largest_field": 59, "largest_below_face": True}]}  # fmt: skip
    ev = {"euler": {"fid": {"fid": 9.0, "num_a": 1000, "num_b": 70000, "kid": 0.0123, "kid_std": 0.0004,
                            "kid_subset_size": 1000, "kid_subsets": 100}}}  # fmt: skip
    text = write_tables(tmp_path / "t.md", ev, ab, None, ranges, reuse_csv=reuse, face_size=fs, field_table_csv=fields)
    t3 = section(text, "## Table 3")
    row = next(line for line in t3.splitlines() if "| conv0–conv7 |" in line)
    assert row.startswith("| config.1 (ours: `config1`) |") and "| 600 → 320 px | (43, 506) px | no | 15.00 |" in row
    assert "| 0.75 |" in row
    row5 = next(line for line in t3.splitlines() if "| conv6–conv11 |" in line)
    assert "| 0.900 | 0.69 |" in row5  # ours beside the paper's, matched by range
    assert len([line for line in t3.splitlines() if line.startswith("| config.")]) == 5  # no duplicated rows
    assert "9.00; KID 0.0123 ± 0.0004" in section(text, "## Table 1") and "KID 100 subsets of 1000" in text
    s421 = section(text, "## Sec. 4.2.1")
    assert "94 channels; ours has 2" in s421
    assert "| ΔS_448 | 447 | conv0 (s0) | 447 | 507 px | yes | 0.90 |" in s421
    assert "| ΔS_518 | 517 | conv1 (s2) | 5 | 379 px | no | 0 |" in s421  # 1-based 518 -> column 517
    assert "| ΔS_776 | 775 | conv1 (s2) | 263 |" in s421
    s422 = section(text, "## Sec. 4.2.2")
    assert "141.68 px" in s422 and "141.00 ± 8.00 px" in s422 and "config.5 (conv6-conv11" in s422
    plain = render_tables({}, {})
    assert "no reuse CSV given" in plain and "not measured" in plain and "not in our copy" not in plain


def test_paper_values_are_numbers_or_none():
    for tab in (paper_reference.PAPER_TABLE1, paper_reference.PAPER_TABLE2, paper_reference.PAPER_TABLE3):
        for row in tab.values():
            assert row["source"]
            for key in paper_reference.PAPER_METRICS:
                assert row[key] is None or isinstance(row[key], float)
    assert paper_reference.PAPER_TABLE1["ours"]["fid"] == 4.89
    assert (
        paper_reference.PAPER_TABLE1["lord"]["pose"] == 13.34 and paper_reference.PAPER_TABLE1["fsgan"]["fid"] == 8.90
    )
    assert (
        paper_reference.PAPER_TABLE2["concat"]["fid"] == 3.65
        and paper_reference.PAPER_TABLE2["no_concat"]["pose"] == 1.62
    )
    assert paper_reference.PAPER_TABLE3["conv3-conv6"]["generative_fields"] == (59, 187)
    assert all(row["fid"] is None for row in paper_reference.PAPER_TABLE3.values())  # no FID column in Table 3
    assert paper_reference.PAPER_SPARSITY["union_size"] == 94 and paper_reference.PAPER_FACE_SIZE == 141.68
    assert sum(r[3] for r in paper_reference.PAPER256_APPENDIX.values()) == paper_reference.PAPER_STYLE_DIM == 4928


def test_field_source_names_the_method_of_the_generators_family(tmp_path):
    """A StyleGAN3 table has no Eq. 1 column: its widths must not be labelled Eq. 1."""
    ranges = {"config1": ["conv0", "conv3"]}
    sg2 = tmp_path / "sg2.csv"
    sg2.write_text("layer,gf_eq1,gf_paper\n" + "".join(f"conv{i},{600 - 40 * i},1\n" for i in range(13)))
    sg3 = tmp_path / "sg3.csv"
    sg3.write_text("layer,gf_unclipped,gf_measured\n" + "".join(f"conv{i},{300 - 20 * i},1\n" for i in range(13)))
    t2 = section(write_tables(tmp_path / "a.md", {}, {}, None, ranges, field_table_csv=sg2), "## Table 3")
    t3 = section(write_tables(tmp_path / "b.md", {}, {}, None, ranges, field_table_csv=sg3), "## Table 3")
    assert "ours, Eq. 1" in t2 and "Eq. 1" not in t3.replace("no Eq. 1", "")
    assert "StyleGAN3's analytic support" in t3
