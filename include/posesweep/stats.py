"""The paper's analysis: a 1xK repeated-measures ANOVA over iteration levels, Bonferroni post-hoc.

Design (as in the study): subjects are (network, landmark) pairs -- a network per
frame-set size -- the within-subject factor is the snapshot's iteration level,
and the dependent variable is the subject's mean error over frames, separately
for the train and the test split. The plateau is the smallest iteration level
from which on no pair of levels differs significantly after Bonferroni
correction. Where no pair of levels differs at all, that rule would name the
first level: a test that told no level from another places no plateau there
(``no_two_levels_differ``), and the chosen iteration comes from the other split,
or is the last snapshot.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd

ALPHA = 0.05
# The power at which the report states the smallest difference its post-hoc tests would have found: a difference
# between two levels that no test calls significant may be smaller than that, or be there unseen
DETECTION_POWER = 0.8


def study_mean(rows: pd.DataFrame, column: str = "error_px") -> float:
    """The study's mean error of some rows of the error table: each (network, landmark)'s mean over its labeled
    frames, then the mean of those, as the paper averages "across networks/landmarks".

    Not the mean over all labeled points (DeepLabCut's ``evaluate_network``): where a landmark is out of sight in
    many frames, that weighs it less, and a network's error would differ between the report's tables, its learning
    check and the statistics. With every landmark labeled in every frame the two agree for one network.
    """
    return float(rows.groupby(["frame_set_size", "landmark"])[column].mean().mean())


def study_means(errors: pd.DataFrame, by: list[str], column: str = "error_px") -> pd.Series:
    """``study_mean`` of each group of ``by`` (e.g. per network, snapshot and split), indexed by ``by``."""
    units = list(dict.fromkeys([*by, "frame_set_size", "landmark"]))
    return errors.groupby(units)[column].mean().groupby(by).mean()


def subject_means(errors: pd.DataFrame) -> pd.DataFrame:
    """Mean error over frames per (split, frame set, landmark, snapshot)."""
    means = (errors.groupby(["split", "frame_set_size", "landmark", "snapshot_iteration"], as_index=False)
             ["error_px"].mean())
    means["subject"] = means["frame_set_size"].astype(str) + ":" + means["landmark"]
    return means


def _orthonormal_contrasts(k: int) -> np.ndarray:
    """k x (k-1) orthonormal contrasts (normalised Helmert)."""
    helmert = np.zeros((k, k - 1))
    for j in range(1, k):
        helmert[:j, j - 1] = 1.0
        helmert[j, j - 1] = -j
    return helmert / np.linalg.norm(helmert, axis=0)


def sphericity(wide: np.ndarray) -> dict:
    """Mauchly's test of sphericity and the Greenhouse-Geisser epsilon for an (n subjects x k levels) matrix."""
    from scipy.stats import chi2

    n, k = wide.shape
    p = k - 1
    contrasts = _orthonormal_contrasts(k)
    m = contrasts.T @ np.cov(wide, rowvar=False, ddof=1) @ contrasts
    trace = float(np.trace(m))
    epsilon = trace ** 2 / (p * float(np.trace(m @ m))) if trace > 0 else 1.0
    if p == 1:  # two levels: sphericity holds trivially
        return {"mauchly_W": 1.0, "mauchly_chi2": 0.0, "mauchly_df": 0, "mauchly_p": 1.0, "gg_epsilon": 1.0}
    w = float(np.linalg.det(m) / (trace / p) ** p) if trace > 0 else float("nan")
    df = p * (p + 1) / 2 - 1
    if n - 1 <= p or not w > 0:  # too few subjects to estimate the covariance, or a singular one
        return {"mauchly_W": w, "mauchly_chi2": float("nan"), "mauchly_df": df, "mauchly_p": float("nan"),
                "gg_epsilon": max(1.0 / p, min(1.0, epsilon))}
    # chi-square approximation with its second-order term, as R's stats::mauchly.test
    rho = 1 - (2 * p ** 2 + p + 2) / (6 * p * (n - 1))
    statistic = -(n - 1) * rho * np.log(w)
    w2 = (p + 2) * (p - 1) * (p - 2) * (2 * p ** 3 + 6 * p ** 2 + 3 * k + 2) / (288 * ((n - 1) * p * rho) ** 2)
    p1, p2 = chi2.sf(statistic, df), chi2.sf(statistic, df + 4)
    return {"mauchly_W": w, "mauchly_chi2": float(statistic), "mauchly_df": df,
            "mauchly_p": float(p1 + w2 * (p2 - p1)), "gg_epsilon": max(1.0 / p, min(1.0, epsilon))}


def rm_anova(means: pd.DataFrame) -> dict:
    """One split's repeated-measures ANOVA (statsmodels AnovaRM), partial eta squared, Mauchly, Greenhouse-Geisser."""
    from scipy.stats import f as f_dist
    from statsmodels.stats.anova import AnovaRM

    result = AnovaRM(means, depvar="error_px", subject="subject", within=["snapshot_iteration"]).fit()
    row = result.anova_table.iloc[0]
    f_value, df_num, df_den = float(row["F Value"]), float(row["Num DF"]), float(row["Den DF"])
    wide = means.pivot(index="subject", columns="snapshot_iteration", values="error_px").to_numpy(float)
    spher = sphericity(wide)
    eps = spher["gg_epsilon"]
    return {
        "test": "repeated-measures ANOVA",
        "factor": "snapshot_iteration",
        "subjects": "frame_set_size x landmark",
        "n_subjects": int(means["subject"].nunique()),
        "n_levels": int(means["snapshot_iteration"].nunique()),
        "F": f_value,
        "df_num": df_num,
        "df_den": df_den,
        "p_value": float(row["Pr > F"]),
        "partial_eta_squared": f_value * df_num / (f_value * df_num + df_den),
        **spher,
        "p_value_gg": float(f_dist.sf(f_value, df_num * eps, df_den * eps)),
    }


def pairwise_bonferroni(means: pd.DataFrame) -> pd.DataFrame:
    """Paired t-tests between every pair of iteration levels, Bonferroni-adjusted, each with the mean difference
    it would have found with ``DETECTION_POWER`` (``detectable_effect_size`` times the SD of its differences)."""
    from scipy.stats import ttest_rel

    wide = means.pivot(index="subject", columns="snapshot_iteration", values="error_px").dropna()
    levels = list(wide.columns)
    pairs = list(combinations(levels, 2))
    effect = detectable_effect_size(len(wide), ALPHA / len(pairs))
    rows = []
    for a, b in pairs:
        t_stat, p_value = ttest_rel(wide[a], wide[b])
        difference = wide[a] - wide[b]
        rows.append({"iteration_a": int(a), "iteration_b": int(b),
                     "mean_difference_px": float(difference.mean()),
                     "t": float(t_stat), "df": len(wide) - 1, "p_value": float(p_value),
                     "p_bonferroni": float(min(1.0, p_value * len(pairs))),
                     "detectable_difference_px": effect * float(difference.std(ddof=1))})
    table = pd.DataFrame(rows)
    table["significant"] = table["p_bonferroni"] < ALPHA
    return table


def detectable_effect_size(n_subjects: int, alpha: float, power: float = DETECTION_POWER) -> float:
    """The standardised mean difference (mean / SD of the paired differences) that a two-sided paired t-test of
    ``n_subjects`` finds significant at ``alpha`` with probability ``power``: the noncentral t distribution solved
    for its noncentrality; NaN for fewer than 2 subjects. (statsmodels' ``TTestPower.solve_power`` returns too small
    a value for few subjects at Bonferroni-sized levels: 4.17 for 4 subjects at 0.05 / 15, where 5.39 has the power,
    as a simulation confirms. scipy's noncentral t returns NaN for a vanishing lower tail: counted as 0.)"""
    from scipy.optimize import brentq
    from scipy.stats import nct, t as t_dist

    if n_subjects < 2:
        return float("nan")
    df, root_n = n_subjects - 1, np.sqrt(n_subjects)
    critical = t_dist.ppf(1 - alpha / 2, df)

    def shortfall(effect: float) -> float:
        return (nct.sf(critical, df, effect * root_n)
                + np.nan_to_num(nct.cdf(-critical, df, effect * root_n)) - power)

    upper = 1.0
    while shortfall(upper) < 0:
        upper *= 2
    return float(brentq(shortfall, 0.0, upper, xtol=1e-10))


def detectable_difference_from(pairwise: pd.DataFrame, level: int, column: str = "detectable_difference_px"
                               ) -> float | None:
    """The largest of the differences the post-hoc tests between levels at or after ``level`` would have found
    with ``DETECTION_POWER``: a difference between two of those levels smaller than it may be there unseen; None
    where no pair of levels lies there (the last level) or the tests had too few subjects to say."""
    later = pairwise[(pairwise["iteration_a"] >= level) & (pairwise["iteration_b"] >= level)] if len(pairwise) else []
    largest = float(later[column].max()) if len(later) else float("nan")
    return largest if np.isfinite(largest) else None


def icc_absolute_agreement(ratings: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """ICC(A,1) of McGraw & Wong (Psychol Methods 1996;1:30-46), Shrout & Fleiss's ICC(2,1): two-way random
    effects, absolute agreement, one rater's measurement, with its confidence interval (``level``; McGraw & Wong's
    approximate F interval, as R's psych and irr packages give it). ``ratings``: one row per target (a frame), one
    column per rater (the labels, a network). The share of the measurements' variance that lies between targets
    rather than between raters or in their disagreement: near 1 where a network reads every knee as the labeller did,
    near 0 where its differences from the labels are as large as the knees' from one another; a constant bias lowers
    it. (ICC, low, high); NaN with fewer than 2 targets, or no variance at all."""
    from scipy.stats import f as f_dist

    ratings = np.asarray(ratings, dtype=float)
    n, k = ratings.shape  # targets, raters
    unknown = (float("nan"),) * 3
    if n < 2 or k < 2:
        return unknown
    grand = ratings.mean()
    between_targets = k * ((ratings.mean(axis=1) - grand) ** 2).sum() / (n - 1)
    between_raters = n * ((ratings.mean(axis=0) - grand) ** 2).sum() / (k - 1)
    residual = (((ratings - grand) ** 2).sum() - between_targets * (n - 1) - between_raters * (k - 1)) / (
        (n - 1) * (k - 1))
    denominator = between_targets + (k - 1) * residual + k * (between_raters - residual) / n
    if denominator <= 0:
        return unknown
    icc = float((between_targets - residual) / denominator)
    if residual <= 0:  # the raters agree exactly: no interval to estimate
        return icc, float("nan"), float("nan")
    raters_f = between_raters / residual
    shared = n * (1 + (k - 1) * icc) - k * icc
    df = (k - 1) * (n - 1) * (k * icc * raters_f + shared) ** 2 / (
        (n - 1) * k ** 2 * icc ** 2 * raters_f ** 2 + shared ** 2)
    upper_f, lower_f = f_dist.ppf((1 + level) / 2, n - 1, df), f_dist.ppf((1 + level) / 2, df, n - 1)
    spread = k * between_raters + (k * n - k - n) * residual
    with np.errstate(divide="ignore", invalid="ignore"):  # two targets rated alike: no interval (NaN), no warning
        low = n * (between_targets - upper_f * residual) / (upper_f * spread + n * between_targets)
        high = n * (lower_f * between_targets - residual) / (spread + n * lower_f * between_targets)
    return icc, *(float(bound) if np.isfinite(bound) else float("nan") for bound in (low, high))


def plateau_iteration(pairwise: pd.DataFrame, levels: list[int], alpha: float = ALPHA) -> int | None:
    """Smallest level L such that no two levels >= L differ significantly; None if even the last two differ."""
    levels = sorted(levels)
    for level in levels[:-1]:
        later = pairwise[(pairwise["iteration_a"] >= level) & (pairwise["iteration_b"] >= level)]
        if not (later["p_bonferroni"] < alpha).any():
            return int(level)
    return None


def placed_plateau(pairwise: pd.DataFrame, levels: list[int], alpha: float = ALPHA) -> tuple[int | None, bool]:
    """The plateau (``plateau_iteration``) and whether no pair of levels differs significantly at all. Then the
    rule's answer, the first level, says only that the tests told no level from another: with few subjects for
    many pairs (the demo's FPPA error: 4 (network, knee) pairs, 15 pairs of levels) that held while the error
    halved, from 13 deg at the first snapshot to 6.7 at the fifth, and the report read "plateau at 200". None is
    placed then: (None, True)."""
    plateau = plateau_iteration(pairwise, levels, alpha)
    if len(pairwise) and not (pairwise["p_bonferroni"] < alpha).any():
        return None, True
    return plateau, False


def change_at_the_end(pairwise: pd.DataFrame, levels: list[int], column: str = "mean_difference_px") -> str | None:
    """How a split's error changed between its last two levels, where that change is significant: "falling"
    (still improving: more training may help) or "rising" (more training made it worse); None where the last two
    levels do not differ significantly. A split whose error rises at the end places no plateau either (its last two
    levels differ), and was told "still improving: train longer", the opposite of what it shows."""
    levels = sorted(levels)
    if len(levels) < 2 or not len(pairwise):
        return None
    last = pairwise[(pairwise["iteration_a"] == levels[-2]) & (pairwise["iteration_b"] == levels[-1])]
    if not len(last) or not bool(last["significant"].iloc[0]):
        return None
    return "falling" if float(last[column].iloc[0]) > 0 else "rising"  # earlier minus later


def chosen_iteration(per_split: dict[str, dict], last: int) -> tuple[int, bool]:
    """The iteration the study's answer is read at, and whether it is a plateau: the later of the splits'
    plateaus (both errors must have stabilised); the last snapshot where an error still improves significantly
    there (or a split had too few levels or subjects to tell), or where no split's tests told two levels apart."""
    # a split without an ANOVA (one level, one subject) is no evidence of a plateau either
    still_improving = any(r["plateau_iteration"] is None and not r["no_two_levels_differ"]
                          for r in per_split.values())
    placed = [r["plateau_iteration"] for r in per_split.values() if r["plateau_iteration"] is not None]
    if still_improving or not placed:
        return last, False
    return max(placed), True


def analyse(errors: pd.DataFrame) -> dict:
    """ANOVA, post-hoc table and plateau per split; the frame-set table at the chosen iteration."""
    means = subject_means(errors)
    out = {"per_split": {}, "subject_means": means}
    for split, split_means in means.groupby("split"):
        # a landmark with no label in any of a network's frames of this split (a rarely visible one, a small
        # test set) has no error to compare: it is left out of the ANOVA, and named, rather than making it NaN
        unlabelled = split_means.groupby("subject")["error_px"].transform(lambda e: e.isna().any())
        left_out = sorted(split_means.loc[unlabelled, "subject"].unique())
        split_means = split_means[~unlabelled]
        levels = sorted(split_means["snapshot_iteration"].unique())
        if len(levels) < 2 or split_means["subject"].nunique() < 2:
            out["per_split"][split] = {"anova": None, "pairwise": pd.DataFrame(), "plateau_iteration": None,
                                       "no_two_levels_differ": False}
            continue
        pairwise = pairwise_bonferroni(split_means)
        plateau, no_two_levels_differ = placed_plateau(pairwise, levels)
        out["per_split"][split] = {
            "anova": {**rm_anova(split_means), **({"subjects_left_out": ", ".join(left_out)} if left_out else {})},
            "pairwise": pairwise,
            "plateau_iteration": plateau,
            "no_two_levels_differ": no_two_levels_differ,
            "detectable_difference_after_plateau_px": None if plateau is None else
            detectable_difference_from(pairwise, plateau),
            "change_at_the_end": change_at_the_end(pairwise, levels),
        }
    last = int(errors["snapshot_iteration"].max())
    out["chosen_iteration"], out["chosen_iteration_is_plateau"] = chosen_iteration(out["per_split"], last)
    at_chosen = means[means["snapshot_iteration"] == out["chosen_iteration"]]
    out["by_frame_set"] = (at_chosen.groupby(["split", "frame_set_size", "landmark"], as_index=False)
                           ["error_px"].mean())
    out["frame_set_comparisons"] = compare_frame_sets(out["by_frame_set"])
    out["minimum_frames"] = {split: minimum_frames(table, sizes)
                             for split, table in out["frame_set_comparisons"].groupby("split")
                             for sizes in [sorted(out["by_frame_set"]["frame_set_size"].unique())]}
    return out


def compare_frame_sets(by_frame_set: pd.DataFrame) -> pd.DataFrame:
    """Each frame-set size against every larger one: paired t-tests over landmarks, Bonferroni per split, each with
    the difference it would have found with ``DETECTION_POWER`` (as ``pairwise_bonferroni``)."""
    from scipy.stats import ttest_rel

    rows = []
    for split, part in by_frame_set.groupby("split"):
        wide = part.pivot(index="landmark", columns="frame_set_size", values="error_px").dropna()
        pairs = list(combinations(sorted(wide.columns), 2))
        effect = detectable_effect_size(len(wide), ALPHA / max(len(pairs), 1))
        for a, b in pairs:
            difference = wide[a] - wide[b]
            if len(wide) > 1 and difference.std(ddof=1) > 0:
                t_stat, p_value = ttest_rel(wide[a], wide[b])
                detectable = effect * float(difference.std(ddof=1))
            else:
                t_stat, p_value, detectable = float("nan"), 1.0, float("nan")
            rows.append({"split": split, "frame_set_size": int(a), "larger_frame_set_size": int(b),
                         "mean_difference_px": float(difference.mean()), "t": float(t_stat),
                         "p_value": float(p_value), "p_bonferroni": float(min(1.0, p_value * len(pairs))),
                         "detectable_difference_px": detectable})
    return pd.DataFrame(rows, columns=["split", "frame_set_size", "larger_frame_set_size", "mean_difference_px",
                                       "t", "p_value", "p_bonferroni", "detectable_difference_px"])


def minimum_frames(comparisons: pd.DataFrame, sizes: list[int], alpha: float = ALPHA) -> int:
    """Smallest frame-set size whose error is not significantly higher than that of any larger size."""
    for size in sorted(sizes):
        against = comparisons[comparisons["frame_set_size"] == size]
        worse = (against["p_bonferroni"] < alpha) & (against["mean_difference_px"] > 0)
        if not worse.any():
            return int(size)
    return int(max(sizes))


def errors_by_iteration(means: pd.DataFrame) -> pd.DataFrame:
    """Figure 2's numbers: mean and SD over subjects per split and iteration level."""
    return (means.groupby(["split", "snapshot_iteration"])["error_px"]
            .agg(mean_error_px="mean", sd_error_px=lambda s: float(np.std(s, ddof=1)) if len(s) > 1 else 0.0)
            .reset_index())


def analyse_fppa(kinematic_errors: pd.DataFrame) -> dict:
    """The paper's ANOVA on the knees' FPPA error: subjects are (network, knee) pairs, the dependent variable the
    mean absolute FPPA error (deg) over frames, per split; Bonferroni post-hoc and plateau as for pixel errors."""
    fppa = kinematic_errors[kinematic_errors["quantity"].str.endswith("_fppa_deg")]
    means = (fppa.groupby(["split", "frame_set_size", "quantity", "snapshot_iteration"], as_index=False)
             ["abs_error"].mean().rename(columns={"abs_error": "error_px"}))
    means["subject"] = means["frame_set_size"].astype(str) + ":" + means["quantity"]
    out = {}
    for split, split_means in means.groupby("split"):
        levels = sorted(split_means["snapshot_iteration"].unique())
        if len(levels) < 2 or split_means["subject"].nunique() < 2:
            out[split] = {"anova": None, "pairwise": pd.DataFrame(), "plateau_iteration": None,
                          "no_two_levels_differ": False}
            continue
        anova = {**rm_anova(split_means), "subjects": "frame_set_size x knee", "dependent": "mean |FPPA error| (deg)"}
        pairwise = pairwise_bonferroni(split_means)
        plateau, no_two_levels_differ = placed_plateau(pairwise, levels)
        out[split] = {"anova": anova,
                      "pairwise": pairwise.rename(columns={"mean_difference_px": "mean_difference_deg",
                                                           "detectable_difference_px": "detectable_difference_deg"}),
                      "plateau_iteration": plateau, "no_two_levels_differ": no_two_levels_differ,
                      "detectable_difference_after_plateau_deg": None if plateau is None else
                      detectable_difference_from(pairwise, plateau),
                      "change_at_the_end": change_at_the_end(pairwise, levels)}
    return out
