"""Frontal-plane knee kinematics from 2D landmarks, and what landmark errors mean for them.

Definitions (image coordinates: x to the right, y down; the camera faces the
participant, so the participant's right side is on the image's left; a cohort filmed
from behind says so in cohort.json, ``"camera_view": "back"``, and the image is read
mirrored):

* **Frontal-plane projection angle (FPPA)** of a knee, in degrees: the angle
  between the thigh line (hip -> knee) and the shank line (knee -> ankle) in the
  image plane, i.e. 180 degrees minus the hip-knee-ankle angle. 0 for a straight
  leg; **positive when the knee lies medial to the hip-ankle line (valgus)**,
  negative when lateral (varus). Willson & Davis, J Orthop Sports Phys Ther
  2008;38(6):353-361 (FPPA in single-leg squats); Munro, Herrington & Carolan,
  J Sport Rehabil 2012;21(1):7-11 (reliability of 2D FPPA). The hip landmark here
  is the ASIS marker, as in the paper's frontal-plane videos.
* **Knee-to-ankle separation ratio**: distance between the knees divided by the
  distance between the ankles (Noyes et al., Am J Sports Med 2005;33(2):197-207,
  "normalized knee separation distance"). Below 1: knees closer than ankles
  (dynamic valgus).
* **Hip-to-ankle width ratio**: distance between the ankles divided by the
  distance between the hips (ASIS markers): stance width relative to pelvis width.

The six landmarks are named by role (``right_hip`` ... ``left_ankle``, the paper's names).
A cohort whose landmarks are named otherwise gets them recognised when each role has
exactly one landmark named only by its side and joint (``RKnee``, ``knee_R``,
``LeftHip``, ``R_ASIS``, ``RKJC``: side right|r|rt|left|l|lt, joint hip|asis|hjc|knee|kjc|ankle|ajc, any case
or separator); ``cohort.json``'s ``kinematic_landmarks`` names them where that is
ambiguous or the names say more (``RKneeLat``): ``landmark_roles``. A camera from the
side sees the sagittal plane, where none of these quantities means anything: cohort.json's
``"camera_view": "side"``, or, where cohort.json names neither the camera nor the landmarks,
labels whose hips overlap across the image (``side_view_suspected``).

``fppa_sd_deg`` propagates independent, isotropic Gaussian label noise (SD per
landmark, px) to the FPPA to first order (delta method): what a given pixel noise
costs in degrees. The synthetic cohort's simulated labelling noise is checked
against it (tests/test_kinematics.py); the report measures FPPA errors directly.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SIDES = ("right", "left")
JOINTS = ("hip", "knee", "ankle")
FPPA_LANDMARKS = tuple(f"{side}_{joint}" for side in SIDES for joint in JOINTS)
QUANTITIES = {  # name -> unit
    "right_fppa_deg": "deg",
    "left_fppa_deg": "deg",
    "knee_ankle_separation_ratio": "ratio",
    "hip_ankle_width_ratio": "ratio",
}


def fppa_deg(hip: np.ndarray, knee: np.ndarray, ankle: np.ndarray, side: str,
             camera_view: str = "front") -> np.ndarray:
    """FPPA of one knee for (..., 2) arrays of image points; valgus positive (see the module docstring). A camera
    behind the participant (``camera_view="back"``) sees the body mirrored: medial is the other way in the image."""
    thigh, shank = np.asarray(knee, float) - hip, np.asarray(ankle, float) - knee
    cross = thigh[..., 0] * shank[..., 1] - thigh[..., 1] * shank[..., 0]
    dot = (thigh * shank).sum(axis=-1)
    deviation = np.degrees(np.arctan2(np.abs(cross), dot))
    # With y down, a right knee (image left) pushed medially (toward +x) turns the shank clockwise from the
    # thigh (cross > 0); for the left knee, mirrored, medial is cross < 0.
    medial = np.sign(cross) if side == "right" else -np.sign(cross)
    return (medial if camera_view == "front" else -medial) * deviation


def _distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.linalg.norm(np.asarray(a, float) - np.asarray(b, float), axis=-1)


def frame_kinematics(points: dict[str, np.ndarray], camera_view: str = "front") -> dict[str, np.ndarray]:
    """Every quantity the landmarks allow, for arrays of frames; ``points`` maps a landmark role to its (n, 2)
    image positions: each side's FPPA where it has hip, knee and ankle, the ratios where both sides have."""
    sides = [side for side in SIDES if all(f"{side}_{joint}" in points for joint in JOINTS)]
    out = {f"{side}_fppa_deg": fppa_deg(points[f"{side}_hip"], points[f"{side}_knee"], points[f"{side}_ankle"], side,
                                        camera_view) for side in sides}
    if len(sides) == len(SIDES):
        ankles = _distance(points["right_ankle"], points["left_ankle"])
        out["knee_ankle_separation_ratio"] = _ratio(_distance(points["right_knee"], points["left_knee"]), ankles)
        out["hip_ankle_width_ratio"] = _ratio(ankles, _distance(points["right_hip"], points["left_hip"]))
    return out


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, undefined (NaN: the frame is left out of that ratio) where the denominator is 0: a
    network that puts both ankles on one pixel has no knee-to-ankle separation ratio, not an infinite one that
    turned every mean and limit of agreement over its frames infinite (with a divide-by-zero warning in the log)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, numerator / denominator, np.nan)


SIDE_WORDS = {"right": ("right", "rt", "r"), "left": ("left", "lt", "l")}
# with the marker names of Vicon's Plug-in Gait, which motion-capture labs carry over to video (RASI, RKNE, RANK),
# and the joint centres biomechanics software names (Visual3D's RHJC, RKJC, RAJC)
JOINT_WORDS = {"hip": ("hip", "asis", "asi", "hjc"), "knee": ("knee", "kne", "kjc"), "ankle": ("ankle", "ank", "ajc")}
DECLARE_HINT = ('name them in cohort.json, e.g. "kinematic_landmarks": {"right_hip": "RASIS", "right_knee": '
                '"RKnee", "right_ankle": "RAnkle", "left_hip": "LASIS", "left_knee": "LKnee", "left_ankle": "LAnkle"}')


SIDE_CAMERA = ("a camera from the side (cohort.json camera_view side) sees the sagittal plane, where frontal-plane "
               "angles mean nothing")
SIDE_VIEW_HIPS_APART = 0.25  # thigh lengths: facing the camera the hips (ASIS) lie about half a thigh length apart


def _hips_apart_per_frame(labels: pd.DataFrame, roles: dict[str, str]) -> pd.Series | None:
    """Per (video, image): the hips' distance across the image in thigh lengths (hip to knee, both sides' mean),
    where both hips and knees are labelled; None where the roles lack a side's hip or knee."""
    if not all(f"{side}_{joint}" in roles for side in SIDES for joint in ("hip", "knee")):
        return None
    xy = labels.drop_duplicates(["video", "image", "landmark"]).pivot(index=["video", "image"], columns="landmark",
                                                                     values=["x_px", "y_px"])
    names = [roles[f"{side}_{joint}"] for side in SIDES for joint in ("hip", "knee")]
    if not all(name in xy["x_px"] for name in names):
        return None
    p = {role: xy[[("x_px", roles[role]), ("y_px", roles[role])]].to_numpy(float)
         for role in ("right_hip", "right_knee", "left_hip", "left_knee")}
    thigh = (_distance(p["right_hip"], p["right_knee"]) + _distance(p["left_hip"], p["left_knee"])) / 2
    apart = pd.Series(np.abs(p["right_hip"][:, 0] - p["left_hip"][:, 0]) / thigh, index=xy.index)
    return apart[np.isfinite(apart)]


def hips_apart_in_thigh_lengths(labels: pd.DataFrame, roles: dict[str, str]) -> float | None:
    """How far apart across the image the two hips are labelled, in thigh lengths (hip to knee, both sides'
    mean): the median over frames with both hips and knees labelled; None without such a frame. About 0.5 from
    the front or behind (pelvis width over thigh length); near 0 from the side, where the hips overlap."""
    apart = _hips_apart_per_frame(labels, roles)
    return float(apart.median()) if apart is not None and len(apart) else None


def videos_looking_filmed_from_the_side(labels: pd.DataFrame, roles: dict[str, str]) -> list[str]:
    """The videos whose hips are labelled under ``SIDE_VIEW_HIPS_APART`` thigh lengths apart (median over their
    frames): where a lab films from the front and the side, which videos are the side camera's."""
    apart = _hips_apart_per_frame(labels, roles)
    if apart is None or not len(apart):
        return []
    by_video = apart.groupby(level="video").median()
    return sorted(str(video) for video, value in by_video.items() if value < SIDE_VIEW_HIPS_APART)


def side_view_suspected(labels: pd.DataFrame, roles: dict[str, str]) -> str | None:
    """Why the labels look filmed from the side, where the knee angles would be sagittal, not frontal; None when
    they do not (or cannot tell: one side only). For a cohort whose cohort.json names neither the camera nor the
    landmarks: names alone (``RKnee``, or even the paper's) do not say where the camera was."""
    apart = hips_apart_in_thigh_lengths(labels, roles)
    if apart is None or apart >= SIDE_VIEW_HIPS_APART:
        return None
    return (f"the hips ({roles['right_hip']}, {roles['left_hip']}) are labelled a median {apart:.2f} thigh lengths "
            f"apart across the image (facing the camera about 0.5; under {SIDE_VIEW_HIPS_APART:g} reads as a side "
            f"view): this looks filmed from the side, where frontal-plane angles mean nothing. If the camera faced "
            f'the participant, say so in cohort.json: "camera_view": "front" (or "side" to confirm this)')


def _role_names(role: str) -> set[str]:
    """Every name that says only a role's side and joint, lower case without separators (rknee, kneer, ...)."""
    side, joint = role.split("_")
    return {a + b for s in SIDE_WORDS[side] for j in JOINT_WORDS[joint] for a, b in ((s, j), (j, s))}


def landmark_roles(landmarks, declared: dict[str, str] | None = None,
                   camera_view: str = "front") -> tuple[dict[str, str] | None, str]:
    """Which of the cohort's landmarks are the hips, knees and ankles (role -> landmark), and how that was found;
    (None, why not) where no side's three can be told. A side with all three is enough (one-legged tasks): the
    other side's FPPA and the two-sided ratios are then left out. ``declared``: cohort.json's
    ``kinematic_landmarks`` (checked when the cohort is loaded); ``camera_view`` "side": none (sagittal plane)."""
    landmarks = list(landmarks)
    if camera_view == "side":
        return None, SIDE_CAMERA
    if declared:
        return dict(declared), "named in cohort.json (kinematic_landmarks)"
    if set(FPPA_LANDMARKS) <= set(landmarks):
        return {role: role for role in FPPA_LANDMARKS}, "the paper's landmark names"
    normalised = {name: "".join(ch for ch in str(name).lower() if ch.isalnum()) for name in landmarks}
    found = {role: [name for name, plain in normalised.items() if plain in _role_names(role)]
             for role in FPPA_LANDMARKS}
    roles: dict[str, str] = {}
    why: dict[str, str] = {}
    for side in SIDES:
        side_roles = [f"{side}_{joint}" for joint in JOINTS]
        missing = [role for role in side_roles if not found[role]]
        several = {role: found[role] for role in side_roles if len(found[role]) > 1}
        if several:
            why[side] = "; ".join(f"{' and '.join(names)} could each be the {role.replace('_', ' ')}"
                                  for role, names in several.items())
        elif missing:
            why[side] = f"no landmark is named as the {', '.join(r.replace('_', ' ') for r in missing)}"
        else:
            roles.update({role: found[role][0] for role in side_roles})
    if not roles:
        numbered = numbered_sides(landmarks)
        return None, (f"{'; '.join(why.values())}: " + (numbered or f"where the cohort has hips, knees and ankles by "
                                                                    f"other names, {DECLARE_HINT}"))
    how = "recognised by their names"
    if why:
        (side, reason), = why.items()
        how += f" ({side} side left out: {reason})"
    return roles, how


def numbered_sides(landmarks) -> str | None:
    """Where each joint is two landmarks numbered 1 and 2 (``hip1``, ``knee2``: DeepLabCut's human model, in
    MPII's order, numbers the right 1), the cohort.json line that declares 1 the right, or None. Not taken as
    such by itself: were it the other way round, every FPPA would change sign; declared, the left/right label
    check then says whether the sides lie right."""
    normalised = {name: "".join(ch for ch in str(name).lower() if ch.isalnum()) for name in landmarks}
    proposal = {}
    for side, digit in (("right", "1"), ("left", "2")):
        for joint in JOINTS:
            named = [name for name, plain in normalised.items()
                     if plain in {word + digit for word in JOINT_WORDS[joint]} | {digit + word for word in
                                                                                 JOINT_WORDS[joint]}]
            if len(named) != 1:
                return None
            proposal[f"{side}_{joint}"] = named[0]
    numbered = ", ".join(proposal[f"right_{joint}"] for joint in JOINTS)
    other = ", ".join(proposal[f"left_{joint}"] for joint in JOINTS)
    line = ", ".join(f'"{role}": "{name}"' for role, name in proposal.items())
    return (f"{numbered} and {other} are numbered, not named by side; where 1 is the participant's right, as in "
            f"DeepLabCut's human model (MPII's order), say so in cohort.json: \"kinematic_landmarks\": {{{line}}} "
            f"(the left/right label check then tells whether the sides lie right)")


def roles_text(roles: dict[str, str]) -> str:
    """The landmarks of ``roles`` for a log line: ``RKnee (right_knee), ...``; the paper's names once."""
    return ", ".join(name if name == role else f"{name} ({role})" for role, name in roles.items())


def kinematic_errors(errors: pd.DataFrame, roles: dict[str, str] | None = None,
                     camera_view: str = "front", back_view_videos: list[str] | tuple[str, ...] = ()) -> pd.DataFrame:
    """Kinematics from predicted and from labelled landmarks, per frame, network, snapshot and split.

    One row per (frame set, snapshot, split, frame, quantity) with ``labelled``, ``predicted``, ``error``
    (predicted - labelled, in the quantity's unit) and ``abs_error``. A frame missing a label a quantity needs is
    left out of that quantity only (an occluded left ankle does not cost the right knee's FPPA).
    ``roles``: which landmark is which (``landmark_roles``); by default the paper's names. ``camera_view``: the
    cohort's (cohort.json), which decides the FPPA's sign; ``back_view_videos``: those of a cohort filmed from the
    front that a camera behind the participant filmed (cohort.json), read as ``back``.
    """
    back = errors["video"].astype(str).isin(list(back_view_videos))
    if back.any():
        parts = [kinematic_errors(errors[~back], roles, camera_view), kinematic_errors(errors[back], roles, "back")]
        return pd.concat([part for part in parts if len(part)] or parts[:1], ignore_index=True)
    if roles:
        wanted = {landmark: role for role, landmark in roles.items()}
        errors = errors[errors["landmark"].isin(wanted)].assign(landmark=lambda t: t["landmark"].map(wanted))
    keys = ["frame_set_size", "snapshot_iteration", "split", "video", "image"]
    wide = errors.pivot_table(index=keys, columns="landmark",
                              values=["x_label_px", "y_label_px", "x_pred_px", "y_pred_px"], aggfunc="first")
    columns = {role: [(f"{c}_{k}_px", role) for c in ("x", "y") for k in ("label", "pred")] for role in FPPA_LANDMARKS
               if role in (roles or dict.fromkeys(FPPA_LANDMARKS))}
    # a landmark labelled nowhere has no column (pivot_table drops it): its side has no quantity
    present = [role for role, needed in columns.items() if all(col in wide.columns for col in needed)]

    def points(kind: str) -> dict[str, np.ndarray]:
        return {lm: np.column_stack([wide[(f"x_{kind}_px", lm)], wide[(f"y_{kind}_px", lm)]]) for lm in present}

    labelled, predicted = frame_kinematics(points("label"), camera_view), frame_kinematics(points("pred"), camera_view)
    index = wide.index.to_frame(index=False)
    parts = []
    for quantity, unit in QUANTITIES.items():
        if quantity not in labelled:  # a one-sided cohort: the other knee and the two-sided ratios
            continue
        part = index.assign(quantity=quantity, unit=unit, labelled=labelled[quantity], predicted=predicted[quantity])
        part = part.dropna(subset=["labelled", "predicted"])  # frames missing a label this quantity needs
        part["error"] = part["predicted"] - part["labelled"]
        parts.append(part)
    if not parts or not sum(len(part) for part in parts):
        return pd.DataFrame(columns=[*keys, "quantity", "unit", "labelled", "predicted", "error", "abs_error"])
    table = pd.concat([part for part in parts if len(part)], ignore_index=True)
    table["abs_error"] = table["error"].abs()
    return table


def fppa_sd_deg(hip: np.ndarray, knee: np.ndarray, ankle: np.ndarray, side: str,
                sd_px: tuple[float, float, float], step_px: float = 1e-3) -> np.ndarray:
    """First-order SD (deg) of the FPPA when each of hip, knee and ankle carries independent isotropic Gaussian
    noise of ``sd_px`` = (hip, knee, ankle) SD in px: sqrt(sum over coordinates of (dFPPA/dcoord * sd)^2)."""
    joints = [np.asarray(p, float) for p in (hip, knee, ankle)]
    variance = np.zeros(np.shape(joints[0])[:-1])
    for j, sd in enumerate(sd_px):
        for axis in (0, 1):
            shifted = [p.copy() for p in joints]
            shifted[j][..., axis] += step_px
            derivative = (fppa_deg(*shifted, side) - fppa_deg(*joints, side)) / step_px
            variance = variance + (derivative * sd) ** 2
    return np.sqrt(variance)
