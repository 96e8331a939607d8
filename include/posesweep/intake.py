"""Which cohorts under the data root are new or changed, once each.

A cohort's version is a fingerprint of its files (relative path, size, mtime of
everything under ``videos/`` and ``labeled-data/``, of ``cohort.json``, a project's
``config.yaml`` and videos left beside ``videos/``; not of hidden files: a ``.DS_Store`` that Finder writes
when someone looks at the folder is no new cohort version). The intake registry
(``<data root>/runs/intake_registry.json``) remembers the version each cohort was
last announced at, so every version starts exactly one study. A cohort still being
copied in (anything under it created or changed in the last ``quiet_s`` seconds,
by its inode change time too: ``cp -a`` and ``rsync -a`` give copies the source's
old modification times) waits for the next look.

A quiet folder that is not a cohort posesweep can study (videos in the wrong place,
half a DeepLabCut project) is announced all the same, with a warning here: its
study run then fails at ``prepare_run`` saying what to fix, where the lab looks,
instead of the folder being passed over without a word. An empty folder is not
announced.
"""

from __future__ import annotations

import hashlib
import json
import logging
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import PosesweepError
from .layout import read_json, visible_entries, write_json_atomic

REGISTRY = "intake_registry.json"
# The asset whose events announce cohort versions. Not tied to the data root's path: Airflow keeps one active
# asset per name, and a deployment has one data root (POSESWEEP_DATA_ROOT) anyway.
COHORTS_ASSET_NAME = "posesweep_cohorts"
COHORTS_ASSET_URI = "posesweep://cohorts"
STUDIED_FOLDERS = ("videos", "labeled-data")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CohortVersion:
    """What one walk of a cohort folder tells the intake."""

    fingerprint: str
    newest_change: float  # the newest change to anything under the folder, in epoch seconds
    holds_files: bool  # any file not hidden: False for a folder made for a cohort not copied in yet


def cohort_version(cohort_dir: Path) -> CohortVersion:
    """The cohort folder's version, from one walk of it."""
    from .cohort import VIDEO_SUFFIXES  # not at import: DAG files import this module

    cohort_dir = Path(cohort_dir)
    newest, read, holds_files = 0.0, [], False
    for path in [cohort_dir, *cohort_dir.rglob("*")]:
        try:
            info = path.stat()
        except OSError:  # removed while looking (a copy's temporary file), or a dangling link
            continue
        newest = max(newest, info.st_mtime, info.st_ctime)
        relative = path.relative_to(cohort_dir)
        if not stat.S_ISREG(info.st_mode):
            continue
        if any(part.startswith(".") for part in relative.parts):  # Finder's .DS_Store, macOS's ._ companions:
            continue  # no new version (a new study) for a folder looked at; their changes still count as changes
        holds_files = True
        if len(relative.parts) > 1 and relative.parts[0] in STUDIED_FOLDERS:  # what a study reads, in this order
            read.append(((STUDIED_FOLDERS.index(relative.parts[0]), relative), info))
        elif len(relative.parts) == 1 and (path.name in ("cohort.json", "config.yaml")
                                           or path.suffix.lower() in VIDEO_SUFFIXES):
            read.append(((len(STUDIED_FOLDERS), relative), info))
    digest = hashlib.sha256()
    for (_, relative), info in sorted(read, key=lambda item: item[0]):
        digest.update(f"{relative}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
    return CohortVersion(digest.hexdigest()[:16], newest, holds_files)


def registry_file(data_root: Path) -> Path:
    return Path(data_root) / "runs" / REGISTRY


def _registry(data_root: Path) -> dict[str, str]:
    path = registry_file(data_root)
    return read_json(path) if path.exists() else {}


def next_new_cohort(data_root: Path, quiet_s: float = 60.0) -> dict | None:
    """The first complete cohort whose version was not announced yet ({"cohort", "version"}), or None.

    Nothing is recorded here: ``record_announced`` does that once the announcement exists, so a failure in
    between announces the cohort again rather than losing it.
    """
    from .cohort import CohortError, load_cohort  # not at import: DAG files import this module

    registry = _registry(data_root)
    cohorts_dir = Path(data_root) / "cohorts"
    for cohort_dir in visible_entries(cohorts_dir):  # not a NAS's .snapshot
        if not cohort_dir.is_dir():
            continue
        version = cohort_version(cohort_dir)
        if (registry.get(cohort_dir.name) == version.fingerprint or time.time() - version.newest_change < quiet_s
                or not version.holds_files):  # an empty folder: made for a cohort not copied in yet
            continue
        try:
            load_cohort(cohort_dir)
        except CohortError as error:
            log.warning("cohort %s cannot be studied as it is; announced all the same, so that its study run "
                        "fails at prepare_run saying what to fix:\n%s", cohort_dir.name, error)
        return {"cohort": cohort_dir.name, "version": version.fingerprint}
    return None


def record_announced(data_root: Path, announced: dict) -> None:
    """Remember that this cohort version has been announced (so it starts no second study)."""
    registry = _registry(data_root)
    registry[announced["cohort"]] = announced["version"]
    write_json_atomic(registry_file(data_root), registry)


def register_next_cohort(data_root: Path, quiet_s: float = 60.0) -> dict | None:
    """``next_new_cohort`` and ``record_announced`` in one step, for a data root prepared outside Airflow."""
    found = next_new_cohort(data_root, quiet_s)
    if found is not None:
        record_announced(data_root, found)
    return found


def cohorts_waiting(event_extras: list[dict]) -> list[dict]:
    """Cohort versions announced in a study run's triggering events, oldest first, one entry per cohort.

    Airflow may hand one queued run several events (cohorts announced while a run
    was active). An event's extra is ``{"cohort", "version"}`` from the intake, or
    ``{"pending": [...]}`` from a study run passing on cohorts it did not study.
    A cohort named twice keeps its newest version, at its first place in line.
    """
    order: list[str] = []
    newest: dict[str, dict] = {}
    for extra in event_extras:
        items = list(extra.get("pending", []))
        if "cohort" in extra:
            items.append({"cohort": extra["cohort"], "version": extra.get("version")})
        for item in items:
            if item["cohort"] not in newest:
                order.append(item["cohort"])
            newest[item["cohort"]] = {"cohort": item["cohort"], "version": item.get("version")}
    return [newest[name] for name in order]


def announced_run_parameters(data_root: str | Path, cohort: str, defaults: dict) -> dict:
    """The parameters of a run the intake started for ``cohort``: those of the cohort's latest run that passed
    ``prepare_run`` (a grown cohort is studied again as the lab last studied it: its engine, frame sets, seed, ...),
    else ``defaults`` (the DAG's: the paper's design). The choice is logged, naming the run it follows."""
    from .config import StudyConfig

    configs = [path for path in (Path(data_root) / "runs" / cohort).glob("*/study_config.json")
               if not path.parent.name.startswith(".")]
    if not configs:
        log.info("cohort %s: its first run, with the DAG's default parameters (the paper's design); a later "
                 "announced run of the cohort takes the parameters of its latest run", cohort)
        return {**defaults, "cohort": cohort}
    latest = max(configs, key=lambda path: path.stat().st_mtime)
    known = set(StudyConfig.__dataclass_fields__)
    earlier = {k: v for k, v in read_json(latest).items() if k in known}
    differ = {k: v for k, v in earlier.items() if k in defaults and defaults[k] != v and k != "cohort"}
    log.info("cohort %s: the parameters of its latest run, %s%s", cohort, latest.parent.name,
             f" ({', '.join(f'{k}={v}' for k, v in differ.items())}; the rest the DAG's defaults)" if differ
             else " (the DAG's defaults)")
    return {**defaults, **earlier, "cohort": cohort}


def with_the_announced_parameters(error: PosesweepError, params: dict, defaults: dict) -> PosesweepError:
    """``error`` (an announced run's ``prepare_run`` failure) told the parameters the run took from the cohort's
    latest run: a lab who triggers the suggested run from the form starts from the DAG's defaults instead, and
    loses the engine, frame sets and seed it last studied the cohort with. Its fix then gives the whole run."""
    kept = {k: v for k, v in params.items() if k in defaults and defaults[k] != v and k != "cohort"}
    if error.retryable or not kept:
        return error
    conf = {"cohort": params["cohort"], **kept, **error.parameters}
    error.fix = (f"{error.fix}. " if error.fix else "") + (
        "This run was started by the cohort's announcement, with the parameters of the cohort's latest run ("
        f"{', '.join(f'{k}={json.dumps(v)}' for k, v in kept.items())}); a run triggered from the form starts from "
        f"the DAG's defaults instead: trigger the new one with {json.dumps(conf)}")
    return error
