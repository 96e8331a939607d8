"""A real Airflow: `airflow standalone` on PostgreSQL on a free port, the study triggered through the REST API."""

from __future__ import annotations

import json
import shutil
import time

import pytest

from conftest import REPO
from posesweep.layout import safe_name
from support.airflow_local import LocalAirflow

TINY_CONF = {"cohort": "tiny", "frames_per_video": 8, "frame_set_sizes": [10, 20], "train_fraction": 0.8,
             "max_iterations": 100, "snapshot_interval": 25, "allow_random_init": True}


@pytest.fixture(scope="module")
def airflow(tiny_cohort, tmp_path_factory):
    data_root = tmp_path_factory.mktemp("airflow-data")
    shutil.copytree(tiny_cohort, data_root, dirs_exist_ok=True)
    from posesweep.intake import register_next_cohort

    # a cohort of the lab's own videos, not yet labelled: its study waits for labels. Other footage than tiny's:
    # a copy of tiny's videos would rightly be served the labels tiny's run makes meanwhile (labels carried from
    # other cohorts' runs), and whether the wait ended depended on which run got there first
    from posesweep.synthetic import SynthOptions, generate_cohort

    waiting = data_root / "cohorts" / "awaiting-labels"
    generate_cohort(waiting, SynthOptions(participants=3, duration_s=2.0, seed=8))
    manifest = json.loads((waiting / "cohort.json").read_text())
    manifest.pop("kind")
    (waiting / "cohort.json").write_text(json.dumps(manifest))
    registered = {register_next_cohort(data_root, quiet_s=0)["cohort"] for _ in range(2)}
    assert registered == {"tiny", "awaiting-labels"}  # known before Airflow starts: no announcement
    with LocalAirflow(tmp_path_factory.mktemp("airflow-home"), data_root,
                      {"POSESWEEP_INTAKE_INTERVAL_S": "15", "POSESWEEP_INTAKE_QUIET_S": "2"}) as airflow:
        yield airflow


@pytest.mark.slow
def test_study_triggered_through_the_api_succeeds_and_its_report_is_served(airflow):
    status, body = airflow.request("/api/v2/dags/dlc_training_study/dagRuns", "POST",
                                   {"logical_date": None, "conf": {**TINY_CONF, "cohort": "awaiting-labels"}})
    assert status in (200, 201), body
    waiting_id = json.loads(body)["dag_run_id"]
    status, body = airflow.request("/api/v2/dags/dlc_training_study/dagRuns", "POST",
                                   {"logical_date": None, "conf": TINY_CONF})
    assert status in (200, 201), body
    run_id = json.loads(body)["dag_run_id"]
    assert airflow.wait_for_run("dlc_training_study", run_id, 900) == "success", airflow.log_tail()
    # the cohort started first still waits for its labels, and did not hold the other one up
    status, body = airflow.request(f"/api/v2/dags/dlc_training_study/dagRuns/{waiting_id}")
    assert status == 200 and json.loads(body)["state"] == "running", body
    status, body = airflow.request(f"/api/v2/dags/dlc_training_study/dagRuns/{waiting_id}/taskInstances"
                                   f"/wait_for_labels")
    assert status == 200 and json.loads(body)["state"] in ("up_for_reschedule", "running"), body

    report = f"/posesweep/runs/tiny/{safe_name(run_id)}/report/index.html"
    status, page = airflow.request(report)
    assert status == 200 and b"DeepLabCut training-parameter study" in page
    status, summary = airflow.request(report.replace("index.html", "summary.json"))
    assert status == 200 and json.loads(summary)["anova"]["test"]["n_levels"] == 4
    assert airflow.request(report.replace("report/index.html", "validation/data_docs/index.html"))[0] == 200
    assert error_lines(airflow, run_id) == []  # a successful run's task logs hold progress, not errors
    status, listing = airflow.request("/posesweep/")
    assert status == 200 and safe_name(run_id).encode() in listing
    # only logged-in users (the 403 for a user who may not read the study is the last test: standalone forces the
    # simple auth manager), sandboxed, and nothing outside a run's report and validation folders
    assert airflow.request(report, authenticated=False)[0] == 401
    docs = report.replace("report/index.html", "validation/data_docs/index.html")
    for path in (report, docs):
        status, _, headers = airflow.request_with_headers(path)
        assert status == 200 and headers["X-Content-Type-Options"] == "nosniff"
        policy = headers["Content-Security-Policy"]
        assert policy.startswith("sandbox") and "script-src 'none'" in policy
    for outside in ("study_config.json", "report/../study_config.json", "%2e%2e/%2e%2e/%2e%2e/etc/passwd"):
        assert airflow.request(report.replace("report/index.html", outside))[0] == 404


def error_lines(airflow, run_id: str) -> list[str]:
    """Lines at ERROR level or above in the task logs of one run (Airflow writes them as JSON lines)."""
    logs = [path for path in airflow.task_logs() if f"run_id={run_id}" in str(path)]
    assert len(logs) >= 10, logs  # every task of the run wrote its log
    found = []
    for path in logs:
        for line in path.read_text().splitlines():
            try:
                level = str(json.loads(line).get("level", "")).lower()
            except ValueError:
                level = "error" if " ERROR " in line or "[error" in line else ""
            if level in ("error", "critical", "fatal"):
                found.append(f"{path.name}: {line[:300]}")
    return found


@pytest.mark.slow
def test_invalid_trigger_configuration_is_refused(airflow):
    for bad in ({"max_iterations": -5}, {"network": "vgg16"}, {"cohort": "../../etc"}):
        status, body = airflow.request("/api/v2/dags/dlc_training_study/dagRuns", "POST",
                                       {"logical_date": None, "conf": {**TINY_CONF, **bad}})
        assert status == 400, (bad, status, body)


def _asset_triggered_runs(airflow, cohort):
    runs = json.loads(airflow.request("/api/v2/dags/dlc_training_study/dagRuns?limit=100")[1])["dag_runs"]
    found = []
    for run in runs:
        if run["run_type"] != "asset_triggered":
            continue
        events = json.loads(airflow.request(f"/api/v2/dags/dlc_training_study/dagRuns/{run['dag_run_id']}"
                                            f"/upstreamAssetEvents")[1])["asset_events"]
        if any(event["extra"].get("cohort") == cohort for event in events):
            found.append(run["dag_run_id"])
    return found


@pytest.mark.slow
def test_a_new_cohort_starts_exactly_one_study_run(airflow, tiny_cohort):
    shutil.copytree(tiny_cohort / "cohorts" / "tiny", airflow.data_root / "cohorts" / "arrival")
    deadline = time.monotonic() + 300
    while not _asset_triggered_runs(airflow, "arrival"):
        assert time.monotonic() < deadline, "no study run for the new cohort within 5 minutes"
        time.sleep(5)
    time.sleep(50)  # several more intake rounds: the same cohort version must not start a second run
    assert len(_asset_triggered_runs(airflow, "arrival")) == 1
    assert _asset_triggered_runs(airflow, "tiny") == []  # registered before: no run


@pytest.mark.slow
def test_a_user_who_may_not_read_the_study_gets_403_from_the_report_plugin(tmp_path):
    """Airflow's API server alone, with an auth manager that hides the study DAG from one user: the plugin asks the
    auth manager about dlc_training_study, not only whether someone is logged in."""
    data_root = tmp_path / "data"
    report = data_root / "runs" / "cohort-a" / "run-1" / "report" / "index.html"
    report.parent.mkdir(parents=True)
    report.write_text("<html><body>DeepLabCut training-parameter study</body></html>")
    env = {"AIRFLOW__CORE__AUTH_MANAGER": "support.study_access.StudyHiddenFromOutsider",
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,outsider:admin",
           "PYTHONPATH": str(REPO / "tests")}
    with LocalAirflow(tmp_path / "home", data_root, env, components=("api-server",)) as airflow:
        path = "/posesweep/runs/cohort-a/run-1/report/index.html"
        status, page = airflow.request(path)
        assert status == 200 and b"training-parameter study" in page  # admin may read the study
        outsider = airflow.token_for("outsider")
        assert airflow.request("/api/v2/version", token=outsider)[0] == 200  # logged in, and an admin elsewhere
        for denied in (path, "/posesweep/"):
            status, body = airflow.request(denied, token=outsider)
            assert status == 403, (denied, status, body[:300])
        assert airflow.request(path, authenticated=False)[0] == 401
