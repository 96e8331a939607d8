"""The study's stages as plain functions of a run: what each DAG task calls.

Each stage takes a ``Run`` (its layout, parameters and cohort), reads the files the previous stage wrote under
the run folder and writes its own atomically (DeepLabCut's own writers and the Great Expectations Data Docs
excepted); a stage whose output is already complete is skipped. Nothing here imports Airflow.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import replace
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import TYPE_CHECKING

from .cohort import (COHORT_FILE, PARTICIPANT_PATTERN_EXAMPLE, UNMATCHED_FACTS, Cohort, CohortError,
                     label_files_by_scorer, load_cohort, project_settings_set_aside, read_cohort_manifest,
                     read_project_config, unmatched_videos, videos_in_subfolders, videos_sharing_a_name,
                     with_the_runs_landmarks, write_project_config)
from .config import NETWORKS, StudyConfig, StudyConfigError
from .errors import GpuTooOldError, InputError, SomeGpusTooOldError, together
from .budget import cpu_time_problem, disk_problem, estimate, measured_rate, record_expected_speed, written_bytes
from .carried_labels import carry_earlier_labels, landmarks_still_to_add
from .frames import VideoError, extract_frames, import_extracted_frames, link_frames
from .gpus import gpus_not_seen, machine_gpus
from .input_checks import (available_frames, frame_set_problems, frame_size_px,
                           labels_that_would_fail, noted, short_video_problems, unreadable_video_problems,
                           videos_probed)
from .labels import (LabelFileError, build_label_table, keyed_to_folder, labeled_images,
                     named_for_scorer, once_per_image, positions_only, read_collected_data, read_label_table,
                     to_dlc_frame, write_collected_data, write_label_table)
from .layout import (RunLayout, file_version, read_json, write_csv_atomic, write_json_atomic,
                     write_text_atomic)
from .locks import exclusive_writer
from .pretrained import weights_problem
from .provenance import (analysis_software, mixed_software_warning, software_at_start,
                         training_software_by_network)
from .resume_points import STOP_GRACE_SECONDS, told_of_output_after_task
from .run import Run, video_stem
from .scale import VideoScales, video_scales
from .settings import Settings
from .splits import (FrameSet, build_frame_sets, check_participants_to_hold_out, few_test_frames_warning,
                     labeled_frames, landmarks_unlabeled_warning, largest_frame)
from .trained_labels import check_labels_unchanged, record_labels_trained_on

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)
# a label file that cannot be read and changed less than this long ago is being saved (DeepLabCut's GUI rewrites
# the .h5 in place; a copy onto a share arrives bit by bit): the run waiting for labels looks again later
LABELS_BEING_SAVED_S = 600


def _warn_of_videos_likely_misplaced(study: StudyConfig, cohort: Cohort) -> None:
    """Videos that look like one participant's trials held out as several, or left in subfolders unstudied."""
    sharing = videos_sharing_a_name([video_stem(v) for v in cohort.videos]) if (
        study.split_mode == "by_participant" and not cohort.participant_pattern) else {}
    if sharing:
        groups = "; ".join(", ".join(stems) for stems in list(sharing.values())[:3])
        log.warning("split_mode by_participant holds out each video as a participant (cohort.json has no "
                    "participant_pattern), but some videos look like one person's trials: %s%s. If they are, one "
                    "person's trials can be both trained on and tested on; say whose each video is in %s, e.g. %s",
                    groups, f" and {len(sharing) - 3} more such groups" if len(sharing) > 3 else "",
                    cohort.root / COHORT_FILE, PARTICIPANT_PATTERN_EXAMPLE)
    left_out = [] if cohort.frames_extracted else videos_in_subfolders(cohort.root / "videos")
    if left_out:  # a lab that keeps a second session in videos/session2/ would otherwise lose it without a word
        log.warning("%d video(s) in subfolders of %s are not studied (one video per participant lies in videos/ "
                    "itself): %s. To study them, move them into videos/ with names of their own (e.g. "
                    "P01_session2.mp4)", len(left_out), cohort.root / "videos", ", ".join(left_out[:5]) +
                    (f" and {len(left_out) - 5} more" if len(left_out) > 5 else ""))


def prepare_run(data_root: str | Path, params: dict, run_name: str) -> Run:
    """Validate the parameters against the cohort and create the run folder. Every problem of the input known
    here is said in one failure, so that a lab mends them all before its next try."""
    study = StudyConfig.from_mapping(params)
    layout = RunLayout.create(data_root, study.cohort, run_name)
    cohort = with_the_runs_landmarks(load_cohort(layout.cohort_dir), layout.project_dir)  # a rerun's own
    settings = Settings.from_env()
    problems: list[InputError] = []
    scales = noted(problems, scales_of, cohort, study)  # a broken landing-square entry fails here, not after training
    videos, unreadable = videos_probed(cohort)
    problems += (short := short_video_problems(study, videos))
    problems += (cannot_open := unreadable_video_problems(study, videos, unreadable))
    if unreadable and not videos:  # no frame to count or to size the training by: the videos come first
        raise together(problems)
    picked = replace(study, **{key: value for problem in short + cannot_open  # the settings suggested
                               for key, value in problem.parameters.items()})
    frames_available = available_frames(cohort, picked, videos)  # with the frames_per_video suggested, if one is
    problems += (too_few := frame_set_problems(picked, cohort, frames_available, videos))
    # the study as suggested so far: its cost (scoring counts every network's frames) is of the frame sets it would
    # train, not of sizes the cohort cannot fill
    sized = replace(picked, **{key: value for problem in too_few for key, value in problem.parameters.items()
                               if key == "frame_set_sizes"})
    noted(problems, check_participants_to_hold_out, study.split_mode,
           [cohort.participant_of(video_stem(v)) for v in cohort.videos], cohort.root)
    problems += labels_that_would_fail(cohort, study)
    _warn_of_videos_likely_misplaced(study, cohort)
    gpus = machine_gpus(settings.gpus) if settings.training_backend == "local" else ()
    not_seen = gpus_not_seen(study.engine, gpus)  # then its networks train on the CPU, and are estimated so
    # the GPUs its networks would train on: with some too old for torch, those it runs on (as the fix says)
    local_gpus = len(not_seen.runs) if isinstance(not_seen, SomeGpusTooOldError) else 0 if not_seen else len(gpus)
    on_gpu, frame_size = settings.training_backend != "local" or local_gpus > 0, frame_size_px(cohort, videos)
    budget = estimate(sized, frame_size, frames_available, settings.training_backend,
                      settings.pod.seconds_per_iteration, settings.cpu_speedup, local_gpus,
                      measured_rate(layout.data_root, study, frame_size, on_gpu))
    free_bytes = shutil.disk_usage(layout.data_root if layout.data_root.exists() else layout.data_root.parent).free
    if disk := disk_problem(budget, free_bytes, str(layout.data_root),
                            written_bytes([layout.run_dir, layout.frames_cache(study.frames_per_video, study.seed)])):
        problems.append(disk)
    too_long = cpu_time_problem(budget, sized)
    if isinstance(not_seen, GpuTooOldError):  # its networks would fail at their first step, not train on the CPU
        problems += [not_seen] + ([too_long] if too_long and not not_seen.parameters else [])
    elif not_seen and too_long:  # the other engine, where it sees the GPU, makes the CPU's hours moot
        problems += [not_seen] + ([] if not_seen.parameters else [too_long])
    elif not_seen:  # a study the CPU finishes within its limit (or allowed longer) goes on there
        log.warning("%s: %s (%s). %s", not_seen.title, not_seen.what, not_seen.found, not_seen.fix)
    elif too_long:
        problems.append(too_long)
    # a pod's weights are its image's, not this machine's: only the local backend's are looked for here
    if settings.training_backend == "local" and (weights := weights_problem(study)):
        problems.append(weights)
    if problems:
        raise together(problems)
    log.info("expected cost: %s", budget.describe(sized))
    if layout.config_file.exists():
        previous = read_json(layout.config_file)
        if previous != study.to_json_dict():
            raise StudyConfigError("the run folder already holds a run with other parameters",
                                   file=layout.config_file, fix="use a new run name")
    else:
        write_json_atomic(layout.config_file, study.to_json_dict())
    record_expected_speed(budget, layout.expected_speed_file)
    log.info("cohort %s: %d videos (%s), run folder %s; image scale: %s", cohort.name, len(cohort.videos),
             cohort.kind, layout.run_dir, scales.source)
    project_config = read_project_config(cohort.root) if cohort.kind == "dlc_project" else {}
    if project_config.get("multianimalproject"):
        log.info("%s is a multi-animal DeepLabCut project (individuals: %s): studied as one participant per video, "
                 "an individual labelled in none of a file's frames as no one's labels; its landmarks: %s",
                 cohort.root / "config.yaml", ", ".join(map(str, project_config.get("individuals") or [])) or
                 "none", ", ".join(cohort.bodyparts))
    if cohort.kind == "dlc_project" and (set_aside := project_settings_set_aside(
            project_config, study.engine, study.network, study.train_fraction)):
        log.info("the project's config.yaml trains otherwise than this run: %s; the run's parameters decide (set "
                 "engine, network (%s) or train_fraction in the trigger form to train as the project does)",
                 "; ".join(set_aside), ", ".join(NETWORKS))
    _say_where_numbered_landmarks_need_their_sides(cohort)
    return Run(layout, study, cohort)


def _say_where_numbered_landmarks_need_their_sides(cohort: Cohort) -> None:
    """Landmarks numbered 1 and 2 (DeepLabCut's human model's): said before the labels are checked and the networks
    trained, since declared they get the frontal-plane label checks as well as the report's knee angles."""
    from .kinematics import landmark_roles, numbered_sides

    roles, _ = landmark_roles(cohort.bodyparts, cohort.kinematic_landmarks, cohort.camera_view)
    if roles is None and cohort.camera_view != "side" and (proposal := numbered_sides(cohort.bodyparts)):
        log.warning("knee angles and the frontal-plane label checks: %s", proposal)


def scales_of(cohort: Cohort, study: StudyConfig, studied: list[str] | None = None) -> VideoScales:
    """Pixels per mm of every video of the cohort, or of the videos a run studies (``studied``: its report's, where
    the cohort may since have gained videos, and cohort.json their landing squares, or lost some)."""
    stems = [video_stem(v) for v in cohort.videos]
    return video_scales(stems if studied is None else studied, study.px_per_mm, read_cohort_manifest(cohort.root),
                        str(cohort.root / "cohort.json"), known_stems=sorted({*stems, *(studied or [])}))


def studied_scales(run: Run) -> VideoScales:
    """Pixels per mm of the videos this run extracted frames of."""
    extracted = read_json(run.layout.frames_dir / "summary.json")["frames_per_video"]
    return scales_of(run.cohort, run.study, sorted(extracted))


def extract_cohort_frames(run: Run, max_workers: int | None = None) -> dict:
    """k-means frames of every video of the cohort, a few videos at once; all bad videos named together.

    Threads suffice: ffmpeg decodes in its own processes and k-means runs outside the GIL. Each video's frames
    and record are written as it finishes, so a killed task resumes with the videos still missing.
    """
    videos = run.videos
    # at most 4: each video's k-means features take up to a few hundred MB for a long recording
    workers = max_workers or max(1, min(len(videos), os.cpu_count() or 1, 4))
    results = {}
    with ThreadPoolExecutor(workers, thread_name_prefix="extract") as pool:
        futures = {pool.submit(_extract_video_frames, run, video): video for video in videos}
        for done, future in enumerate(as_completed(futures), 1):
            results[futures[future]] = result = future.result()
            log.info("videos done: %d of %d (%s: %s)", done, len(videos), result["video_stem"],
                     "unusable" if result.get("error") else f"{result['frames']} frames")
    summary = _check_extraction(run, [results[video] for video in videos])
    take_earlier_labels(run)
    return summary


def _extract_video_frames(run: Run, video: str) -> dict:
    """k-means frames of one video; a bad video is returned as an error, so all are reported together."""
    layout, study = run.layout, run.study
    try:
        if Path(video).is_dir():  # an imported DeepLabCut project: its frames are already extracted
            record = import_extracted_frames(Path(video), layout.project_dir / "labeled-data",
                                             layout.frame_record(Path(video).name))
        else:  # extracted once per cohort, video version and settings; every run links the same frames
            cache = layout.frames_cache(study.frames_per_video, study.seed)
            record = extract_frames(Path(video), cache / "labeled-data", cache / "records" / f"{Path(video).stem}.json",
                                    study.frames_per_video, study.seed)
            link_frames(record, cache / "labeled-data", layout.project_dir / "labeled-data",
                        layout.frame_record(Path(video).stem))
    except VideoError as error:  # reported with all other bad videos by _check_extraction
        log.warning("%s", error.what)
        return {"video_stem": video_stem(video), "frames": 0, "error": error.what}
    return {"video_stem": record["video_stem"], "frames": len(record["frame_indices"])}


def _check_extraction(run: Run, results: list[dict]) -> dict:
    """All bad videos at once: fail the run, or exclude them (``bad_video_policy``); writes frames/summary.json."""
    layout, study = run.layout, run.study
    bad = {r["video_stem"]: r["error"] for r in results if r.get("error")}
    good = {r["video_stem"]: r["frames"] for r in results if not r.get("error")}
    summary = {"frames_per_video": good, "total_frames": sum(good.values()), "bad_videos": bad,
               "bad_video_policy": study.bad_video_policy}
    write_json_atomic(layout.frames_dir / "summary.json", summary)
    log.info("frames extracted: %d from %d videos", summary["total_frames"], len(good))
    if bad and (study.bad_video_policy == "fail" or not good):
        raise VideoError(f"{len(bad)} of {len(results)} videos cannot be used", details=list(bad.values()),
                         found=f"bad_video_policy={study.bad_video_policy}" + (", no usable video" if not good else ""),
                         fix=("put each labeled-data folder's images back beside its CollectedData file (the "
                              "labelled frames, as DeepLabCut extracted them)" if run.cohort.frames_extracted else
                              "re-export or replace the videos named (a constant frame rate, every frame "
                              "decodable)") + ", or trigger the run with bad_video_policy=exclude to leave them out",
                         parameters={"bad_video_policy": "exclude"} if good else None)
    if bad:
        log.warning("excluded %d bad videos: %s", len(bad), ", ".join(sorted(bad)))
    for kind, names in unmatched_videos(run.cohort).items():
        if names:  # a project's videos added for analysis only, never labeled, are common and cost the study nothing
            (log.info if kind in UNMATCHED_FACTS else log.warning)("%s: %s", kind, ", ".join(names))
    cohort = run.cohort
    sizes = {}
    for video in _usable_videos(layout, cohort):
        record = read_json(layout.frame_record(video_stem(video)))
        sizes[video] = (record["width_px"], record["height_px"])
    write_project_config(layout.project_dir, cohort, sizes, study)
    return summary


def _usable_videos(layout: RunLayout, cohort) -> list[Path]:
    """The cohort's videos this run extracted frames of, less the bad ones: a video copied into the cohort since
    is a new run's (``cohort_intake`` starts one), and one taken out since is not used
    (``videos_changed_since_extraction``)."""
    extracted = read_json(layout.frames_dir / "summary.json")["frames_per_video"]
    return [v for v in cohort.videos if video_stem(v) in extracted]


def videos_changed_since_extraction(layout: RunLayout, cohort) -> list[str]:
    """What the log says of the cohort's videos added or taken out after this run extracted its frames."""
    summary = read_json(layout.frames_dir / "summary.json")
    now = {video_stem(v) for v in cohort.videos}
    added = sorted(now - set(summary["frames_per_video"]) - set(summary["bad_videos"]))
    gone = sorted(set(summary["frames_per_video"]) - now)
    return ([f"videos copied into the cohort after this run extracted its frames are a new run's, not this one's "
             f"(cohort_intake starts one for a grown cohort): {', '.join(added)}"] if added else []) + \
        ([f"videos this run extracted frames of that are no longer in the cohort are left out: {', '.join(gone)}"]
         if gone else [])


def _human_labels(layout: RunLayout, cohort: Cohort, stem: str) -> Path | None:
    """A video's human labels: in the run's project (where DeepLabCut's GUI saves them), else in the cohort. The
    project's file is not the lab's where it is the copy ``label_frames`` made of the cohort's and nobody has saved
    over it since: then the cohort's file is (a lab that corrected it there and cleared the run's tasks would
    otherwise have trained on the labels it corrected, told of its own file by the copy's name)."""
    in_project = label_files_by_scorer(layout.project_dir / "labeled-data" / stem).get(cohort.scorer)
    in_cohort = label_files_by_scorer(cohort.root / "labeled-data" / stem).get(cohort.scorer)
    if in_project is not None and in_cohort is not None and _copied_from_cohort(layout, stem, in_project):
        return in_cohort
    return in_project or in_cohort


def _copied_from_cohort(layout: RunLayout, stem: str, label_file: Path) -> bool:
    """Whether the project's ``label_file`` is still as ``label_frames`` copied it from the cohort's."""
    copies = layout.cohort_label_copies_file
    try:
        return copies.exists() and read_json(copies).get(stem) == file_version(label_file)
    except OSError:  # removed while we looked: not a copy of ours any more
        return False


def take_earlier_labels(run: Run) -> None:
    """What the lab labelled in the cohort's earlier runs, for the same frames (``carried_labels``): at extraction,
    and at each look for labels while the run waits."""
    cohort = run.cohort
    if not (cohort.synthetic or cohort.frames_extracted):
        carry_earlier_labels(run.layout, cohort, [video_stem(v) for v in _usable_videos(run.layout, cohort)])


def unlabeled_frames(run: Run) -> dict[str, int]:
    """Extracted frames still without a human label row, per video (empty: everything is labeled)."""
    layout = run.layout
    cohort = run.cohort
    if cohort.synthetic or cohort.frames_extracted:  # an imported project's unlabeled frames are left out
        return {}
    missing = {}
    for video in _usable_videos(layout, cohort):
        images = set(read_json(layout.frame_record(video_stem(video)))["image_names"])
        source = _human_labels(layout, cohort, video_stem(video))
        frame = _labels_unless_being_saved(source) if source else None
        labeled = set(labeled_images(frame)) if frame is not None else set()
        if landmarks_still_to_add(layout, video_stem(video), source):  # carried without a landmark new since
            labeled = set()
        if images - labeled:
            missing[video_stem(video)] = len(images - labeled)
    return missing


def _seconds_since_changed(label_file: Path) -> float:
    """Since the newest change to a CollectedData file or DeepLabCut's .csv copy beside it."""
    copies = [path.stat().st_mtime for path in (label_file.with_suffix(".h5"), label_file.with_suffix(".csv"))
              if path.exists()]
    return time.time() - max(copies, default=0.0)


def _labels_unless_being_saved(label_file: Path):
    """A lab's CollectedData file while a run waits for labels; None where it cannot be read but changed within
    ``LABELS_BEING_SAVED_S`` (being saved or copied: the next look reads it). One that stays unreadable is damaged,
    and its error says so."""
    try:
        return read_collected_data(label_file)
    except LabelFileError:
        if _seconds_since_changed(label_file) < LABELS_BEING_SAVED_S:
            return None
        raise


def labeling_status(run: Run, missing: dict[str, int]) -> list[str]:
    """What the lab still has to label, a line per video, and what was found instead where that explains a wait:
    label files of another scorer, or labels of frames other than the ones k-means picked."""
    layout, cohort = run.layout, run.cohort
    lines = [f"waiting for labels: {sum(missing.values())} frames of {len(missing)} videos"] if missing else []
    lines += videos_changed_since_extraction(layout, cohort)
    for stem, count in sorted(missing.items()):
        images = read_json(layout.frame_record(stem))["image_names"]
        target = layout.project_dir / "labeled-data" / stem
        lines.append(f"{stem}: {count} of {len(images)} picked frames still unlabeled; label them in {target} "
                     f"(DeepLabCut, scorer {cohort.scorer}: deeplabcut.label_frames("
                     f"{str(layout.project_dir / 'config.yaml')!r}, image_folder={stem!r}) opens them, and "
                     f"saving there goes on with the run)")
        to_add = landmarks_still_to_add(layout, stem, label_files_by_scorer(target).get(cohort.scorer))
        if to_add:
            lines.append(f"  their labels were carried from an earlier run, which had no {', '.join(to_add)} (new "
                         f"among the cohort's bodyparts since): add {', '.join(to_add)} to each frame and save "
                         f"(every other label is there; a landmark not visible in a frame stays unlabelled)")
        for folder in (target, cohort.root / "labeled-data" / stem):
            files = label_files_by_scorer(folder)
            for scorer, path in files.items():
                if scorer != cohort.scorer:
                    lines.append(f"  found {path}: posesweep reads CollectedData_{cohort.scorer}; to use "
                                 f"{scorer}'s labels, set \"scorer\": \"{scorer}\" in {cohort.root / COHORT_FILE}")
            mine = files.get(cohort.scorer)
            if mine is not None and (frame := _labels_unless_being_saved(mine)) is None:
                lines.append(f"  {mine} cannot be read yet: it changed {_seconds_since_changed(mine):.0f} s ago "
                             f"and is being saved or copied; it is read again at the next look")
            elif mine is not None:
                others = sorted(set(frame.index.get_level_values(-1)) - set(images))
                if others:
                    lines.append(f"  {mine} labels {len(others)} frames k-means did not pick ({', '.join(others[:3])}"
                                 f"{', ...' if len(others) > 3 else ''}): picked with other frames_per_video or seed, "
                                 f"or by another tool. To train on those frames as they are, make the cohort a "
                                 f"DeepLabCut project (config.yaml and labeled-data/ with the images)")
    return lines


def label_frames(run: Run) -> dict:
    """Labels for every extracted frame: simulated for a synthetic cohort, else the lab's own."""
    from .synthetic import simulate_labels, truth_file

    layout, study = run.layout, run.study
    cohort = run.cohort
    labeled_data = layout.project_dir / "labeled-data"
    videos = _usable_videos(layout, cohort)
    for line in videos_changed_since_extraction(layout, cohort):
        log.warning("%s", line)
    sources, copied = {}, {}
    for video in videos:
        stem = video_stem(video)
        record = read_json(layout.frame_record(stem))
        if cohort.synthetic:
            wide = simulate_labels(truth_file(video), record["frame_indices"], record["height_px"], study.seed)
            frame = to_dlc_frame(wide, stem, record["image_names"], list(cohort.bodyparts), cohort.scorer)
            sources[stem] = str(write_collected_data(frame, labeled_data, stem, cohort.scorer))
            continue
        source = _human_labels(layout, cohort, stem)
        if source is None:
            raise CohortError(f"no labels for video {video.name}", file=labeled_data / stem /
                              f"CollectedData_{cohort.scorer}.h5", found="no label file",
                              fix=f"label the frames in {labeled_data / stem} with DeepLabCut (scorer "
                                  f"{cohort.scorer}) and save them")
        sources[stem] = str(source)
        if source.parent != labeled_data / stem:  # labels kept with the cohort: copy into the project
            frame = named_for_scorer(positions_only(read_collected_data(source)), cohort.scorer, source)
            frame = once_per_image(keyed_to_folder(frame, stem, source), source)
            copied[stem] = file_version(write_collected_data(frame, labeled_data, stem, cohort.scorer))
    if copied:
        earlier = read_json(layout.cohort_label_copies_file) if layout.cohort_label_copies_file.exists() else {}
        write_json_atomic(layout.cohort_label_copies_file, {**earlier, **copied})
    write_json_atomic(layout.label_sources_file, sources)
    table = build_label_table(labeled_data, [video_stem(v) for v in videos], cohort.scorer, sources)
    table = without_landmarks_left_out_of_the_bodyparts(table, cohort, sources)
    table = with_landmarks_added_after_a_video_was_labelled(table, cohort, sources)
    table["participant"] = table["video"].astype(str).map(cohort.participant_of)
    write_label_table(table, layout.labels_file)
    frames = table[["video", "image"]].drop_duplicates()
    log.info("labels: %d frames from %d videos, %d landmarks (%s labeler)", len(frames), len(videos),
             table["landmark"].nunique(), "simulated" if cohort.synthetic else "human")
    return {"labeled_frames": int(len(frames)), "videos": len(videos)}


def without_landmarks_left_out_of_the_bodyparts(table: "pd.DataFrame", cohort: Cohort,
                                                 sources: dict[str, str]) -> "pd.DataFrame":
    """Labels of landmarks the cohort's bodyparts no longer list are left out, as DeepLabCut's
    ``create_training_dataset`` leaves them out (it reindexes the labels by config.yaml's bodyparts): a lab that
    took a landmark out of its project keeps the old columns in its label files. Only where every listed bodypart
    has labels: otherwise a name differs (a typo, a renamed landmark) and validation names both sides."""
    listed = set(cohort.bodyparts)
    extra = sorted(set(table["landmark"].astype(str)) - listed)
    if not extra or not listed <= set(table["landmark"].astype(str)):
        return table
    files = sorted({sources[v] for v in table.loc[table["landmark"].isin(extra), "video"].astype(str).unique()
                    if v in sources})
    log.warning("labels of %s left out: not among the cohort's bodyparts (%s), so DeepLabCut would not train on "
                "them either (in %s%s)", ", ".join(extra), ", ".join(cohort.bodyparts), ", ".join(files[:3]),
                f" and {len(files) - 3} more" if len(files) > 3 else "")
    kept = table[table["landmark"].isin(listed)]
    labeled = kept.dropna(subset=["x_px", "y_px"], how="all")[["video", "image"]].drop_duplicates()
    blank = len(kept[["video", "image"]].drop_duplicates()) - len(labeled)
    if blank:
        log.warning("%d frames had labels only of those landmarks and are left out as well", blank)
    kept = kept.merge(labeled, on=["video", "image"])
    return kept.reset_index(drop=True)


def with_landmarks_added_after_a_video_was_labelled(table: "pd.DataFrame", cohort: Cohort,
                                                     sources: dict[str, str]) -> "pd.DataFrame":
    """A video whose label file has no column for one of the cohort's landmarks that other videos' files label
    (labelled before the lab added it) has that landmark unlabelled in each of its frames, as DeepLabCut's
    ``create_training_dataset`` reads the file (it reindexes every file by config.yaml's bodyparts), with a warning
    naming the files and landmarks. Before, its frames had no row for it: the networks trained, and scoring their
    snapshots failed on the first such frame (KeyError), retried as if the machine were at fault."""
    import pandas as pd

    labelled = set(table["landmark"].astype(str))
    landmarks = [name for name in map(str, cohort.bodyparts) if name in labelled]
    added, notes = [], []
    for video, rows in table.groupby("video", sort=False):
        absent = [name for name in landmarks if name not in set(rows["landmark"].astype(str))]
        if not absent:
            continue
        frames = rows.drop_duplicates(["video", "image"]).drop(columns=["landmark", "x_px", "y_px"])
        added += [frames.assign(landmark=name, x_px=float("nan"), y_px=float("nan")) for name in absent]
        notes.append(f"{sources.get(str(video), video)} ({' and '.join(absent)}, {len(frames)} frames)")
    if not added:
        return table
    log.warning("label files without a column for a landmark the other videos' files label (labelled before it "
                "was added?): %s. Those frames count as that landmark unlabelled, as DeepLabCut reads the files: "
                "the networks learn and are scored on it from the other videos' frames; label it there in "
                "DeepLabCut's GUI (deeplabcut.label_frames) to count them too", "; ".join(notes))
    completed = pd.concat([table, *added], ignore_index=True)[list(table.columns)]
    return completed.sort_values(["video", "image", "landmark"], kind="stable").reset_index(drop=True)


def validate_label_table(run: Run) -> dict:
    """Great Expectations suites over the labels; fail, or exclude the offending frames (``invalid_labels``)."""
    from .kinematics import roles_text
    from .validation import (LabelValidationError, frontal_check_roles, offending_frames, reversed_video_advice,
                             validate_labels)

    layout, study = run.layout, run.study
    cohort = run.cohort
    table = read_label_table(layout.labels_file)  # never rewritten here: a retry validates the same input
    videos = table["video"].astype(str).unique()
    side = cohort.side_view_videos(videos)
    roles, why = frontal_check_roles(cohort.bodyparts, cohort.kinematic_landmarks, cohort.frontal_camera_view(videos))
    log.info("frontal-plane label checks: %s", f"on {roles_text(roles)}, {why}" if roles else why)
    if roles and side:
        log.info("frontal-plane label checks leave out %d side-camera video(s) (cohort.json side_view_videos): %s",
                 len(side), ", ".join(side))
    back = cohort.back_view_videos(videos)
    if roles and back:
        log.info("frontal-plane label checks read %d video(s) filmed from behind mirrored (cohort.json "
                 "back_view_videos): %s", len(back), ", ".join(back))
    check = dict(bodyparts=list(cohort.bodyparts), max_missing_fraction=study.max_missing_label_fraction,
                 result_dir=layout.validation_dir, label_files=read_json(layout.label_sources_file),
                 images_root=layout.project_dir / "labeled-data",
                 roles=roles, camera_view=cohort.camera_view, side_view_videos=side, back_view_videos=back,
                 landmarks_file=cohort.landmarks_file)
    excluded: list[tuple[str, str]] = []
    try:
        summary = validate_labels(table, **check)
    except LabelValidationError as failure:
        if study.invalid_labels != "exclude_frames":
            raise
        failed = read_json(layout.validation_dir / "validation_result.json")
        excluded = offending_frames(failed)
        labeled = len(table[["video", "image"]].drop_duplicates())
        if len(excluded) >= labeled:  # (then the empty rest failed for want of any label, hiding the cause)
            failure.details.append(f"invalid_labels=exclude_frames leaves out the frames named, and here every "
                                   f"labeled frame is named ({labeled}): none would be left to train on")
            raise
        keep = ~table.set_index(["video", "image"]).index.isin(excluded)
        log.warning("excluding %d frames named by failing expectations: %s", len(excluded),
                    ", ".join(f"{v}/{i}" for v, i in excluded))
        for video in failed.get("videos_with_sides_reversed", []):  # a participant lost to a convention
            log.warning("%s: its frames are excluded: %s", video["video"],
                        reversed_video_advice(video, failed))
        table = table[keep].reset_index(drop=True)
        summary = validate_labels(table, **check)  # what is left must pass
    write_json_atomic(layout.validation_dir / "excluded_frames.json", [list(f) for f in excluded])
    write_label_table(table, layout.validated_labels_file)
    return {"labeled_frames": summary["labeled_frames"], "success": summary["success"],
            "excluded_frames": len(excluded)}


def make_frame_sets(run: Run) -> list[dict]:
    layout, study = run.layout, run.study
    table = read_label_table(layout.validated_labels_file)
    participant_of = dict(zip(table["video"].astype(str), table["participant"].astype(str)))
    frame_sets = build_frame_sets(labeled_frames(table), list(study.frame_set_sizes), study.train_fraction,
                                  study.seed, study.split_mode, participant_of)
    write_json_atomic(layout.splits_file, {"frame_sets": [fs.to_json_dict() for fs in frame_sets]})
    for fs in frame_sets:
        log.info("frame set %d: %d train, %d test frames (DeepLabCut shuffle %d)", fs.frame_set_size,
                 len(fs.train), len(fs.test), fs.shuffle)
    if few := few_test_frames_warning(frame_sets, study.train_fraction, study.split_mode):
        log.warning("%s", few)
    if unlabeled := landmarks_unlabeled_warning(frame_sets, table):
        log.warning("%s", unlabeled)
    if study.split_mode == "by_participant":
        held_out = sorted({participant_of[video] for video, _ in frame_sets[0].test})
        log.info("participants held out for testing: %s (%d of %d)%s", ", ".join(held_out), len(held_out),
                 len(set(participant_of.values())), "" if run.cohort.participant_pattern else
                 f"; each video is one participant (if a participant has several videos, set "
                 f"\"participant_pattern\" in {run.cohort.root / COHORT_FILE})")
    return [{"frame_set_size": fs.frame_set_size, "shuffle": fs.shuffle} for fs in frame_sets]


def load_frame_sets(layout: RunLayout) -> list[FrameSet]:
    return [FrameSet.from_json_dict(d) for d in read_json(layout.splits_file)["frame_sets"]]


def frame_set_of(layout: RunLayout, frame_set_size: int) -> FrameSet:
    for fs in load_frame_sets(layout):
        if fs.frame_set_size == frame_set_size:
            return fs
    raise KeyError(f"no frame set of size {frame_set_size} in {layout.splits_file}")


def prepare_training(run: Run) -> dict:
    """Initial weights and one DeepLabCut training dataset (shuffle) per frame set, for the run's engine; the labels
    each was made from are recorded, and a rerun after they changed is refused (``trained_labels``)."""
    layout, study = run.layout, run.study
    frame_sets = load_frame_sets(layout)
    labels = read_label_table(layout.validated_labels_file)
    for fs in frame_sets:
        check_labels_unchanged(layout, fs, labels)
    weights = _initial_weights_and_shuffles(layout, study, frame_sets)
    for fs in frame_sets:
        record_labels_trained_on(layout, fs, labels)
    return weights


def _initial_weights_and_shuffles(layout: RunLayout, study: StudyConfig, frame_sets: list[FrameSet]) -> dict:
    record = layout.run_dir / "weights" / "initial_weights.json"
    if study.engine == "pytorch":
        from .torch_engine import project

        project_config = layout.project_dir / "config.yaml"
        project.create_shuffles(project_config, frame_sets, study)
        if record.exists():  # every frame set starts from the weights an earlier attempt wrote
            return read_json(record)
        weights = project.write_initial_weights(
            project.read_model_config(project.model_config_path(project_config, frame_sets[0])), study,
            layout.run_dir / "weights" / f"initial_{study.network}.pt")
        write_json_atomic(record, weights)
        return weights
    from .training import create_training_datasets, resolve_initial_weights

    largest = frame_sets[-1]
    calibration = [layout.project_dir / "labeled-data" / stem / image for stem, image in largest.train[:16]]
    weights = resolve_initial_weights(study.network, study.allow_random_init, layout.run_dir / "weights",
                                      calibration, study.seed)
    write_json_atomic(record, weights.to_json_dict())
    create_training_datasets(layout.project_dir / "config.yaml", frame_sets, weights, study,
                             {fs.frame_set_size: largest_frame(layout, fs) for fs in frame_sets})
    return weights.to_json_dict()


def train(run: Run, frame_set_size: int) -> dict:
    """Train one network; with the TensorFlow engine its snapshots are scored in the same process as written."""
    layout, study = run.layout, run.study
    frame_set = frame_set_of(layout, frame_set_size)
    labels = read_label_table(layout.validated_labels_file)
    check_labels_unchanged(layout, frame_set, labels)
    with exclusive_writer(layout.training_dir(frame_set_size), f"the network of frame set {frame_set_size}",
                          wait_s=STOP_GRACE_SECONDS + 15, waiting=lambda note: print(note, flush=True)):
        told_of_output_after_task(layout.training_dir(frame_set_size))
        if not (layout.training_dir(frame_set_size) / "training.json").exists():
            software_at_start(layout.training_dir(frame_set_size), study.engine)
        if study.engine == "pytorch":
            from .errors import GpuMemorySharedWithFramesError
            from .torch_engine.trainer import train_network

            frames_marker = layout.frames_on_host_marker(frame_set_size)
            off_gpu = frames_marker.read_text().splitlines()[0] if frames_marker.exists() else None
            if off_gpu:
                print(f"[frame set {frame_set_size}] frames kept in host memory, copied to the GPU per batch: the "
                      f"training step and the frames did not fit in the GPU together ({frames_marker})", flush=True)
            try:
                return train_network(layout, frame_set, study, labels, list(run.cohort.bodyparts),
                                     frames_kept_off_gpu=off_gpu)
            except GpuMemorySharedWithFramesError as error:
                write_text_atomic(frames_marker, f"{error.what}\n{error.found}\n")
                raise
        from .errors import GpuMemoryTooSmallError
        from .evaluation import ScoringWhileTraining
        from .gpu_memory import out_of_memory_beside_the_scorer
        from .training import train_frame_set

        marker = layout.scoring_after_training_marker(frame_set_size)
        with ScoringWhileTraining(layout, frame_set, labels, study.snapshot_iterations,
                                  enabled=not marker.exists()) as scoring:
            try:
                return train_frame_set(layout, frame_set, study)
            except GpuMemoryTooSmallError as error:
                if not scoring.started_scoring:  # the step alone did not fit
                    raise
                write_text_atomic(marker, f"{error.what}\n{error.found}\n")
                raise out_of_memory_beside_the_scorer(error) from None


def evaluate(run: Run, frame_set_size: int | None = None) -> list[str]:
    """Score what training has not scored yet and assemble the tables: one network, or all in one process."""
    from .evaluation import evaluate_frame_sets

    layout = run.layout
    frame_sets = load_frame_sets(layout) if frame_set_size is None else [frame_set_of(layout, frame_set_size)]
    labels = read_label_table(layout.validated_labels_file)
    for fs in frame_sets:
        check_labels_unchanged(layout, fs, labels)
    return [str(path) for path in evaluate_frame_sets(layout, frame_sets, labels, run.study.engine)]


def knee_angle_landmarks(cohort: Cohort, labels: pd.DataFrame) -> tuple[dict[str, str] | None, str]:
    """Which landmarks the knee angles come from (role -> landmark) and how that was found; (None, why not).
    Where cohort.json says neither the landmarks nor the camera, the labels are checked for a side view."""
    from .kinematics import landmark_roles, side_view_suspected

    roles, how = landmark_roles(cohort.bodyparts, cohort.kinematic_landmarks,
                                cohort.frontal_camera_view(labels["video"].astype(str).unique()))
    side_view = roles and not (cohort.kinematic_landmarks or cohort.camera_view_declared) and \
        side_view_suspected(labels, roles)
    return (None, side_view) if side_view else (roles, how)


def knee_kinematics(cohort: Cohort, labels: pd.DataFrame, errors: pd.DataFrame) -> tuple[pd.DataFrame | None, dict]:
    """The knee kinematics' errors (``kinematics.kinematic_errors``) from the frontal cameras' videos (a side
    camera's, cohort.json ``side_view_videos``, are left out; those from behind, ``back_view_videos``, read
    mirrored), and what the report says of them: which landmarks, how found, the cameras, the side videos left out;
    (None, why not) where there are none."""
    from .kinematics import kinematic_errors, roles_text

    roles, how = knee_angle_landmarks(cohort, labels)
    videos = labels["video"].astype(str).unique()
    side, back = cohort.side_view_videos(videos), cohort.back_view_videos(videos)
    kinematics = None
    if roles is not None:
        kinematics = kinematic_errors(errors[~errors["video"].astype(str).isin(side)], roles, cohort.camera_view,
                                      back)
        if not len(kinematics):  # e.g. a landmark the lab never labelled (max_missing_label_fraction 1)
            roles, how, kinematics = None, f"no frame has {', '.join(roles.values())} all labelled", None
    log.info("knee kinematics: %s", (f"from {roles_text(roles)}, {how}" + (
        f"; {len(side)} side-camera video(s) left out (cohort.json side_view_videos)" if side else ""))
        if roles else f"not computed: {how}")
    return kinematics, {"roles": roles, "how": how, "camera_view": cohort.camera_view,
                        "side_view_videos": side if roles else [], "back_view_videos": back if roles else []}


def analyse_and_report(run: Run) -> str:
    from .evaluation import combine_error_tables
    from .networks import network_addresses
    from .report import write_report
    from .stats import analyse, analyse_fppa

    layout, study = run.layout, run.study
    table = read_label_table(layout.validated_labels_file)
    trained = [fs for fs in load_frame_sets(layout) if fs.frame_set_size in study.frame_set_sizes]
    for fs in trained:  # the knee angles below pair the networks' errors with these labels
        check_labels_unchanged(layout, fs, table)
    scales = studied_scales(run)
    write_json_atomic(layout.evaluation_dir / "scale.json", scales.to_json_dict())
    errors = combine_error_tables(layout, list(study.frame_set_sizes), scales.px_per_mm)
    analysis = analyse(errors)
    for split, result in analysis["per_split"].items():
        if result["anova"]:
            a = result["anova"]
            plateau = result["plateau_iteration"]
            log.info("%s error: F(%.0f, %.0f) = %.2f, p = %.3g; %s", split, a["df_num"], a["df_den"], a["F"],
                     a["p_value"], f"plateau at {plateau:,} iterations" if plateau is not None else
                     f"no plateau placed: no two iteration levels differ significantly ({a['n_subjects']} "
                     f"subjects)" if result["no_two_levels_differ"] else
                     "no plateau: rising significantly at the last snapshot (more training made it worse)"
                     if result.get("change_at_the_end") == "rising" else
                     "no plateau: still improving significantly at the last snapshot")
    context = {
        "study_config": study.to_json_dict(),
        "initial_weights": read_json(layout.run_dir / "weights" / "initial_weights.json"),
        "training": [read_json(layout.training_dir(size) / "training.json") for size in study.frame_set_sizes],
        "labels": {"labeled_frames": int(len(table[["video", "image"]].drop_duplicates())),
                   "videos": int(table["video"].nunique())},
        "extraction": read_json(layout.frames_dir / "summary.json"),
        "excluded_frames": read_json(layout.validation_dir / "excluded_frames.json"),
        "scale": scales.to_json_dict(),
        "frames_source": "imported" if run.cohort.frames_extracted else "kmeans",
        "unmatched": unmatched_videos(run.cohort),
    }
    context["networks"] = network_addresses(layout, trained, analysis["chosen_iteration"], study.engine)
    context["software"] = {"training": training_software_by_network(context["training"]),
                           "analysis": analysis_software()}
    if mixed := mixed_software_warning(context["software"]["training"]):
        log.warning("%s", mixed)
    for entry in context["training"]:
        entry.pop("train_dir", None)
        entry.pop("software", None)  # said once for all networks, below the table
        entry.pop("software_before_resume", None)
        entry["initial_weights"] = entry["initial_weights"]["kind"]
        if "frame_size_px" in entry:  # the largest training frame, as a camera's size is written
            entry["frame_size_px"] = "x".join(map(str, entry["frame_size_px"]))
    fppa = None
    kinematics, context["kinematic_landmarks"] = knee_kinematics(run.cohort, table, errors)
    if kinematics is not None:
        write_csv_atomic(kinematics, layout.evaluation_dir / "kinematic_errors.csv")
        fppa = analyse_fppa(kinematics)
    path = write_report(layout, analysis, errors, context, kinematics, fppa)
    say_the_answer(read_json(layout.summary_file))
    return str(path)


def say_the_answer(summary: dict) -> None:
    """The report's answer in the log, or why there is none: the plateaus logged above are found also in the errors
    of networks that learned nothing (a Reaching run from random weights: "plateau at 10 iterations" at 400 px)."""
    if summary["recommendation_made"]:
        log.info("the study's answer: %s", summary["recommendation"])
        if caution := (summary.get("network_to_use") or {}).get("knee_kinematics_caution"):
            log.warning("%s", caution)
    else:
        log.warning("%s. %s", summary["recommendation"], summary.get("learning_rule", ""))
