"""A real Airflow: `airflow standalone` on a free port, the study triggered through the REST API."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import REPO

TINY_CONF = {"cohort": "tiny", "frames_per_video": 8, "frame_set_sizes": [10, 20], "train_fraction": 0.8,
             "max_iterations": 100, "snapshot_interval": 25, "allow_random_init": True}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _request(url, method="GET", body=None, token=None):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.fixture(scope="module")
def standalone(tiny_cohort, tmp_path_factory):
    home = tmp_path_factory.mktemp("airflow-home")
    data_root = tmp_path_factory.mktemp("airflow-data")
    shutil.copytree(tiny_cohort, data_root, dirs_exist_ok=True)
    from posesweep.intake import register_next_cohort

    assert register_next_cohort(data_root, quiet_s=0)["cohort"] == "tiny"  # known before Airflow starts
    port = _free_port()
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__API__PORT": str(port),
           "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
           "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"), "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW__CORE__PARALLELISM": "4",
           "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False", "POSESWEEP_DATA_ROOT": str(data_root),
           "POSESWEEP_INTAKE_INTERVAL_S": "15", "POSESWEEP_INTAKE_QUIET_S": "2",
           "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    log = open(home / "standalone.log", "w")
    process = subprocess.Popen([str(bin_dir / "airflow"), "standalone"], env=env, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        passwords = home / "simple_auth_manager_passwords.json.generated"
        while True:
            assert process.poll() is None, (home / "standalone.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "airflow standalone did not come up in 180 s"
            try:
                if passwords.exists() and _request(f"{base}/api/v2/version")[0] in (200, 401):
                    break
            except OSError:
                pass
            time.sleep(2)
        status, body = _request(f"{base}/auth/token", "POST",
                                {"username": "admin", "password": json.loads(passwords.read_text())["admin"]})
        assert status in (200, 201), body
        token = json.loads(body)["access_token"]
        deadline = time.monotonic() + 180
        while _request(f"{base}/api/v2/dags/dlc_training_study", token=token)[0] != 200:  # DAG parsed
            assert time.monotonic() < deadline, "the study DAG was not parsed in 180 s"
            time.sleep(3)
        yield {"base": base, "token": token, "data_root": data_root, "home": home}
    finally:
        os.kill(process.pid, signal.SIGINT)  # SIGINT: standalone stops its own parts
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


@pytest.mark.slow
def test_study_triggered_through_the_api_succeeds_and_its_report_is_served(standalone):
    base, token = standalone["base"], standalone["token"]
    status, body = _request(f"{base}/api/v2/dags/dlc_training_study/dagRuns", "POST",
                            {"logical_date": None, "conf": TINY_CONF}, token)
    assert status in (200, 201), body
    run_id = json.loads(body)["dag_run_id"]
    deadline = time.monotonic() + 900
    while True:
        state = json.loads(_request(f"{base}/api/v2/dags/dlc_training_study/dagRuns/{run_id}", token=token)[1])["state"]
        if state in ("success", "failed"):
            break
        assert time.monotonic() < deadline, "study run did not finish in 15 minutes"
        time.sleep(5)
    assert state == "success", (standalone["home"] / "standalone.log").read_text()[-3000:]

    from posesweep.layout import safe_name

    report = f"{base}/posesweep/runs/tiny/{safe_name(run_id)}/report/index.html"
    status, page = _request(report, token=token)
    assert status == 200 and b"DeepLabCut training-parameter study" in page
    status, summary = _request(report.replace("index.html", "summary.json"), token=token)
    assert status == 200 and json.loads(summary)["anova"]["test"]["n_levels"] == 4
    assert _request(report.replace("report/index.html", "validation/data_docs/index.html"), token=token)[0] == 200
    status, listing = _request(f"{base}/posesweep/", token=token)
    assert status == 200 and safe_name(run_id).encode() in listing
    # only authenticated users, and nothing outside a run's report and validation folders
    assert _request(report)[0] == 401
    for outside in ("study_config.json", "report/../study_config.json", "%2e%2e/%2e%2e/%2e%2e/etc/passwd"):
        assert _request(report.replace("report/index.html", outside), token=token)[0] == 404


@pytest.mark.slow
def test_invalid_trigger_configuration_is_refused(standalone):
    base, token = standalone["base"], standalone["token"]
    for bad in ({"max_iterations": -5}, {"network": "vgg16"}, {"cohort": "../../etc"}):
        status, body = _request(f"{base}/api/v2/dags/dlc_training_study/dagRuns", "POST",
                                {"logical_date": None, "conf": {**TINY_CONF, **bad}}, token)
        assert status == 400, (bad, status, body)


def _asset_triggered_runs(standalone, cohort):
    base, token = standalone["base"], standalone["token"]
    runs = json.loads(_request(f"{base}/api/v2/dags/dlc_training_study/dagRuns?limit=100", token=token)[1])
    found = []
    for run in runs["dag_runs"]:
        if run["run_type"] != "asset_triggered":
            continue
        events = json.loads(_request(f"{base}/api/v2/dags/dlc_training_study/dagRuns/{run['dag_run_id']}"
                                     f"/upstreamAssetEvents", token=token)[1])["asset_events"]
        if any(event["extra"].get("cohort") == cohort for event in events):
            found.append(run["dag_run_id"])
    return found


@pytest.mark.slow
def test_a_new_cohort_starts_exactly_one_study_run(standalone, tiny_cohort):
    shutil.copytree(tiny_cohort / "cohorts" / "tiny", standalone["data_root"] / "cohorts" / "arrival")
    deadline = time.monotonic() + 300
    while not _asset_triggered_runs(standalone, "arrival"):
        assert time.monotonic() < deadline, "no study run for the new cohort within 5 minutes"
        time.sleep(5)
    time.sleep(50)  # several more intake rounds: the same cohort version must not start a second run
    assert len(_asset_triggered_runs(standalone, "arrival")) == 1
    assert _asset_triggered_runs(standalone, "tiny") == []  # registered before: no run
