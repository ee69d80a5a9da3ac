"""Sparsity of the style offsets dS that M_ref produces (paper Figs. 7 and 8).

The paper's claim is that an edit is carried by a few style channels: per test, only a handful
of the 4928 |dS| entries come near the test's maximum (Fig. 7), and the channels that do are
largely the same from one attribute image to the next (Fig. 8). Both analyses take `dS` as an
array [T, dim S], one row per test (one identity image edited towards T attribute images).

The analyses are pure numpy; only the `plot_*` and `write_*` functions touch the disk, each
through `atomic_path`. Figures are drawn on an Agg canvas without pyplot.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pipeline_lib.atomic import atomic_path, write_json_atomic
from pipeline_lib.generator.layers import LayerSpec, channel_of, conv_layers

THRESHOLD = 0.6  # Fig. 7's dashed line: channels above it "do" the edit
REUSE_CSV_COLUMNS = (
    "s_column",
    "stylespace_name",
    "conv_layer",
    "channel",
    "reuse_rate",
    "mean_abs_dS",
    "generative_field",
)


def _as_tests(dS) -> np.ndarray:
    """[T, dim S] float64; a single offset [dim S] is one test."""
    arr = np.asarray(dS, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"dS must be [tests, dim S], got shape {np.shape(dS)}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("dS holds NaN or infinite values")
    return arr


def _std(x: np.ndarray, axis: int = 0) -> np.ndarray:
    """Sample standard deviation across tests (ddof 1), 0 for a single test."""
    return x.std(axis=axis, ddof=1) if x.shape[axis] > 1 else np.zeros(np.delete(x.shape, axis))


def normalised_magnitude(dS) -> np.ndarray:
    """|dS| / max |dS| per test, in [0, 1]; an all-zero test stays all zero."""
    a = np.abs(_as_tests(dS))
    peak = a.max(axis=1, keepdims=True)
    return np.divide(a, peak, out=np.zeros_like(a), where=peak > 0)


# ----------------------------------------------------------------------------------------------
# Fig. 7: histogram of the normalised |dS|


def dS_histogram(dS, bins: int = 20, threshold: float = THRESHOLD) -> dict:
    """Fig. 7: per test a `bins`-bin histogram of |dS| / max |dS| over [0, 1]; mean and standard
    deviation of each bin's count across tests, and how many channels per test exceed `threshold`.

    Bins are half-open [low, high) except the last, which holds 1.0 (numpy's convention), so
    every test's counts sum to dim S. Returns numpy arrays:
    `edges` [bins+1], `counts` [T, bins], `mean_count`, `std_count` [bins] (ddof 1),
    `above_threshold` [T], and scalars `above_mean`, `above_std`, `threshold`, `num_tests`, `dim`.
    """
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    norm = normalised_magnitude(dS)
    T, D = norm.shape
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.searchsorted(edges, norm, side="right") - 1, 0, bins - 1)
    counts = np.zeros((T, bins), dtype=np.int64)
    np.add.at(counts, (np.repeat(np.arange(T), D), index.ravel()), 1)
    above = (norm > threshold).sum(axis=1)
    return {
        "edges": edges,
        "counts": counts,
        "mean_count": counts.mean(axis=0),
        "std_count": _std(counts.astype(np.float64)),
        "above_threshold": above,
        "above_mean": float(above.mean()),
        "above_std": float(_std(above.astype(np.float64))),
        "threshold": float(threshold),
        "num_tests": int(T),
        "dim": int(D),
    }


def histogram_summary(result: dict) -> dict:
    """The numbers of Fig. 7 worth quoting, JSON-ready."""
    return {
        "num_tests": result["num_tests"],
        "dim_S": result["dim"],
        "bins": len(result["mean_count"]),
        "threshold": result["threshold"],
        "channels_above_threshold_mean": result["above_mean"],
        "channels_above_threshold_std": result["above_std"],
        "channels_above_threshold_per_test": [int(v) for v in result["above_threshold"]],
        "fraction_above_threshold_mean": result["above_mean"] / result["dim"],
    }


def write_histogram_csv(result: dict, path) -> None:
    edges = result["edges"]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["bin_low", "bin_high", "mean_count", "std_count"])
        for i, (mean, std) in enumerate(zip(result["mean_count"], result["std_count"])):
            writer.writerow([f"{edges[i]:.4f}", f"{edges[i + 1]:.4f}", f"{mean:.6g}", f"{std:.6g}"])


def write_histogram_summary(result: dict, path) -> None:
    write_json_atomic(path, histogram_summary(result))


def plot_histogram(result: dict, path, title: str | None = None) -> None:
    """Fig. 7: mean count per bin on a log scale, +-1 standard deviation across tests."""
    edges, mean, std = result["edges"], result["mean_count"], result["std_count"]
    centres, width = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
    # a log axis cannot show a bar reaching 0: clip the lower whisker just above it
    lower = np.where(mean > 0, np.minimum(std, mean * (1 - 1e-3)), 0.0)
    fig = Figure(figsize=(8, 4.8))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.bar(centres, mean, width=width * 0.9, color="tab:blue", alpha=0.8, label="mean count per test")
    ax.errorbar(centres, mean, yerr=[lower, std], fmt="none", ecolor="black", capsize=2.5, lw=0.9, label="± 1 std")
    ax.axhline(1.0, color="tab:red", lw=1.0, label="count = 1")
    t = result["threshold"]
    ax.axvline(t, color="black", ls="--", lw=1.0, label=f"threshold {t:g}")
    ax.set_yscale("log")
    ax.set_xlim(0, 1)
    ax.set_ylim(bottom=0.1)
    ax.set_xlabel("|dS| / max |dS| (per test)")
    ax.set_ylabel("channels per bin (mean over tests)")
    ax.set_title(title or f"Sparsity of dS (paper Fig. 7): {result['num_tests']} tests, dim S = {result['dim']}")
    ax.text(
        0.98,
        0.80,
        f"channels above {t:g}: {result['above_mean']:.1f} ± {result['above_std']:.1f} per test",
        transform=ax.transAxes,
        ha="right",
        va="top",
        fontsize=9,
        bbox={"boxstyle": "round", "fc": "white", "ec": "0.7"},
    )
    ax.legend(fontsize=8, loc="upper right", bbox_to_anchor=(1.0, 0.72))
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120)


# ----------------------------------------------------------------------------------------------
# Fig. 8: reuse of the top-k channels across tests


def channel_reuse(dS, top_k: int = 50) -> dict:
    """Fig. 8: each test's top-k channels by |dS|, their union, and per union channel the reuse
    rate = the fraction of tests whose top-k holds it.

    Ties and zeros are not "reuse": a channel with |dS| == 0 is never in a top-k (so a test
    whose dS is all zero contributes no channel, instead of the first k columns), and where
    several channels tie at a test's k-th value all of them are selected rather than the lower
    columns, so a test's selection may hold fewer than k channels (fewer non-zero ones) or more
    (ties). Both are counted and reported (`reuse_notes`, the figure's title, the summary).
    Union channels are ordered by reuse rate (descending), then by `mean_abs_dS` (|dS| averaged
    over every test, descending), then by column. Returns numpy arrays: `topk` [T, k] (columns,
    largest first, -1 where a test has fewer than k non-zero channels), `selected` [T] (channels
    selected per test), `tied_at_kth` [T] bool (ties pushed the selection past k), `all_zero`
    [T] bool, `channels` [U], `membership` [T, U] bool, `reuse_rate` [U], `mean_abs_dS` [U], and
    scalars `top_k`, `num_tests`, `dim`.
    """
    a = np.abs(_as_tests(dS))
    T, D = a.shape
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    k = min(top_k, D)
    order_desc = np.argsort(-a, axis=1, kind="stable")[:, :k]
    kth = a[np.arange(T), order_desc[:, -1]]  # each test's k-th largest |dS|
    chosen = (a > 0) & (a >= kth[:, None])
    topk = np.where(a[np.arange(T)[:, None], order_desc] > 0, order_desc, -1)
    selected = chosen.sum(axis=1)
    union = np.flatnonzero(chosen.any(axis=0))
    rate = chosen[:, union].mean(axis=0)
    mean_abs = a[:, union].mean(axis=0)
    order = np.lexsort((union, -mean_abs, -rate))
    channels = union[order]
    return {
        "topk": topk,
        "selected": selected,
        "tied_at_kth": selected > k,
        "all_zero": ~(a > 0).any(axis=1),
        "channels": channels,
        "membership": chosen[:, channels],
        "reuse_rate": rate[order],
        "mean_abs_dS": mean_abs[order],
        "top_k": int(k),
        "num_tests": int(T),
        "dim": int(D),
    }


def reuse_notes(result: dict) -> list[str]:
    """Sentences on what `channel_reuse` did with zeros and ties (empty when nothing special)."""
    k, T = result["top_k"], result["num_tests"]
    notes = []
    zero = int(result["all_zero"].sum())
    if zero:
        notes.append(f"{zero} of {T} tests have dS = 0 everywhere and contribute no channel")
    short = int(((result["selected"] < k) & ~result["all_zero"]).sum())
    if short:
        notes.append(f"{short} of {T} tests have fewer than {k} non-zero channels; only those are selected")
    tied = int(result["tied_at_kth"].sum())
    if tied:
        most = int(result["selected"].max())
        notes.append(f"{tied} of {T} tests have ties at the {k}-th |dS|: all tied channels selected (up to {most})")
    return notes


def reuse_summary(result: dict) -> dict:
    """The numbers of Fig. 8 worth quoting, with the zero and tie notes, JSON-ready."""
    return {
        "num_tests": result["num_tests"],
        "dim_S": result["dim"],
        "top_k": result["top_k"],
        "union_channels": len(result["channels"]),
        "channels_selected_per_test": [int(v) for v in result["selected"]],
        "tests_all_zero": [int(i) for i in np.flatnonzero(result["all_zero"])],
        "tests_tied_at_kth": [int(i) for i in np.flatnonzero(result["tied_at_kth"])],
        "notes": reuse_notes(result),
    }


def write_reuse_summary(result: dict, path) -> None:
    write_json_atomic(path, reuse_summary(result))


def _check_table(result: dict, table: Iterable[LayerSpec]) -> list[LayerSpec]:
    table = list(table)
    dim = sum(s.style_dim for s in conv_layers(table))
    if dim != result["dim"]:
        raise ValueError(f"dS has {result['dim']} columns but the layer table's S has {dim}")
    return table


def reuse_rows(result: dict, table: Iterable[LayerSpec]) -> list[dict]:
    """One row per union channel, in the result's order, named through the layer table."""
    table = _check_table(result, table)
    rows = []
    for col, rate, mean_abs in zip(result["channels"], result["reuse_rate"], result["mean_abs_dS"]):
        spec, channel = channel_of(table, int(col))
        rows.append(
            {
                "s_column": int(col),
                "stylespace_name": spec.stylespace_name,
                "conv_layer": spec.paper_name,
                "channel": int(channel),
                "reuse_rate": float(rate),
                "mean_abs_dS": float(mean_abs),
                "generative_field": spec.generative_field,
            }
        )
    return rows


def write_reuse_csv(result: dict, table: Iterable[LayerSpec], path) -> None:
    rows = reuse_rows(result, table)
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(REUSE_CSV_COLUMNS))
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {**row, "reuse_rate": f"{row['reuse_rate']:.4g}", "mean_abs_dS": f"{row['mean_abs_dS']:.6g}"}
            )


def plot_reuse(result: dict, table: Iterable[LayerSpec], path, title: str | None = None) -> None:
    """Fig. 8: reuse rate per union channel (top), top-k membership per test (middle) and the
    conv layer of each channel (bottom strip), channels in the order of `channel_reuse`."""
    table = list(table)
    rows = reuse_rows(result, table)
    convs = [s.paper_name for s in conv_layers(table)]
    layer_index = np.array([convs.index(r["conv_layer"]) for r in rows])
    U, T = len(rows), result["num_tests"]
    fig = Figure(figsize=(min(max(9.0, 0.13 * U + 3.5), 18.0), 3.4 + 0.28 * T))  # wide enough, never a banner
    FigureCanvasAgg(fig)
    axes = fig.subplots(3, 1, sharex=True, gridspec_kw={"height_ratios": [2.2, max(T, 1) * 0.35, 0.45], "hspace": 0.08})
    ax_rate, ax_map, ax_layer = axes
    x = np.arange(U)
    ax_rate.bar(x, result["reuse_rate"], width=0.9, color="tab:blue")
    ax_rate.set_ylim(0, 1.05)
    if U == 0:  # every test was all zero: an empty figure that says so (and no singular x axis)
        ax_rate.set_xlim(-0.5, 0.5)
        ax_rate.text(0, 0.5, "no channel has |dS| > 0 in any test", ha="center", va="center")
    ax_rate.set_ylabel("reuse rate")
    ax_rate.set_title(
        "\n".join(
            [
                title
                or f"Reuse of the top-{result['top_k']} channels of dS across {T} tests (paper Fig. 8): "
                f"{U} distinct channels",
                *reuse_notes(result),
            ]
        ),
        fontsize=9,
    )
    ax_map.imshow(
        result["membership"].astype(float), aspect="auto", cmap="Greys", vmin=0, vmax=1, interpolation="nearest"
    )
    ax_map.set_yticks(np.arange(T), [f"test {i}" for i in range(T)], fontsize=7)
    ax_map.set_ylabel(f"in top-{result['top_k']}")
    cmap = _layer_colours(len(convs))
    ax_layer.imshow(
        layer_index[None], aspect="auto", cmap=cmap, vmin=-0.5, vmax=len(convs) - 0.5, interpolation="nearest"
    )
    ax_layer.set_yticks([0], ["layer"], fontsize=7)
    if U <= 90:
        ax_layer.set_xticks(x, [f"{r['conv_layer']}/{r['channel']}" for r in rows], rotation=90, fontsize=6)
    else:
        ax_layer.set_xticks([])
        ax_layer.set_xlabel(f"{U} union channels, ordered by reuse rate (labels in the CSV)")
    present = sorted(set(layer_index.tolist()))
    handles = [_patch(cmap(i), f"{convs[i]} (GF {_field(table, convs[i])})") for i in present]
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(0.87, 0.5), fontsize=7, title="conv layer")
    fig.subplots_adjust(left=0.08, right=0.86, top=0.92, bottom=0.22 if U <= 90 else 0.12)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")


def _layer_colours(n: int):
    from matplotlib import colormaps
    from matplotlib.colors import ListedColormap

    base = colormaps["tab20"]
    return ListedColormap([base(i % 20) for i in range(n)])


def _patch(colour, label: str):
    from matplotlib.patches import Patch

    return Patch(facecolor=colour, edgecolor="none", label=label)


def _field(table: Iterable[LayerSpec], paper_name: str):
    for spec in table:
        if spec.paper_name == paper_name:
            return spec.generative_field
    return "?"
