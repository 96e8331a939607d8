"""A cohort folder, and the DeepLabCut project a run builds from it.

A cohort is ``<data root>/cohorts/<name>/`` in one of three kinds:

* ``videos``: ``videos/*`` (``VIDEO_SUFFIXES``), labeled by the lab (scorer ``labeler``)
  in the run's project or in ``labeled-data/<video stem>/``; an optional
  ``cohort.json`` may name other ``bodyparts``/``scorer`` and where the landing
  square is in the image (``posesweep.scale``);
* ``synthetic``: the same plus ``cohort.json`` and per-video ground truth
  (``posesweep synth``), labeled by the simulated labeler;
* ``dlc_project``: an existing DeepLabCut project (``config.yaml`` and
  ``labeled-data/<video>/CollectedData_<scorer>.h5|csv``, any bodyparts and
  scorer, ``project_path`` as DeepLabCut ships it); its frames are already
  extracted, so each labeled-data folder stands for its video.

The run gets its own DeepLabCut project (``config.yaml``, ``labeled-data/``) so
the lab can open any run in DeepLabCut's GUI.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import re
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from .config import DLC_NET_TYPE, FRONTAL_BODYPARTS, StudyConfig
from .errors import CohortError, LabelFileError
from .layout import read_lab_text, visible_entries, write_text_atomic

log = logging.getLogger(__name__)

# What DeepLabCut reads: its SUPPORTED_VIDEOS (less headerless .yuv), and the containers labs' cameras write
# beside them, which OpenCV and ffmpeg decode and DeepLabCut's analyze_videos takes as a file's path (as the
# report's line gives it): camcorders' AVCHD .mts/.m2ts and MPEG-TS, phones' .m4v/.3gp, .webm, .wmv.
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".mpeg", ".mpg", ".mpv", ".flv", ".qt",
                  ".m4v", ".mts", ".m2ts", ".ts", ".3gp", ".webm", ".wmv")
COHORT_FILE = "cohort.json"
HUMAN_SCORER = "labeler"


@dataclass(frozen=True)
class Cohort:
    name: str
    root: Path
    videos: tuple[Path, ...]  # video files; for an imported project, its labeled-data folders
    bodyparts: tuple[str, ...]
    scorer: str
    kind: str  # "videos" | "synthetic" | "dlc_project"
    participant_pattern: str | None = None  # cohort.json: how a video's name names its participant
    kinematic_landmarks: dict[str, str] | None = None  # cohort.json: role (right_knee ...) -> the cohort's landmark
    camera_view: str = "front"  # cohort.json: "front" (facing the participant, the paper's), "back" or "side"
    camera_view_declared: bool = False  # whether cohort.json says it (else the labels may show a side view)
    side_view_pattern: str | None = None  # cohort.json side_view_videos: the videos a side camera filmed
    back_view_pattern: str | None = None  # cohort.json back_view_videos: the videos a camera behind them filmed
    renamed_landmarks: dict[str, str] | None = None  # cohort.json: a landmark's earlier name -> its name now

    def side_view_videos(self, video_stems) -> list[str]:
        """Which of ``video_stems`` a side camera filmed (cohort.json ``side_view_videos``): no frontal-plane checks
        or knee angles from them; their frames still train and score the networks."""
        if self.camera_view == "side":
            return sorted(set(map(str, video_stems)))
        if not self.side_view_pattern:
            return []
        return sorted({str(stem) for stem in video_stems if re.search(self.side_view_pattern, str(stem))})

    def back_view_videos(self, video_stems) -> list[str]:
        """Which of ``video_stems`` a camera behind the participant filmed where the others' camera faces them
        (cohort.json ``back_view_videos``): their left/right check and knee angles read the image mirrored."""
        if not self.back_view_pattern:
            return []
        return sorted({str(stem) for stem in video_stems if re.search(self.back_view_pattern, str(stem))})

    def frontal_camera_view(self, video_stems) -> str:
        """The view the frontal-plane checks and knee angles read ``video_stems`` with: the cohort's, or ``side``
        where every one of them is a side camera's (nothing frontal left to read)."""
        stems = set(map(str, video_stems))
        return "side" if len(self.side_view_videos(stems)) == len(stems) else self.camera_view

    def participant_of(self, video_stem: str) -> str:
        """The participant a video shows: the pattern's first group (or whole match) in its name, else the name."""
        if not self.participant_pattern:
            return video_stem
        match = re.search(self.participant_pattern, video_stem)
        return match.group(1) if match.re.groups else match.group(0)

    @property
    def synthetic(self) -> bool:
        return self.kind == "synthetic"

    @property
    def frames_extracted(self) -> bool:
        return self.kind == "dlc_project"

    @property
    def landmarks_file(self) -> Path:
        """Where the lab lists the cohort's landmarks (``bodyparts``) and scorer: an imported project's config.yaml,
        else cohort.json."""
        return self.root / ("config.yaml" if self.frames_extracted else COHORT_FILE)


def label_files_by_scorer(folder: Path) -> dict[str, Path]:
    """The DeepLabCut label files in one labeled-data folder, by scorer (``CollectedData_<scorer>.h5|csv``)."""
    found: dict[str, Path] = {}
    for path in sorted(Path(folder).glob("CollectedData_*"), key=lambda p: (p.stem, p.suffix.lower() != ".h5")):
        if path.suffix.lower() in (".h5", ".csv"):  # the .h5 where DeepLabCut wrote both
            found.setdefault(path.stem[len("CollectedData_"):], path)
    return found


def read_project_config(cohort_dir: Path) -> dict:
    """An imported DeepLabCut project's ``config.yaml``, as a mapping."""
    config_file = Path(cohort_dir) / "config.yaml"
    try:
        config = yaml.safe_load(read_lab_text(config_file))
    except yaml.YAMLError as error:
        raise CohortError("the project's config.yaml is not valid YAML", file=config_file,
                          found=" ".join(str(error).split()), fix=_yaml_fix(error)) from None
    if not isinstance(config, dict):
        raise CohortError("the project's config.yaml does not hold DeepLabCut's settings", file=config_file,
                          found=type(config).__name__, allowed="a mapping with bodyparts:, scorer:, video_sets:",
                          fix="copy the project's own config.yaml, as DeepLabCut wrote it")
    return config


def _yaml_fix(error: yaml.YAMLError) -> str:
    """What to do about a config.yaml YAML cannot read: the two slips a lab's hand edit makes most, said as such."""
    mark = getattr(error, "problem_mark", None)
    line = f"line {mark.line + 1}" if mark is not None else "the line named"
    text = str(error)
    if "escape" in text and "double-quoted" in text:
        return (f"on {line}, a backslash inside double quotes starts an escape in YAML (\\U, \\s ...): write a "
                f"Windows path in single quotes ('C:\\Users\\...') or without quotes, as DeepLabCut writes it")
    if "'\\t'" in text:
        return f"YAML indents with spaces only: replace the tab on {line} with spaces"
    return (f"correct {line} (DeepLabCut writes this file; a new project's config.yaml shows the expected "
            f"form)")


def _from_the_label_files(key: str, labeled_data: Path) -> str:
    """The ``scorer`` or ``bodyparts`` a project's label files give, as config.yaml's line, where they give one."""
    files = {scorer: path for folder in visible_entries(labeled_data) if folder.is_dir()
             for scorer, path in label_files_by_scorer(folder).items()} if labeled_data.is_dir() else {}
    if not files:
        return ""
    if key == "scorer":
        scorer, path = next(iter(files.items())) if len(files) == 1 else (None, None)
        return (f": `scorer: {scorer}`, the name in its label files ({path.name})" if scorer else
                f" (its label files name {', '.join(sorted(files))})")
    from .labels import read_collected_data

    try:
        landmarks = read_collected_data(next(iter(files.values()))).columns.get_level_values("bodyparts")
    except (LabelFileError, KeyError):
        return ""
    return ": the landmarks its label files hold, in their order: bodyparts: [" + \
        ", ".join(dict.fromkeys(str(name) for name in landmarks)) + "]"


def project_settings_set_aside(config: dict, engine: str, network: str, train_fraction: float) -> list[str]:
    """The training settings of an imported project's ``config.yaml`` that the study's own parameters replace, as
    ``"engine: pytorch (this run: tensorflow)"``: a lab's DeepLabCut 3 project trains with the paper's engine
    unless the run says otherwise, and the log should say so before hours of training."""
    fractions = config.get("TrainingFraction")
    found = [("engine", config.get("engine") or "tensorflow", engine),  # DeepLabCut 2's projects have none: TF
             ("default_net_type", config.get("default_net_type"), network),
             ("TrainingFraction", fractions[0] if isinstance(fractions, list) and len(fractions) == 1 else fractions,
              train_fraction)]
    return [f"{key}: {value} (this run: {used})" for key, value, used in found
            if value not in (None, []) and str(value) != str(used)]


def _load_dlc_project(cohort_dir: Path) -> Cohort:
    config_file = cohort_dir / "config.yaml"
    config = read_project_config(cohort_dir)
    for key in ("bodyparts", "scorer"):
        if not config.get(key):
            raise CohortError(f"the project's config.yaml has no {key!r} entry", file=config_file,
                              found=f"{key}: {config.get(key)!r}", fix=f"add the project's {key} to config.yaml "
                              f"(as DeepLabCut wrote it when the project was created)"
                              f"{_from_the_label_files(key, cohort_dir / 'labeled-data')}")
    if config.get("multianimalproject"):  # its bodyparts: MULTI!, its landmarks under two other names
        config = {**config, "bodyparts": multi_animal_landmarks(config_file, config)}
    scorer = str(config["scorer"])
    labeled_data = cohort_dir / "labeled-data"
    by_folder = {p: label_files_by_scorer(p) for p in visible_entries(labeled_data) if p.is_dir()}
    folders = tuple(p for p, files in by_folder.items() if scorer in files)
    if not folders:
        others = sorted({name for files in by_folder.values() for name in files})
        predicted = [folder.name for folder in by_folder if machine_label_files(folder)]
        raise CohortError(
            f"no labels by the project's scorer {scorer!r}", file=config_file,
            found=f"scorer: {scorer}; label files of " + (", ".join(repr(o) for o in others) if others else
                                                          f"no scorer in {labeled_data}/<video>/") +
                  (f"; machinelabels files in {', '.join(predicted)}" if predicted else ""),
            allowed=f"{labeled_data}/<video>/CollectedData_{scorer}.h5 or .csv",
            fix=(f"set scorer: in config.yaml to the name in the label files' names ({others[0]!r} for "
                 f"CollectedData_{others[0]}.h5)" if others else
                 f"the machinelabels files are {MACHINE_LABELS_FIX.format(scorer=scorer)}" if predicted else
                 "label the frames with DeepLabCut (its GUI saves CollectedData_<scorer>.h5 beside them)"))
    manifest = read_cohort_manifest(cohort_dir) or {}
    bodyparts = checked_bodyparts(config_file, config["bodyparts"])
    return Cohort(cohort_dir.name, cohort_dir, folders, bodyparts, scorer, "dlc_project",
                  participant_pattern(cohort_dir, manifest, [f.name for f in folders]),
                  declared_kinematic_landmarks(cohort_dir, manifest, bodyparts),
                  **camera_settings(cohort_dir, manifest, [f.name for f in folders]),
                  renamed_landmarks=declared_renames(cohort_dir, manifest, bodyparts))


def multi_animal_landmarks(config_file: Path, config: dict) -> list[str]:
    """The landmarks of a multi-animal DeepLabCut project (``multianimalproject: true``): its
    ``multianimalbodyparts``, then its ``uniquebodyparts``, as its label files hold them. Such a project of one
    participant per video (a lab that chose multi-animal for DeepLabCut's tracker, or by chance, and labelled one
    individual) is studied as a single-animal one; its label files are read so (``labels.single_animal``), and
    ``prepare_run``'s log says so.
    Before, every multi-animal project was refused, and the lab told to build a single-animal one by hand."""
    listed = {key: config.get(key) or [] for key in ("multianimalbodyparts", "uniquebodyparts")}
    bad = {key: value for key, value in listed.items() if not isinstance(value, list)}
    if bad or not any(listed.values()):
        raise CohortError("the multi-animal project's config.yaml lists no landmarks", file=config_file,
                          found="; ".join(f"{key}: {value!r}" for key, value in listed.items()),
                          allowed="multianimalbodyparts (and uniquebodyparts) as lists of landmark names",
                          fix="copy the project's own config.yaml, as DeepLabCut wrote it")
    return listed["multianimalbodyparts"] + listed["uniquebodyparts"]


CAMERA_VIEWS = {"front": "the camera faces the participant (the paper's set-up)",
                "back": "the camera is behind the participant",
                "side": "the camera looks at the participant from the side (no frontal-plane knee angles or checks)"}


def camera_view_of(cohort_dir: Path, manifest: dict) -> str:
    """cohort.json's ``camera_view``: which way the camera looks at the participant (the left/right label check and
    the FPPA's sign depend on it; a side camera gives no frontal-plane angles or checks at all)."""
    view = manifest.get("camera_view", "front")
    if view not in CAMERA_VIEWS:
        raise CohortError("camera_view is not one of the views posesweep knows", file=cohort_dir / COHORT_FILE,
                          found=repr(view), allowed="; ".join(f'"{k}": {v}' for k, v in CAMERA_VIEWS.items()),
                          fix='set "camera_view" to "front", "back" or "side", or remove it (front)')
    return view


def checked_bodyparts(file: Path, value: Any) -> tuple[str, ...]:
    """A cohort's landmarks as ``file`` (cohort.json, or an imported project's config.yaml) lists them: a list of
    names, each once. A name listed twice passed validation (its labels were read once) and then failed
    ``prepare_training`` in DeepLabCut's own project check, as a traceback; a text ("left_knee, right_knee") was
    read letter by letter."""
    example = '["left_knee", "right_knee"]' if file.name == COHORT_FILE else "- left_knee / - right_knee, one a line"
    if not isinstance(value, (list, tuple)) or not value:
        raise CohortError("bodyparts is not a list of landmark names", file=file, found=f"bodyparts: {value!r}",
                          allowed=f"a list of the landmarks' names, e.g. {example}",
                          fix=f"write the landmarks as a list in {file.name}")
    names = tuple(str(name) if name is not None else "" for name in value)
    blank = [i + 1 for i, name in enumerate(names) if not name.strip()]
    twice = sorted({name for name in names if name.strip() and names.count(name) > 1}, key=names.index)
    if blank or twice:
        found = [f"{name} at places " + " and ".join(str(i + 1) for i, n in enumerate(names) if n == name)
                 for name in twice] + [f"an empty name at place {i}" for i in blank]
        raise CohortError("bodyparts names a landmark twice" if twice else "bodyparts has an empty name", file=file,
                          found="; ".join(found), allowed="each landmark once, by a name (DeepLabCut refuses a "
                                                          "project listing one twice)",
                          fix=(f"keep one of each in {file.name}'s bodyparts (a landmark meant as another: give "
                               f"it its own name, and label it)" if twice else
                               f"write the landmark's name there, or remove the empty entry from {file.name}"))
    return names


def declared_kinematic_landmarks(cohort_dir: Path, manifest: dict, bodyparts: tuple[str, ...]) -> dict | None:
    """cohort.json's ``kinematic_landmarks``: which of the cohort's landmarks are the hips, knees and ankles
    (role -> landmark), checked here: a typo would silently drop the knee angles from the report."""
    from .kinematics import DECLARE_HINT, FPPA_LANDMARKS, JOINTS, SIDES

    file = cohort_dir / COHORT_FILE
    allowed = f"each of {', '.join(FPPA_LANDMARKS)} (or one side's three, for a one-legged task) mapped to a " \
              f"different one of the landmarks {', '.join(map(str, bodyparts))}"
    declared = _mapping_setting(file, manifest, "kinematic_landmarks", "each role to a landmark", allowed,
                                DECLARE_HINT)
    if declared is None:
        return None
    named_sides = [side for side in SIDES if any(f"{side}_{joint}" in declared for joint in JOINTS)]
    problems = [f"no {role}" for side in named_sides or SIDES for role in (f"{side}_{j}" for j in JOINTS)
                if role not in declared]
    problems += [f"{key!r} is not a role" for key in declared if key not in FPPA_LANDMARKS]
    problems += [f"{role}: {name!r} is not one of the landmarks" for role, name in declared.items()
                 if role in FPPA_LANDMARKS and name not in bodyparts]
    names = [name for role, name in declared.items() if role in FPPA_LANDMARKS]
    problems += [f"{name!r} is named for several roles" for name in sorted(set(map(str, names)))
                 if names.count(name) > 1]
    if problems:
        raise CohortError("kinematic_landmarks does not name the hip, knee and ankle the knee angles need",
                          file=file, found="; ".join(problems), allowed=allowed,
                          fix="correct the names (they must be spelled as in the label files), or remove "
                              "kinematic_landmarks (the report then has no knee angles unless it recognises them)")
    return {role: declared[role] for role in FPPA_LANDMARKS if role in declared}


def _mapping_setting(file: Path, manifest: dict, key: str, maps: str, allowed: str, fix: str) -> dict | None:
    """cohort.json's mapping of names under ``key`` (None where it is not set); one paragraph where it is not a
    mapping of names to names."""
    declared = manifest.get(key)
    if declared is not None and not (isinstance(declared, dict) and
                                     all(isinstance(v, str) for v in declared.values())):
        raise CohortError(f"{key} must map {maps}", file=file, found=repr(declared), allowed=allowed, fix=fix)
    return declared


RENAME_EXAMPLE = '"renamed_landmarks": {"knee_r": "right_knee"} (labelled as knee_r before, right_knee now)'


def declared_renames(cohort_dir: Path, manifest: dict, bodyparts: tuple[str, ...]) -> dict[str, str] | None:
    """cohort.json's ``renamed_landmarks``: earlier name -> name in ``bodyparts``, for a landmark the lab renamed
    between two runs of a growing cohort, so that its labels are carried over (``carried_labels``), not labelled
    again. Checked here: a name now that is not a landmark, or an earlier name still among them, is a typo."""
    file = cohort_dir / COHORT_FILE
    allowed = f"earlier names mapped each to a different one of the landmarks {', '.join(map(str, bodyparts))}, " \
              f"as {RENAME_EXAMPLE}"
    declared = _mapping_setting(file, manifest, "renamed_landmarks", "each earlier name to the name now", allowed,
                                "write it as a mapping of names")
    if declared is None:
        return None
    problems = [f"{now!r} is not one of the landmarks" for now in declared.values() if now not in bodyparts]
    problems += [f"{before!r} is still one of the landmarks" for before in declared if before in bodyparts]
    now = list(declared.values())
    problems += [f"{name!r} is the new name of several" for name in sorted(set(now)) if now.count(name) > 1]
    if problems:
        raise CohortError("renamed_landmarks does not map earlier names to the landmarks there are now", file=file,
                          found="; ".join(problems), allowed=allowed,
                          fix="correct the names (spelled as in the label files and bodyparts), or remove "
                              "renamed_landmarks (the renamed landmark is then labelled again)")
    return dict(declared)


def _manifest_pattern(cohort_dir: Path, manifest: dict, key: str, example: str,
                      without_it: str) -> re.Pattern | None:
    """cohort.json's regular expression under ``key``, compiled; one paragraph for a malformed one."""
    pattern = manifest.get(key)
    if pattern is None:
        return None
    file = cohort_dir / COHORT_FILE
    try:
        compiled = re.compile(pattern) if isinstance(pattern, str) and pattern else None
    except re.error as error:
        raise CohortError(f"{key} is not a regular expression", file=file,
                          found=f"{pattern!r}: {error}", allowed=example, fix="correct the pattern") from None
    if compiled is None:
        raise CohortError(f"{key} must be a non-empty string", file=file, found=repr(pattern),
                          allowed=example, fix=f"correct the pattern, or remove it ({without_it})")
    return compiled


PARTICIPANT_PATTERN_EXAMPLE = '"participant_pattern": "^(P\\\\d+)_" (P07_trial2 -> P07)'  # as JSON spells it


def participant_pattern(cohort_dir: Path, manifest: dict, video_stems: list[str]) -> str | None:
    """cohort.json's ``participant_pattern`` (a regular expression; its first group, or its match, in a video's
    name is the participant), checked against every video: a typo would silently make each video a person."""
    example = PARTICIPANT_PATTERN_EXAMPLE
    compiled = _manifest_pattern(cohort_dir, manifest, "participant_pattern", example,
                                 "each video is then a participant")
    if compiled is None:
        return None
    unmatched = [stem for stem in video_stems
                 if not (m := compiled.search(stem)) or not (m.group(1) if compiled.groups else m.group(0))]
    if unmatched:
        raise CohortError("participant_pattern does not name a participant in every video's name",
                          file=cohort_dir / COHORT_FILE, found=f"{compiled.pattern!r} finds nothing in "
                          f"{_some(unmatched)}", allowed=example, fix="change the pattern so that it matches every "
                                                                      "video's name, or rename the videos named")
    return compiled.pattern


def videos_sharing_a_name(video_stems: list[str]) -> dict[str, list[str]]:
    """Videos whose names are the same up to their last part (``P07_trial1``, ``P07_trial2`` -> ``P07``): likely one
    participant's trials or cameras, where no ``participant_pattern`` says whose each video is."""
    by_prefix: dict[str, list[str]] = {}
    for stem in sorted(map(str, video_stems)):
        prefix = re.split(r"[_\-\s.]+(?=[^_\-\s.]*$)", stem, maxsplit=1)[0]
        if prefix != stem:
            by_prefix.setdefault(prefix, []).append(stem)
    return {prefix: stems for prefix, stems in by_prefix.items() if len(stems) > 1}


def camera_settings(cohort_dir: Path, manifest: dict, video_stems: list[str]) -> dict:
    """The ``Cohort`` fields cohort.json's camera settings give: the view, whether it was said, and which videos
    a side camera or a camera behind the participant filmed."""
    view = camera_view_of(cohort_dir, manifest)
    side, back = (side_view_pattern(cohort_dir, manifest, video_stems),
                  back_view_pattern(cohort_dir, manifest, video_stems, view))
    if side and back:
        both = [stem for stem in video_stems if re.search(side, stem) and re.search(back, stem)]
        if both:
            raise CohortError("side_view_videos and back_view_videos both name a video", file=cohort_dir / COHORT_FILE,
                              found=f"{side!r} and {back!r} both find {_some(sorted(both))}",
                              allowed="each video filmed by one camera: from the side, from behind, or (neither) "
                                      "from the front", fix="change the patterns so that each names its own camera's "
                                                            "videos")
    return {"camera_view": view, "camera_view_declared": any(key in manifest for key in CAMERA_KEYS),
            "side_view_pattern": side, "back_view_pattern": back}


def back_view_pattern(cohort_dir: Path, manifest: dict, video_stems: list[str], camera_view: str) -> str | None:
    """cohort.json's ``back_view_videos``: a regular expression found in the names of the videos a camera behind
    the participant filmed, where the others' camera faces them (a lab filming each landing from both sides).
    Checked against the videos (one that finds none is a typo) and the cohort's ``camera_view``."""
    example = '"back_view_videos": "_back$" (P07_back is filmed from behind, P07_front from the front)'
    compiled = _manifest_pattern(cohort_dir, manifest, "back_view_videos", example, "every video from the front")
    if compiled is None:
        return None
    if camera_view != "front":
        raise CohortError("back_view_videos names the videos filmed from behind in a cohort filmed from the front, "
                          f"and camera_view says {camera_view}", file=cohort_dir / COHORT_FILE,
                          found=f'"camera_view": "{camera_view}" and "back_view_videos": {compiled.pattern!r}',
                          allowed=f'one of them: "camera_view": "back" where every video is filmed from behind, '
                                  f"else {example}", fix="remove one of the two settings")
    if not any(compiled.search(stem) for stem in video_stems):
        raise CohortError("back_view_videos finds no video", file=cohort_dir / COHORT_FILE,
                          found=f"{compiled.pattern!r} in none of {_some(sorted(video_stems))}", allowed=example,
                          fix="change the pattern so that it matches the videos filmed from behind, or remove it")
    return compiled.pattern


def side_view_pattern(cohort_dir: Path, manifest: dict, video_stems: list[str]) -> str | None:
    """cohort.json's ``side_view_videos``: a regular expression found in the names of the videos a side camera
    filmed, where a lab films each participant from the front and the side. Checked against the videos: one that
    finds none is a typo, and the side videos would fail every frontal-plane check."""
    example = '"side_view_videos": "_side$" (P07_side is filmed from the side, P07_front from the front)'
    compiled = _manifest_pattern(cohort_dir, manifest, "side_view_videos", example, "every video from the front")
    if compiled is None:
        return None
    if not any(compiled.search(stem) for stem in video_stems):
        raise CohortError("side_view_videos finds no video", file=cohort_dir / COHORT_FILE,
                          found=f"{compiled.pattern!r} in none of {_some(sorted(video_stems))}", allowed=example,
                          fix="change the pattern so that it matches the side camera's videos' names, or remove it")
    return compiled.pattern


def read_cohort_manifest(cohort_dir: Path) -> dict | None:
    """The cohort's ``cohort.json`` (bodyparts, scorer, landing square; ``posesweep synth`` writes one), if any."""
    path = Path(cohort_dir) / COHORT_FILE
    if not path.exists():
        return None
    text = read_lab_text(path)
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as error:
        raise CohortError("cohort.json is not valid JSON", file=path, found=str(error),
                          fix=f"{json_mistake(text, error.pos)}correct the file (or remove it: it is optional)"
                          ) from None
    if not isinstance(manifest, dict):
        raise CohortError("cohort.json must hold a JSON object", file=path, found=type(manifest).__name__,
                          allowed='{"landing_square": ..., "bodyparts": [...], "scorer": "..."}',
                          fix="correct the file (or remove it: it is optional)")
    unknown = [key for key in manifest if key not in MANIFEST_KEYS and not _is_note(key)]
    if unknown:  # a misspelt setting would be ignored without a word (participant_pattern: people split in two)
        def guess(key: str) -> str:
            close = difflib.get_close_matches(key.lower().replace("-", "_").replace(" ", "_"), MANIFEST_KEYS, n=1)
            return f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else "")

        raise CohortError("cohort.json has a setting posesweep does not know", file=path,
                          found=", ".join(guess(key) for key in unknown),
                          allowed=", ".join(sorted(MANIFEST_KEYS)) + '; notes under "notes", "description" or a '
                                                                     'name starting with "_"',
                          fix="correct the setting's name (see the README's \"Your own cohort\"), or remove it")
    return manifest


# Every setting a cohort.json may hold (``posesweep synth`` writes the last four), and where a lab keeps notes.
MANIFEST_KEYS = ("bodyparts", "scorer", "landing_square", "landing_square_by_video", "participant_pattern",
                 "kinematic_landmarks", "camera_view", "side_view_videos", "back_view_videos", "renamed_landmarks",
                 "kind", "options", "label_noise_sd_px", "participants")
NOTE_KEYS = ("notes", "note", "description", "comment", "comments")
CAMERA_KEYS = ("camera_view", "side_view_videos", "back_view_videos")  # any of them: the camera is declared


def json_mistake(text: str, position: int) -> str:
    """What a person editing JSON by hand most likely did at ``position``, where the parser stopped, as the start
    of the fix; empty where it is none of those."""
    at = text[position:position + 2]
    if text[:position].rstrip().endswith(",") and at[:1] in ("}", "]"):
        return "remove the comma after the last entry there (JSON allows none); "
    if at[:1] == "'":
        return "write names and texts in double quotes (JSON allows no single quotes); "
    if at in ("//", "/*") or at[:1] == "#":
        return ("take the comment out (JSON has none; keep a note as a setting of its own, e.g. \"notes\": "
                "\"...\"); ")
    return ""


def _is_note(key: str) -> bool:
    return key.startswith("_") or key.lower() in NOTE_KEYS


def load_cohort(cohort_dir: Path) -> Cohort:
    cohort_dir = Path(cohort_dir)
    if not cohort_dir.is_dir():
        others = sorted(p.name for p in cohort_dir.parent.iterdir() if p.is_dir()) if cohort_dir.parent.is_dir() \
            else []
        raise CohortError(f"there is no cohort folder {cohort_dir.name!r}", file=cohort_dir,
                          found=f"cohorts there: {', '.join(others)}" if others else "no cohort folders there",
                          fix="trigger the run with the name of a folder under the cohorts folder, or put the "
                              "cohort's videos in <that folder>/videos/")
    if (cohort_dir / "config.yaml").is_file() and (cohort_dir / "labeled-data").is_dir():
        return _load_dlc_project(cohort_dir)
    videos = _cohort_videos(cohort_dir)
    by_stem: dict[str, list[str]] = {}
    for video in videos:
        by_stem.setdefault(video.stem, []).append(video.name)
    shared = {stem: names for stem, names in by_stem.items() if len(names) > 1}
    if shared:
        raise CohortError("several videos share a name (a participant's frames and labels are found by the "
                          "video's name without its extension)", file=cohort_dir / "videos",
                          found="; ".join(" and ".join(names) for names in shared.values()),
                          fix="keep one video per name: remove or rename the others")
    manifest = read_cohort_manifest(cohort_dir)
    synthetic = bool(manifest and manifest.get("kind") == "synthetic")
    manifest = manifest or {}  # a lab's cohort.json may only say where the landing square is
    bodyparts = checked_bodyparts(cohort_dir / COHORT_FILE, manifest["bodyparts"]) if "bodyparts" in manifest \
        else FRONTAL_BODYPARTS
    scorer = manifest.get("scorer", HUMAN_SCORER)
    return Cohort(cohort_dir.name, cohort_dir, videos, bodyparts, scorer, "synthetic" if synthetic else "videos",
                  participant_pattern(cohort_dir, manifest, [v.stem for v in videos]),
                  declared_kinematic_landmarks(cohort_dir, manifest, bodyparts),
                  **camera_settings(cohort_dir, manifest, [v.stem for v in videos]),
                  renamed_landmarks=declared_renames(cohort_dir, manifest, bodyparts))


def _cohort_videos(cohort_dir: Path) -> tuple[Path, ...]:
    """The cohort's videos (``videos/*`` with a suffix DeepLabCut reads), or one paragraph on what is there
    instead: videos beside ``videos/`` rather than in it, in subfolders, of another format, half a project."""
    videos_dir = cohort_dir / "videos"
    # a link into a share this machine has not mounted (or DeepLabCut's own links, copied without their videos)
    # would otherwise drop its participant without a word
    dangling = sorted(p for p in visible_entries(videos_dir) if p.is_symlink() and not p.exists()
                      and p.suffix.lower() in VIDEO_SUFFIXES)
    if dangling:
        raise CohortError(f"{len(dangling)} video link(s) in videos/ lead to no file on this machine",
                          file=videos_dir, found=_some([f"{p.name} -> {os.readlink(p)}" for p in dangling]),
                          allowed="videos, or links to videos this machine can read",
                          fix="mount the share the links point into on every Airflow worker and training pod, "
                              "or copy the videos themselves into videos/ (cp -L)")
    videos = tuple(p for p in visible_entries(videos_dir) if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
    if videos:
        return videos
    allowed = f"one video per participant in {videos_dir}, as {' '.join(VIDEO_SUFFIXES)}"
    loose = sorted(p.name for p in visible_entries(cohort_dir) if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
    if loose:
        raise CohortError("the videos are not in the cohort's videos/ folder", file=cohort_dir,
                          found=f"{len(loose)} video(s) in the cohort folder itself: {_some(loose)}", allowed=allowed,
                          fix=f"move them into {videos_dir}/")
    if (cohort_dir / "config.yaml").is_file() or (cohort_dir / "labeled-data").is_dir():
        present, missing = ("config.yaml", "labeled-data/") if (cohort_dir / "config.yaml").is_file() \
            else ("labeled-data/", "config.yaml")
        cased = _named_in_another_case(cohort_dir, missing.rstrip("/"))
        raise CohortError("this looks like part of a DeepLabCut project", file=cohort_dir,
                          found=f"{present} but no {missing}" + (f" ({cased} differs in case alone)" if cased else ""),
                          allowed="a project's config.yaml and labeled-data/ folder side by side, or videos in "
                                  "videos/",
                          fix=f"rename {cased} to {missing.rstrip('/')} (this machine tells the cases apart)" if cased
                          else f"copy the project's {missing} into {cohort_dir} as well")
    if not videos_dir.is_dir():
        cased = _named_in_another_case(cohort_dir, "videos")
        raise CohortError("the cohort has no videos/ folder", file=cohort_dir,
                          found=f"in the folder: {_some(sorted(p.name for p in cohort_dir.iterdir())) or 'nothing'}",
                          allowed=allowed + ", or a DeepLabCut project (config.yaml and labeled-data/)",
                          fix=f"rename {cased}/ to videos/ (this machine tells the cases apart, where Windows and "
                              f"macOS do not)" if cased else f"put the videos in {videos_dir}/")
    nested = videos_in_subfolders(videos_dir)
    others = [p.name for p in visible_entries(videos_dir) if p.is_file()]
    if nested:
        found = f"videos in subfolders, which are not read: {_some(nested)}"
        fix = f"move each participant's video into {videos_dir}/ itself, named after the participant"
    else:
        found = f"other files only: {_some(others)}" if others else "an empty folder"
        files = [p for p in visible_entries(videos_dir) if p.is_file()]
        example = max(files, key=lambda p: p.stat().st_size).name if files else "in.braw"  # the video: the largest
        fix = (f"add the videos, or convert them to one of these formats (e.g. ffmpeg -i {example} -c:v libx264 "
               f"-pix_fmt yuv420p {Path(example).stem}.mp4)")
    raise CohortError("the cohort has no videos", file=videos_dir, found=found, allowed=allowed, fix=fix)


def _named_in_another_case(folder: Path, name: str) -> str | None:
    """The entry of ``folder`` named ``name`` in another case (``Videos``, ``Labeled-Data``: a cohort copied from
    Windows or macOS, which do not tell them apart), or None."""
    return next((p.name for p in visible_entries(folder) if p.name != name and p.name.lower() == name.lower()), None)


def videos_in_subfolders(videos_dir: Path) -> list[str]:
    """Videos in subfolders of ``videos/`` (``session2/P01.mp4``), relative to it: not studied, since one video per
    participant lies in ``videos/`` itself."""
    videos_dir = Path(videos_dir)
    return sorted(str(p.relative_to(videos_dir)) for p in videos_dir.rglob("*")
                  if p.is_file() and p.parent != videos_dir and p.suffix.lower() in VIDEO_SUFFIXES
                  and not any(part.startswith(".") for part in p.relative_to(videos_dir).parts))


def _some(names: list[str], shown: int = 5) -> str:
    return ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")


MACHINE_LABELS_FIX = ("a network's predictions for the frames DeepLabCut's extract_outlier_frames picked, not "
                      "labels: correct them in deeplabcut.refine_labels and save (its GUI writes "
                      "CollectedData_{scorer}.h5)")


def machine_label_files(folder: Path) -> list[str]:
    """DeepLabCut's ``machinelabels-iter<N>.h5`` in a labeled-data folder: predictions awaiting refine_labels."""
    return sorted(p.name for p in visible_entries(folder) if p.name.startswith("machinelabels") and p.suffix in
                  (".h5", ".csv"))


def _other_scorers(folder: Path, scorer: str) -> str:
    """For a labeled-data folder left out: the label files of other scorers in it (a second labeler's videos) or
    a network's predictions (an outlier round not yet refined), and how to study them, or nothing."""
    others = sorted(path.name for name, path in label_files_by_scorer(folder).items() if name != scorer)
    if others:
        return (f" (holds {', '.join(others)}: another labeler's; to study them, rename the file to "
                f"CollectedData_{scorer}{Path(others[0]).suffix}, and they are read as {scorer}'s)")
    predicted = machine_label_files(folder)
    return f" (holds {', '.join(predicted)}: {MACHINE_LABELS_FIX.format(scorer=scorer)})" if predicted else ""


# what a mismatch between an imported project's video_sets and its labeled-data folders means for the study
# (DeepLabCut's create_training_dataset reads only the folders video_sets names: merge_annotateddatasets)
VIDEOS_NEVER_LABELED = "videos in config.yaml without a labeled-data folder (no labeled frames: not in the study)"
VIDEO_SETS_WITHOUT_A_VIDEO = ("entries of config.yaml's video_sets that name no video file (DeepLabCut's example "
                              "projects hold this placeholder until deeplabcut.load_demo_data writes their paths)")
# said as facts, not warnings: they cost the study nothing (analysis-only videos are common)
UNMATCHED_FACTS = (VIDEOS_NEVER_LABELED, VIDEO_SETS_WITHOUT_A_VIDEO)
FOLDERS_NOT_IN_VIDEO_SETS = ("labeled-data folders without a video in config.yaml (studied all the same; "
                             "DeepLabCut's own create_training_dataset leaves such a folder out of the project's "
                             "training data)")


def unmatched_videos(cohort: Cohort) -> dict[str, list[str]]:
    """Videos and labeled-data folders that do not belong together (by name), for the log and the report.

    An imported project lists its videos in config.yaml's ``video_sets``; each labeled-data folder should be
    named after one. A video cohort's own labeled-data folders should each have a video.
    """
    labeled_data = cohort.root / "labeled-data"
    folders = sorted(p.name for p in visible_entries(labeled_data)  # not the folders DLC's check_labels writes
                     if p.is_dir() and not p.name.endswith("_labeled"))
    if cohort.frames_extracted:
        config = read_project_config(cohort.root)
        listed = [Path(str(v).replace("\\", "/")) for v in (config.get("video_sets") or {})]
        videos = sorted({v.stem for v in listed if v.suffix.lower() in VIDEO_SUFFIXES})
        used = {folder.name for folder in cohort.videos}
        return {VIDEOS_NEVER_LABELED: [v for v in videos if v not in folders],
                VIDEO_SETS_WITHOUT_A_VIDEO: sorted(str(v) for v in listed if v.suffix.lower() not in VIDEO_SUFFIXES),
                FOLDERS_NOT_IN_VIDEO_SETS: [f for f in folders if f not in videos],
                f"labeled-data folders left out (no CollectedData_{cohort.scorer} file)":
                    [f + _other_scorers(labeled_data / f, cohort.scorer) for f in folders if f not in used]}
    stems = {video.stem for video in cohort.videos}
    return {"labeled-data folders without a video (not studied: a folder's labels are of the video in videos/ of "
            "its name)": [f for f in folders if f not in stems]}


def with_the_runs_landmarks(cohort: Cohort, project_dir: Path) -> Cohort:
    """The cohort with the landmarks and scorer of a run's own DeepLabCut project, once the run has written it
    (with its frames): its labels, training data and networks are of those. A lab that changes the landmarks
    (``bodyparts`` in cohort.json, or an imported project's config.yaml) or the scorer while a run is under way
    changes the next run's; each stage of this one says so. Before, a landmark added mid-run crashed the next
    training (one more target than the network has heads), and one renamed trained its head on no label at all."""
    config_file = Path(project_dir) / "config.yaml"
    if not config_file.is_file():
        return cohort
    config = yaml.safe_load(config_file.read_text(encoding="utf-8"))
    bodyparts, scorer = tuple(map(str, config["bodyparts"])), str(config["scorer"])
    if (bodyparts, scorer) == (tuple(map(str, cohort.bodyparts)), str(cohort.scorer)):
        return cohort
    kinematic = cohort.kinematic_landmarks
    if kinematic and not set(kinematic.values()) <= set(bodyparts):
        kinematic = None
    log.warning("%s now lists the landmarks %s (scorer %s); this run keeps those it was labelled with, %s (scorer "
                "%s), as its project %s has them: the change is the next run's (trigger one to use it)%s",
                cohort.landmarks_file,
                ", ".join(map(str, cohort.bodyparts)), cohort.scorer, ", ".join(bodyparts), scorer, config_file,
                "; kinematic_landmarks names landmarks this run does not have, so the knee angles come from the "
                "landmarks' names" if kinematic is None and cohort.kinematic_landmarks else "")
    return replace(cohort, bodyparts=bodyparts, scorer=scorer, kinematic_landmarks=kinematic)


def write_project_config(project_dir: Path, cohort: Cohort, video_sizes: dict[Path, tuple[int, int]],
                         study: StudyConfig) -> Path:
    """A DeepLabCut ``config.yaml`` for the run's project (single animal, the study's engine)."""
    config = {
        "Task": cohort.name,
        "scorer": cohort.scorer,
        "date": date.today().strftime("%b%d"),
        "multianimalproject": False,
        "identity": None,
        "project_path": str(Path(project_dir).resolve()),
        "video_sets": {str(v.resolve()): {"crop": f"0, {w}, 0, {h}"} for v, (w, h) in video_sizes.items()},
        "bodyparts": list(cohort.bodyparts),
        "start": 0,
        "stop": 1,
        "numframes2pick": study.frames_per_video,
        "skeleton": [],
        "skeleton_color": "black",
        "pcutoff": study.pcutoff,
        "dotsize": 4,
        "alphavalue": 0.7,
        "colormap": "rainbow",
        "TrainingFraction": [study.train_fraction],
        "iteration": 0,
        "default_net_type": DLC_NET_TYPE[study.network],  # the backbone itself is set per shuffle
        "engine": study.engine,
        "default_augmenter": "imgaug",
        "snapshotindex": "all",
        "detector_snapshotindex": -1,
        "batch_size": 8,
        "cropping": False,
        "x1": 0, "x2": 640, "y1": 277, "y2": 624,
        "corner2move2": [50, 50],
        "move2corner": True,
    }
    target = Path(project_dir) / "config.yaml"
    write_text_atomic(target, yaml.safe_dump(config, sort_keys=False))
    return target
