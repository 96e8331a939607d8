"""
### Cohort intake

Looks under `<data root>/cohorts/` every few minutes. A cohort that is new or has
changed (and has been quiet for a minute, so half-copied folders wait) is
announced as an event on the `posesweep_cohorts` asset, which starts
`dlc_training_study` for that cohort. Each cohort version is announced once.
A folder posesweep cannot study as it is (videos beside `videos/` instead of in
it, half a DeepLabCut project) is announced too, with a warning here, so that its
study run fails at `prepare_run` saying what to fix; empty folders are not.

To add a cohort: copy `<name>/videos/*.mp4` (and, for human labels,
`<name>/labeled-data/<video>/CollectedData_labeler.h5`) into the cohorts folder.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Asset, dag, task
from airflow.sdk.exceptions import AirflowSkipException

from posesweep.intake import COHORTS_ASSET_NAME, COHORTS_ASSET_URI
from posesweep.settings import Settings

SETTINGS = Settings.from_env()
COHORTS = Asset(name=COHORTS_ASSET_NAME, uri=COHORTS_ASSET_URI)


@dag(
    dag_id="cohort_intake",
    schedule=timedelta(seconds=SETTINGS.intake_interval_s),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["posesweep"],
    doc_md=__doc__,
)
def cohort_intake():
    @task(outlets=[COHORTS])
    def announce_new_cohort(*, outlet_events=None) -> dict:
        """One new or changed cohort per run becomes one asset event (so each starts its own study)."""
        from posesweep.intake import next_new_cohort

        found = next_new_cohort(SETTINGS.data_root, SETTINGS.intake_quiet_s)
        if found is None:
            raise AirflowSkipException("no new or changed cohort")
        outlet_events[COHORTS].extra = found
        return found

    @task
    def record_announced(announced: dict) -> None:
        """Only now, with the event emitted, is the version remembered: a failure before this re-announces it."""
        from posesweep.intake import record_announced

        record_announced(SETTINGS.data_root, announced)

    record_announced(announce_new_cohort())


cohort_intake()
