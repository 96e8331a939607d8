"""Write the report: figures, CSV tables, summary.json, and index.html from ``templates/report.html.j2``."""

from __future__ import annotations

import base64
import logging
import math
from pathlib import Path

import pandas as pd

from ..cohort import UNMATCHED_FACTS
from ..config import SPLIT_MODES
from ..layout import RunLayout, null_where_not_finite, write_csv_atomic, write_json_atomic, write_text_atomic
from ..learning import RULE, landmarks_without_training_labels, learning_check
from ..networks import analyze_videos_call
from ..provenance import mixed_software_warning, software_sentence
from ..stats import DETECTION_POWER, errors_by_iteration
from . import figures, tables

log = logging.getLogger(__name__)


def html_table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, float_format=lambda v: f"{v:.4g}", border=0, classes="t")


def inline_png(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def _template():
    from jinja2 import Environment, PackageLoader, select_autoescape

    environment = Environment(loader=PackageLoader("posesweep.report", "templates"),
                              autoescape=select_autoescape(["html", "j2"]), trim_blocks=True, lstrip_blocks=True)
    environment.filters["table"] = lambda frame: __import__("markupsafe").Markup(html_table(frame))
    return environment.get_template("report.html.j2")


def kinematic_landmark_sentences(landmarks: dict | None, errors: pd.DataFrame) -> dict[str, str | None]:
    """Which landmarks the knee angles come from, where they are not the paper's names; or why there are none,
    for a cohort with a landmark named as a knee (any other cohort's report does not mention knees)."""
    roles = (landmarks or {}).get("roles")
    sentences, not_computed = [], None
    if roles and any(role != name for role, name in roles.items()):
        named = ", ".join(f"{name} ({role.replace('_', ' ')})" for role, name in roles.items())
        sentences.append(f"Hips, knees and ankles: {named}; {landmarks['how']}.")
    elif landmarks and not roles and errors["landmark"].astype(str).str.contains("knee", case=False).any():
        not_computed = landmarks["how"]
    side = (landmarks or {}).get("side_view_videos") or []
    if roles and side:
        sentences.append(f"Knee angles from the frontal camera's videos only: the {len(side)} side-camera video(s) "
                         f"(cohort.json side_view_videos: {', '.join(side[:6])}{' ...' if len(side) > 6 else ''}) "
                         f"train and score the networks but give no frontal-plane angles.")
    back = (landmarks or {}).get("back_view_videos") or []
    if roles and back:
        sentences.append(f"Filmed from behind in {len(back)} video(s) (cohort.json back_view_videos: "
                         f"{', '.join(back[:6])}{' ...' if len(back) > 6 else ''}): there the participant's right is "
                         f"on the image's right, and medial is read accordingly.")
    if roles and landmarks.get("camera_view") == "back":
        sentences.append("Filmed from behind (cohort.json camera_view): the participant's right is on the image's "
                         "right, and medial is read accordingly.")
    return {"kinematic_landmarks_sentence": " ".join(sentences) or None, "kinematics_not_computed": not_computed}


def write_report(layout: RunLayout, analysis: dict, errors: pd.DataFrame, context: dict,
                 kinematics: pd.DataFrame | None = None, fppa_analysis: dict | None = None) -> Path:
    """Write figures, CSV tables, summary.json and index.html under the run's report folder.

    ``kinematics`` (``kinematics.kinematic_errors``) and ``fppa_analysis`` (``stats.analyse_fppa``) add the
    frontal-plane kinematics, for cohorts with the paper's hip, knee and ankle landmarks.
    """
    out = layout.report_dir
    out.mkdir(parents=True, exist_ok=True)
    study, chosen = context["study_config"], analysis["chosen_iteration"]
    by_frame_set = analysis["by_frame_set"]
    by_iteration = errors_by_iteration(analysis["subject_means"])
    by_network = tables.errors_by_network(errors)
    by_landmark = tables.errors_by_landmark(by_frame_set)
    accuracy = tables.accuracy_by_landmark(errors, chosen, study["pcutoff"])
    snapshot_accuracy = tables.accuracy_by_snapshot(errors, study["pcutoff"])
    anova_by_split, pairwise = tables.anova_rows(analysis), tables.posthoc_tables(analysis)
    anova = pd.DataFrame(list(anova_by_split.values()))
    comparisons = analysis["frame_set_comparisons"]
    learned = learning_check(errors, chosen)
    answer = tables.recommendation(analysis, learned)
    networks = context.get("networks", [])
    to_use = tables.network_to_use(networks, by_network, chosen, learned)
    kinematic = None
    if kinematics is not None and len(kinematics):
        kinematic = {"by_iteration": tables.kinematic_error_by_iteration(kinematics),
                     "by_frame_set": tables.kinematic_error_by_frame_set(kinematics, chosen),
                     "test_fppa_deg": tables.fppa_error_deg(kinematics, chosen),
                     "fppa_agreement": tables.fppa_agreement(kinematics, chosen),
                     "ratio_agreement": tables.ratio_agreement(kinematics, chosen),
                     "anova": pd.DataFrame([tables.plateau_row(split, result)
                                            for split, result in (fppa_analysis or {}).items() if result["anova"]])}
        if answer is not None:
            knees = sorted(q.split("_")[0] for q in kinematics["quantity"].unique() if q.endswith("_fppa_deg"))
            answer += (f"; there the test FPPA error is {kinematic['test_fppa_deg']:.1f} deg (mean absolute over "
                       f"{'both knees' if len(knees) == 2 else f'the {knees[0]} knee'}, every network and test "
                       f"frame)")
        if to_use is not None:  # what the network to use gets wrong in the knee angle itself
            own = kinematics[kinematics["frame_set_size"] == to_use["frame_set_size"]]
            fppa = tables.fppa_error_deg(own, chosen)
            to_use["test_fppa_error_deg"] = fppa if math.isfinite(fppa) else None
            agreement = tables.pooled_fppa_agreement(own, chosen)
            if agreement is not None and math.isfinite(agreement["loa_low_deg"]):
                to_use.update({"test_fppa_limits_of_agreement_deg": [agreement["loa_low_deg"],
                                                                     agreement["loa_high_deg"]],
                               "test_fppa_labelled_sd_deg": agreement["labelled_sd_deg"],
                               "test_fppa_icc_a1": agreement["icc_a1"] if math.isfinite(agreement["icc_a1"]) else None,
                               "test_fppa_icc_a1_ci": [value if math.isfinite(value) else None for value in
                                                       (agreement["icc_a1_ci_low"], agreement["icc_a1_ci_high"])],
                               "test_fppa_knee_angles": agreement["frames"]})  # both knees of its test frames
            to_use["test_fppa_icc_a1_by_frame_set"] = tables.fppa_icc_by_frame_set(kinematics, chosen)
            to_use["test_ratio_icc_a1"] = {row["ratio"]: row["icc_a1"] for row in kinematic["ratio_agreement"].to_dict(
                orient="records") if row["frame_set_size"] == to_use["frame_set_size"] and math.isfinite(row["icc_a1"])}
            to_use["knee_kinematics_caution"] = tables.knee_kinematics_caution(
                to_use, shared_test_frames=study["split_mode"] != "paper")
    csv_tables = {"learning_check": learned, "errors_by_network_and_snapshot": by_network,
                  "errors_by_iteration": by_iteration,
                  "accuracy_by_network_and_snapshot": snapshot_accuracy, "errors_by_landmark": by_landmark,
                  "anova": anova, "accuracy_by_landmark": accuracy, "frame_set_comparisons": comparisons,
                  **{f"posthoc_{split}": table for split, table in pairwise.items()}}
    if kinematic is not None:
        csv_tables.update({"kinematic_errors_by_iteration": kinematic["by_iteration"],
                           "kinematic_errors_by_frame_set": kinematic["by_frame_set"],
                           "fppa_anova": kinematic["anova"], "fppa_agreement": kinematic["fppa_agreement"],
                           "ratio_agreement": kinematic["ratio_agreement"]})
    for name, table in csv_tables.items():
        write_csv_atomic(table, out / f"{name}.csv")
    figure_files = {
        "error_vs_iterations": figures.error_vs_iterations(by_iteration, out / "figure_error_vs_iterations.png"),
        "error_vs_frame_set_size": figures.error_vs_frame_set_size(by_frame_set, chosen,
                                                                   out / "figure_error_vs_frame_set_size.png"),
        "posthoc_p_values": figures.posthoc_p_values(pairwise, out / "figure_posthoc_p_values.png"),
    }
    if kinematic is not None:
        figure_files["fppa_error"] = figures.fppa_error(kinematic["by_iteration"], kinematic["by_frame_set"], chosen,
                                                        out / "figure_fppa_error.png")

    scale = context.get("scale", {"source": "none", "px_per_mm": {}})
    summary = {
        "cohort": layout.cohort,
        "run": layout.run_name,
        "study_config": study,
        "engine": engine_description(study, context["training"]),
        "initial_weights": context["initial_weights"],
        "random_init_warning": context["initial_weights"]["kind"] == "random_init",
        "training": context["training"],
        "labels": context["labels"],
        "extraction": context["extraction"],
        "excluded_frames": context.get("excluded_frames", []),
        "scale": scale,
        "errors": by_network.to_dict(orient="records"),
        "anova": anova_by_split,
        "posthoc": {split: table.to_dict(orient="records") for split, table in pairwise.items()},
        "chosen_iteration": chosen,
        "chosen_iteration_is_plateau": analysis["chosen_iteration_is_plateau"],
        "errors_at_chosen_iteration": by_network[by_network["snapshot_iteration"] == chosen].to_dict(orient="records"),
        "errors_by_landmark_at_chosen_iteration": by_landmark.to_dict(orient="records"),
        "accuracy_at_chosen_iteration": accuracy.to_dict(orient="records"),
        "frame_set_comparisons": comparisons.to_dict(orient="records"),
        "minimum_frames": analysis["minimum_frames"],
        "networks_learned": answer is not None,
        "learning_rule": RULE,
        "learning_check": learned.to_dict(orient="records"),
        # per frame set, as JSON keys are strings: its landmarks left out of the check (no training label)
        "landmarks_without_training_labels": {str(size): names for size, names
                                              in landmarks_without_training_labels(errors).items()},
        "recommendation": answer if answer is not None else tables.no_recommendation(learned, errors),
        "recommendation_made": answer is not None,
        "paper": tables.PAPER,
        "software": context.get("software"),
        "kinematic_landmarks": context.get("kinematic_landmarks"),
        "networks": networks,
        "network_to_use": to_use,
        "analyze_videos": None if to_use is None else
        analyze_videos_call(layout.project_dir / "config.yaml", to_use, study.get("engine", "tensorflow")),
    }
    if kinematic is not None:
        summary.update({
            "kinematic_errors_at_chosen_iteration": kinematic["by_frame_set"].to_dict(orient="records"),
            "test_fppa_error_deg_at_chosen_iteration": kinematic["test_fppa_deg"],
            "kinematic_errors_by_iteration": kinematic["by_iteration"].to_dict(orient="records"),
            "fppa_anova": {row["split"]: row for row in kinematic["anova"].to_dict(orient="records")},
            "fppa_agreement_at_chosen_iteration": kinematic["fppa_agreement"].to_dict(orient="records"),
            "ratio_agreement_at_chosen_iteration": kinematic["ratio_agreement"].to_dict(orient="records"),
        })
    write_json_atomic(layout.summary_file, null_where_not_finite(summary))  # JSON other programs read
    page = _template().render(
        layout=layout, study=study, summary=summary, chosen=chosen, context=context,
        figures={name: inline_png(path) for name, path in figure_files.items()},
        anova=tables.by_split_columns(anova) if len(anova) else None,
        pairwise={split: table for split, table in pairwise.items() if len(table)},
        comparisons=comparisons, accuracy=accuracy, by_network=by_network, snapshot_accuracy=snapshot_accuracy,
        by_landmark=by_landmark, training=pd.DataFrame(context["training"]), learned=learned, learning_rule=RULE,
        networks=pd.DataFrame(networks) if networks else None,
        paper=tables.paper_comparison(errors, analysis, by_network, by_landmark, anova_by_split),
        kinematic=kinematic, **kinematic_landmark_sentences(summary["kinematic_landmarks"], errors),
        kinematic_by_iteration=None if kinematic is None else kinematic["by_iteration"].pivot_table(
            index=["split", "snapshot_iteration"], columns="quantity", values="mean_abs_error").reset_index(),
        kinematic_by_frame_set=None if kinematic is None else kinematic["by_frame_set"].pivot_table(
            index=["split", "frame_set_size"], columns="quantity", values="mean_abs_error").reset_index(),
        fppa_agreement=None if kinematic is None or not len(kinematic["fppa_agreement"]) else
        kinematic["fppa_agreement"],
        ratio_agreement=None if kinematic is None or not len(kinematic["ratio_agreement"]) else
        kinematic["ratio_agreement"],
        kinematic_anova=None if kinematic is None or not len(kinematic["anova"]) else
        tables.by_split_columns(kinematic["anova"]),
        software_sentence=software_sentence(context["software"]) if context.get("software") else None,
        mixed_software=mixed_software_warning(context["software"]["training"]) if context.get("software") else None,
        split_description=SPLIT_MODES[study["split_mode"]],
        unmatched_facts=UNMATCHED_FACTS,  # said as facts, not warnings: analysis-only videos are common
        pck_radii=", ".join(str(r) for r in tables.PCK_RADII_PX), scale_sentence=tables.scale_sentence(scale),
        detection_power=DETECTION_POWER,
        minimum_frames=tables.minimum_frames_sentence(analysis["minimum_frames"]))
    write_text_atomic(out / "index.html", page)
    log.info("report written: %s", out / "index.html")
    return out / "index.html"


def engine_description(study: dict, training: list[dict]) -> str:
    """Which engine and backbone trained the networks, and what an iteration is."""
    if study.get("engine", "tensorflow") != "pytorch":
        return (f"DeepLabCut's TensorFlow engine ({study['network']}, BatchNorm), as in the paper; an iteration is "
                f"one optimizer step on {study['batch_size']} frame(s)")
    backbones = sorted({entry.get("backbone", "?") for entry in training})
    devices = sorted({entry.get("device", "?") for entry in training})
    return (f"DeepLabCut 3's PyTorch engine, backbone {', '.join(backbones)} (timm), trained by posesweep with "
            f"frames, augmentation and targets on the device ({'; '.join(devices)}); an iteration is one optimizer "
            f"step on {study['batch_size']} frame(s), so one DeepLabCut epoch of a frame set with n training frames "
            f"is ceil(n / {study['batch_size']}) iterations")
