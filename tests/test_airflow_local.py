"""The real-Airflow harness stops its servers even when the test run that started them is killed from outside."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import psutil

from conftest import REPO

# A process group standing where `airflow standalone` stands: its leader stops its worker on SIGINT, as
# standalone does, and says it was asked that way.
AIRFLOW_LIKE = """
import signal, subprocess, sys
from pathlib import Path
worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
def stop(*_):
    Path(sys.argv[1]).write_text("SIGINT")
    worker.terminate(); worker.wait(); sys.exit(0)
signal.signal(signal.SIGINT, stop)
print(worker.pid, flush=True)
while True:
    signal.pause()
"""

# What a test run does: PostgreSQL, then a server group in a session of its own; it stops both when told to on
# its stdin, unless it is killed first.
OWNER = """
import json, signal, subprocess, sys
from pathlib import Path
from support.airflow_local import MetadataDatabase
home = Path(sys.argv[1])
with MetadataDatabase(home) as database:
    group = subprocess.Popen([sys.executable, "-c", sys.argv[2], str(home / "interrupted")], stdout=subprocess.PIPE,
                             text=True, start_new_session=True)
    database.reaper.stop_process_group_if_i_die(group.pid)
    worker = int(group.stdout.readline())
    print(json.dumps({"postmaster": database.server.get_pid(), "leader": group.pid, "worker": worker,
                      "reaper": database.reaper.process.pid}), flush=True)
    sys.stdin.readline()
    group.send_signal(signal.SIGINT)
    group.wait()
"""


def stop_leftovers(processes: dict[str, psutil.Process]) -> None:
    """What a failing test must not leave running either."""
    for process in processes.values():
        try:
            process.send_signal(signal.SIGQUIT if process.name() == "postgres" else signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass


def start_owner(home):
    owner = subprocess.Popen([sys.executable, "-c", OWNER, str(home), AIRFLOW_LIKE], cwd=REPO / "tests",
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pids = json.loads(owner.stdout.readline())
    processes = {name: psutil.Process(pid) for name, pid in pids.items()}
    assert all(p.is_running() for p in processes.values())
    return owner, processes


def test_servers_of_a_test_run_killed_from_outside_are_stopped_not_left_running(tmp_path):
    owner, processes = start_owner(tmp_path)
    owner.send_signal(signal.SIGKILL)  # no teardown, no atexit: what `kill -9` of a test run does
    owner.wait()
    try:
        gone, alive = psutil.wait_procs(list(processes.values()), timeout=120)
    finally:
        stop_leftovers(processes)
    assert not alive, f"still running after their owner died: {alive}"
    assert (tmp_path / "interrupted").read_text() == "SIGINT"  # asked as standalone is asked, not killed
    assert not (tmp_path / "postgres" / "postmaster.pid").exists()  # PostgreSQL shut down, not left crashed
    said = owner.stderr.read()  # the watcher's words (it holds this pipe too, until it exits)
    assert f"started airflow {processes['leader'].pid} died" in said and "started postgres" in said, said


def test_a_test_run_that_stops_its_servers_itself_leaves_its_watcher_nothing_to_do(tmp_path):
    owner, processes = start_owner(tmp_path)
    try:
        _, said = owner.communicate("stop\n", timeout=120)
        gone, alive = psutil.wait_procs(list(processes.values()), timeout=60)
    finally:
        stop_leftovers(processes)
    assert owner.returncode == 0, said
    assert not alive, f"still running after their owner stopped them: {alive}"
    assert processes["reaper"] in gone and "reaper:" not in said  # told "done": it ended, having stopped nothing


def test_make_airflow_on_a_port_another_program_holds_says_so_and_which_port_to_use_instead(tmp_path):
    """With port 8080 taken (a Jupyter server, a second `make airflow`), Airflow started without its API server, the
    "address already in use" among a hundred lines, while the address printed led to the other program. Now
    `make airflow` stops before starting anything, naming the port and a free one to use."""
    import socket

    import pytest

    from support.airflow_local import main, port_in_use

    with socket.socket() as other_program:
        other_program.bind(("127.0.0.1", 0))
        other_program.listen()
        taken = other_program.getsockname()[1]
        assert port_in_use(taken)
        with pytest.raises(SystemExit) as stopped:
            main(["--home", str(tmp_path / "airflow"), "--port", str(taken)])
    said = str(stopped.value.code)
    assert said.startswith(f"make airflow: port {taken} is already in use on this machine")
    suggested = int(said.rsplit("AIRFLOW_PORT=", 1)[1].split()[0])
    assert suggested > taken and not port_in_use(suggested)
    assert not (tmp_path / "airflow").exists()  # no PostgreSQL started, no home made
