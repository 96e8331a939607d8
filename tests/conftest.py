"""Shared fixtures. Airflow reads its settings at import, so they are set here, before any test imports it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("POSESWEEP_SHARED_DIR", REPO.parent / "shared")) / "fixtures"

_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="posesweep-airflow-"))
os.environ["AIRFLOW_HOME"] = str(_AIRFLOW_HOME)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "dags")
os.environ["GX_ANALYTICS_ENABLED"] = "false"
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"


def pytest_sessionfinish(session, exitstatus) -> None:
    """The session's AIRFLOW_HOME (SQLite database, dag.test task logs) goes with a passing run (one was left in
    the temporary folder per run); a failing run keeps it for reading."""
    if exitstatus == 0:
        shutil.rmtree(_AIRFLOW_HOME, ignore_errors=True)


def pytest_terminal_summary(terminalreporter, exitstatus) -> None:
    if exitstatus != 0:
        terminalreporter.write_line(f"Airflow home of this test run (dag.test task logs): {_AIRFLOW_HOME}")


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated SQLite metadata database in a temporary AIRFLOW_HOME (dag.test needs one)."""
    subprocess.run([str(Path(sys.executable).parent / "airflow"), "db", "migrate"], check=True,
                   capture_output=True)
    return _AIRFLOW_HOME


@pytest.fixture(scope="session")
def tiny_cohort(tmp_path_factory) -> Path:
    """A data root holding a small synthetic cohort: 3 participants, 2 s at 30 fps, 160x120."""
    from posesweep.synthetic import SynthOptions, generate_cohort

    root = tmp_path_factory.mktemp("data")
    generate_cohort(root / "cohorts" / "tiny", SynthOptions(participants=3, duration_s=2.0, seed=7))
    return root


@pytest.fixture
def reaching_project(tmp_path) -> Path:
    """A copy of the real, human-labeled DeepLabCut Reaching project (the fixture is read-only)."""
    import shutil

    source = FIXTURES / "dlc-reaching"
    assert source.is_dir(), f"shared fixture missing: {source}"
    return Path(shutil.copytree(source, tmp_path / "dlc-reaching"))


def cut_short_with_its_index_first(video: Path) -> None:
    """``video`` as a copy cut short leaves it when its MP4 index comes first ("fast start", as web exports and some
    cameras write it): it opens, announces all its frames and decodes only the first half. (Cut short with the index
    at the end, as most cameras write it, an MP4 does not open at all.)"""
    import imageio_ffmpeg

    whole = video.with_name(f"whole-{video.name}")
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(video), "-c", "copy", "-movflags",
                    "+faststart", str(whole)], check=True)
    video.write_bytes(whole.read_bytes()[:whole.stat().st_size // 2])
    whole.unlink()


def labeled_run(cohort_root: Path, data_root: Path, conf: dict, run_name: str) -> dict:
    """A copy of a cohort's data root taken through frame extraction and labeling: the input of training."""
    import shutil

    from posesweep import stages

    shutil.copytree(cohort_root, data_root)
    run = stages.prepare_run(data_root, conf, run_name)
    stages.extract_cohort_frames(run)
    stages.label_frames(run)
    return run


def training_ready_run(cohort_root: Path, data_root: Path, conf: dict, run_name: str):
    """A labeled run taken through validation, frame sets and ``posesweep prepare-training``: what training reads."""
    from posesweep import stages
    from posesweep.runner import run_posesweep

    run = labeled_run(cohort_root, data_root, conf, run_name)
    stages.validate_label_table(run)
    stages.make_frame_sets(run)
    run_posesweep(run.command("prepare-training"))
    return run


def analysed_as_the_report_says(layout, engine: str, frame_set_size: int, iteration: int, video: Path,
                                folder: Path) -> tuple[Path, dict]:
    """Follow the report's lines for a network's snapshot: DeepLabCut's own ``analyze_videos`` on a copy of
    ``video`` in ``folder`` (TensorFlow: after setting the snapshotindex in config.yaml, as the report's first line
    says). Returns the predictions file DeepLabCut wrote beside the copy, and the network as the report names it."""
    import re
    import shutil

    from deeplabcut.utils.auxiliaryfunctions import edit_config

    from posesweep.networks import analyze_videos_call, network_addresses
    from posesweep.stages import load_frame_sets

    config_file = layout.project_dir / "config.yaml"
    (network,) = [n for n in network_addresses(layout, load_frame_sets(layout), iteration, engine)
                  if n["frame_set_size"] == frame_set_size]
    folder.mkdir(parents=True)
    video = Path(shutil.copy(video, folder))
    code = analyze_videos_call(config_file, network, engine).replace("/path/to/video.mp4", str(video))
    setting = re.match(r"# in (.+): snapshotindex: (\d+)\n", code)
    if setting:
        edit_config(setting.group(1), {"snapshotindex": int(setting.group(2))})
    exec(code, {})
    (written,) = folder.glob(f"{video.stem}DLC*.h5")
    return written, network
