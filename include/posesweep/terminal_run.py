"""The study run once from a terminal (``make study``: ``dag.test()`` in one process, no scheduler).

Its output goes to the terminal and to a log file; Ctrl-C stops the whole study (not only the task it lands in:
Airflow's task runner takes a ``KeyboardInterrupt`` in a task as that task's failure, logs its traceback and goes
on with the next one, so a Ctrl-C during training stopped one network and started the next); a stopped run is
continued where it stopped with ``--continue <run id>``: the same run again, whose finished steps are skipped and
whose interrupted training goes on from its resume point.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import signal
import subprocess
import sys
import threading
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from .errors import WriterBusyError
from .layout import STUDY_CONFIG_FILE, RunLayout, safe_name
from .locks import LOCK_FILE, exclusive_writer

CONF_EXAMPLE_JSON = "'{\"cohort\": \"reach\", \"frame_set_sizes\": [14, 28]}'"
NAME_EQUALS_VALUE = re.compile(r"(\w+)\s*=\s*(\[[^\]]*\]|[^\s,]+)")  # cohort=reach, frame_set_sizes=[20,40]
RUN_ID_PREFIX = "manual__"  # dag.test's runs: manual__<the run's start, ISO 8601>
# a run folder's name is its run id made folder-safe (":" and "+" as "_", a hash of the id appended)
FOLDER_OF_A_RUN_ID = re.compile(r"manual__(\d{4}-\d\d-\d\dT\d\d)_(\d\d)_(\d\d(?:\.\d+)?)_(\d\d)_(\d\d)-[0-9a-f]{8}")


@dataclass(frozen=True)
class StoppedRun:
    """A run of the data root to continue: its id (its start, to the microsecond) and the parameters it began with."""

    run_id: str
    started: datetime
    conf: dict


def parse_arguments(argv: list[str] | None = None) -> tuple[dict, str | None]:
    """The run's parameters (``--conf``, a JSON object) or the run to continue (``--continue``); exits with one line
    saying how to write them where they cannot be read."""
    parser = argparse.ArgumentParser(description="Run the study once in-process (dag.test).")
    parser.add_argument("--conf", default="{}", help="JSON run configuration (parameter overrides)")
    parser.add_argument("--continue", dest="continue_run", metavar="RUN", default=None,
                        help="continue a stopped run where it stopped: its run id or its folder under runs/<cohort>/")
    arguments = parser.parse_args(argv)
    try:
        conf = json.loads(arguments.conf)
    except json.JSONDecodeError as bad:
        raise SystemExit(not_json_message(arguments.conf, bad)) from None
    if not isinstance(conf, dict):
        raise SystemExit(f"--conf is {type(conf).__name__} JSON, not an object: give the run's parameters as "
                         f"{{\"name\": value, ...}}, e.g. --conf '{{\"cohort\": \"reach\"}}'")
    if arguments.continue_run is not None and conf:
        raise SystemExit("--continue goes on with the run's own parameters (those it started with): leave out --conf, "
                         "or start a new run with --conf alone")
    return conf, arguments.continue_run


def not_json_message(text: str, error: json.JSONDecodeError) -> str:
    """The line a run's parameters that are not JSON get: how to write them, and, where they read as a mapping
    written otherwise (Python's or YAML's ``{'cohort': 'reach'}``, ``{cohort: reach}`` as the shell leaves it inside
    make's single quotes, ``cohort=reach``), the same parameters as JSON, to copy. Under make (``MAKELEVEL`` set)
    in make's words: the lab typed ``CONF=``, not ``--conf``."""
    import os

    name, given_as = ("CONF", "make study CONF=") if "MAKELEVEL" in os.environ else ("--conf", "--conf ")
    meant = _mapping_written_otherwise(text)
    return (f"{name} is not JSON ({error}): give the run's parameters as one JSON object in single quotes, e.g. "
            f"{given_as}{CONF_EXAMPLE_JSON}" + (f"; yours as JSON: {given_as}'{json.dumps(meant)}'" if meant else ""))


def _mapping_written_otherwise(text: str) -> dict | None:
    """``text`` read as a YAML flow mapping (which Python's dict literals of names, numbers and lists also are), as
    ``name=value`` pairs, or as a cohort's name alone, where it is one; else None."""
    import yaml

    if re.fullmatch(r"[A-Za-z_][\w.-]*", text.strip()):
        return {"cohort": text.strip()}
    pairs = NAME_EQUALS_VALUE.findall(text)
    if pairs and re.fullmatch(r"[\s,]*", NAME_EQUALS_VALUE.sub("", text)):
        text = "{" + ", ".join(f"{key}: {value}" for key, value in pairs) + "}"
    try:
        meant = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    return meant if isinstance(meant, dict) and meant and all(isinstance(key, str) for key in meant) else None


def run_id_started_at(started: datetime) -> str:
    """The id ``dag.test`` gives a manual run that starts (and is logically dated) at ``started``."""
    from airflow.utils.types import DagRunType

    return DagRunType.MANUAL.generate_run_id(suffix=started.isoformat())


def stopped_run(data_root: Path, given: str) -> StoppedRun:
    """The run ``given`` names (its run id, its folder's name, or its folder) under the data root's runs, with the
    parameters saved when it began; exits naming the runs there where there is none such."""
    name = Path(given.rstrip("/")).name  # a run id holds no "/"; a folder's path ends in the run's folder
    run_id = _run_id_of_folder(name) if FOLDER_OF_A_RUN_ID.fullmatch(name) else name
    runs = data_root / "runs"
    config = min(runs.glob(f"*/{safe_name(name)}/{STUDY_CONFIG_FILE}"), default=None)
    if config is None or run_id is None:
        known = sorted(runs.glob(f"*/*/{STUDY_CONFIG_FILE}"), key=lambda f: f.stat().st_mtime)[-5:]
        raise SystemExit(f"--continue {given}: no run of that name under {runs} (a run's folder, runs/<cohort>/<run>, "
                         f"holds its {STUDY_CONFIG_FILE} from its first step on). Runs there, newest last: " +
                         (", ".join(str(f.parent.relative_to(runs)) for f in known) or "none") +
                         ". Give the run id a stopped run printed, or its folder's name")
    try:
        if not run_id.startswith(RUN_ID_PREFIX):
            raise ValueError(run_id)
        started = datetime.fromisoformat(run_id[len(RUN_ID_PREFIX):])
    except ValueError:
        raise SystemExit(f"--continue {given}: {run_id} is not a run started from the command line "
                         f"(manual__<date and time>); continue a run of the Airflow UI there, by clearing its "
                         f"failed tasks") from None
    return StoppedRun(run_id, started, json.loads(config.read_text()))


def _run_id_of_folder(folder_name: str) -> str | None:
    """The run id a run folder was named after (its name keeps every digit; its hash tells the id apart)."""
    day_hour, minute, second, offset_h, offset_m = FOLDER_OF_A_RUN_ID.fullmatch(folder_name).groups()
    run_id = f"{RUN_ID_PREFIX}{day_hour}:{minute}:{second}+{offset_h}:{offset_m}"
    return run_id if safe_name(run_id) == folder_name else None


def forget_the_record_of(dag_id: str, run_id: str) -> None:
    """Airflow's record of the stopped run, so that ``dag.test`` can make a run of the same id again (it replaces
    a run of the same start only: a run started before posesweep gave both the same instant has two)."""
    from sqlalchemy import select

    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        for record in session.scalars(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id)):
            session.delete(record)


@contextmanager
def held_by_this_terminal(layout: RunLayout, run_id: str) -> Iterator[None]:
    """The run is this process's while it runs: ``--continue`` in a second terminal, while the first still runs it,
    is refused naming that process (before, it deleted the running run's Airflow record and ran its steps a second
    time beside it). The hold is the run folder's writer lock, gone with its holder however that ends; a folder made
    for it alone (a run that stopped before it began) is removed again, as is one for a cohort there is not."""
    if not layout.cohort_dir.is_dir():  # prepare_run fails naming the cohorts there: no run to continue, or to hold
        yield
        return
    made = [folder for folder in (layout.run_dir, *layout.run_dir.parents) if not folder.exists()]  # innermost 1st
    with ExitStack() as hold:
        try:
            hold.enter_context(exclusive_writer(layout.run_dir, f"run {run_id}"))
        except WriterBusyError as busy:
            raise SystemExit(f"run {run_id} is still running, {busy.found} (the terminal that started or continued "
                             f"it shows where it is): Ctrl-C there stops it (a network in training saves a resume "
                             f"point first), then continue it here. If that process should not be running, stop it, "
                             f"and its hold on the run goes with it") from None
        try:
            yield
        finally:
            hold.close()
            if layout.run_dir in made and [p.name for p in layout.run_dir.iterdir()] == [LOCK_FILE]:
                (layout.run_dir / LOCK_FILE).unlink()
                for folder in made:
                    if not any(folder.iterdir()):
                        folder.rmdir()


class CtrlC:
    """Ctrl-C stops the study, wherever it lands; so does SIGTERM (``kill <pid>``, a job scheduler's or a service
    manager's stop), which Airflow's task runner otherwise takes for its operator's ``on_kill`` alone: the run went
    on, and a training stopped by it was retried.

    In a task, Python raises ``KeyboardInterrupt`` there: a training child is asked to save a resume point and
    stop (``runner``), and Airflow's task runner then logs the interruption as the task's failure, with its
    traceback, and goes on with the next task. Here the traceback is left out (nothing failed), and the next line
    ``dag.test`` logs (the task's end) raises the interruption again outside any task, which ends the run."""

    active: "CtrlC | None" = None  # the terminal run's, while it runs: what SIGTERM in a task comes to

    def __init__(self) -> None:
        self.pressed = False
        self.signal_name = "Ctrl-C"

    def __call__(self, signum, frame) -> None:
        self.pressed = True
        if signum == signal.SIGTERM:
            self.signal_name = "SIGTERM"
        raise KeyboardInterrupt

    def install(self) -> None:
        import structlog

        CtrlC.active = self
        signal.signal(signal.SIGINT, self)
        signal.signal(signal.SIGTERM, self)  # until a task's runner sets its own: sigterm_stops_a_terminal_run
        logging.getLogger("airflow.sdk.definitions.dag").addFilter(self._ends_the_run)
        structlog.configure(processors=[self._no_traceback, *structlog.get_config()["processors"]])

    def _ends_the_run(self, record: logging.LogRecord) -> bool:
        if self.pressed:
            raise KeyboardInterrupt
        return True

    def _no_traceback(self, logger, method_name: str, event: dict) -> dict:
        import structlog

        if event.get("exc_info") and isinstance(sys.exc_info()[1], KeyboardInterrupt):
            raise structlog.DropEvent
        return event


def sigterm_stops_a_terminal_run(context=None) -> None:
    """Every task's ``on_execute_callback``. In a run from a terminal, Airflow's task runner has just set its own
    SIGTERM handler (the operator's ``on_kill``, then the task goes on): SIGTERM now does that and then what Ctrl-C
    does (``CtrlC``); the handler stays for the time between tasks. Anywhere else (a real Airflow's task process,
    whose supervisor sends SIGTERM to end the task) nothing changes."""
    stop = CtrlC.active
    if stop is None or threading.current_thread() is not threading.main_thread():
        return
    airflows = signal.getsignal(signal.SIGTERM)
    if getattr(airflows, "stops_the_terminal_run", False):
        return

    def stopped(signum, frame) -> None:
        if callable(airflows):
            airflows(signum, frame)  # the operator's on_kill (a pod deleted)
        stop(signum, frame)

    stopped.stops_the_terminal_run = True
    signal.signal(signal.SIGTERM, stopped)


class WhatTheRunWaitsFor(logging.Filter):
    """Run from the command line, Airflow logs "No tasks to run. unrunnable tasks: <task instances>" once a second
    while nothing can run: while ``wait_for_labels`` waits for its next look (every few minutes, for up to 14 days),
    while a failed task waits for its retry, and once more as a failed run ends. Said once per wait, in words; and
    not at all as a failed run ends (its failure is said above; before, it read "the run waits for the labels")."""

    def __init__(self, poke_interval_s: int) -> None:
        super().__init__()
        self.poke_interval_s, self.said = poke_interval_s, None

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith("No tasks to run"):
            return True
        unrunnable = record.args[0] if isinstance(record.args, tuple) and record.args else ()
        waiting = sorted((str(ti.state), ti.task_id, ti.map_index) for ti in unrunnable
                         if str(ti.state) in ("up_for_reschedule", "up_for_retry"))
        if waiting == self.said or not waiting:
            return False
        self.said = waiting
        retried = [task if index < 0 else f"{task}[{index}]"
                   for state, task, index in waiting if state == "up_for_retry"]
        if retried:
            record.msg, record.args = ("the run waits for the retry of %s (a retry follows a task's failure named "
                                       "above after its retry delay)", (", ".join(retried),))
        else:
            record.msg, record.args = (
                "the run waits for the labels named above: wait_for_labels looks again every %d minutes and the run "
                "goes on once they are saved; Ctrl-C stops it and prints the command that goes on where it stopped",
                (self.poke_interval_s // 60,))
        return True


class WithoutAirflowsCommentary:
    """``make study``'s console (and its log file) without Airflow's running commentary of its own machinery.

    Run from the command line, each task came with about 15 lines of Airflow's own: the task runner's
    ``::group::``/``::endgroup::`` markers for its web UI, "Task started", "Task instance state updated", "Updating
    RenderedTaskInstanceFields", "Pushing xcom", "Done. Returned value was: {...}", ``dag.test``'s "running task
    <TaskInstance ...>", and before the run its DAG bag and scheduling info: about 190 of a demo run's 240 lines,
    between posesweep's own. Left out: Airflow's lines below WARNING, except one line where each task starts.
    Its warnings and errors stay, as does everything of posesweep's and of the training processes, except the
    traceback through Airflow's task runner that came with a failure posesweep explains (its paragraph follows, from
    the DAG's failure callback: before, a label failure read as 40 lines of traceback, the paragraph inside it and
    the paragraph again). An unexplained failure (a bug) keeps its traceback."""

    STARTING = "[DAG TEST] starting task_id=%s map_index=%s"

    def install(self) -> None:
        import structlog

        structlog.configure(processors=[self._airflows_info_left_out, *structlog.get_config()["processors"]])
        for handler in logging.getLogger().handlers:  # dag.test's own lines go through the standard library's
            handler.addFilter(self._task_starts_only)

    @staticmethod
    def _airflows_info_left_out(logger, method_name: str, event: dict) -> dict:
        import structlog

        name = getattr(logger, "name", None) or event.get("logger_name") or ""
        if (name.startswith("airflow") or name == "task") and method_name in ("debug", "info"):
            raise structlog.DropEvent
        if event.get("exc_info") and _explained(sys.exc_info()[1]):
            raise structlog.DropEvent
        return event

    def _task_starts_only(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("airflow") or record.levelno >= logging.WARNING:
            return True
        if record.msg != self.STARTING:
            return False
        task_id, map_index = record.args
        record.msg, record.args = "task %s", (task_id if map_index < 0 else f"{task_id}[{map_index}]",)
        return True


def _explained(failure: BaseException | None) -> bool:
    """A failure whose paragraph the DAG's failure callback prints: a posesweep error (a retry follows), or the
    ``AirflowFailException`` the DAG raises with a posesweep paragraph (no retry can help)."""
    from airflow.sdk.exceptions import AirflowFailException

    from .errors import PosesweepError

    return isinstance(failure, (PosesweepError, AirflowFailException))


def new_log_file(logs: Path, cohort: str, started: datetime) -> Path:
    """A log file of this run's own, made empty: the cohort and the second the run started in its name, and a number
    after that where another terminal's run took the name first (two runs started in one second, of two cohorts,
    wrote into one file, each truncating the other's lines)."""
    logs.mkdir(parents=True, exist_ok=True)
    stem = f"study-{cohort}-{started:%Y%m%dT%H%M%S}"
    for number in range(1, 1000):
        log_file = logs / f"{stem}{f'-{number}' if number > 1 else ''}.log"
        try:
            log_file.open("x").close()
            return log_file
        except FileExistsError:
            continue
    raise FileExistsError(f"{logs / stem}-*.log: 999 runs' logs of one second")


def tee_output(log_file: Path):
    """Everything this process and its children print goes to the terminal and to ``log_file``; returns a closer."""
    import os

    # (a session of its own: Ctrl-C at the terminal stops the study, not its log's copy to the terminal)
    tee = subprocess.Popen(["tee", str(log_file)], stdin=subprocess.PIPE, start_new_session=True)
    saved = os.dup(1)
    sys.stdout.flush(), sys.stderr.flush()
    os.dup2(tee.stdin.fileno(), 1), os.dup2(tee.stdin.fileno(), 2)

    def close() -> None:
        sys.stdout.flush(), sys.stderr.flush()
        os.dup2(saved, 1), os.dup2(saved, 2)
        tee.stdin.close()
        tee.wait()

    return close


def continue_command(run_id: str) -> str:
    return f"  make study CONTINUE='{run_id}'\n(or: python dags/dlc_training_study.py --continue '{run_id}')"


def new_run_command(conf: dict) -> str:
    return f"make study CONF='{json.dumps(conf)}'"


def what_a_stop_leaves(layout: RunLayout, run_id: str, conf: dict, stopped_by: str = "Ctrl-C") -> str:
    """What Ctrl-C (or SIGTERM) left, and the command that goes on: the run's, once it began (its folder holds its
    parameters)."""
    if not layout.config_file.exists():  # stopped in prepare_run: no run to go on with
        return f"stopped ({stopped_by}) before the run began: start it again with {new_run_command(conf)}"
    return (f"stopped ({stopped_by}). What the run made stays in {layout.run_dir}. To go on where it stopped (finished "
            f"steps are not done again; a network stopped in training goes on from its last resume point):\n"
            f"{continue_command(run_id)}. A new run of the cohort also reuses its extracted frames and starts with "
            f"the labels saved in its project.")


def suggested_run(conf: dict, failures: list) -> str | None:
    """The new run with the parameters the failures' paragraphs suggest (each failure's own ``parameters``), as
    the paragraphs write them (``allow_random_init=true``); None where none suggests one. Where the study would
    train for days on this machine, also the run of a first look at it (``first_look_parameters``): the suggested
    one then trains for up to a day, which a lab trying posesweep on its data does not expect of the next command."""
    suggested: dict = {}
    first_look: dict = {}
    for failure in failures:
        suggested.update(getattr(failure, "parameters", None) or {})
        first_look.update(getattr(failure, "first_look_parameters", None) or {})
    if not suggested:
        return None
    settings = ", ".join(f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in suggested.items())
    said = f"With the setting suggested above ({settings}), a new run: {new_run_command({**conf, **suggested})}"
    if first_look:
        said += (f"\nA first look at the whole study on this machine in about half an hour, too short for the "
                 f"networks to learn (the report says so): {new_run_command({**conf, **suggested, **first_look})}")
    return said


def refuse_parameters_out_of_range(conf: dict) -> None:
    """A new run's parameters checked before it starts, as the trigger form checks them, with the paragraph
    ``prepare_run`` would give (before, a value of the wrong type or out of range ended ``make study`` in Airflow's
    40-line traceback of its parameter validation)."""
    from .config import StudyConfig, StudyConfigError

    try:
        StudyConfig.from_mapping(conf)
    except StudyConfigError as bad:
        bad.fix = "correct them in CONF and start the run again (the parameters: README, \"The DAG\")"
        bad.no_retry_note = "Nothing was started."
        raise SystemExit(bad.explain()) from None


def main(study_dag, data_root: Path, failures: list, labels_poke_interval_s: int) -> None:
    """``python dags/dlc_training_study.py --conf '{...}'`` (a new run) or ``--continue <run>`` (a stopped one)."""
    conf, continue_run = parse_arguments()
    logging.getLogger("airflow.sdk.definitions.dag").addFilter(WhatTheRunWaitsFor(labels_poke_interval_s))
    if continue_run is not None:
        stopped = stopped_run(data_root, continue_run)
        conf, started = stopped.conf, stopped.started
    else:
        refuse_parameters_out_of_range(conf)
        started = datetime.now(timezone.utc)
    run_id = run_id_started_at(started)
    cohort = conf.get("cohort", "demo")
    layout = RunLayout.create(data_root, cohort, run_id)
    ctrl_c = CtrlC()
    with held_by_this_terminal(layout, run_id):
        if continue_run is not None:
            forget_the_record_of(study_dag.dag_id, run_id)
        log_file = new_log_file(data_root / "logs", cohort, datetime.now())
        close_log = tee_output(log_file)
        if continue_run is not None:
            print(f"continuing run {run_id} of cohort {cohort} with the parameters it started with: finished steps "
                  f"are not done again", flush=True)
        try:
            ctrl_c.install()
            WithoutAirflowsCommentary().install()
            dag_run = study_dag.test(run_conf=conf, logical_date=started, run_after=started)
        except KeyboardInterrupt:
            dag_run = None
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            CtrlC.active = None
            close_log()
    if dag_run is None:
        print(f"\n{what_a_stop_leaves(layout, run_id, conf, ctrl_c.signal_name)}\nfull log: {log_file}")
        raise SystemExit(143 if ctrl_c.signal_name == "SIGTERM" else 130)
    report = layout.report_dir / "index.html"
    print(f"\nstudy run {dag_run.run_id}: {dag_run.state}")
    if str(dag_run.state) != "success" or not report.exists():
        final = [failure for failure in failures if not getattr(failure, "retried", False)]
        print("\n\n".join(final or failures) or "no task reported a failure")
        if layout.config_file.exists():  # past prepare_run: a run to go on with
            print(f"\nOnce that is fixed, where the fix is not to the run's parameters or landmarks (a run keeps "
                  f"those it began with), go on with this run, keeping its finished steps (trained networks "
                  f"included):\n{continue_command(run_id)};\notherwise start a new run: {new_run_command(conf)}")
        suggestion = suggested_run(conf, final)
        if suggestion:
            print(f"\n{suggestion}")
        print(f"\nfull log: {log_file}")
        raise SystemExit(1)
    print(f"report: {report}\nfull log: {log_file}")
