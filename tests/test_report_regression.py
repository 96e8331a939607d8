"""The report's content is pinned: tables and summary.json from a fixed input equal those the report wrote before
it was split into table functions, figures and a template (tests/data/report_golden.json, written by that code)."""

import json
import math

import pytest
from report_input import context, error_table, html_tables

from conftest import REPO
from posesweep.layout import RunLayout
from posesweep.report import write_report
from posesweep.stats import analyse, detectable_difference_from

GOLDEN = json.loads((REPO / "tests" / "data" / "report_golden.json").read_text())


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12) or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _columns(table: list[list[str]]) -> dict[str, list[str]]:
    header, *rows = table
    return {name: [row[i] for row in rows] for i, name in enumerate(header)}


def test_report_tables_and_summary_are_unchanged(tmp_path):
    layout = RunLayout.create(tmp_path, "tiny", "golden")
    errors = error_table()
    page = write_report(layout, analyse(errors), errors, context()).read_text()
    # every table the report had, with the same cells, in the same order (a column may have moved; tables the
    # report gained since, such as the learning check, may stand between them)
    tables = [_columns(t) for t in html_tables(page)]
    golden = [_columns(t) for t in GOLDEN["html_tables"]]
    # a deliberate change since: the ANOVA tables' row naming the statistical test is "method", not "test" (read
    # as the test split, beside the columns of the splits)
    for table in golden:
        if table.get("quantity", [None])[0] == "test":
            table["quantity"] = ["method", *table["quantity"][1:]]
    assert not [t for t in tables if "test" in t.get("quantity", [])]
    # and another: below its plateau, each split's ANOVA says whether its post-hoc tests told no two iteration
    # levels apart (then no plateau is placed; here every split's tests tell some apart)
    for table in golden:
        if table.get("quantity", [None])[-1] == "plateau_iteration":
            for column in table:
                table[column] = [*table[column], "no_two_levels_differ" if column == "quantity" else "False"]
    # and another: each post-hoc comparison gives the difference it would have found with 80% power, and each
    # split's ANOVA the largest of those from its plateau on (none without a plateau: here the train error's)
    analysis = analyse(errors)
    detectable = [table.pop("detectable_difference_px") for table in tables if "iteration_a" in table]
    assert detectable == [html_column(analysis, split, "detectable_difference_px") for split in ("test", "train")]
    # so does each frame-set comparison, and the minimum frame count's sentence its tests'
    comparisons = analysis["frame_set_comparisons"]
    assert [table.pop("detectable_difference_px") for table in tables if "larger_frame_set_size" in table] == [
        [f"{value:.4g}" for value in comparisons["detectable_difference_px"]]]
    minimum_detectable = comparisons[(comparisons["split"] == "test") & (comparisons["frame_set_size"] == 10)][
        "detectable_difference_px"].max()
    assert minimum_detectable > 0
    # and how each split's error changed between its last two levels, where they differ: here the train error
    # still falls there (it places no plateau), the test error's last two levels do not differ
    for table in tables:
        if table.get("quantity", [None])[-2:] == ["detectable_difference_after_plateau_px", "change_at_the_end"]:
            assert (table["test"][-1], table["train"][-1]) == ("none", "falling")
            for column in table:
                del table[column][-2:]
    plateau_difference = detectable_difference_from(analysis["per_split"]["test"]["pairwise"], 150)
    assert plateau_difference > 0
    # another deliberate change: the paper's rows only for the paper's 10 landmarks (this input has 3)
    paper = [t for t in golden if "paper" in t]
    assert len(paper) == 1 and paper[0] not in tables and "this cohort's landmarks are others" in page
    positions = [tables.index(t) for t in golden if "paper" not in t]
    assert positions == sorted(positions)
    summary = json.loads(json.dumps(json.loads(layout.summary_file.read_text()), sort_keys=True, default=str))
    summary["run"] = GOLDEN["summary"]["run"]
    assert [row.pop("no_two_levels_differ") for row in summary["anova"].values()] == [False, False]
    assert [summary["anova"][split].pop("detectable_difference_after_plateau_px") for split in ("test", "train")] == \
        [pytest.approx(plateau_difference), None]
    assert [summary["anova"][split].pop("change_at_the_end") for split in ("test", "train")] == [None, "falling"]
    for split, rows in summary["posthoc"].items():
        assert [row.pop("detectable_difference_px") for row in rows] == pytest.approx(
            list(analysis["per_split"][split]["pairwise"]["detectable_difference_px"]))
    # and the minimum frame count's sentence ends with the test errors behind it: its own and the largest set's
    # (the networks' test errors at the chosen iteration, as summary.json lists them)
    assert summary["recommendation"] == GOLDEN["summary"]["recommendation"] + (
        f" (16.25 px; 13.14 px with 20; a test error higher by {minimum_detectable:.2g} px or more would have been "
        f"found with 80% power)")
    assert [row.pop("detectable_difference_px") for row in summary["frame_set_comparisons"]] == pytest.approx(
        list(comparisons["detectable_difference_px"]))
    summary["recommendation"] = GOLDEN["summary"]["recommendation"]
    for key in GOLDEN["summary"]:
        assert _same(summary[key], GOLDEN["summary"][key]), key


def html_column(analysis: dict, split: str, column: str) -> list[str]:
    """A post-hoc table's column as the report's HTML writes its cells (4 significant digits)."""
    return [f"{value:.4g}" if isinstance(value, float) else str(value)
            for value in analysis["per_split"][split]["pairwise"][column]]


def test_the_report_states_the_split_and_seed_a_methods_section_needs(tmp_path):
    """Beside the network, frame sets and iterations: the train fraction, the split's design and the seed (before,
    only in summary.json's study_config)."""
    import re

    layout = RunLayout.create(tmp_path, "tiny", "methods")
    errors = error_table()
    page = write_report(layout, analyse(errors), errors, {**context(), "study_config": {
        **context()["study_config"], "split_mode": "by_participant", "train_fraction": 0.85, "seed": 7}}).read_text()
    opening = re.sub(r"\s+", " ", page.split("</p>")[0])
    assert ("Train fraction 0.85, split by_participant: test frames only from participants never seen in training "
            "(cohort.json participant_pattern: several videos per participant); seed 7 (frame picks, splits, "
            "training).") in opening
