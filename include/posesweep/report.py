"""The study report: self-contained HTML, figures (PNG and SVG), tables (CSV) and summary.json."""

from __future__ import annotations

import base64
import html
import logging
import math
from pathlib import Path

import pandas as pd

from .layout import RunLayout, atomic_path, write_json_atomic, write_text_atomic
from .stats import errors_by_iteration

log = logging.getLogger(__name__)

PCK_RADII_PX = (2, 5, 10)
PAPER = {"iterations": 175_000, "frames": 400, "train_error_px": 2.8, "test_error_px": 3.7,
         "knee_test_error_px": 7.1, "ankle_test_error_px": 5.4, "anova_F_train": 57.4, "anova_F_test": 24.4}


def _save_figure(fig, target_png: Path) -> None:
    for path in (target_png, target_png.with_suffix(".svg")):
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=path.suffix[1:], dpi=120, bbox_inches="tight")


def figure_error_vs_iterations(by_iteration: pd.DataFrame, target: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for split, colour in (("train", "tab:blue"), ("test", "tab:orange")):
        part = by_iteration[by_iteration["split"] == split]
        ax.errorbar(part["snapshot_iteration"], part["mean_error_px"], yerr=part["sd_error_px"], marker="o",
                    capsize=3, color=colour, label=f"{split} error")
    ax.set_xlabel("training iterations")
    ax.set_ylabel("mean error (px, ± SD over networks x landmarks)")
    ax.set_title("Error by training iterations")
    ax.legend()
    _save_figure(fig, target)
    plt.close(fig)
    return target


def figure_error_vs_frames(by_frame_set: pd.DataFrame, iteration: int, target: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, split in zip(axes, ("train", "test")):
        part = by_frame_set[by_frame_set["split"] == split]
        for landmark, rows in part.groupby("landmark"):
            ax.plot(rows["frame_set_size"], rows["error_px"], marker="o", label=landmark)
        ax.set_title(f"{split} error at {iteration:,} iterations")
        ax.set_xlabel("frames in the frame set")
    axes[0].set_ylabel("mean error (px)")
    axes[1].legend(fontsize=7, loc="upper right")
    _save_figure(fig, target)
    plt.close(fig)
    return target


def figure_posthoc_heatmap(pairwise_tables: dict[str, pd.DataFrame], target: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    splits = [s for s in ("train", "test") if s in pairwise_tables and len(pairwise_tables[s])]
    fig, axes = plt.subplots(1, max(1, len(splits)), figsize=(5 * max(1, len(splits)), 4.2), squeeze=False)
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
    _save_figure(fig, target)
    plt.close(fig)
    return target


def accuracy_table(errors: pd.DataFrame, iteration: int, pcutoff: float) -> pd.DataFrame:
    """Per landmark and split at one iteration: error in px (and mm where the scale is known), error above the
    p-cutoff, PCK."""
    part = errors[errors["snapshot_iteration"] == iteration]
    rows = []
    for (landmark, split), group in part.groupby(["landmark", "split"]):
        confident = group[group["likelihood"] >= pcutoff]
        row = {"landmark": landmark, "split": split, "error_px": group["error_px"].mean(),
               "error_pcutoff_px": confident["error_px"].mean() if len(confident) else float("nan"),
               "share_above_pcutoff": len(confident) / len(group)}
        for radius in PCK_RADII_PX:
            row[f"pck_{radius}px"] = float((group["error_px"] <= radius).mean())
        if "error_mm" in group and group["error_mm"].notna().all():
            row["error_mm"] = group["error_mm"].mean()
        rows.append(row)
    return pd.DataFrame(rows)


def accuracy_by_snapshot(errors: pd.DataFrame, pcutoff: float) -> pd.DataFrame:
    """Per network, snapshot and split: mean error in px (and mm), error above the p-cutoff, PCK at each radius."""
    rows = []
    for (size, iteration, split), group in errors.groupby(["frame_set_size", "snapshot_iteration", "split"]):
        confident = group[group["likelihood"] >= pcutoff]
        row = {"frame_set_size": size, "snapshot_iteration": iteration, "split": split,
               "error_px": group["error_px"].mean()}
        if "error_mm" in group and group["error_mm"].notna().all():
            row["error_mm"] = group["error_mm"].mean()
        row["error_pcutoff_px"] = confident["error_px"].mean() if len(confident) else float("nan")
        row["share_above_pcutoff"] = len(confident) / len(group)
        for radius in PCK_RADII_PX:
            row[f"pck_{radius}px"] = float((group["error_px"] <= radius).mean())
        rows.append(row)
    return pd.DataFrame(rows)


def _scale_sentence(scale: dict) -> str:
    values = sorted(scale["px_per_mm"].values())
    if scale["source"] == "none" or not values:
        return ("No image scale: set the px_per_mm parameter, or the landing square's corners in cohort.json, "
                "for errors in mm.")
    spread = f"{values[0]:.3f} px/mm" if values[0] == values[-1] else \
        f"{values[0]:.3f} to {values[-1]:.3f} px/mm over {len(values)} videos"
    if scale["source"] == "parameter":
        return f"Errors in mm at {spread} (the px_per_mm parameter)."
    return (f"Errors in mm at {spread}, measured from the 61 x 61 cm landing square in the image (harmonic mean of "
            f"its near and far edge widths: the scale in the frontal plane through the square's centre).")


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def _by_split_columns(table: pd.DataFrame) -> pd.DataFrame:
    """One row per quantity, one column per split (as statsmodels prints its tables): readable at any width."""
    def cell(value) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "none"
        if isinstance(value, float):
            return str(int(value)) if value.is_integer() else f"{value:.4g}"
        return str(value)

    wide = table.set_index("split")
    return pd.DataFrame({"quantity": wide.columns, **{split: [cell(v) for v in wide.loc[split]] for split in wide.index}})


def _table(frame: pd.DataFrame) -> str:
    html_table = frame.to_html(index=False, float_format=lambda v: f"{v:.4g}", border=0, classes="t")
    return f'<div class="wide">{html_table}</div>'  # a wide table scrolls by itself, the page does not


def write_report(layout: RunLayout, analysis: dict, errors: pd.DataFrame, context: dict) -> Path:
    """Write figures, CSV tables, summary.json and index.html under the run's report folder."""
    out = layout.report_dir
    out.mkdir(parents=True, exist_ok=True)
    means = analysis["subject_means"]
    by_iteration = errors_by_iteration(means)
    chosen = analysis["chosen_iteration"]
    by_frame_set = analysis["by_frame_set"]
    fig2 = figure_error_vs_iterations(by_iteration, out / "figure_error_vs_iterations.png")
    fig3 = figure_error_vs_frames(by_frame_set, chosen, out / "figure_error_vs_frame_set_size.png")
    study = context["study_config"]
    accuracy = accuracy_table(errors, chosen, study["pcutoff"])
    scale = context.get("scale", {"source": "none", "px_per_mm": {}})
    comparisons = analysis["frame_set_comparisons"]

    per_network = (errors.groupby(["frame_set_size", "snapshot_iteration", "split"])["error_px"].mean()
                   .unstack("split").rename(columns=lambda s: f"{s}_error_px").rename_axis(columns=None).reset_index())
    per_landmark = (by_frame_set.groupby(["landmark", "split"])["error_px"].mean().unstack("split")
                    .rename(columns=lambda s: f"{s}_error_px").rename_axis(columns=None).reset_index())
    anova_rows, pairwise_tables = [], {}
    for split, result in analysis["per_split"].items():
        if result["anova"]:
            anova_rows.append({"split": split, **result["anova"], "plateau_iteration": result["plateau_iteration"]})
        pairwise_tables[split] = result["pairwise"]
    anova = pd.DataFrame(anova_rows)
    heatmap = figure_posthoc_heatmap(pairwise_tables, out / "figure_posthoc_p_values.png")
    snapshot_accuracy = accuracy_by_snapshot(errors, study["pcutoff"])
    for name, table in {"errors_by_network_and_snapshot": per_network, "errors_by_iteration": by_iteration,
                        "accuracy_by_network_and_snapshot": snapshot_accuracy,
                        "errors_by_landmark": per_landmark, "anova": anova, "accuracy_by_landmark": accuracy,
                        "frame_set_comparisons": comparisons,
                        **{f"posthoc_{s}": t for s, t in pairwise_tables.items()}}.items():
        with atomic_path(out / f"{name}.csv") as tmp:
            table.to_csv(tmp, index=False)

    at_chosen = per_network[per_network["snapshot_iteration"] == chosen]
    random_init = context["initial_weights"]["kind"] == "random_init"
    minimum = analysis["minimum_frames"].get("test")
    recommendation = (
        f"Errors stop improving significantly at {chosen:,} iterations"
        if analysis["chosen_iteration_is_plateau"] else
        f"Errors were still improving significantly at the last snapshot ({chosen:,} iterations): train longer")
    if minimum is not None:
        recommendation += (f"; at that point {minimum} frames give a test error not significantly worse than any "
                           f"larger frame set")
    summary = {
        "cohort": layout.cohort,
        "run": layout.run_name,
        "study_config": context["study_config"],
        "initial_weights": context["initial_weights"],
        "random_init_warning": random_init,
        "training": context["training"],
        "labels": context["labels"],
        "extraction": context["extraction"],
        "excluded_frames": context.get("excluded_frames", []),
        "scale": scale,
        "errors": per_network.to_dict(orient="records"),
        "anova": {row["split"]: row for row in anova_rows},
        "posthoc": {s: t.to_dict(orient="records") for s, t in pairwise_tables.items()},
        "chosen_iteration": chosen,
        "chosen_iteration_is_plateau": analysis["chosen_iteration_is_plateau"],
        "errors_at_chosen_iteration": at_chosen.to_dict(orient="records"),
        "errors_by_landmark_at_chosen_iteration": per_landmark.to_dict(orient="records"),
        "accuracy_at_chosen_iteration": accuracy.to_dict(orient="records"),
        "frame_set_comparisons": comparisons.to_dict(orient="records"),
        "minimum_frames": analysis["minimum_frames"],
        "recommendation": recommendation,
        "paper": PAPER,
    }
    write_json_atomic(layout.summary_file, summary)
    ours_at = at_chosen.mean(numeric_only=True)
    test_by_landmark = per_landmark.set_index("landmark")["test_error_px"] if "test_error_px" in per_landmark else None

    def side(word: str) -> float:
        if test_by_landmark is None:
            return float("nan")
        return float(test_by_landmark[[i for i in test_by_landmark.index if word in i]].mean())

    mm_at_chosen = "no scale"
    chosen_rows = errors[errors["snapshot_iteration"] == chosen]
    if "error_mm" in chosen_rows and len(chosen_rows) and chosen_rows["error_mm"].notna().all():
        mm = chosen_rows.groupby(["frame_set_size", "split"])["error_mm"].mean().groupby("split").mean()
        mm_at_chosen = " / ".join(f"{mm.get(split, float('nan')):.2f}" for split in ("train", "test"))
    paper_vs_ours = pd.DataFrame([
        {"quantity": "iterations where errors plateau", "paper": "175,000", "this run": f"{chosen:,}"},
        {"quantity": "frames needed", "paper": "400", "this run": str(minimum)},
        {"quantity": "train error at that point (px)", "paper": "2.8",
         "this run": f"{ours_at.get('train_error_px', float('nan')):.2f}"},
        {"quantity": "test error at that point (px)", "paper": "3.7",
         "this run": f"{ours_at.get('test_error_px', float('nan')):.2f}"},
        {"quantity": "train / test error at that point (mm)", "paper": "≈3.6 / 4.8", "this run": mm_at_chosen},
        {"quantity": "knee test error (px)", "paper": "7.1", "this run": f"{side('knee'):.2f}"},
        {"quantity": "ankle test error (px)", "paper": "5.4", "this run": f"{side('ankle'):.2f}"},
        {"quantity": "ANOVA F (train / test)", "paper": "57.4 / 24.4",
         "this run": " / ".join(f"{summary['anova'][s]['F']:.1f}" for s in ("train", "test") if s in summary["anova"])},
    ])

    warning = ("<div class='warn'><b>Random initial weights.</b> No ImageNet-pretrained checkpoint was available, "
               "so every network started from random (BatchNorm-calibrated) weights. Errors are far above what "
               "pretrained networks reach and must not be compared with the paper's.</div>") if random_init else ""
    excluded = context.get("excluded_frames", [])
    excluded_note = (f" after excluding {len(excluded)} frames: " + ", ".join(html.escape(f"{v}/{i}")
                                                                              for v, i in excluded)) if excluded else ""
    bad = context["extraction"]["bad_videos"]
    bad_videos_html = ("<div class='warn'><b>Excluded videos:</b><ul>" + "".join(
        f"<li>{html.escape(message)}</li>" for message in bad.values()) + "</ul></div>") if bad else ""
    anova_html = _table(_by_split_columns(anova)) if len(anova) else \
        "<p>Not enough snapshots or networks for the ANOVA.</p>"
    posthoc_html = "".join(f"<h3>{html.escape(s)} error</h3>{_table(t)}" for s, t in pairwise_tables.items()
                           if len(t))
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>posesweep report: {html.escape(layout.cohort)} / {html.escape(layout.run_name)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}}
.warn{{background:#fde2e1;border:2px solid #c0392b;padding:1em;margin:1em 0}}
table.t{{border-collapse:collapse;font-size:13px;margin:0.5em 0}}
table.t td,table.t th{{border-bottom:1px solid #ddd;padding:3px 8px;text-align:right}}
img{{max-width:100%}}
.wide{{overflow-x:auto}}</style></head><body>
<h1>DeepLabCut training-parameter study</h1>
<p>Cohort <b>{html.escape(layout.cohort)}</b>, run <b>{html.escape(layout.run_name)}</b>.
Network {html.escape(context['study_config']['network'])}, frame sets {context['study_config']['frame_set_sizes']},
{context['study_config']['max_iterations']:,} iterations, snapshot every {context['study_config']['snapshot_interval']:,}.</p>
{warning}
<p><b>Recommendation:</b> {html.escape(recommendation)}.</p>
<h2>Frames</h2><p>{context['extraction']['total_frames']} frames picked by k-means from
{len(context['extraction']['frames_per_video'])} videos.</p>{bad_videos_html}
<h2>Labels</h2><p>{context['labels']['labeled_frames']} labeled frames from {context['labels']['videos']} videos,
validated with Great Expectations (all expectations met{excluded_note}):
<a href="../validation/data_docs/index.html">Data Docs</a>, <a href="../validation/validation_result.json">result</a>.</p>
<h2>Training</h2>{_table(pd.DataFrame(context['training']))}
<h2>Error by training iterations</h2>{_img(fig2)}
<h2>Error by frame-set size per landmark</h2>{_img(fig3)}
<h2>Repeated-measures ANOVA</h2>
<p>Subjects: (network, landmark) pairs; within factor: iteration level; dependent variable: mean error over frames;
train and test separately. Post-hoc: paired t-tests, Bonferroni-adjusted.</p>{anova_html}
<p>Sphericity: Mauchly's W with its p-value; where it is violated read the Greenhouse-Geisser corrected
p-value (<code>p_value_gg</code>, degrees of freedom scaled by <code>gg_epsilon</code>).</p>
<h2>Post-hoc pairwise comparisons</h2>{_img(heatmap)}{posthoc_html}
<h2>Frame-set sizes at {chosen:,} iterations</h2>
<p>Each size against every larger one (paired t-tests over landmarks, Bonferroni-adjusted). The minimum is the
smallest size whose error is not significantly higher than any larger size's: {html.escape(str(analysis['minimum_frames']))}.</p>
{_table(comparisons)}
<h2>Accuracy per landmark at {chosen:,} iterations</h2>
<p>Error above the p-cutoff ({study['pcutoff']}) counts only predictions at least that confident; PCK is the share
within {', '.join(str(r) for r in PCK_RADII_PX)} px. {html.escape(_scale_sentence(scale))}</p>{_table(accuracy)}
<h2>Errors per network and snapshot</h2>{_table(per_network)}
<details><summary>Accuracy per network, snapshot and split (error in px{' and mm' if 'error_mm' in snapshot_accuracy
else ''}, above the p-cutoff, PCK)</summary>{_table(snapshot_accuracy)}</details>
<h2>Errors per landmark at {chosen:,} iterations</h2>{_table(per_landmark)}
<h2>The paper's published values beside this run's</h2>{_table(paper_vs_ours)}
<p>Machine-readable: <a href="summary.json">summary.json</a>.</p>
</body></html>"""
    write_text_atomic(out / "index.html", page)
    log.info("report written: %s", out / "index.html")
    return out / "index.html"
