"""The report's figures, each saved as PNG and SVG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..layout import atomic_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _save(fig, target_png: Path) -> Path:
    for path in (target_png, target_png.with_suffix(".svg")):
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=path.suffix[1:], dpi=120, bbox_inches="tight")
    _pyplot().close(fig)
    return target_png


def error_vs_iterations(by_iteration: pd.DataFrame, target: Path) -> Path:
    fig, ax = _pyplot().subplots(figsize=(6, 4))
    for split, colour in (("train", "tab:blue"), ("test", "tab:orange")):
        part = by_iteration[by_iteration["split"] == split]
        ax.errorbar(part["snapshot_iteration"], part["mean_error_px"], yerr=part["sd_error_px"], marker="o",
                    capsize=3, color=colour, label=f"{split} error")
    ax.set_xlabel("training iterations")
    ax.set_ylabel("mean error (px, ± SD over networks x landmarks)")
    ax.set_title("Error by training iterations")
    ax.legend()
    return _save(fig, target)


LANDMARKS_PER_LEGEND_COLUMN = 20


def landmark_styles(landmarks: list[str]) -> dict[str, dict]:
    """A line style per landmark that no other landmark shares: ten colours, then the same colours with another
    marker and dash (a whole-body project has 20 or more landmarks; ten colours alone repeat)."""
    markers, dashes = ("o", "s", "^", "D", "v", "P"), ("-", "--", ":", "-.")
    return {landmark: {"color": f"C{i % 10}", "marker": markers[(i // 10) % len(markers)],
                       "linestyle": dashes[(i // 10) % len(dashes)]}
            for i, landmark in enumerate(landmarks)}


def frame_set_size_figure(by_frame_set: pd.DataFrame, iteration: int):
    """Error per landmark by frame-set size, train and test side by side; the legend beside them, outside the
    data (inside, 20 landmarks' legend covered the test panel)."""
    fig, axes = _pyplot().subplots(1, 2, figsize=(10, 4), sharey=True)
    styles = landmark_styles(sorted(by_frame_set["landmark"].astype(str).unique()))
    for ax, split in zip(axes, ("train", "test")):
        part = by_frame_set[by_frame_set["split"] == split]
        for landmark, rows in part.groupby(part["landmark"].astype(str)):
            ax.plot(rows["frame_set_size"], rows["error_px"], label=landmark, **styles[landmark])
        ax.set_title(f"{split} error at {iteration:,} iterations")
        ax.set_xlabel("frames in the frame set")
    axes[0].set_ylabel("mean error (px)")
    axes[1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0,
                   ncol=max(1, -(-len(styles) // LANDMARKS_PER_LEGEND_COLUMN)))
    return fig


def error_vs_frame_set_size(by_frame_set: pd.DataFrame, iteration: int, target: Path) -> Path:
    return _save(frame_set_size_figure(by_frame_set, iteration), target)


def posthoc_p_values(pairwise_tables: dict[str, pd.DataFrame], target: Path) -> Path:
    splits = [s for s in ("train", "test") if s in pairwise_tables and len(pairwise_tables[s])]
    fig, axes = _pyplot().subplots(1, max(1, len(splits)), figsize=(5 * max(1, len(splits)), 4.2), squeeze=False)
    for ax, split in zip(axes[0], splits):
        table = pairwise_tables[split]
        levels = sorted(set(table["iteration_a"]) | set(table["iteration_b"]))
        grid = np.full((len(levels), len(levels)), np.nan)
        for row in table.itertuples():
            i, j = levels.index(row.iteration_a), levels.index(row.iteration_b)
            grid[i, j] = grid[j, i] = row.p_bonferroni
        image = ax.imshow(grid, vmin=0, vmax=0.1, cmap="viridis_r")
        ax.set_xticks(range(len(levels)), [f"{v:,}" for v in levels], rotation=90, fontsize=7)
        ax.set_yticks(range(len(levels)), [f"{v:,}" for v in levels], fontsize=7)
        ax.set_title(f"{split}: Bonferroni-adjusted p")
        fig.colorbar(image, ax=ax, fraction=0.046)
    return _save(fig, target)


def fppa_error(by_iteration: pd.DataFrame, by_frame_set: pd.DataFrame, iteration: int, target: Path) -> Path:
    """Mean absolute FPPA error of each knee by training iterations and, at ``iteration``, by frame-set size."""
    fig, (left, right) = _pyplot().subplots(1, 2, figsize=(10, 4))
    for split, colour in (("train", "tab:blue"), ("test", "tab:orange")):
        for quantity, style in (("right_fppa_deg", "-"), ("left_fppa_deg", "--")):
            knee = quantity.split("_")[0]
            rows = by_iteration[(by_iteration["split"] == split) & (by_iteration["quantity"] == quantity)]
            left.plot(rows["snapshot_iteration"], rows["mean_abs_error"], style, marker="o", color=colour,
                      label=f"{split}, {knee} knee")
            rows = by_frame_set[(by_frame_set["split"] == split) & (by_frame_set["quantity"] == quantity)]
            right.plot(rows["frame_set_size"], rows["mean_abs_error"], style, marker="o", color=colour,
                       label=f"{split}, {knee} knee")
    left.set_xlabel("training iterations")
    left.set_ylabel("mean |FPPA error| (deg)")
    left.set_title("FPPA error by training iterations")
    right.set_xlabel("frames in the frame set")
    right.set_title(f"FPPA error at {iteration:,} iterations")
    left.legend(fontsize=7)
    return _save(fig, target)
