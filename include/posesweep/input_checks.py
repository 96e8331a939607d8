"""What ``prepare_run`` sees of a run's input before any video is decoded or any network trained: each video's
frame count and size (read from its header), the frames the cohort can give, and the problems that would otherwise
stop the run later (videos that do not open or are too short, frame sets larger than the cohort, landmarks missing
in more of an imported project's frames than validation allows), each with the parameter that gets past it.
"""

from __future__ import annotations

import math
from pathlib import Path

from .cohort import Cohort, CohortError, label_files_by_scorer
from .config import FRAMES_PER_VIDEO_MAX, StudyConfig, StudyConfigError
from .errors import InputError
from .frames import IMAGE_SUFFIXES, VideoError, VideoInfo, probe_video
from .labels import missing_label_shares, read_collected_data
from .layout import visible_entries


def _fewer_frames_fix(study: StudyConfig, cohort: Cohort, frames_available: int, scaled: list[int],
                      shortest_video_frames: int | None = None, video_count: int | None = None) -> str:
    """What a cohort with fewer frames than the largest frame set can ask for instead, in its own numbers
    (``scaled``: the frame-set sizes in the same proportions that fit, empty where none do;
    ``shortest_video_frames``: no video gives more frames than that, where known; ``video_count``: the videos
    frames are extracted from, where not all the cohort's are)."""
    fix = "lower frame_set_sizes" + (f" (the same proportions up to the {frames_available} frames there are: "
                                     f"frame_set_sizes={scaled})" if scaled else "")
    videos = video_count or len(cohort.videos)
    per_video = math.ceil(max(study.frame_set_sizes) / videos)
    most = min(FRAMES_PER_VIDEO_MAX, shortest_video_frames or FRAMES_PER_VIDEO_MAX)
    if not cohort.frames_extracted and per_video <= most:
        fix += f", raise frames_per_video (frames_per_video={per_video} for these {videos} videos)"
    elif not cohort.frames_extracted and most > study.frames_per_video:
        fix += f", raise frames_per_video (at most {most}" + (
            f", the shortest video's frames: {most * videos} frames in all)" if most < FRAMES_PER_VIDEO_MAX
            else ")")
    return fix + " or add participants to the cohort"


def noted(problems: list[InputError], check, *args):
    """``check(*args)``'s value; its input problem, where it raises one, appended to ``problems``."""
    try:
        return check(*args)
    except InputError as problem:
        problems.append(problem)
        return None


def frame_set_problems(study: StudyConfig, cohort: Cohort, frames_available: int,
                       videos: dict[Path, VideoInfo] | None = None) -> list[StudyConfigError]:
    """A largest frame set larger than the ``frames_available``, with the frame sets in the same proportions that
    fit and the ``frames_per_video`` that would give enough (``videos``: ``probed_videos``, where read)."""
    if max(study.frame_set_sizes) <= frames_available:
        return []
    scaled = study.frame_set_sizes_within(frames_available)
    shortest_video_frames = min((info.frame_count for info in (videos or {}).values()), default=None)
    extracted = len(_extracted_videos(cohort, study, videos))
    left_out = (f", the other {len(cohort.videos) - extracted} unreadable or too short: bad_video_policy=exclude "
                f"leaves them out" if extracted < len(cohort.videos) else "")
    return [StudyConfigError(
        "the largest frame set asks for more frames than the cohort can give",
        found=f"frame_set_sizes={list(study.frame_set_sizes)}",
        allowed=f"at most {frames_available} frames (" + (
            f"{extracted} videos x frames_per_video={study.frames_per_video}{left_out})"
            if not cohort.frames_extracted else "the images in the project's labeled-data folders)"),
        fix=_fewer_frames_fix(study, cohort, frames_available, scaled, shortest_video_frames, extracted),
        parameters={"frame_set_sizes": scaled} if scaled else None)]


def short_video_problems(study: StudyConfig, videos: dict[Path, VideoInfo]) -> list[StudyConfigError]:
    """Videos with fewer frames than ``frames_per_video``: ``extract_frames`` would fail on each after extracting
    every other video (minutes to hours of decoding), and the fix is a run parameter. With
    ``bad_video_policy=exclude`` they are left out there, as asked."""
    short = {video: info.frame_count for video, info in sorted(videos.items())
             if info.frame_count < study.frames_per_video}
    if not short or study.bad_video_policy == "exclude":
        return []
    shortest = min(short.values())
    listed = "; ".join(f"{video.name}: {frames} frames" for video, frames in list(short.items())[:5])
    return [StudyConfigError(
        f"{len(short)} of {len(videos)} videos have fewer frames than frames_per_video asks for",
        file=next(iter(short)) if len(short) == 1 else next(iter(short)).parent,
        found=f"{listed}{f' and {len(short) - 5} more' if len(short) > 5 else ''} (frames_per_video="
              f"{study.frames_per_video})",
        allowed=f"at least {study.frames_per_video} frames in every video (k-means picks that many of each)",
        fix=f"lower frames_per_video (frames_per_video={shortest} picks as many from every video), replace the "
            f"videos named with their full recordings, or trigger with bad_video_policy=exclude to leave them out",
        parameters={"frames_per_video": shortest})]


def unreadable_video_problems(study: StudyConfig, videos: dict[Path, VideoInfo],
                              unreadable: dict[Path, str]) -> list[VideoError]:
    """Videos OpenCV cannot open (a copy cut short, which leaves an MP4 without its index, an empty file): said at
    once, with every other problem, instead of by ``extract_frames`` after it has decoded all the other videos (an
    hour of a large cohort). Under ``bad_video_policy=exclude`` they are left out there, as asked, while any video
    is left."""
    if not unreadable or (study.bad_video_policy == "exclude" and videos):
        return []
    first = min(unreadable)
    return [VideoError(
        f"{len(unreadable)} of {len(videos) + len(unreadable)} videos cannot be opened",
        file=first if len(unreadable) == 1 else first.parent, details=[unreadable[v] for v in sorted(unreadable)],
        found=f"bad_video_policy={study.bad_video_policy}" + ("" if videos else ", no video that opens"),
        fix="copy the videos named again from the camera or the original (a copy's size should match it), or "
            "re-export them" + (", or trigger with bad_video_policy=exclude to leave them out" if videos else ""),
        parameters={"bad_video_policy": "exclude"} if videos else None)]


def labels_that_would_fail(cohort: Cohort, study: StudyConfig) -> list[InputError]:
    """An imported project's landmarks missing in more of its labeled frames than ``max_missing_label_fraction``
    allows: ``validate_labels`` would stop the run there, seconds after a paragraph that said nothing of it, and its
    fix is a run parameter (a new run). A label to correct is left to ``validate_labels``: the run goes on from
    there once it is."""
    if not cohort.frames_extracted or study.invalid_labels == "exclude_frames":
        return []
    from .validation import often_unlabelled_problem

    files = [file for folder in cohort.videos if (file := label_files_by_scorer(folder).get(cohort.scorer))]
    unreadable: list[InputError] = []
    tables = [noted(unreadable, read_collected_data, file) for file in files]
    if unreadable:  # said now: nothing can be trained from them
        return unreadable
    shares, labeled = missing_label_shares(tables, list(cohort.bodyparts))
    problem = often_unlabelled_problem(shares, labeled, study.max_missing_label_fraction, files)
    return [problem] if problem else []


def probed_videos(cohort: Cohort) -> dict[Path, VideoInfo]:
    """What OpenCV reads of each video of a video cohort (an imported project's, none); a video it cannot open is
    left out (``videos_probed``: with why)."""
    return videos_probed(cohort)[0]


def videos_probed(cohort: Cohort) -> tuple[dict[Path, VideoInfo], dict[Path, str]]:
    """What OpenCV reads of each video of a video cohort, and why each video it cannot open is unusable (a copy cut
    short before its index, an empty file, not a video)."""
    found, unreadable = {}, {}
    for video in [] if cohort.frames_extracted else cohort.videos:
        try:
            found[video] = probe_video(video)
        except VideoError as error:
            unreadable[video] = error.what
    return found, unreadable


def frame_size_px(cohort: Cohort, videos: dict[Path, VideoInfo] | None = None) -> tuple[int, int]:
    """(width, height) in px that the cohort's largest frames fill: the largest width and height of its videos
    (``videos``: ``probed_videos``, where already read), or of an imported project's images (read from their
    headers). Training costs that much per frame: the PyTorch engine pads smaller frames to it, and a training
    records it beside its speed (``splits.largest_frame``), which a later estimate scales from. The first video
    alone (read before) underestimated a cohort whose later videos are larger."""
    from PIL import Image, UnidentifiedImageError

    sizes = []
    if cohort.frames_extracted:
        for folder in cohort.videos:
            for image in visible_entries(folder):
                if image.suffix.lower() in IMAGE_SUFFIXES:
                    try:
                        with Image.open(image) as opened:
                            sizes.append(opened.size)
                    except (OSError, UnidentifiedImageError):
                        continue  # reported by validate_labels with the frame's labels
        if not sizes:
            raise _no_frame_images(cohort)
    else:
        sizes = [(info.width_px, info.height_px) for info in (probed_videos(cohort) if videos is None
                                                              else videos).values()]
        if not sizes:
            raise CohortError("no readable video in the cohort", file=cohort.root / "videos",
                              fix="check that the videos are complete H.264/MPEG-4 files")
    return max(width for width, _ in sizes), max(height for _, height in sizes)


def _no_frame_images(cohort: Cohort) -> CohortError:
    """The failure of an imported project whose labeled-data folders hold no frame posesweep (and DeepLabCut) can
    read: its frames saved in another format (TIFF from a high-speed camera's software, a conversion script), or
    not copied with its label files (a project shared without its images, kept out of Git as large files)."""
    files = [path for folder in cohort.videos for path in visible_entries(folder) if path.is_file()]
    others = [path for path in files if path.suffix.lower() not in (".h5", ".csv", ".pickle", ".pkl", ".yaml")]
    where = cohort.root / "labeled-data"
    allowed = ("frames as .png, .jpg or .jpeg files beside the label file that names them (as DeepLabCut's "
               "labeling GUIs open and save them)")
    if others:  # the frames, in a format of their own
        suffixes = sorted({path.suffix.lower() or "(no suffix)" for path in others})
        return CohortError(
            "the labeled-data folders hold no frame in a format DeepLabCut projects use", file=where,
            found=f"{len(others)} other file(s) ({', '.join(suffixes)}), e.g. {others[0].relative_to(cohort.root)}",
            allowed=allowed,
            fix=f"convert the frames to PNG beside them (e.g. in each folder: for f in *{suffixes[0]}; do ffmpeg "
                f"-v error -i \"$f\" \"${{f%.*}}.png\"; done), name the .png files in each "
                "CollectedData_<scorer>.csv, remove the .h5 beside it (posesweep reads the .csv; "
                "deeplabcut.convertcsv2h5 writes the .h5 again), then trigger a new run")
    label_files = [path for path in files if path.name.startswith("CollectedData_")]
    return CohortError(
        "the labeled-data folders hold no frame images: the frames were not copied with the labels", file=where,
        found=(f"only label files ({len(label_files)}: " + ", ".join(
            str(path.relative_to(cohort.root)) for path in label_files[:3]) + (", ..." if len(label_files) > 3
                                                                             else "") + ")") if label_files
        else "no file in any of its folders",
        allowed=allowed,
        fix="copy each labeled-data/<video>/ folder in whole, with the images its CollectedData file names "
            "(img0042.png ...), from the lab's own DeepLabCut project, then trigger a new run")


def available_frames(cohort: Cohort, study: StudyConfig, videos: dict[Path, VideoInfo] | None = None) -> int:
    """How many frames a study of this cohort can label at most. ``videos`` (``probed_videos``): under
    ``bad_video_policy=exclude``, only the videos OpenCV reads with ``frames_per_video`` frames or more count (the
    others are left out at ``extract_frames``)."""
    if cohort.frames_extracted:
        return sum(1 for folder in cohort.videos for image in visible_entries(folder)
                   if image.suffix.lower() in IMAGE_SUFFIXES)
    return len(_extracted_videos(cohort, study, videos)) * study.frames_per_video


def _extracted_videos(cohort: Cohort, study: StudyConfig, videos: dict[Path, VideoInfo] | None) -> list[Path]:
    if videos is None or study.bad_video_policy != "exclude":
        return list(cohort.videos)
    return [video for video, info in videos.items() if info.frame_count >= study.frames_per_video]
