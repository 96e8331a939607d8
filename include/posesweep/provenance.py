"""Which software trained the study's networks and computed its statistics, as a methods section names it.

Each network's ``training.json`` records the versions of the process that trained it (a pod's image, or the
worker's environment), not those of the process that writes the report: a run continued after an upgrade, or
networks trained in pods of different images, may mix versions, and a difference between two frame sets' networks
is then partly the software's. The report names the versions and says where networks differ.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path
from typing import Mapping

from .layout import read_json, write_json_atomic

ENGINE_PACKAGES = {"tensorflow": ("deeplabcut", "tensorflow"), "pytorch": ("deeplabcut", "torch", "timm")}
ANALYSIS_PACKAGES = ("numpy", "pandas", "scipy", "statsmodels")
UNRECORDED = {"software": "not recorded"}  # a network trained before posesweep recorded its software
SOFTWARE_AT_START_FILE = "software_at_start.json"


def package_versions(names: tuple[str, ...]) -> dict[str, str]:
    """Installed versions by distribution name (``not installed`` where one is missing)."""
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def posesweep_version(source: Path | None = None, env: Mapping[str, str] | None = None) -> str:
    """posesweep's version and, where it runs from a git checkout (``source``: its package folder), the commit
    (``+ changes`` where the checkout's tracked files differ from it): a lab's clone and its edits, which a version
    number alone does not tell. An image has no checkout: the commit it was built from, where its build gave one
    (``POSESWEEP_COMMIT``, docker/*/Dockerfile)."""
    version = importlib.metadata.version("posesweep")
    source = source or Path(__file__).resolve().parent
    built_from = (os.environ if env is None else env).get("POSESWEEP_COMMIT", "").strip()
    from_image = f"{version} (commit {built_from}, built into the image)" if built_from else version
    try:
        commit = subprocess.run(["git", "-C", str(source), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                                text=True, timeout=10)
        if commit.returncode != 0:
            return from_image
        changed = subprocess.run(["git", "-C", str(source), "status", "--porcelain", "--untracked-files=no", "."],
                                 capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):  # no git in a pod's image
        return from_image
    edits = " + changes" if changed.returncode == 0 and changed.stdout.strip() else ""
    return f"{version} (commit {commit.stdout.strip()}{edits})"


def training_software(engine: str) -> dict[str, str]:
    """What trains a network with ``engine``, recorded in its ``training.json``."""
    return {"posesweep": posesweep_version(), "python": platform.python_version(),
            **package_versions(ENGINE_PACKAGES[engine])}


def software_at_start(training_dir: Path, engine: str) -> dict[str, str]:
    """The software that started this network's training: written by its first training process, read by the
    ones that resume it (a run continued after an upgrade trains one network with two versions)."""
    path = Path(training_dir) / SOFTWARE_AT_START_FILE
    if not path.exists():
        write_json_atomic(path, training_software(engine))
    return read_json(path)


def record_fields(training_dir: Path, engine: str) -> dict:
    """A finished network's ``software`` (this process's) and, where its training began with other software,
    ``software_before_resume``."""
    now = training_software(engine)
    path = Path(training_dir) / SOFTWARE_AT_START_FILE
    started = read_json(path) if path.exists() else now
    return {"software": now, **({"software_before_resume": started} if started != now else {})}


def analysis_software() -> dict[str, str]:
    """What computes the statistics and the report, in this process."""
    return {"posesweep": posesweep_version(), "python": platform.python_version(),
            **package_versions(ANALYSIS_PACKAGES)}


def described(software: dict[str, str]) -> str:
    """``deeplabcut 3.0.2, torch 2.14.1, ...``: the engine's packages first, then posesweep's own, then Python."""
    order = [*ENGINE_PACKAGES["pytorch"], "tensorflow", *ANALYSIS_PACKAGES, "posesweep", "python"]
    ranked = sorted(software, key=lambda name: order.index(name) if name in order else len(order))
    return ", ".join(f"{name} {software[name]}" for name in ranked)


def training_software_by_network(training: list[dict]) -> list[dict]:
    """The distinct software the networks were trained with, each with its frame sets, in frame-set order."""
    groups: dict[str, dict] = {}
    for record in sorted(training, key=lambda r: r["frame_set_size"]):
        for software in (record.get("software_before_resume"), record.get("software") or UNRECORDED):
            if software:
                groups.setdefault(described(software), {"software": software, "frame_set_sizes": []})[
                    "frame_set_sizes"].append(record["frame_set_size"])
    return list(groups.values())


def mixed_software_warning(groups: list[dict]) -> str | None:
    """Where the networks were trained with different software: which frame sets with which, and what it means."""
    groups = [g for g in groups if g["software"] != UNRECORDED]  # not known to differ
    if len(groups) < 2:
        return None
    which = "; ".join(f"{frame_sets(g['frame_set_sizes'])}: {described(g['software'])}" for g in groups)
    return (f"the networks were trained with different software ({which}): a difference between their errors may be "
            f"partly the software's, not only the frame count's (a network listed twice began with one and was "
            f"resumed with the other). A new run trains them all in one environment")


def software_sentence(software: dict) -> str:
    """The report's line: what trained the networks (each distinct set, with its frame sets where they differ) and
    what computed the statistics."""
    groups = software["training"]
    if len(groups) == 1:
        trained = f"Networks trained with {described(groups[0]['software'])}"
    else:
        trained = "Networks trained with " + "; ".join(
            f"{described(g['software'])} ({frame_sets(g['frame_set_sizes'])})" for g in groups)
    shared = {name: version for name, version in software["analysis"].items()
              if all(g["software"].get(name) == version for g in groups)}
    analysis = {name: version for name, version in software["analysis"].items() if name not in shared}
    return f"{trained}; statistics and this report with {described(analysis)}."


def frame_sets(sizes: list[int]) -> str:
    return f"frame set{'s' if len(sizes) > 1 else ''} {', '.join(map(str, sizes))}"
