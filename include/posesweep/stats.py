"""The paper's analysis: a 1xK repeated-measures ANOVA over iteration levels, Bonferroni post-hoc.

Design (as in the study): subjects are (network, landmark) pairs -- a network per
frame-set size -- the within-subject factor is the snapshot's iteration level,
and the dependent variable is the subject's mean error over frames, separately
for the train and the test split. The plateau is the smallest iteration level
from which on no pair of levels differs significantly after Bonferroni
correction.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd

ALPHA = 0.05


def subject_means(errors: pd.DataFrame) -> pd.DataFrame:
    """Mean error over frames per (split, frame set, landmark, snapshot)."""
    means = (errors.groupby(["split", "frame_set_size", "landmark", "snapshot_iteration"], as_index=False)
             ["error_px"].mean())
    means["subject"] = means["frame_set_size"].astype(str) + ":" + means["landmark"]
    return means


def rm_anova(means: pd.DataFrame) -> dict:
    """One split's repeated-measures ANOVA (statsmodels AnovaRM) with partial eta squared."""
    from statsmodels.stats.anova import AnovaRM

    result = AnovaRM(means, depvar="error_px", subject="subject", within=["snapshot_iteration"]).fit()
    row = result.anova_table.iloc[0]
    f_value, df_num, df_den = float(row["F Value"]), float(row["Num DF"]), float(row["Den DF"])
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
    }


def pairwise_bonferroni(means: pd.DataFrame) -> pd.DataFrame:
    """Paired t-tests between every pair of iteration levels, Bonferroni-adjusted."""
    from scipy.stats import ttest_rel

    wide = means.pivot(index="subject", columns="snapshot_iteration", values="error_px").dropna()
    levels = list(wide.columns)
    pairs = list(combinations(levels, 2))
    rows = []
    for a, b in pairs:
        t_stat, p_value = ttest_rel(wide[a], wide[b])
        rows.append({"iteration_a": int(a), "iteration_b": int(b),
                     "mean_difference_px": float((wide[a] - wide[b]).mean()),
                     "t": float(t_stat), "df": len(wide) - 1, "p_value": float(p_value),
                     "p_bonferroni": float(min(1.0, p_value * len(pairs)))})
    table = pd.DataFrame(rows)
    table["significant"] = table["p_bonferroni"] < ALPHA
    return table


def plateau_iteration(pairwise: pd.DataFrame, levels: list[int], alpha: float = ALPHA) -> int | None:
    """Smallest level L such that no two levels >= L differ significantly; None if even the last two differ."""
    levels = sorted(levels)
    for level in levels[:-1]:
        later = pairwise[(pairwise["iteration_a"] >= level) & (pairwise["iteration_b"] >= level)]
        if not (later["p_bonferroni"] < alpha).any():
            return int(level)
    return None


def analyse(errors: pd.DataFrame) -> dict:
    """ANOVA, post-hoc table and plateau per split; the frame-set table at the chosen iteration."""
    means = subject_means(errors)
    out = {"per_split": {}, "subject_means": means}
    for split, split_means in means.groupby("split"):
        levels = sorted(split_means["snapshot_iteration"].unique())
        if len(levels) < 2 or split_means["subject"].nunique() < 2:
            out["per_split"][split] = {"anova": None, "pairwise": pd.DataFrame(), "plateau_iteration": None}
            continue
        pairwise = pairwise_bonferroni(split_means)
        out["per_split"][split] = {
            "anova": rm_anova(split_means),
            "pairwise": pairwise,
            "plateau_iteration": plateau_iteration(pairwise, levels),
        }
    plateaus = [v["plateau_iteration"] for v in out["per_split"].values()]
    last = int(errors["snapshot_iteration"].max())
    # Both errors must have stabilised: the later of the two plateaus; no plateau -> the last snapshot.
    out["chosen_iteration"] = max((p if p is not None else last) for p in plateaus) if plateaus else last
    out["chosen_iteration_is_plateau"] = bool(plateaus) and all(p is not None for p in plateaus)
    at_chosen = means[means["snapshot_iteration"] == out["chosen_iteration"]]
    out["by_frame_set"] = (at_chosen.groupby(["split", "frame_set_size", "landmark"], as_index=False)
                           ["error_px"].mean())
    return out


def errors_by_iteration(means: pd.DataFrame) -> pd.DataFrame:
    """Figure 2's numbers: mean and SD over subjects per split and iteration level."""
    return (means.groupby(["split", "snapshot_iteration"])["error_px"]
            .agg(mean_error_px="mean", sd_error_px=lambda s: float(np.std(s, ddof=1)) if len(s) > 1 else 0.0)
            .reset_index())
