"""A real, local Airflow (``airflow standalone``) with posesweep's DAGs and plugin, for tests and screenshots.

Starts the API server, scheduler, DAG processor and triggerer (LocalExecutor on
SQLite) on a free port with its own ``AIRFLOW_HOME``, waits until the API answers
and the study DAG is parsed, and gets a JWT for ``/api/v2``. Stopping sends
SIGINT to standalone's own pid (SIGTERM would orphan its workers).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Standalone's SQLite: in its default rollback journal a reader blocks a writer's commit, and at start-up two API
# requests deadlocked that way until SQLite's busy timeout failed one with a 500. The database is created in WAL
# mode (readers never block the writer); writers still wait their turn, up to 15 s.
SQLITE_CONNECT_ARGS = {"timeout": 15}
SQLITE_CONNECT_ARGS_SETTING = "posesweep.standalone.SQLITE_CONNECT_ARGS"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Standalone:
    def __init__(self, home: Path, data_root: Path, extra_env: dict[str, str] | None = None,
                 startup_timeout_s: float = 180):
        self.home, self.data_root, self.port = Path(home), Path(data_root), free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.startup_timeout_s = startup_timeout_s
        bin_dir = Path(sys.executable).parent
        self.env = {**os.environ, "AIRFLOW_HOME": str(self.home), "AIRFLOW__API__PORT": str(self.port),
                    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base}/execution/",
                    "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
                    "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
                    "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW__CORE__PARALLELISM": "4",
                    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS": SQLITE_CONNECT_ARGS_SETTING,
                    "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False", "POSESWEEP_DATA_ROOT": str(self.data_root),
                    "GX_ANALYTICS_ENABLED": "false", "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
                    **(extra_env or {})}
        self.log_file = self.home / "standalone.log"
        self.process: subprocess.Popen | None = None
        self.token = ""

    def __enter__(self) -> "Standalone":
        self.home.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_file, "w")
        subprocess.run([str(Path(sys.executable).parent / "airflow"), "db", "migrate"], env=self.env, check=True,
                       stdout=self._log, stderr=subprocess.STDOUT)
        with sqlite3.connect(self.home / "airflow.db") as db:  # persistent: standalone's own migrate keeps it
            db.execute("PRAGMA journal_mode=WAL")
        self.process = subprocess.Popen([str(Path(sys.executable).parent / "airflow"), "standalone"], env=self.env,
                                        stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self._wait_until_ready()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self.process and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_file.read_text()[-chars:] if self.log_file.exists() else ""

    def request(self, path: str, method: str = "GET", body: dict | None = None,
                authenticated: bool = True) -> tuple[int, bytes]:
        headers = {"Content-Type": "application/json"}
        if authenticated and self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        passwords = self.home / "simple_auth_manager_passwords.json.generated"
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"airflow standalone exited:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"airflow standalone not ready in {self.startup_timeout_s:.0f} s:\n{self.log_tail()}")
            try:
                if passwords.exists() and self.request("/api/v2/version", authenticated=False)[0] in (200, 401):
                    break
            except OSError:
                pass
            time.sleep(2)
        self.password = json.loads(passwords.read_text())["admin"]
        status, body = self.request("/auth/token", "POST", {"username": "admin", "password": self.password},
                                    authenticated=False)
        if status not in (200, 201):
            raise RuntimeError(f"no token from /auth/token: {status} {body[:300]!r}")
        self.token = json.loads(body)["access_token"]
        while self.request("/api/v2/dags/dlc_training_study")[0] != 200:
            if time.monotonic() > deadline:
                raise TimeoutError(f"dlc_training_study not parsed in time:\n{self.log_tail()}")
            time.sleep(3)

    def wait_for_run(self, dag_id: str, run_id: str, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        while True:
            state = json.loads(self.request(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")[1])["state"]
            if state in ("success", "failed") or time.monotonic() > deadline:
                return state
            time.sleep(5)
