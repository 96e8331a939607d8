import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from posesweep.stats import (analyse, icc_absolute_agreement, pairwise_bonferroni, plateau_iteration,
                             rm_anova)


def _long(matrix, levels):
    rows = [{"subject": f"s{i}", "snapshot_iteration": level, "error_px": value}
            for i, row in enumerate(matrix) for level, value in zip(levels, row)]
    return pd.DataFrame(rows)


def _anova_by_hand(y):
    n, k = y.shape
    grand = y.mean()
    ss_levels = n * ((y.mean(axis=0) - grand) ** 2).sum()
    ss_subjects = k * ((y.mean(axis=1) - grand) ** 2).sum()
    ss_error = ((y - grand) ** 2).sum() - ss_levels - ss_subjects
    f = (ss_levels / (k - 1)) / (ss_error / ((n - 1) * (k - 1)))
    return f, sps.f.sf(f, k - 1, (n - 1) * (k - 1))


def test_textbook_example_has_the_known_f():
    # 4 subjects x 3 levels, worked by hand: grand mean 4, level means 2, 17/4, 23/4;
    # SS_levels = 57/2, SS_subjects = 6, SS_total = 36, SS_error = 3/2; F = (57/4) / (3/12) = 57
    y = np.array([[1, 3, 5], [2, 4, 6], [3, 5, 7], [2, 5, 5.0]])
    f_hand, p_hand = _anova_by_hand(y)
    result = rm_anova(_long(y, [25, 50, 75]))
    assert result["F"] == pytest.approx(f_hand) and result["p_value"] == pytest.approx(p_hand)
    assert (result["df_num"], result["df_den"]) == (2, 6)
    assert result["F"] == pytest.approx(57.0)


def test_anova_matches_the_formula_on_random_data():
    y = np.random.default_rng(0).normal(10, 2, (12, 5)) + np.linspace(3, 0, 5)
    f_hand, p_hand = _anova_by_hand(y)
    result = rm_anova(_long(y, [1, 2, 3, 4, 5]))
    assert result["F"] == pytest.approx(f_hand) and result["p_value"] == pytest.approx(p_hand)
    eta = result["partial_eta_squared"]
    assert 0 < eta < 1 and eta == pytest.approx(f_hand * 4 / (f_hand * 4 + 44))


def test_bonferroni_multiplies_each_paired_t_test_by_the_number_of_pairs():
    y = np.random.default_rng(1).normal(5, 1, (10, 4)) + np.array([2, 1, 0, 0])
    table = pairwise_bonferroni(_long(y, [10, 20, 30, 40]))
    assert len(table) == 6
    row = table[(table["iteration_a"] == 10) & (table["iteration_b"] == 30)].iloc[0]
    d = y[:, 0] - y[:, 2]
    t = d.mean() / (d.std(ddof=1) / np.sqrt(len(d)))
    p = 2 * sps.t.sf(abs(t), len(d) - 1)
    assert row["t"] == pytest.approx(t) and row["p_value"] == pytest.approx(p)
    assert row["p_bonferroni"] == pytest.approx(min(1.0, 6 * p))


def test_plateau_is_found_where_it_was_built_and_none_when_still_improving():
    rng = np.random.default_rng(2)
    levels = [25, 50, 75, 100, 125, 150]
    curve = np.array([20, 12, 8, 8, 8, 8.0])
    plateau = _long(curve + rng.normal(0, 0.3, (20, 6)), levels)
    assert plateau_iteration(pairwise_bonferroni(plateau), levels) == 75
    steady = _long(np.array([30, 25, 20, 15, 10, 5.0]) + rng.normal(0, 0.3, (20, 6)), levels)
    assert plateau_iteration(pairwise_bonferroni(steady), levels) is None
    flat = _long(np.full(6, 8.0) + rng.normal(0, 0.3, (20, 6)), levels)
    assert plateau_iteration(pairwise_bonferroni(flat), levels) == 25


def test_analyse_runs_the_design_per_split_with_network_landmark_subjects():
    rng = np.random.default_rng(4)  # with 6 subjects, 1 seed in ~30 makes 300 vs 400 all one sign by chance
    rows = []
    for size in (40, 80):
        for landmark in ("knee", "ankle", "hip"):
            for it, base in zip((100, 200, 300, 400), (30, 15, 10, 10)):
                for frame in range(20):
                    for split in ("train", "test"):
                        rows.append({"frame_set_size": size, "landmark": landmark, "snapshot_iteration": it,
                                     "split": split, "image": f"{frame}", "error_px": base + rng.normal(0, 1)})
    result = analyse(pd.DataFrame(rows))
    for split in ("train", "test"):
        anova = result["per_split"][split]["anova"]
        assert anova["n_subjects"] == 6 and anova["n_levels"] == 4 and anova["p_value"] < 0.01
    assert result["chosen_iteration"] == 300 and result["chosen_iteration_is_plateau"]
    assert set(result["by_frame_set"]["frame_set_size"]) == {40, 80}
    assert "subjects_left_out" not in result["per_split"]["test"]["anova"]

    # a rarely visible landmark with no label in one network's test frames (the real reaching project's Tongue is
    # labelled in 15 of 55 frames): that subject is left out of the test ANOVA, named, and the rest is analysed
    table = pd.DataFrame(rows)
    table.loc[(table["split"] == "test") & (table["frame_set_size"] == 40) & (table["landmark"] == "hip"),
              "error_px"] = np.nan
    test = analyse(table)["per_split"]["test"]
    assert test["anova"]["n_subjects"] == 5 and test["anova"]["subjects_left_out"] == "40:hip"
    assert test["anova"]["p_value"] < 0.01 and test["plateau_iteration"] == 300
    assert "subjects_left_out" not in analyse(table)["per_split"]["train"]["anova"]


def test_sphericity_and_greenhouse_geisser_agree_with_pingouin():
    import pingouin

    rng = np.random.default_rng(11)
    # unequal variances across levels: sphericity is violated
    y = rng.normal(10, 1, (15, 4)) * np.array([1, 2, 4, 8]) + np.array([6, 4, 2, 1])
    long = _long(y, [25, 50, 75, 100])
    ours = rm_anova(long)
    theirs = pingouin.rm_anova(data=long, dv="error_px", within="snapshot_iteration", subject="subject",
                               correction=True, detailed=True).iloc[0]
    mauchly = pingouin.sphericity(long, dv="error_px", within="snapshot_iteration", subject="subject")
    assert ours["F"] == pytest.approx(theirs["F"])
    assert ours["gg_epsilon"] == pytest.approx(theirs["eps"])
    assert ours["p_value_gg"] == pytest.approx(theirs["p-GG-corr"])
    assert ours["mauchly_W"] == pytest.approx(mauchly.W) and ours["mauchly_p"] == pytest.approx(mauchly.pval)
    assert ours["mauchly_p"] < 0.05 and ours["gg_epsilon"] < 1


def test_minimum_frames_is_the_smallest_size_not_worse_than_any_larger_one():
    from posesweep.stats import compare_frame_sets, detectable_effect_size, minimum_frames

    rng = np.random.default_rng(5)
    landmarks = [f"lm{i}" for i in range(10)]
    base = rng.normal(5, 1, 10)
    rows = []
    for size, penalty in ((200, 3.0), (400, 0.0), (600, 0.05), (800, -0.02)):
        for landmark, b in zip(landmarks, base):
            rows.append({"split": "test", "frame_set_size": size, "landmark": landmark,
                         "error_px": b + penalty + rng.normal(0, 0.1)})
    comparisons = compare_frame_sets(pd.DataFrame(rows))
    assert len(comparisons) == 6
    assert minimum_frames(comparisons, [200, 400, 600, 800]) == 400
    # each comparison gives the difference it would have found with 80% power: 10 landmarks, 6 pairs
    wide = pd.DataFrame(rows).pivot(index="landmark", columns="frame_set_size", values="error_px")
    for row in comparisons.itertuples():
        spread = np.std(wide[row.frame_set_size] - wide[row.larger_frame_set_size], ddof=1)
        assert row.detectable_difference_px == pytest.approx(detectable_effect_size(10, 0.05 / 6) * spread)
    improving = pd.DataFrame([{"split": "test", "frame_set_size": s, "landmark": lm, "error_px": b + 10 - s / 100
                               + rng.normal(0, 0.05)} for s in (200, 400, 600, 800) for lm, b in zip(landmarks, base)])
    assert minimum_frames(compare_frame_sets(improving), [200, 400, 600, 800]) == 800


def _few_subjects(test_noise_px: float, train_noise_px: float, seed: int = 0) -> pd.DataFrame:
    """4 subjects (2 networks x 2 landmarks, as the demo's FPPA ANOVA has 2 networks x 2 knees), 6 levels: both
    errors halve and level off from the third snapshot on; the test error's subjects scatter by ``test_noise_px``."""
    rng = np.random.default_rng(seed)
    curve = np.array([13.0, 9.0, 7.0, 6.7, 6.6, 6.6])
    rows = []
    for size in (40, 80):
        for landmark in ("left_knee", "right_knee"):
            for split, noise in (("test", test_noise_px), ("train", train_noise_px)):
                for level, error in zip((200, 400, 600, 800, 1000, 1200), curve + rng.normal(0, noise, 6)):
                    rows.append({"frame_set_size": size, "landmark": landmark, "snapshot_iteration": level,
                                 "split": split, "image": "0", "error_px": error})
    return pd.DataFrame(rows)


def test_a_test_that_tells_no_two_levels_apart_places_no_plateau_at_the_first_snapshot():
    """The rule (the smallest level from which on no pair differs) names the first level wherever no pair of levels
    differs significantly at all: the demo's FPPA error, 4 subjects for 15 pairs, halved from 13 deg at the first
    snapshot and its report read "plateau at 200". Such a split places no plateau; the chosen iteration is the
    other split's plateau, or the last snapshot."""
    from posesweep.stats import placed_plateau

    mixed = analyse(_few_subjects(test_noise_px=3.0, train_noise_px=0.05))
    test, train = mixed["per_split"]["test"], mixed["per_split"]["train"]
    assert not test["pairwise"]["significant"].any()
    assert plateau_iteration(test["pairwise"], [200, 400, 600, 800, 1000, 1200]) == 200  # what the report said
    assert (test["plateau_iteration"], test["no_two_levels_differ"]) == (None, True)
    assert train["pairwise"]["significant"].any() and not train["no_two_levels_differ"]
    assert train["plateau_iteration"] in (600, 800, 1000)  # where it levels off, give or take the noise
    assert (mixed["chosen_iteration"], mixed["chosen_iteration_is_plateau"]) == (train["plateau_iteration"], True)

    neither = analyse(_few_subjects(test_noise_px=3.0, train_noise_px=3.0))
    assert all(split["no_two_levels_differ"] for split in neither["per_split"].values())
    assert (neither["chosen_iteration"], neither["chosen_iteration_is_plateau"]) == (1200, False)
    # an error still falling at the last snapshot still asks for more training, whatever the other split says
    rng = np.random.default_rng(3)
    steady = _long(np.array([30, 25, 20, 15, 10, 5.0]) + rng.normal(0, 0.3, (20, 6)), [1, 2, 3, 4, 5, 6])
    assert placed_plateau(pairwise_bonferroni(steady), [1, 2, 3, 4, 5, 6]) == (None, False)


def test_icc_absolute_agreement_gives_shrout_and_fleiss_published_icc_2_1_and_its_interval():
    """Shrout & Fleiss (Psychol Bull 1979;86:420-428), Table 2: 6 targets rated by 4 judges, ICC(2,1) = 0.29, whose
    95% interval R's psych::ICC gives as 0.019 to 0.76; and what it is for a network against the labels: 1 for a
    perfect copy, lower for the same readings with a bias."""
    judges = np.array([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]])
    icc, low, high = icc_absolute_agreement(judges)
    assert icc == pytest.approx(0.29, abs=0.005)
    assert (low, high) == pytest.approx((0.019, 0.76), abs=0.005)
    labelled = np.array([2.0, -5.0, 11.0, 7.5, 0.0, 14.0])
    assert icc_absolute_agreement(np.column_stack([labelled, labelled]))[0] == pytest.approx(1.0)
    # the same differences between knees, read 6 deg too valgus, with a little scatter
    biased, low, high = icc_absolute_agreement(np.column_stack([labelled, labelled + 6.0 + np.array(
        [0.5, -0.3, 0.2, -0.6, 0.4, -0.2])]))
    assert 0.5 < biased < 0.9 and low < biased < high
    assert np.isnan(icc_absolute_agreement(np.array([[3.0, 4.0]]))).all()  # one frame: unknown


def test_the_effect_size_a_paired_test_detects_with_80_percent_power_holds_for_few_subjects_where_statsmodels_not():
    """G*Power's and statsmodels' d = 0.660 for 20 subjects at 0.05; for 4 subjects at a Bonferroni level of 0.05 / 15
    (the demo's FPPA tests), a simulation of that many paired tests rejects in 80% of them at the value returned,
    where statsmodels' TTestPower.solve_power answer (4.17) has 58% power."""
    from statsmodels.stats.power import TTestPower

    from posesweep.stats import detectable_effect_size

    assert detectable_effect_size(20, 0.05) == pytest.approx(
        TTestPower().solve_power(effect_size=None, nobs=20, alpha=0.05, power=0.8), rel=1e-6)
    assert detectable_effect_size(20, 0.05) == pytest.approx(0.6604, abs=1e-4)

    def simulated_power(effect: float, n: int, alpha: float) -> float:
        differences = np.random.default_rng(0).normal(effect, 1.0, size=(40_000, n))
        return float((sps.ttest_1samp(differences, 0.0, axis=1).pvalue < alpha).mean())

    effect = detectable_effect_size(4, 0.05 / 15)
    assert simulated_power(effect, 4, 0.05 / 15) == pytest.approx(0.8, abs=0.01)
    statsmodels_effect = TTestPower().solve_power(effect_size=None, nobs=4, alpha=0.05 / 15, power=0.8)
    assert simulated_power(statsmodels_effect, 4, 0.05 / 15) < 0.7
    assert np.isnan(detectable_effect_size(1, 0.05))


def test_each_level_pair_gives_the_difference_it_would_have_found_and_the_plateau_the_largest_after_it():
    """A plateau is where later levels no longer differ significantly; how small a difference those tests could
    see is what a reader of "no longer improves" needs: each pair's detectable difference is the effect size for its
    subjects and Bonferroni level times the SD of its differences, and the plateau's the largest among later pairs."""
    from posesweep.stats import detectable_difference_from, detectable_effect_size

    rng = np.random.default_rng(5)
    matrix = np.array([9.0, 6.0, 5.0, 5.0]) + rng.normal(0, 0.4, (12, 4))
    levels = [100, 200, 300, 400]
    pairwise = pairwise_bonferroni(_long(matrix, levels))
    effect = detectable_effect_size(12, 0.05 / 6)
    for row in pairwise.itertuples():
        a, b = levels.index(row.iteration_a), levels.index(row.iteration_b)
        assert row.detectable_difference_px == pytest.approx(effect * np.std(matrix[:, a] - matrix[:, b], ddof=1))
    later = pairwise[pairwise["iteration_a"] >= 300]
    assert len(later) == 1 and detectable_difference_from(pairwise, 300) == pytest.approx(
        later["detectable_difference_px"].max())
    assert detectable_difference_from(pairwise, 200) == pytest.approx(
        pairwise[pairwise["iteration_a"] >= 200]["detectable_difference_px"].max())
    assert detectable_difference_from(pairwise, 400) is None  # the last level: no pair after it
    errors = pd.DataFrame([{"frame_set_size": 10, "landmark": f"m{i}", "snapshot_iteration": level, "split": split,
                            "image": "0", "error_px": value} for split in ("train", "test")
                           for i, row in enumerate(matrix) for level, value in zip(levels, row)])
    result = analyse(errors)["per_split"]["test"]
    assert result["plateau_iteration"] == 300
    assert result["detectable_difference_after_plateau_px"] == pytest.approx(detectable_difference_from(pairwise, 300))


def test_an_error_rising_at_the_last_snapshot_is_told_as_rising_not_as_still_improving():
    """A test error that rises significantly between the last two snapshots (the networks overfit their training
    frames) places no plateau, as one still falling does: the report said "still improving: train longer" for both.
    Each split now says which way its error went there."""
    from posesweep.report.tables import recommendation
    from posesweep.stats import change_at_the_end

    rng = np.random.default_rng(2)
    levels = [100, 200, 300, 400]
    shapes = {"test": np.array([9.0, 5.0, 5.0, 7.0]), "train": np.array([9.0, 5.0, 4.0, 3.0])}
    errors = pd.DataFrame([{"frame_set_size": 10, "landmark": f"m{i}", "snapshot_iteration": level, "split": split,
                            "image": "0", "error_px": value}
                           for split, shape in shapes.items()
                           for i, row in enumerate(shape + rng.normal(0, 0.2, (12, 4)))
                           for level, value in zip(levels, row)])
    analysis = analyse(errors)
    test, train = analysis["per_split"]["test"], analysis["per_split"]["train"]
    assert (test["change_at_the_end"], train["change_at_the_end"]) == ("rising", "falling")
    assert test["plateau_iteration"] is None and analysis["chosen_iteration"] == 400
    assert change_at_the_end(test["pairwise"], levels[:3]) is None  # 200 and 300 do not differ
    learned = pd.DataFrame({"frame_set_size": [10], "snapshot_iteration": [400], "test_error_px": [7.0],
                            "mean_pose_error_px": [40.0], "learned": [True]})
    means = analysis["subject_means"]
    by_level = means[means["split"] == "test"].groupby("snapshot_iteration")["error_px"].mean()
    said = recommendation(analysis, learned)
    assert said.startswith(
        f"The test error rose significantly between the last two snapshots ({by_level[300]:.2f} px at 300 "
        f"iterations, {by_level[400]:.2f} px at 400): more training made the networks worse on new frames while the "
        f"train error still falls (overfitting), so the paper's rule places no plateau, and training longer would "
        f"not help; the test error is lowest at {int(by_level.idxmin()):,} iterations "
        f"({by_level.min():.2f} px); the numbers below are read at the last snapshot (400 iterations)")
    assert "train longer" not in said
