"""The report's tables: pure functions of the tidy error table and the statistical analysis."""

from __future__ import annotations

import math

import pandas as pd

from ..config import FRONTAL_BODYPARTS
from ..learning import MIN_ITERATIONS_TO_JUDGE_A_PLATEAU, STILL_FALLING_FRACTION, learning_check
from ..stats import (DETECTION_POWER, detectable_difference_from, icc_absolute_agreement, study_mean,
                     study_means)

PCK_RADII_PX = (2, 5, 10)
PAPER = {"iterations": 175_000, "frames": 400, "train_error_px": 2.8, "test_error_px": 3.7,
         "knee_test_error_px": 7.1, "ankle_test_error_px": 5.4, "anova_F_train": 57.4, "anova_F_test": 24.4}


def accuracy(errors: pd.DataFrame, by: list[str], pcutoff: float) -> pd.DataFrame:
    """Per group: mean error in px (and mm where every labeled point has a scale), the study's way
    (``stats.study_mean``), error of the predictions at least ``pcutoff`` likely, their share, and PCK (share
    within each of ``PCK_RADII_PX``); the last three over the group's labeled points. A landmark out of sight in a
    frame has no label there and counts in none of them (before, it counted as a prediction outside every PCK
    radius: a landmark labeled in a quarter of its frames could reach at most 25%)."""
    rows = []
    for keys, group in errors[errors["error_px"].notna()].groupby(by):
        confident = group[group["likelihood"] >= pcutoff]
        row = {**dict(zip(by, keys)), "error_px": study_mean(group)}
        if "error_mm" in group and group["error_mm"].notna().all():
            row["error_mm"] = study_mean(group, "error_mm")
        row["error_pcutoff_px"] = confident["error_px"].mean() if len(confident) else float("nan")
        row["share_above_pcutoff"] = len(confident) / len(group)
        for radius in PCK_RADII_PX:
            row[f"pck_{radius}px"] = float((group["error_px"] <= radius).mean())
        rows.append(row)
    return pd.DataFrame(rows)


def accuracy_by_landmark(errors: pd.DataFrame, iteration: int, pcutoff: float) -> pd.DataFrame:
    return accuracy(errors[errors["snapshot_iteration"] == iteration], ["landmark", "split"], pcutoff)


def accuracy_by_snapshot(errors: pd.DataFrame, pcutoff: float) -> pd.DataFrame:
    return accuracy(errors, ["frame_set_size", "snapshot_iteration", "split"], pcutoff)


def _error_columns(series: pd.Series, index: list[str]) -> pd.DataFrame:
    """Mean error per ``index`` with one ``<split>_error_px`` column per split."""
    return (series.unstack("split").rename(columns=lambda s: f"{s}_error_px").rename_axis(columns=None)
            .reset_index())


def errors_by_network(errors: pd.DataFrame) -> pd.DataFrame:
    """Mean train and test error per network (frame-set size) and snapshot, the study's way (``study_mean``)."""
    keys = ["frame_set_size", "snapshot_iteration"]
    return _error_columns(study_means(errors, [*keys, "split"]), keys)


def errors_by_landmark(by_frame_set: pd.DataFrame) -> pd.DataFrame:
    """Mean train and test error per landmark over the networks (at the chosen iteration)."""
    return _error_columns(by_frame_set.groupby(["landmark", "split"])["error_px"].mean(), ["landmark"])


def anova_rows(analysis: dict) -> dict[str, dict]:
    """Per split: the repeated-measures ANOVA over iteration levels and where errors plateau."""
    return {split: plateau_row(split, result) for split, result in analysis["per_split"].items() if result["anova"]}


def plateau_row(split: str, result: dict) -> dict:
    """One split's ANOVA, where its errors plateau, whether its post-hoc tests told no two levels apart (then
    no plateau is placed: ``stats.placed_plateau``), and how its error changed between its last two levels where
    that differs significantly (``stats.change_at_the_end``)."""
    return {"split": split, **result["anova"], "plateau_iteration": result["plateau_iteration"],
            "no_two_levels_differ": bool(result.get("no_two_levels_differ")),
            **{name: value for name, value in result.items() if name.startswith("detectable_difference_after")},
            "change_at_the_end": result.get("change_at_the_end")}


def posthoc_tables(analysis: dict) -> dict[str, pd.DataFrame]:
    """Per split: the Bonferroni-adjusted pairwise comparisons of iteration levels."""
    return {split: result["pairwise"] for split, result in analysis["per_split"].items()}


def by_split_columns(table: pd.DataFrame) -> pd.DataFrame:
    """One row per quantity, one column per split (as statsmodels prints its tables): readable at any width."""
    def cell(value) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "none"
        if isinstance(value, float):
            return str(int(value)) if value.is_integer() else f"{value:.4g}"
        return str(value)

    wide = table.set_index("split")
    splits = sorted(wide.index, key=lambda split: (split != "train", split))  # train, then test, as in the text
    # the result's "test" key names the statistical test: a row named "test" read as the test split's
    quantities = ["method" if name == "test" else name for name in wide.columns]
    return pd.DataFrame({"quantity": quantities, **{split: [cell(v) for v in wide.loc[split]] for split in splits}})


def minimum_frames_sentence(minimum_frames: dict[str, int]) -> str:
    """The smallest sufficient frame-set size per split, in words ("200 frames by the test error, ...")."""
    if not minimum_frames:
        return "not found, since this run trained one frame-set size and there is nothing to compare it with"
    return ", ".join(f"{size} frames by the {split} error" for split, size in sorted(minimum_frames.items()))


def recommendation(analysis: dict, learned: pd.DataFrame) -> str | None:
    """The study's answer, or None when a network did not learn (``learning.learning_check``): statistics on
    networks that learned nothing still find plateaus, and must not be read as an answer."""
    if not learned["learned"].all():
        return None
    chosen, minimum = analysis["chosen_iteration"], analysis["minimum_frames"].get("test")
    splits = analysis.get("per_split", {})
    undecided = sorted(split for split, result in splits.items() if result.get("no_two_levels_differ"))
    if analysis["chosen_iteration_is_plateau"]:
        found = _detectable_differences(splits, chosen)
        remarks = [f"later levels' errors differing by {max(found):.2g} px or more would have been found with "
                   f"{DETECTION_POWER:.0%} power"] if found else []
        if len(undecided) == 1:
            remarks.append(f"the {undecided[0]} error places no plateau: no two of its iteration levels differ "
                           f"significantly")
        sentence = f"Errors stop improving significantly at {chosen:,} iterations" + (
            f" ({'; '.join(remarks)})" if remarks else "")
    elif undecided and len(undecided) == len(splits):
        found = _detectable_differences(splits, 0)
        power = (f"with {DETECTION_POWER:.0%} power they would have found differences of {max(found):.2g} px or more "
                 f"only; " if found else "")
        sentence = f"No two iteration levels' errors differ significantly ({_change(analysis, 'test')}), so the " \
                   f"study places no plateau: its tests, on {splits[undecided[0]]['anova']['n_subjects']} " \
                   f"(network, landmark) pairs, tell no snapshot from another ({power}more frame sets or landmarks " \
                   f"give them more); the numbers below are read at the last snapshot ({chosen:,} iterations)"
    elif rising := sorted((split for split, result in splits.items() if result.get("change_at_the_end") == "rising"),
                          key=lambda split: split != "test"):
        sentence = _rising_at_the_end(analysis, rising[0], splits) + (f"; the numbers below are read at the last "
                                                                      f"snapshot ({chosen:,} iterations)")
    else:
        sentence = (f"Errors were still improving significantly at the last snapshot ({chosen:,} iterations): train "
                    f"longer")
    if minimum is not None:
        sentence += (f"; at that point {minimum} frames give a test error not significantly worse than any larger "
                     f"frame set{_smallest_and_largest(analysis, minimum)}")
    return sentence


def _detectable_differences(splits: dict[str, dict], level: int) -> list[float]:
    """Each split's ``stats.detectable_difference_from`` its iteration ``level`` on, where its tests give one."""
    return [difference for result in splits.values() if len(result.get("pairwise", ()))
            for difference in [detectable_difference_from(result["pairwise"], level)] if difference is not None]


def _smallest_and_largest(analysis: dict, minimum: int) -> str:
    """The test errors behind the minimum frame count, in parentheses: its own and the largest frame set's (a
    comparison the tests could not decide, few landmarks for many pairs, reads the same as one of equal errors),
    and how much higher an error its tests against the larger sets would have found with ``DETECTION_POWER``."""
    by_frame_set = analysis.get("by_frame_set")
    if by_frame_set is None or not len(by_frame_set):
        return ""
    test = by_frame_set[by_frame_set["split"] == "test"].groupby("frame_set_size")["error_px"].mean()
    largest = int(test.index.max())
    if minimum not in test.index or largest == minimum:
        return ""
    comparisons = analysis.get("frame_set_comparisons", pd.DataFrame(columns=["split", "frame_set_size"]))
    against = comparisons[(comparisons["split"] == "test") & (comparisons["frame_set_size"] == minimum)]
    detectable = float(against["detectable_difference_px"].max()) if "detectable_difference_px" in against else math.nan
    power = (f"; a test error higher by {detectable:.2g} px or more would have been found with "
             f"{DETECTION_POWER:.0%} power" if math.isfinite(detectable) else "")
    return f" ({test[minimum]:.2f} px; {test[largest]:.2f} px with {largest}{power})"


def _by_level(analysis: dict, split: str) -> pd.Series:
    """A split's error by iteration level (mean over its subjects), in level order."""
    means = analysis["subject_means"]
    means = means[(means["split"] == split) & means["error_px"].notna()]
    return means.groupby("snapshot_iteration")["error_px"].mean().sort_index()


def _change(analysis: dict, split: str) -> str:
    """How a split's error went from the first snapshot to the last, in words (mean over its subjects)."""
    by_level = _by_level(analysis, split)
    return (f"the {split} error went from {by_level.iloc[0]:.2f} px at {int(by_level.index[0]):,} iterations to "
            f"{by_level.iloc[-1]:.2f} px at {int(by_level.index[-1]):,}")


def _rising_at_the_end(analysis: dict, split: str, splits: dict[str, dict]) -> str:
    """Why no plateau where a split's error rose significantly between the last two snapshots: more training made
    the networks worse (on new frames while the train error still falls: overfitting), which "train longer" would
    make worse still."""
    by_level = _by_level(analysis, split)
    (before, after), lowest = by_level.index[-2:], by_level.idxmin()
    what = "new frames" if split == "test" else "the frames they train on"
    overfitting = (" while the train error still falls (overfitting)" if split == "test" and
                   (splits.get("train") or {}).get("change_at_the_end") == "falling" else "")
    return (f"The {split} error rose significantly between the last two snapshots ({by_level[before]:.2f} px at "
            f"{int(before):,} iterations, {by_level[after]:.2f} px at {int(after):,}): more training made the "
            f"networks worse on {what}{overfitting}, so the paper's rule places no plateau, and training longer "
            f"would not help; the {split} error is lowest at {int(lowest):,} iterations ({by_level[lowest]:.2f} px)")


def network_to_use(networks: list[dict], by_network: pd.DataFrame, chosen: int, learned: pd.DataFrame) -> dict | None:
    """Of the networks at the chosen iteration, the one with the lowest mean test error; None when any network
    did not learn (then no network is recommended, as no iteration count is)."""
    if not networks or not learned["learned"].all():
        return None
    at_chosen = by_network[by_network["snapshot_iteration"] == chosen].set_index("frame_set_size")["test_error_px"]
    best = at_chosen.idxmin()
    return {**next(n for n in networks if n["frame_set_size"] == best), "test_error_px": float(at_chosen[best])}


UNDECIDED_ADVICE = ("Train longer, from pretrained weights, or check the labels before reading any number below as "
                    "an answer")


def no_recommendation(learned: pd.DataFrame, errors: pd.DataFrame) -> str:
    """Why no answer, and what to try first: a network whose test error still falls at the last snapshot wants
    more iterations; one whose error has stopped falling is unlikely to learn from more of the same, once it has
    trained long enough for that to mean anything (``MIN_ITERATIONS_TO_JUDGE_A_PLATEAU``)."""
    failed = learned[~learned["learned"]]
    named = ", ".join(str(int(s)) for s in failed["frame_set_size"])
    said = (f"No recommendation: {len(failed)} of {len(learned)} networks did not learn (frame sets {named}: test "
            f"error {failed['test_error_px'].mean():.1f} px against {failed['mean_pose_error_px'].mean():.1f} px for "
            f"the mean training pose at {int(learned['snapshot_iteration'].iloc[0]):,} iterations). ")
    snapshots = sorted(int(i) for i in errors.loc[errors["split"] == "test", "snapshot_iteration"].unique())
    sizes = []
    if len(snapshots) >= 2:
        before, last = (learning_check(errors, i).set_index("frame_set_size")["test_error_px"]
                        for i in snapshots[-2:])
        sizes = [int(s) for s in failed["frame_set_size"] if s in before.index and s in last.index]
    if not sizes:
        return said + UNDECIDED_ADVICE
    falling = [s for s in sizes if last[s] <= (1 - STILL_FALLING_FRACTION) * before[s]]
    flat = [s for s in sizes if s not in falling]
    early = flat if snapshots[-1] < MIN_ITERATIONS_TO_JUDGE_A_PLATEAU else []
    flat = [s for s in flat if s not in early]

    def course(group: list[int]) -> str:
        return "; ".join(f"frame set {s}: {before[s]:.1f} px at {snapshots[-2]:,}, {last[s]:.1f} px at "
                         f"{snapshots[-1]:,} iterations" for s in group)

    advice = []
    if falling:
        advice.append(f"test error still falling at the last snapshot ({course(falling)}): train longer (a "
                      f"larger max_iterations), or from pretrained weights")
    if early:
        advice.append(f"test error not falling ({course(early)}), but {snapshots[-1]:,} iterations are too few to "
                      f"tell whether more would help (a network's first {MIN_ITERATIONS_TO_JUDGE_A_PLATEAU:,} do not "
                      f"show it; from random weights the demo's learn within 1,200): train longer (a larger "
                      f"max_iterations), or from pretrained weights")
    if flat:
        advice.append(f"test error no longer falling ({course(flat)}): more iterations alone are unlikely to help; "
                      f"check the labels, or train from pretrained weights")
    advice_said = "; ".join(advice)
    return said + advice_said[0].upper() + advice_said[1:] + ", before reading any number below as an answer"


def mean_mm_at(errors: pd.DataFrame, iteration: int) -> str:
    """Train / test error in mm at one iteration (mean over networks), or "no scale"."""
    rows = errors[(errors["snapshot_iteration"] == iteration) & errors["error_px"].notna()]
    if "error_mm" not in rows or not len(rows) or not rows["error_mm"].notna().all():
        return "no scale"
    return " / ".join(f"{study_mean(rows[rows['split'] == split], 'error_mm'):.2f}" for split in ("train", "test"))


def paper_comparison(errors: pd.DataFrame, analysis: dict, by_network: pd.DataFrame, by_landmark: pd.DataFrame,
                     anova: dict[str, dict]) -> pd.DataFrame | None:
    """The paper's published values beside this run's; None unless the cohort has the paper's 10 landmarks."""
    if set(errors["landmark"]) != set(FRONTAL_BODYPARTS):
        return None
    chosen = analysis["chosen_iteration"]
    ours = by_network[by_network["snapshot_iteration"] == chosen].mean(numeric_only=True)
    test = by_landmark.set_index("landmark")["test_error_px"] if "test_error_px" in by_landmark else None

    def landmarks(word: str) -> float:
        return float("nan") if test is None else float(test[[i for i in test.index if word in i]].mean())

    return pd.DataFrame([
        {"quantity": "iterations where errors plateau", "paper": "175,000", "this run": f"{chosen:,}"},
        {"quantity": "frames needed", "paper": "400",
         "this run": str(analysis["minimum_frames"].get("test", "one frame-set size: not compared"))},
        {"quantity": "train error at that point (px)", "paper": "2.8",
         "this run": f"{ours.get('train_error_px', float('nan')):.2f}"},
        {"quantity": "test error at that point (px)", "paper": "3.7",
         "this run": f"{ours.get('test_error_px', float('nan')):.2f}"},
        {"quantity": "train / test error at that point (mm)", "paper": "≈3.6 / 4.8",
         "this run": mean_mm_at(errors, chosen)},
        {"quantity": "knee test error (px)", "paper": "7.1", "this run": f"{landmarks('knee'):.2f}"},
        {"quantity": "ankle test error (px)", "paper": "5.4", "this run": f"{landmarks('ankle'):.2f}"},
        {"quantity": "ANOVA F (train / test)", "paper": "57.4 / 24.4",
         "this run": " / ".join(f"{anova[s]['F']:.1f}" for s in ("train", "test") if s in anova)},
    ])


def scale_sentence(scale: dict) -> str:
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


def kinematic_error_by_iteration(kinematics: pd.DataFrame) -> pd.DataFrame:
    """Mean absolute kinematic error per split, snapshot and quantity (over networks, frames and knees)."""
    return (kinematics.groupby(["split", "snapshot_iteration", "quantity", "unit"], as_index=False)["abs_error"]
            .mean().rename(columns={"abs_error": "mean_abs_error"}))


def kinematic_error_by_frame_set(kinematics: pd.DataFrame, iteration: int) -> pd.DataFrame:
    """Mean absolute kinematic error per split, network and quantity at one snapshot."""
    at = kinematics[kinematics["snapshot_iteration"] == iteration]
    return (at.groupby(["split", "frame_set_size", "quantity", "unit"], as_index=False)["abs_error"].mean()
            .rename(columns={"abs_error": "mean_abs_error"}))


def _bland_altman(part: pd.DataFrame) -> dict:
    """One quantity's agreement with the labels over some frames (Bland & Altman, Lancet 1986;1(8476):307-310):
    the frames, the labelled values' mean and SD over them (the spread between participants and frames a network
    has to resolve), the bias (mean of predicted - labelled), the 95% limits of agreement (bias -/+ 1.96 SD of the
    differences; unknown, not zero, from one frame), the mean absolute error, and the intraclass correlation of
    the predicted and labelled values with its 95% confidence interval (``stats.icc_absolute_agreement``, as
    validation studies of 2D kinematics report it beside the limits)."""
    several = len(part) > 1
    spread = float(part["error"].std(ddof=1)) if several else float("nan")
    bias = float(part["error"].mean())
    return {"frames": len(part), "labelled_mean": float(part["labelled"].mean()),
            "labelled_sd": float(part["labelled"].std(ddof=1)) if several else float("nan"),
            "bias": bias, "loa_low": bias - 1.96 * spread, "loa_high": bias + 1.96 * spread,
            "mean_abs_error": float(part["abs_error"].mean()),
            **dict(zip(("icc_a1", "icc_a1_ci_low", "icc_a1_ci_high"),
                       icc_absolute_agreement(part[["labelled", "predicted"]].to_numpy())))}


AGREEMENT_COLUMNS = ["frames", "labelled_mean", "labelled_sd", "bias", "loa_low", "loa_high", "mean_abs_error",
                     "icc_a1", "icc_a1_ci_low", "icc_a1_ci_high"]
UNITLESS = ("frames", "icc_a1", "icc_a1_ci_low", "icc_a1_ci_high")


def _rows_at(kinematics: pd.DataFrame, iteration: int, split: str, quantity_ending: str) -> pd.DataFrame:
    return kinematics[(kinematics["snapshot_iteration"] == iteration) & (kinematics["split"] == split)
                      & kinematics["quantity"].str.endswith(quantity_ending)]


def fppa_agreement(kinematics: pd.DataFrame, iteration: int, split: str = "test") -> pd.DataFrame:
    """How each network's FPPA agrees with the labels' at one snapshot, per knee, as a method-comparison study
    reports it (``_bland_altman``, in degrees). A mean absolute error alone hid whether a network reads every knee a
    few degrees too valgus (a bias a lab can correct for) or scatters (which it cannot), and how it compares with
    the differences the study measures."""
    in_deg = {name: name if name in UNITLESS else f"{name}_deg" for name in AGREEMENT_COLUMNS}
    rows = [{"frame_set_size": int(size), "knee": quantity.split("_")[0],
             **{in_deg[name]: value for name, value in _bland_altman(part).items()}}
            for (size, quantity), part in _rows_at(kinematics, iteration, split, "_fppa_deg").groupby(
                ["frame_set_size", "quantity"])]
    return pd.DataFrame(rows, columns=["frame_set_size", "knee", *in_deg.values()])


def ratio_agreement(kinematics: pd.DataFrame, iteration: int, split: str = "test") -> pd.DataFrame:
    """``fppa_agreement`` for the two width ratios (knee-to-ankle separation, hip-to-ankle width; unitless), per
    network: the study's other frontal-plane measures, each with its own bias and scatter (a network that finds the
    knees a little too far apart in every frame reads every knee too varus by the separation ratio). Empty for a
    one-sided cohort, which has no ratio."""
    rows = [{"frame_set_size": int(size), "ratio": quantity, **_bland_altman(part)}
            for (size, quantity), part in _rows_at(kinematics, iteration, split, "_ratio").groupby(
                ["frame_set_size", "quantity"])]
    return pd.DataFrame(rows, columns=["frame_set_size", "ratio", *AGREEMENT_COLUMNS])


def pooled_fppa_agreement(kinematics: pd.DataFrame, iteration: int) -> dict | None:
    """``fppa_agreement`` of one network over its knees together (the network a lab is told to use); None
    without a test frame."""
    fppa = kinematics[kinematics["quantity"].str.endswith("_fppa_deg")].assign(quantity="both_fppa_deg")
    rows = fppa_agreement(fppa, iteration).to_dict(orient="records")
    return rows[0] if len(rows) == 1 else None


def fppa_icc_by_frame_set(kinematics: pd.DataFrame, iteration: int) -> dict[int, float]:
    """Each network's ICC(A,1) of the FPPA over its knees together at one snapshot (test frames), by frame-set
    size; a network whose ICC is undefined (too few test frames) is left out."""
    by_size = {}
    for size, own in kinematics.groupby("frame_set_size"):
        agreement = pooled_fppa_agreement(own, iteration)
        if agreement is not None and math.isfinite(agreement["icc_a1"]):
            by_size[int(size)] = agreement["icc_a1"]
    return by_size


# Below this ICC(A,1) agreement is poor (Koo & Li, J Chiropr Med 2016;15:155-163)
POOR_AGREEMENT_ICC = 0.5


def knee_kinematics_caution(to_use: dict, shared_test_frames: bool = False) -> str | None:
    """Where the network to use reads the FPPA poorly against the labels (ICC(A,1) below ``POOR_AGREEMENT_ICC``), a
    plain sentence saying so with the numbers behind it and what lowers it, and which of its width ratios agree
    poorly too (or alone); None where none does. Its pixel errors, and the study's recommendation, did not show it:
    the demo's network, at 1.4 px, read knee angles with an ICC of 0.24, differing from the labels' by about as much
    as the knees differ from one another."""
    network = f"the network to use (frame set {to_use['frame_set_size']})"
    said = []
    icc = to_use.get("test_fppa_icc_a1")
    if icc is not None and icc < POOR_AGREEMENT_ICC:
        low, high = to_use["test_fppa_limits_of_agreement_deg"]
        interval = to_use.get("test_fppa_icc_a1_ci") or [None, None]
        interval = f"95% CI {interval[0]:.2f} to {interval[1]:.2f}, " if None not in interval else ""
        said.append(f"The knee angles of {network} agree poorly with the labels' (ICC(A,1) {icc:.2f}, below "
                    f"{POOR_AGREEMENT_ICC:g} ({interval}from {to_use['test_fppa_knee_angles']} test knee angles); "
                    f"95% limits of agreement {low:.1f} to {high:.1f} deg where the labelled FPPA varies by "
                    f"{to_use['test_fppa_labelled_sd_deg']:.1f} deg, SD): its FPPA does not yet tell these knees "
                    f"apart, which its pixel errors do not show.")
    poor_ratios = {name: value for name, value in (to_use.get("test_ratio_icc_a1") or {}).items()
                   if value < POOR_AGREEMENT_ICC}
    if poor_ratios:
        listed = "; ".join(f"{name.replace('_', ' ')}: ICC(A,1) {value:.2f}" for name, value in poor_ratios.items())
        said.append(f"Its width ratios agree poorly too ({listed})." if said else
                    f"The width ratios of {network} agree poorly with the labels' ({listed}, below "
                    f"{POOR_AGREEMENT_ICC:g}): they do not yet tell these participants' knee and ankle widths apart, "
                    f"which its pixel errors do not show.")
    if not said:
        return None
    said.append("Before reading knee kinematics from it, lower its errors relative to the knees' size in the image "
                "(more labelled frames; the knees filmed larger) and judge it on more test frames.")
    if icc is not None and icc < POOR_AGREEMENT_ICC:
        said.append(_other_networks_knee_angles(to_use, shared_test_frames))
    return " ".join(sentence for sentence in said if sentence)


def _other_networks_knee_angles(to_use: dict, shared_test_frames: bool) -> str:
    """Whether another of the study's networks reads the knee angles well where the network to use does not: the
    frame-set question of the study, asked of the knee angles (empty with one network). ``shared_test_frames``:
    the networks were tested on the same frames (split modes other than the paper's)."""
    by_size = to_use.get("test_fppa_icc_a1_by_frame_set") or {}
    if len(by_size) < 2:
        return ""
    listed = ", ".join(f"{icc:.2f} (frame set {size})" for size, icc in sorted(by_size.items()))
    well = sorted(size for size, icc in by_size.items() if icc >= POOR_AGREEMENT_ICC)
    if not well:
        return (f"No network of the study reads the knee angles better than poorly at "
                f"{to_use['snapshot_iteration']:,} iterations (ICC(A,1) {listed}): the study cannot yet say how many "
                f"labelled frames they need; its frame sets answer for pixel errors only.")
    found = (f"The network of frame set {well[0]} reads the knee angles with ICC(A,1) {by_size[well[0]]:.2f} "
             f"({listed})")
    if shared_test_frames:
        return (f"{found} on the same test frames: read knee angles from it rather than from the network with the "
                f"lowest pixel error (the agreement table gives each ICC's interval).")
    return (f"{found}, on its own test frames: compare the two on the same test frames (split_mode fixed_test) "
            f"before reading knee angles from either.")


def fppa_error_deg(kinematics: pd.DataFrame, iteration: int, split: str = "test") -> float:
    """Mean absolute FPPA error (deg) over the knees, every network and frame at one snapshot."""
    return float(_rows_at(kinematics, iteration, split, "_fppa_deg")["abs_error"].mean())
