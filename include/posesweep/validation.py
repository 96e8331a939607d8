"""Label validation with Great Expectations 1.x suites, run before a GPU is spent.

The suites are built from the study config and the cohort's landmark set and run
on the tidy label table inside a task (never at DAG-parse time):

* ``label_table`` (one row per frame x landmark): columns, landmark set, one row
  per frame and landmark, coordinates inside the image;
* ``labels_per_frame`` (one row per labeled frame): the share of missing labels
  per landmark; every labeled frame's image exists with the size recorded;
* ``frontal_anatomy`` (one row per labeled frame; for the paper's landmark names
  or the hips, knees and ankles a cohort names in cohort.json, ``frontal_check_roles``):
  hip above knee above ankle on each side, left and right not swapped across the
  body's midline, medial and lateral foot markers distinct (the paper's foot
  landmarks), thigh and shank not longer than they can appear nor collapsed onto
  one spot (mis-clicks). A video reversed left for right in nearly every frame is
  diagnosed as a whole (labelled by image side, or filmed from behind).

Results are written as JSON and rendered as GX Data Docs HTML. A failure raises
``LabelValidationError`` naming every failing expectation and the offending
frames and landmarks -- after the Data Docs are written.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import LabelsWouldFailValidationError, LabelValidationError
from .kinematics import (FPPA_LANDMARKS, SIDE_VIEW_HIPS_APART, hips_apart_in_thigh_lengths,
                         videos_looking_filmed_from_the_side)
from .labels import TIDY_COLUMNS
from .layout import write_json_atomic
from .quiet import library_info_silenced

log = logging.getLogger(__name__)

ROW_ID_COLUMNS = ["video", "image", "landmark"]
FRAME_ID_COLUMNS = ["video", "image"]
# where the image begins in label coordinates: DeepLabCut's labeling GUIs put pixel centres at 0, 1, ..., so a
# click on the left half of the first pixel column is x = -0.3 (a foot at the frame's edge), inside the image
IMAGE_EDGE_PX = -0.5
# A thigh or shank as the camera sees it, against the video's 75th percentile of it (its length with the leg
# extended: standing, stepping off, flight). Flexion only shortens it: at a landing's peak knee flexion the thigh
# leans 50-70 degrees towards a frontal camera and appears at 0.35-0.65 of that, so a band around the median (0.65
# to 1.35, before) failed the frames the study exists for. Longer than 1.5x is a landmark on another joint (a knee
# clicked at the ankle: about 2x); under 0.2x, two landmarks on one spot (a knee clicked on the hip).
SEGMENT_LENGTH_PERCENTILE = 75
SEGMENT_LENGTH_RANGE = (0.2, 1.5)
# hip above knee above ankle: the upper may lie below the lower by up to this share of the segment's extended length.
# A single-leg landing's free leg is often held with the knee flexed 90 degrees, its ankle level with its knee, where
# a strict "above" failed half such frames on the labeler's hand alone; a swap puts it a whole segment below.
BELOW_BY_AT_MOST = 0.25
MIN_FOOT_MARKER_DISTANCE_PX = 0.5
# The brightest grey level a labeled frame must reach as the networks read it (8 bits: DeepLabCut's loaders divide a
# 16-bit image by 256, so a 12-bit camera's frames, values up to 4095, read as 0-15: nearly black)
MIN_BRIGHTEST_LEVEL = 16


def _gx():
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx

    library_info_silenced()  # GX set some of its loggers to INFO as it was imported
    return gx


def brightest_level_as_read(image: np.ndarray) -> float:
    """An image's brightest pixel in the 8-bit grey levels the networks see (a 16-bit image divided by 256, as
    DeepLabCut's loaders and OpenCV read it)."""
    return float(image.max()) / (256 if image.dtype == np.uint16 else 1)


def frame_table(table: pd.DataFrame, images_root: Path | None = None) -> pd.DataFrame:
    """One row per labeled frame: each landmark's x (NaN where missing), whether the image file matches and its
    brightest level as the networks read it."""
    labeled = table.assign(position=table["x_px"].where(table["y_px"].notna()))
    # duplicates are reported by the tidy suite; here only the first row of each counts
    labeled = labeled.drop_duplicates(ROW_ID_COLUMNS)
    wide = labeled.set_index(ROW_ID_COLUMNS)["position"].unstack("landmark")
    wide = wide.reindex(columns=sorted(table["landmark"].unique())).reset_index()
    if images_root is not None:
        import cv2

        sizes = labeled.drop_duplicates(FRAME_ID_COLUMNS).set_index(FRAME_ID_COLUMNS)[
            ["image_width_px", "image_height_px"]]
        matches, brightest, problems = [], [], []
        for video, image in wide[FRAME_ID_COLUMNS].itertuples(index=False):
            path = Path(images_root) / video / image
            found = cv2.imread(str(path), cv2.IMREAD_UNCHANGED) if path.exists() else None
            recorded = tuple(sizes.loc[(video, image)])
            matches.append(found is not None and (found.shape[1], found.shape[0]) == recorded)
            brightest.append(brightest_level_as_read(found) if found is not None else np.nan)
            problems.append("" if matches[-1] else _image_problem(path, found, recorded))
        wide["image_file_matches"], wide["image_brightest_level"] = matches, brightest
        wide["image_problem"] = problems
    return wide


def _image_problem(path: Path, found: np.ndarray | None, recorded: tuple) -> str:
    """What is wrong with a labeled frame's image file, in the words of the validation paragraph."""
    if found is not None:
        width, height = recorded
        return (f"an image of {found.shape[1]}x{found.shape[0]} px where the labels were made on one of "
                f"{_number(width)}x{_number(height)} px")
    if path.exists():
        return "a file that cannot be read as an image"
    beside = sorted(p.name for p in path.parent.iterdir() if p != path) if path.parent.is_dir() else []
    if cased := [name for name in beside if name.lower() == path.name.lower()]:
        return (f"no {path.name}, but {cased[0]} beside it: the name differs in case alone, which Windows and "
                f"macOS do not tell apart and this machine (and DeepLabCut on it) does: rename the images as the "
                f"label file names them")
    namesakes = [name for name in beside if Path(name).stem == path.stem]
    if namesakes:
        return (f"no {path.name}, but {namesakes[0]} beside it (the label file names {path.suffix} images, and "
                f"DeepLabCut reads the images it names: convert them back to {path.suffix})")
    return f"no {path.name} in {path.parent}"


def frontal_check_roles(bodyparts, declared: dict[str, str] | None,
                        camera_view: str = "front") -> tuple[dict[str, str] | None, str]:
    """Which landmarks the frontal-plane checks read (role -> landmark), and why; (None, why not).

    The checks assume a frontal camera and an upright participant, so they run only where the cohort says so: the
    paper's landmark names, or hips, knees and ankles named in cohort.json (``kinematic_landmarks``). Names that
    merely look like joints (``RKnee``) are not enough: a side camera puts left and right on top of each other,
    and every frame would fail the side check (a cohort.json saying ``"camera_view": "side"``: none)."""
    if camera_view == "side":
        return None, "no frontal-plane label checks: cohort.json camera_view side"
    if declared:
        return dict(declared), "the hips, knees and ankles named in cohort.json (kinematic_landmarks)"
    if set(FPPA_LANDMARKS) <= set(bodyparts):
        return {role: role for role in FPPA_LANDMARKS}, "the paper's landmark names"
    return None, ("no frontal-plane label checks: they need the paper's landmark names or cohort.json's "
                  "kinematic_landmarks (a frontal camera)")


def anatomy_table(table: pd.DataFrame, roles: dict[str, str], camera_view: str = "front",
                  back_view_videos: list[str] | tuple[str, ...] = ()) -> pd.DataFrame:
    """Frontal-plane checks per frame (participant's right is image left; image right with the camera behind: the
    cohort's ``camera_view``, or ``back_view_videos`` of a cohort filmed from the front), as booleans and length
    ratios, for each side whose hip, knee and ankle ``roles`` names (role -> landmark).

    A check is empty (NaN) in a frame missing a landmark it needs: missing labels are the missing-rate check's job,
    and a hidden foot does not exempt the knees. Foot-marker checks where the paper's foot landmarks exist."""
    xy = table.drop_duplicates(ROW_ID_COLUMNS).pivot(index=FRAME_ID_COLUMNS, columns="landmark",
                                                     values=["x_px", "y_px"])
    x, y = xy["x_px"], xy["y_px"]
    nan = pd.Series(np.nan, index=xy.index)
    x_of = {role: x[name] if name in x else nan for role, name in roles.items()}
    y_of = {role: y[name] if name in y else nan for role, name in roles.items()}

    def where_labelled(check: pd.Series, *roles_needed: str) -> pd.Series:
        present = np.logical_and.reduce([x_of[r].notna() & y_of[r].notna() for r in roles_needed])
        return check.astype(object).where(present) if check.dtype == bool else check.where(present)

    out = pd.DataFrame(index=xy.index)
    sides = [side for side in ("right", "left") if all(f"{side}_{j}" in roles for j in ("hip", "knee", "ankle"))]
    for side in sides:
        hip, knee, ankle = (f"{side}_{j}" for j in ("hip", "knee", "ankle"))
        for segment, (a, b) in {"thigh": (hip, knee), "shank": (knee, ankle)}.items():
            length = np.hypot(x_of[a] - x_of[b], y_of[a] - y_of[b])
            extended = length.groupby(level="video").transform("quantile", SEGMENT_LENGTH_PERCENTILE / 100)
            out[f"{side}_{segment}_length_ratio"] = length / extended
            # the upper landmark above the lower, or below it by at most a share of the segment: a leg held flexed
            # (the free leg of a single-leg landing, its shank level behind the knee) lies about level
            slack = (BELOW_BY_AT_MOST * extended).fillna(0.0)
            out[f"{side}_{a.split('_')[1]}_above_{b.split('_')[1]}"] = where_labelled(
                y_of[a] < y_of[b] + slack, a, b)
        medial, lateral = f"{side}_medial_foot", f"{side}_lateral_foot"
        if medial in x and lateral in x:
            feet = np.hypot(x[medial] - x[lateral], y[medial] - y[lateral])
            out[f"{side}_foot_markers_distinct"] = (feet > MIN_FOOT_MARKER_DISTANCE_PX).astype(object).where(
                feet.notna())
    if len(sides) == 2:  # no left/right swap: the right landmark on the image's left (front)
        videos = pd.Series(xy.index.get_level_values("video").astype(str), index=xy.index)
        facing = (camera_view == "front") & ~videos.isin(list(back_view_videos))
        for joint in ("hip", "knee", "ankle"):
            right, left = f"right_{joint}", f"left_{joint}"
            out[f"{joint}_sides_not_swapped"] = where_labelled((x_of[right] < x_of[left]) == facing, right, left)
    return out[out.notna().any(axis=1)].reset_index()


def videos_with_sides_reversed(anatomy: pd.DataFrame, share: float = 0.9) -> list[dict[str, Any]]:
    """Videos where right and left lie the other way round at hip, knee and ankle in nearly every frame: not
    slips of a labeler's hand but a convention (labelled by image side, or filmed from behind)."""
    swapped_columns = [f"{joint}_sides_not_swapped" for joint in ("hip", "knee", "ankle")]
    if not set(swapped_columns) <= set(anatomy.columns):  # one side only: nothing to reverse
        return []
    checked = anatomy.dropna(subset=swapped_columns)
    reversed_ = ~checked[swapped_columns].astype(bool).any(axis=1)
    counts = reversed_.groupby(checked["video"]).agg(["sum", "size"])
    return [{"video": video, "frames": int(row["sum"]), "of": int(row["size"])} for video, row in counts.iterrows()
            if row["size"] >= 2 and row["sum"] >= share * row["size"]]


def reversed_video_advice(video: dict[str, Any], summary: dict[str, Any]) -> str:
    """What a video reversed left for right in nearly every frame means, and the two fixes; ``summary``: the label
    suite's (the cohort's camera, the videos named as filmed from behind, how many videos were checked)."""
    view, back = summary.get("camera_view", "front"), summary.get("back_view_videos") or []
    some_only = len(summary.get("videos_with_sides_reversed") or []) < summary.get("videos_with_frontal_checks", 0)
    if video["video"] in back:
        cause, setting = ("labelled by image side, or filmed from the front",
                          'if the camera faced the participant, change "back_view_videos" in cohort.json so that it '
                          "does not name this video")
    elif view != "front":
        cause, setting = ("labelled by image side, or filmed from the front",
                          'if the camera faced the participant, remove "camera_view" from cohort.json')
    elif some_only:  # the others are seen from the front: a second camera behind, for some videos
        cause, setting = ("labelled by image side (right_* on the image's right), or filmed from behind",
                          "if a camera behind the participant filmed it (the other videos' camera faces them), name "
                          'such videos in cohort.json, e.g. "back_view_videos": "_back$" (a regular expression '
                          "found in their names)")
    else:
        cause, setting = ("labelled by image side (right_* on the image's right), or filmed from behind",
                          'if the camera was behind the participant, set "camera_view": "back" in cohort.json')
    return (f"right and left lie the other way round at hip, knee and ankle in {video['frames']} of its "
            f"{video['of']} frames: the whole video was {cause}. If labelled by image side, swap the right_ and "
            f"left_ names in its label file's columns; {setting}.")


def run_label_suite(table: pd.DataFrame, bodyparts: list[str], max_missing_fraction: float,
                    result_dir: Path, images_root: Path | None = None, roles: dict[str, str] | None = None,
                    camera_view: str = "front", side_view_videos: list[str] | tuple[str, ...] = (),
                    back_view_videos: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """``roles``: the landmarks the frontal-plane checks read (``frontal_check_roles``); None: no such checks.
    ``side_view_videos``: videos a side camera filmed (cohort.json), left out of the frontal-plane checks;
    ``back_view_videos``: videos a camera behind the participant filmed, read mirrored."""
    gx = _gx()
    from great_expectations.checkpoint import UpdateDataDocsAction
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    docs_dir = Path(result_dir) / "data_docs"
    context.add_data_docs_site(site_name="posesweep", site_config={
        "class_name": "SiteBuilder",
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
    })
    source = context.data_sources.add_pandas("labels")
    E = gx.expectations

    frames = frame_table(table, images_root)
    for bodypart in bodyparts:  # a landmark absent altogether is all-missing, not a crash
        if bodypart not in frames:
            frames[bodypart] = float("nan")
    batches: list[tuple[str, pd.DataFrame, list, list[str]]] = [
        ("label_table", table, [
            E.ExpectTableColumnsToMatchSet(column_set=TIDY_COLUMNS, exact_match=True),
            # two checks where GX has one (ExpectColumnDistinctValuesToEqualSet), whose failure with a name not in
            # the set GX's own Data Docs renderer cannot draw: it logs an ERROR and a traceback into the task log
            E.ExpectColumnValuesToBeInSet(column="landmark", value_set=list(bodyparts)),
            E.ExpectColumnDistinctValuesToContainSet(column="landmark", value_set=list(bodyparts)),
            E.ExpectCompoundColumnsToBeUnique(column_list=ROW_ID_COLUMNS),
            E.ExpectColumnValuesToBeBetween(column="x_px", min_value=IMAGE_EDGE_PX),
            E.ExpectColumnValuesToBeBetween(column="y_px", min_value=IMAGE_EDGE_PX),
            E.ExpectColumnPairValuesAToBeGreaterThanB(column_A="image_width_px", column_B="x_px",
                                                      ignore_row_if="either_value_is_missing"),
            E.ExpectColumnPairValuesAToBeGreaterThanB(column_A="image_height_px", column_B="y_px",
                                                      ignore_row_if="either_value_is_missing"),
            E.ExpectColumnValuesToNotBeNull(column="image_width_px"),
            # (0, 0): where tools converting COCO-style keypoints put one not labelled ("visibility 0"): no position
            E.ExpectColumnValuesToNotBeInSet(column="x_px", value_set=[0], row_condition="y_px == 0",
                                             condition_parser="pandas"),
        ], ROW_ID_COLUMNS),
        ("labels_per_frame", frames, [
            *(E.ExpectColumnValuesToNotBeNull(column=bp, mostly=1.0 - max_missing_fraction) for bp in bodyparts),
            *([E.ExpectColumnValuesToBeInSet(column="image_file_matches", value_set=[True]),
               E.ExpectColumnValuesToBeBetween(column="image_brightest_level", min_value=MIN_BRIGHTEST_LEVEL)]
              if images_root is not None else []),
        ], FRAME_ID_COLUMNS),
    ]
    reversed_sides: list[dict[str, Any]] = []
    hips_apart, looking_side_on = None, []
    frontal = table[~table["video"].astype(str).isin(side_view_videos)]
    if roles and len(frontal):
        anatomy = anatomy_table(frontal, roles, camera_view, back_view_videos)
        reversed_sides = videos_with_sides_reversed(anatomy)
        hips_apart = hips_apart_in_thigh_lengths(frontal, roles)
        looking_side_on = videos_looking_filmed_from_the_side(frontal, roles)
        checks = [c for c in anatomy.columns if c not in FRAME_ID_COLUMNS]
        batches.append(("frontal_anatomy", anatomy, [
            E.ExpectColumnValuesToBeInSet(column=c, value_set=[True]) if not c.endswith("_ratio") else
            E.ExpectColumnValuesToBeBetween(column=c, min_value=SEGMENT_LENGTH_RANGE[0],
                                            max_value=SEGMENT_LENGTH_RANGE[1])
            for c in checks], FRAME_ID_COLUMNS))

    results = {}
    for name, data, expectations, id_columns in batches:
        batch = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe("all")
        suite = context.suites.add(gx.ExpectationSuite(name=name, expectations=list(expectations)))
        definition = context.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch, suite=suite))
        checkpoint = context.checkpoints.add(gx.Checkpoint(
            name=f"{name}_checkpoint", validation_definitions=[definition],
            actions=[UpdateDataDocsAction(name="data_docs", site_names=["posesweep"])],
            result_format={"result_format": "COMPLETE", "unexpected_index_column_names": id_columns}))
        run = checkpoint.run(batch_parameters={"dataframe": data})
        results[name] = next(iter(run.run_results.values()))

    failures = [f for r in results.values() for f in _failures(r)]
    problems = frames.set_index(FRAME_ID_COLUMNS)["image_problem"].to_dict() if "image_problem" in frames else {}
    for row in (row for f in failures if f["kwargs"].get("column") == "image_file_matches" for row in f["offending"]):
        row["image_problem"] = problems.get(_frame_of(row), "")  # what is wrong with it, for the paragraph
    summary = {
        "success": all(r.success for r in results.values()),
        "failures": failures,
        "suites": {name: r.to_json_dict() for name, r in results.items()},
        "data_docs": str(docs_dir / "index.html"),
        "labeled_frames": int(len(frames)),
        "label_rows": int(len(table)),
        "missing_fraction_by_landmark": {bp: float(frames[bp].isna().mean()) for bp in bodyparts},
        "videos_with_sides_reversed": reversed_sides,
        "camera_view": camera_view,
        "frontal_check_roles": roles,
        "hips_apart_in_thigh_lengths": hips_apart,
        "side_view_videos": list(side_view_videos),
        "back_view_videos": list(back_view_videos),
        "videos_looking_filmed_from_the_side": looking_side_on,
        "videos_with_frontal_checks": int(frontal["video"].nunique()) if roles else 0,
    }
    write_json_atomic(Path(result_dir) / "validation_result.json", summary)
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
            "missing_values": details.get("partial_missing_list") or [],
            "unexpected_values": list(dict.fromkeys(map(str, details.get("unexpected_list")
                                                        or details.get("partial_unexpected_list") or []))),
            "offending": offending[:200],
        })
    return out


def _number(value: Any) -> str:
    try:
        return f"{float(value):g}"
    except (TypeError, ValueError):
        return str(value)


def _rule(failure: dict[str, Any], max_missing_fraction: float, camera_view: str = "front",
          roles: dict[str, str] | None = None,
          back_view_videos: list[str] | tuple[str, ...] = ()) -> tuple[str, Any, Any]:
    """(what the expectation means, found(row) -> str, allowed(row) -> str) in a lab's words, naming the lab's
    landmarks (``roles``: role -> landmark)."""
    kind, kwargs = failure["expectation"], failure["kwargs"]
    name = (roles or {}).get
    column = kwargs.get("column") or kwargs.get("column_B") or ""
    axis = "x" if column == "x_px" else "y"
    if kind == "expect_column_pair_values_a_to_be_greater_than_b":
        extent = "width" if axis == "x" else "height"
        return (f"label outside the image ({axis})", lambda r: f"{axis} = {_number(r.get(column))} px",
                lambda r: f"{axis} < {_number(r.get(kwargs['column_A']))} px (the image {extent})")
    if kind == "expect_column_values_to_not_be_in_set" and column == "x_px":
        return ("label at the image's corner (0, 0): the placeholder a converted label file (COCO-style keypoints, "
                "visibility 0) holds for a landmark not labelled, which would train the network to find it there",
                lambda r: "x = 0 px, y = 0 px", lambda r: "the landmark's position, or no label (empty) where it "
                "cannot be seen")
    if kind == "expect_column_values_to_be_between" and column in ("x_px", "y_px"):
        return (f"label outside the image ({axis} below its first pixel)",
                lambda r: f"{axis} = {_number(r.get(column))} px",
                lambda r: f"{axis} >= {IMAGE_EDGE_PX:g} px (the first pixel's edge: pixel centres lie at 0, 1, ...)")
    if kind == "expect_column_values_to_be_between" and column == "image_brightest_level":
        return ("labeled frame nearly black as the networks read it (8-bit grey levels; DeepLabCut's loaders divide "
                "a 16-bit image by 256, so a 12-bit camera's frames saved as 16-bit read as 0-15: re-export those as "
                "8-bit, scaled to their range, with the same names and size, and the labels stay valid; a frame dark "
                "in itself shows the network nothing: leave it out)",
                lambda r: f"brightest pixel {_number(round(float(r.get(column, 0)), 2))} of 255",
                lambda r: f"at least {MIN_BRIGHTEST_LEVEL} of 255")
    if kind == "expect_column_values_to_be_between":  # a segment length against the video's extended one
        segment = column.replace("_length_ratio", "").replace("_", " ")
        return (f"{segment} length unlike the participant's other frames (flexion shortens it; longer than it can "
                f"appear, or collapsed onto one spot, is a landmark on the wrong joint; collapsed, it may also be a "
                f"joint hidden behind the other, as a single-leg landing's free ankle behind its knee bent 90 "
                f"degrees: leave such a landmark unlabelled, as out of sight)",
                lambda r: f"{_number(r.get(column))} x the video's {segment} length with the leg "
                          f"extended ({SEGMENT_LENGTH_PERCENTILE}th percentile)",
                lambda r: f"{kwargs['min_value']:g} to {kwargs['max_value']:g} x that")
    if kind == "expect_column_values_to_not_be_null" and column == "image_width_px":
        return ("labeled image missing or unreadable (its size is unknown)", lambda r: "no readable image",
                lambda r: "the image the labels were made on, beside the label file")
    if kind == "expect_column_values_to_not_be_null":
        share = (failure.get("unexpected_percent") or 0) / 100
        return (f"landmark {column} missing in {share:.0%} of the labeled frames, at most "
                f"{max_missing_fraction:.0%} allowed (max_missing_label_fraction)",
                lambda r: f"no {column} label", lambda r: f"a {column} label")
    if kind == "expect_column_values_to_be_in_set" and column == "landmark":
        return ("landmark names differ from the cohort's bodyparts",
                lambda r: "landmarks " + ", ".join(failure.get("unexpected_values") or []) + " not among the bodyparts",
                lambda r: ", ".join(map(str, kwargs.get("value_set") or [])))
    if kind == "expect_column_values_to_be_in_set" and column == "image_file_matches":
        return ("labeled image missing, unreadable or not the size it was labeled at",
                lambda r: r.get("image_problem") or "no readable image of the recorded size",
                lambda r: "the image the labels were made on")
    if kind == "expect_column_values_to_be_in_set" and column.endswith("_sides_not_swapped"):
        joint = column.split("_")[0]
        right, left = name(f"right_{joint}", f"right_{joint}"), name(f"left_{joint}", f"left_{joint}")

        def expected(row: dict) -> str:  # the image side the participant's right is on, in this row's video
            return "left" if camera_view == "front" and row.get("video") not in back_view_videos else "right"

        other = {"left": "right", "right": "left"}
        if back_view_videos:
            view = ("on the image's left where the camera faces the participant, on its right in the videos filmed "
                    "from behind: cohort.json back_view_videos")
        else:
            view = "on the image's " + ("left: the camera faces the participant, as in the paper" if camera_view ==
                                        "front" else "right: the camera is behind the participant: cohort.json "
                                                     "camera_view back")
        return (f"frontal-plane check failed: {joint} sides not swapped (the participant's right is {view})",
                lambda r: f"{right} to the {other[expected(r)]} of {left}",
                lambda r: f"{right} to the {expected(r)} of {left}")
    if kind == "expect_column_values_to_be_in_set" and "_above_" in column:  # right_hip_above_knee
        side, upper, _, lower = column.split("_")
        upper, lower = name(f"{side}_{upper}", f"{side}_{upper}"), name(f"{side}_{lower}", f"{side}_{lower}")
        segment = {"hip": "thigh", "knee": "shank"}[column.split("_")[1]]
        return (f"frontal-plane check failed: {column.replace('_', ' ')} (the participant upright)",
                lambda r: f"{upper} below {lower} by more than {BELOW_BY_AT_MOST:g} {segment} lengths",
                lambda r: f"{upper} above {lower}, or below it by at most {BELOW_BY_AT_MOST:g} {segment} lengths (a "
                          f"leg held flexed)")
    if kind == "expect_column_values_to_be_in_set":
        return (f"frontal-plane check failed: {column.replace('_', ' ')}", lambda r: "false", lambda r: "true")
    if kind == "expect_column_distinct_values_to_contain_set":
        return ("bodyparts without a label in any frame",
                lambda r: "no labels for " + ", ".join(map(str, failure.get("missing_values") or [])),
                lambda r: "labels for every bodypart")
    if kind == "expect_compound_columns_to_be_unique":  # a label file holding an image's row twice
        return ("a frame labelled twice, with different positions (its row twice in the label file; which is meant "
                "is the lab's to say: delete the other, or run deeplabcut.dropduplicatesinannotatinfiles(config.yaml), "
                "which keeps the first)", lambda r: "two rows of labels", lambda r: "one row")
    return kind, lambda r: str(failure.get("observed_value")), lambda r: str(kwargs)


def _names_a_landmark(failure: dict[str, Any]) -> bool:
    return failure["expectation"] == "expect_column_values_to_be_in_set" and failure["kwargs"].get("column") == \
        "landmark"


def _frame_of(row: dict[str, Any]) -> tuple[Any, Any]:
    return row.get("video"), row.get("image")


def _unlabelled_bodyparts(failures: list[dict[str, Any]]) -> list[str]:
    """The bodyparts no label names at all, in the order of the bodyparts."""
    return [str(n) for f in failures if f["expectation"] == "expect_column_distinct_values_to_contain_set"
            for n in f.get("missing_values") or []]


def landmark_names_advice(failures: list[dict[str, Any]], landmarks_file: str | None) -> tuple[str, bool] | None:
    """What to do where the labels' landmark names and the cohort's bodyparts differ, and whether that is all that
    failed. A name is fixed where the bodyparts are listed; the run keeps the landmarks it started with (its own
    project), so the correction is a new run's."""
    unexpected = [n for f in failures if _names_a_landmark(f) for n in f.get("unexpected_values") or []]
    missing = _unlabelled_bodyparts(failures)
    if not unexpected and not missing:
        return None
    where = f"the bodyparts in {landmarks_file}" if landmarks_file else "the cohort's bodyparts"
    if len(unexpected) == 1 and len(missing) == 1:
        text = (f"the labels name {unexpected[0]} where {where} list {missing[0]}: if they are one landmark, write "
                f"{unexpected[0]} for {missing[0]} there (the name the frames were labelled with)")
    elif unexpected:
        text = (f"the labels name {', '.join(unexpected)}, which {where} do not list, and none of "
                f"{', '.join(missing)}, which they do: give each landmark the name its labels have there")
    else:
        them = "it" if len(missing) == 1 else "them"
        text = (f"{where} list {', '.join(missing)}, which no frame has a label of: label {them} in DeepLabCut's "
                f"labeling GUI (it offers the project's bodyparts) and save, or take {them} out of the bodyparts")
    text += "; then trigger a new run (a run keeps the landmarks it was started with)"
    only_names = all(_names_a_landmark(f) or f["expectation"] == "expect_column_distinct_values_to_contain_set"
                     or (f["expectation"] == "expect_column_values_to_not_be_null"
                         and f["kwargs"].get("column") in missing) for f in failures)
    return text, only_names


def failure_error(summary: dict[str, Any], label_files: dict[str, str], max_missing_fraction: float,
                  result_dir: Path, rows_shown: int = 5, landmarks_file: str | None = None) -> "LabelValidationError":
    """One paragraph for every failing expectation: the lab's file, frame and landmark, value found and allowed.
    ``landmarks_file``: where the cohort's bodyparts are listed (cohort.json, or an imported project's
    config.yaml), named where the labels' landmark names differ from them."""
    failures = summary["failures"]
    files = list(dict.fromkeys(label_files.get(row.get("video"), row.get("video")) for failure in failures
                               for row in failure["offending"][:rows_shown] if row.get("video")))
    details = []  # first what explains many rows at once: a camera at the side, a video labelled the other way round
    view, roles = summary.get("camera_view", "front"), summary.get("frontal_check_roles")
    apart = summary.get("hips_apart_in_thigh_lengths")
    side_on = summary.get("videos_looking_filmed_from_the_side") or []
    some_side_on = 0 < len(side_on) < summary.get("videos_with_frontal_checks", 0)
    swaps = any(f["kwargs"].get("column", "").endswith("_sides_not_swapped") for f in failures)
    if swaps and apart is not None and apart < SIDE_VIEW_HIPS_APART:
        details.append(f"the hips are labelled a median {apart:.2f} thigh lengths apart across the image (facing the "
                       f"camera about 0.5): this looks filmed from the side, where left and right overlap and the "
                       f'left/right check cannot hold. If so, set "camera_view": "side" in cohort.json (no '
                       f"frontal-plane checks or knee angles then)" + (
                           '; if only some videos are, "side_view_videos" (below)' if some_side_on else "") + ".")
    if swaps and some_side_on:
        details.append(f"{len(side_on)} video(s) look filmed from the side (hips labelled under "
                       f"{SIDE_VIEW_HIPS_APART:g} thigh lengths apart): {', '.join(side_on[:8])}"
                       + (f" and {len(side_on) - 8} more" if len(side_on) > 8 else "") + ". If a second camera "
                       'filmed them from the side, name them in cohort.json, e.g. "side_view_videos": "_side$" (a '
                       "regular expression found in their names): they then train the networks but get no "
                       "frontal-plane checks or knee angles.")
    for video in summary.get("videos_with_sides_reversed", []):
        details.append(f"{label_files.get(video['video'], video['video'])}: {reversed_video_advice(video, summary)}")
    unlabelled = set(_unlabelled_bodyparts(failures))
    images_named = {_frame_of(r) for f in failures if f["kwargs"].get("column") == "image_file_matches"
                    for r in f["offending"]}
    for failure in failures:
        kind, column = failure["expectation"], failure["kwargs"].get("column")
        if kind == "expect_column_values_to_not_be_null" and column in unlabelled:
            continue  # "missing in 100% of the frames", frame by frame: said once, as a bodypart without a label
        per_frame = kind == "expect_compound_columns_to_be_unique" or column == "image_width_px"
        if column == "image_width_px" and {_frame_of(r) for r in failure["offending"]} <= images_named:
            continue  # a missing image, landmark by landmark: said once, by the image check
        what, found, allowed = _rule(failure, max_missing_fraction, view, roles, summary.get("back_view_videos") or [])
        rows = [{}] if _names_a_landmark(failure) else failure["offending"] or [{}]  # one line: the names
        count = failure.get("unexpected_count") or len(failure["offending"])
        if per_frame:  # a check of the label rows that fails a whole frame: one line a frame, not a landmark
            rows = list({_frame_of(r): {k: r[k] for k in FRAME_ID_COLUMNS if k in r} for r in rows}.values())
            count = len(rows)
        details.append(f"{what}" + (f" ({count} rows)" if count and count > 1 else "") + ":")
        for row in rows[:rows_shown]:
            where = [label_files.get(row["video"], row["video"])] if len(files) > 1 and "video" in row else []
            where += [str(row[k]) for k in ("image", "landmark") if k in row]
            details.append(f"  {', '.join(where) + ': ' if where else ''}found {found(row)}, allowed {allowed(row)}")
        if len(rows) > rows_shown:
            details.append(f"  ... and {len(rows) - rows_shown} more (all in {result_dir / 'validation_result.json'})")
    out_of_sight = often_unlabelled(failures)
    if out_of_sight:
        details.append(out_of_sight)
    shown = ", ".join(files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")
    names = landmark_names_advice(failures, landmarks_file)
    fix = ("correct these labels in DeepLabCut's labeling GUI and save (it rewrites the files named), put back any "
           "missing image, or trigger the run with invalid_labels=exclude_frames to leave the named frames out")
    if names and names[1]:
        fix = names[0]
    elif names:
        details.append(f"Landmark names: {names[0]}.")
    return LabelValidationError(
        f"{len(failures)} expectation(s) not met", details=details, file=shown or None,
        fix=f"{fix}. Every check, with its results: {summary['data_docs']}", parameters=setting_that_passes(failures))


def often_unlabelled(failures: list[dict[str, Any]]) -> str | None:
    """For landmarks missing in more frames than allowed, but labelled in some: the other reading of it, a landmark
    out of sight in those frames (occluded, outside the image), left unlabelled as it should be, and the setting for
    it. ``invalid_labels=exclude_frames`` would drop every frame without it, most of the labels of a landmark seen
    only now and then. A landmark with no label at all is a name, not occlusion: the bodyparts check names it."""
    shares = _missing_shares(failures)
    return out_of_sight_advice(shares) if shares else None


def out_of_sight_advice(shares: dict[str, float]) -> str:
    """``often_unlabelled``'s words for landmark -> share of the labeled frames without it."""
    largest = max(shares.values())
    setting = _fraction_allowing(largest)
    return (f"If {', '.join(shares)} {'is' if len(shares) == 1 else 'are'} out of sight in those frames (behind the "
            f"body, outside the image), leaving {'it' if len(shares) == 1 else 'them'} unlabelled there is right: "
            f"DeepLabCut trains every frame on the landmarks it has, and posesweep scores a landmark only where it is "
            f"labelled. Then trigger the run with max_missing_label_fraction={setting:g} (the largest share found, "
            f"{largest:.1%}); invalid_labels=exclude_frames would instead leave out every labeled frame without "
            f"{'it' if len(shares) == 1 else 'one of them'}, {largest:.0%} or more of them.")


def often_unlabelled_problem(shares: dict[str, float], labeled_frames: int, max_missing_fraction: float,
                             label_files: list[Path]) -> LabelsWouldFailValidationError | None:
    """The failure ``validate_labels`` would meet for landmarks missing in more of an imported project's labeled
    frames than ``max_missing_fraction`` allows (shares from ``labels.missing_label_shares``), said by
    ``prepare_run`` with the run's other problems: its fix is a run parameter, and a run keeps those it began with.
    A landmark never labelled is left to the label checks (a name that differs, not occlusion)."""
    over = {landmark: share for landmark, share in shares.items()
            if 0 < share < 1 and 1 - share < 1 - max_missing_fraction}  # as the suite's ``mostly`` decides
    if not over:
        return None
    setting = _fraction_allowing(max(over.values()))
    return LabelsWouldFailValidationError(
        f"{'landmark' if len(over) == 1 else 'landmarks'} {', '.join(over)} missing in more of the project's "
        "labeled frames than max_missing_label_fraction allows",
        file=label_files[0] if len(label_files) == 1 else f"the {len(label_files)} CollectedData files under "
        f"{label_files[0].parent.parent}",
        found=", ".join(f"{landmark} missing in {share:.1%} of the {labeled_frames} labeled frames"
                        for landmark, share in over.items()),
        allowed=f"at most {max_missing_fraction:.0%} (max_missing_label_fraction)", details=[out_of_sight_advice(over)],
        fix=f"trigger the run with max_missing_label_fraction={setting:g}, or label {', '.join(over)} where "
            f"{'it is' if len(over) == 1 else 'they are'} in sight in DeepLabCut's labeling GUI",
        parameters={"max_missing_label_fraction": setting})


def _missing_shares(failures: list[dict[str, Any]]) -> dict[str, float]:
    """Landmark -> the share of labeled frames without it, for landmarks missing in more frames than allowed but
    labelled in some."""
    shares = {failure["kwargs"].get("column"): (failure.get("unexpected_percent") or 0) / 100 for failure in failures
              if failure["expectation"] == "expect_column_values_to_not_be_null"
              and failure["kwargs"].get("column") not in ("image_width_px", None)}
    return {landmark: share for landmark, share in shares.items() if 0 < share < 1}


def _fraction_allowing(share: float) -> float:
    """The max_missing_label_fraction, in hundredths, that lets ``share`` pass."""
    return math.ceil(share * 100 - 1e-9) / 100


def setting_that_passes(failures: list[dict[str, Any]]) -> dict[str, Any]:
    """{"max_missing_label_fraction": x} where landmarks missing in many frames are all that failed (a landmark
    out of sight, as ``often_unlabelled`` says); nothing where any other check failed, which a setting of it alone
    cannot get past."""
    shares = _missing_shares(failures)
    if not shares or len(shares) != len(failures):
        return {}
    return {"max_missing_label_fraction": _fraction_allowing(max(shares.values()))}


def offending_frames(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """(video, image) of every frame named by a failing expectation."""
    return sorted({(row["video"], row["image"]) for failure in summary["failures"]
                   for row in failure["offending"] if "video" in row and "image" in row})


def validate_labels(table: pd.DataFrame, bodyparts: list[str], max_missing_fraction: float,
                    result_dir: Path, label_files: dict[str, str] | None = None, images_root: Path | None = None,
                    roles: dict[str, str] | None = None, camera_view: str = "front",
                    side_view_videos: list[str] | tuple[str, ...] = (),
                    back_view_videos: list[str] | tuple[str, ...] = (),
                    landmarks_file: Path | None = None) -> dict[str, Any]:
    """Run the suites, write results and Data Docs, raise with the full list of problems if any fails.

    ``label_files`` maps each video to the lab's own CollectedData file, which the error names;
    ``landmarks_file`` is where the cohort lists its bodyparts.
    """
    summary = run_label_suite(table, bodyparts, max_missing_fraction, result_dir, images_root, roles, camera_view,
                              side_view_videos, back_view_videos)
    if not summary["success"]:
        raise failure_error(summary, label_files or {}, max_missing_fraction, Path(result_dir),
                            landmarks_file=str(landmarks_file) if landmarks_file else None)
    log.info("labels valid: %d frames, %d label rows, all expectations met", summary["labeled_frames"],
             summary["label_rows"])
    return summary
