"""Label validation with a Great Expectations 1.x suite, run before a GPU is spent.

The suite is built from the study config and the cohort's landmark set and run on
the tidy label table inside a task (never at DAG-parse time). Two batches:

* the tidy table (one row per frame x landmark): columns, landmark set, one row
  per frame and landmark, coordinates inside the image;
* a per-frame table (one row per labeled frame, one column per landmark):
  the share of missing labels per landmark.

The full result is written as JSON; a failure raises ``LabelValidationError``
naming every failing expectation and the frames and landmarks involved.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pandas as pd

from .labels import TIDY_COLUMNS
from .layout import write_json_atomic

log = logging.getLogger(__name__)

ROW_ID_COLUMNS = ["video", "image", "landmark"]


class LabelValidationError(RuntimeError):
    """Labels failed validation; the message lists expectations and offending frames."""


def _gx():
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx

    return gx


def presence_table(table: pd.DataFrame) -> pd.DataFrame:
    """One row per labeled frame, one boolean-ish column per landmark (x value or NaN)."""
    labeled = table.assign(position=table["x_px"].where(table["y_px"].notna()))
    # duplicates are reported by the tidy suite; here only the first row of each counts
    labeled = labeled.drop_duplicates(ROW_ID_COLUMNS)
    wide = labeled.set_index(ROW_ID_COLUMNS)["position"].unstack("landmark")
    return wide.reindex(columns=sorted(table["landmark"].unique())).reset_index()


def run_label_suite(table: pd.DataFrame, bodyparts: list[str], max_missing_fraction: float,
                    result_file: Path) -> dict[str, Any]:
    gx = _gx()
    from great_expectations.data_context.types.base import ProgressBarsConfig
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_pandas("labels")
    tidy_batch = source.add_dataframe_asset("label_table").add_batch_definition_whole_dataframe("all")
    frame_batch = source.add_dataframe_asset("frame_table").add_batch_definition_whole_dataframe("all")

    E = gx.expectations
    tidy_suite = context.suites.add(gx.ExpectationSuite(name="label_table"))
    for expectation in (
        E.ExpectTableColumnsToMatchSet(column_set=TIDY_COLUMNS, exact_match=True),
        E.ExpectColumnDistinctValuesToEqualSet(column="landmark", value_set=list(bodyparts)),
        E.ExpectCompoundColumnsToBeUnique(column_list=ROW_ID_COLUMNS),
        E.ExpectColumnValuesToBeBetween(column="x_px", min_value=0),
        E.ExpectColumnValuesToBeBetween(column="y_px", min_value=0),
        E.ExpectColumnPairValuesAToBeGreaterThanB(column_A="image_width_px", column_B="x_px",
                                                  ignore_row_if="either_value_is_missing"),
        E.ExpectColumnPairValuesAToBeGreaterThanB(column_A="image_height_px", column_B="y_px",
                                                  ignore_row_if="either_value_is_missing"),
        E.ExpectColumnValuesToNotBeNull(column="image_width_px"),
    ):
        tidy_suite.add_expectation(expectation)
    frame_suite = context.suites.add(gx.ExpectationSuite(name="labels_per_frame"))
    for bodypart in bodyparts:
        frame_suite.add_expectation(
            E.ExpectColumnValuesToNotBeNull(column=bodypart, mostly=1.0 - max_missing_fraction)
        )

    result_format = {"result_format": "COMPLETE", "unexpected_index_column_names": ROW_ID_COLUMNS[:2]}
    frames = presence_table(table)
    for bodypart in bodyparts:  # a landmark absent altogether is all-missing, not a crash
        if bodypart not in frames:
            frames[bodypart] = float("nan")
    results = {}
    for name, batch, suite, data in (("label_table", tidy_batch, tidy_suite, table),
                                     ("labels_per_frame", frame_batch, frame_suite, frames)):
        definition = context.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch, suite=suite))
        fmt = dict(result_format)
        if name == "label_table":
            fmt["unexpected_index_column_names"] = ROW_ID_COLUMNS
        results[name] = definition.run(batch_parameters={"dataframe": data}, result_format=fmt)

    summary = {
        "success": all(r.success for r in results.values()),
        "failures": [f for r in results.values() for f in _failures(r)],
        "suites": {name: r.to_json_dict() for name, r in results.items()},
        "labeled_frames": int(len(frames)),
        "label_rows": int(len(table)),
        "missing_fraction_by_landmark": {bp: float(frames[bp].isna().mean()) for bp in bodyparts},
    }
    write_json_atomic(result_file, summary)
    return summary


def _failures(result: Any) -> list[dict[str, Any]]:
    out = []
    for r in result.results:
        if r.success:
            continue
        config = r.expectation_config
        details = r.result or {}
        offending = details.get("unexpected_index_list") or []
        out.append({
            "expectation": config.type,
            "kwargs": {k: v for k, v in config.kwargs.items() if k != "batch_id"},
            "unexpected_count": details.get("unexpected_count"),
            "unexpected_percent": details.get("unexpected_percent"),
            "observed_value": details.get("observed_value"),
            "offending": offending[:50],
        })
    return out


def describe_failures(summary: dict[str, Any], source: str) -> str:
    lines = [f"label validation failed for {source}: {len(summary['failures'])} expectation(s) not met"]
    for failure in summary["failures"]:
        column = failure["kwargs"].get("column") or failure["kwargs"].get("column_B") or ""
        what = f"{failure['expectation']}({column})" if column else failure["expectation"]
        count = failure.get("unexpected_count")
        head = f"- {what}: {count} offending row(s)" if count is not None else f"- {what}"
        if failure.get("observed_value") is not None:
            head += f", observed {failure['observed_value']}"
        lines.append(head)
        for row in failure["offending"][:10]:
            lines.append("    " + ", ".join(f"{k}={v}" for k, v in row.items() if k in ROW_ID_COLUMNS))
    return "\n".join(lines)


def validate_labels(table: pd.DataFrame, bodyparts: list[str], max_missing_fraction: float,
                    result_file: Path, source: str) -> dict[str, Any]:
    """Run the suite, write its result, raise with the full list of problems if it fails."""
    summary = run_label_suite(table, bodyparts, max_missing_fraction, result_file)
    if not summary["success"]:
        raise LabelValidationError(describe_failures(summary, source) + f"\nfull result: {result_file}")
    log.info("labels valid: %d frames, %d label rows, all expectations met", summary["labeled_frames"],
             summary["label_rows"])
    return summary
