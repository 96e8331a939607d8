"""The local backend's child process: output streamed, how it ended mapped to an error that knows if a retry helps."""

import logging
import os
import re
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from posesweep.errors import PosesweepError
from posesweep.runner import TrainerCommandError, run_watched


def test_child_output_is_streamed_into_the_log_without_tensorflow_noise(caplog):
    noise = "E external/local_xla/xla/stream_executor/cuda/cuda_dnn.cc:9261] Unable to register cuDNN factory"
    no_gpu_shown = ("E external/local_xla/xla/stream_executor/cuda/cuda_driver.cc:282] failed call to cuInit: "
                    "CUDA_ERROR_NO_DEVICE: no CUDA-capable device is detected")  # prepare-training on a GPU machine
    with caplog.at_level(logging.INFO):
        run_watched([sys.executable, "-c", f"print('iteration 10'); print({noise!r}); print({no_gpu_shown!r}); "
                                           f"print('iteration 20')"], 30)
    assert "iteration 10" in caplog.text and "iteration 20" in caplog.text
    streamed = [r.getMessage() for r in caplog.records if not r.getMessage().startswith("running:")]
    assert streamed == ["iteration 10", "iteration 20"]


def test_deeplabcuts_chatter_stays_out_of_a_posesweep_childs_log_and_its_warnings_and_progress_reach_it(caplog):
    """In a real ``posesweep`` child: DeepLabCut's INFO logging and the prints of a DeepLabCut call are dropped;
    its warnings, posesweep's own lines and another thread's prints (the snapshot scorer's) reach the log."""
    child = (
        "import logging, threading\n"
        "from posesweep import cli\n"
        "from posesweep.quiet import library_prints_silenced\n"
        "def run(args):\n"
        "    logging.getLogger('root').info('Config:\\n{all_joints: [[0]]}')\n"
        "    logging.getLogger('numexpr.utils').info('NumExpr defaulting to 2 threads.')\n"
        "    logging.getLogger('deeplabcut.core').warning('a warning from DeepLabCut')\n"
        "    logging.getLogger('posesweep.training').info('posesweep info')\n"
        "    with library_prints_silenced() as console:\n"
        "        print('Loading ImageNet-pretrained resnet_50')\n"
        "        print('[frame set 10] iteration 20/40', file=console)\n"
        "        scorer = threading.Thread(target=print, args=('[frame set 10] scored snapshot 20',))\n"
        "        scorer.start(); scorer.join()\n"
        "    print('after the call')\n"
        "    return 0\n"
        "cli._run = run\n"
        "raise SystemExit(cli.main(['synth', '--out', 'unused']))\n")
    with caplog.at_level(logging.INFO):
        run_watched([sys.executable, "-c", child], 60)
    streamed = [r.getMessage() for r in caplog.records if not r.getMessage().startswith("running:")]
    assert streamed == ["deeplabcut.core: a warning from DeepLabCut", "posesweep.training: posesweep info",
                        "[frame set 10] iteration 20/40", "[frame set 10] scored snapshot 20", "after the call"]
    # the child's warning is a warning in the task log (it was logged at INFO: the Airflow UI showed it as such)
    levels = [r.levelname for r in caplog.records if not r.getMessage().startswith("running:")]
    assert levels == ["WARNING", "INFO", "INFO", "INFO", "INFO"]


def test_a_child_that_crashes_without_saying_why_is_retryable_with_its_last_lines():
    with pytest.raises(TrainerCommandError, match=r"exited with status 1(.|\n)*boom") as raised:
        run_watched([sys.executable, "-c", "import sys; print('boom'); sys.exit(1)"], 30)
    assert raised.value.retryable


def test_a_child_killed_by_sigkill_is_a_transient_failure():
    with pytest.raises(TrainerCommandError, match="killed by SIGKILL") as raised:
        run_watched([sys.executable, "-c", "import os, signal; print('x', flush=True); os.kill(os.getpid(), 9)"], 30)
    assert raised.value.retryable
    assert "the kernel recorded no out-of-memory kill" in str(raised.value)  # not mistaken for running out


MIB = 2**20


def _make_memory_cgroup(name: str, limit_bytes: int) -> Path:
    v1, v2 = Path("/sys/fs/cgroup/memory"), Path("/sys/fs/cgroup")
    if v1.is_dir():
        folder, limit_file = v1 / f"posesweep-test-{os.getpid()}-{name}", "memory.limit_in_bytes"
    else:
        folder, limit_file = v2 / f"posesweep-test-{os.getpid()}-{name}", "memory.max"
    try:
        folder.mkdir()
        (folder / limit_file).write_text(str(limit_bytes))
    except OSError as error:
        pytest.fail(f"these tests make a memory cgroup to run out of memory in, and could not ({error}): they "
                    f"need root and a writable /sys/fs/cgroup (a container: --privileged, or deselect them with "
                    f"-k 'not out_of_memory_killer')")
    return folder


def _remove_cgroup(folder: Path) -> None:
    for _ in range(100):  # the cgroup empties when the kernel has reaped what ran in it
        try:
            folder.rmdir()
            break
        except OSError:
            time.sleep(0.1)


@pytest.fixture
def memory_cgroup():
    """A memory cgroup of 512 MiB, as a container or pod has: the kernel's out-of-memory killer ends what goes
    over it."""
    folder = _make_memory_cgroup("small", 512 * MIB)
    yield folder
    _remove_cgroup(folder)


@pytest.fixture
def worker_cgroup():
    """A memory cgroup of 4 GiB beside ``memory_cgroup``: another worker's container on the same machine."""
    folder = _make_memory_cgroup("worker", 4096 * MIB)
    yield folder
    _remove_cgroup(folder)


def _in_cgroup(folder: Path, python: str) -> list[str]:
    return ["sh", "-c", f"echo $$ > {folder}/cgroup.procs && exec {sys.executable} -c {shlex.quote(python)}"]


def _watched_in_cgroup(folder: Path, child_python: str) -> PosesweepError:
    """``run_watched`` in a process inside the cgroup, as ``posesweep watch`` runs in a pod: its child inherits
    the limit. The error it raised, as the one line a ``posesweep`` command prints."""
    from posesweep.errors import error_from_line

    runner = ("from posesweep.errors import PosesweepError\n"
              "from posesweep.runner import run_watched\n"
              "try:\n"
              f"    run_watched({[sys.executable, '-c', child_python]!r}, 60)\n"
              "except PosesweepError as error:\n"
              "    print(error.to_line(), flush=True)\n")
    out = subprocess.run(_in_cgroup(folder, runner), capture_output=True, text=True, timeout=120)
    errors = [e for e in map(error_from_line, out.stdout.splitlines()) if e is not None]
    assert len(errors) == 1, out.stdout + out.stderr
    return errors[0]


def test_a_child_the_out_of_memory_killer_ends_says_so_and_alone_at_its_limit_is_not_retried(memory_cgroup):
    """It needs more than its cgroup allows and holds it all itself: the same work is killed again."""
    error = _watched_in_cgroup(memory_cgroup, "print('allocating', flush=True); held = b'x' * (2 << 30)")
    assert error.kind == "HostMemoryTooSmallError" and not error.retryable
    text = error.explain()
    assert "out-of-memory killer" in text and f"of 0.5 GiB (the memory limit of cgroup /{memory_cgroup.name})" in text
    peak_gib = float(re.search(r"peak resident memory ([\d.]+) GiB", text).group(1))
    assert 0.4 <= peak_gib <= 0.5 and "allocating" in text  # its own peak, and its last output
    assert "POSESWEEP_K8S_MEMORY" in error.fix and "batch_size" in error.fix


def test_a_child_the_out_of_memory_killer_ends_while_others_hold_the_memory_is_retried(memory_cgroup):
    """Another process (a second training on the worker) holds 320 of the 512 MiB; the child, the killer's
    choice, dies holding less than three quarters of the limit: a retry once the other ends may fit."""
    hold = "import time; held = b'x' * (320 << 20); print('holding', flush=True); time.sleep(120)"
    other = subprocess.Popen(_in_cgroup(memory_cgroup, hold), stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "holding"
        error = _watched_in_cgroup(memory_cgroup, "open('/proc/self/oom_score_adj', 'w').write('1000')\n"
                                                  "held = b'x' * (400 << 20)")
        assert other.poll() is None  # the killer took the child; the other process still holds its share
    finally:
        other.kill()
        other.wait()
    assert error.kind == "HostMemoryTakenError" and error.retryable
    assert "other processes held the rest" in error.explain() and "POSESWEEP_GPU_POOL_SLOTS" in error.fix


def test_the_out_of_memory_killer_ending_a_process_elsewhere_is_not_taken_for_the_childs_own(memory_cgroup,
                                                                                        worker_cgroup):
    """A shared machine: while this worker's training runs, the out-of-memory killer ends a process in another
    container (its own 512 MiB cgroup), and the training is then SIGKILLed from outside (a lost worker). The
    machine-wide count of kills grew, the training's cgroup's did not: a transient failure, not a memory one."""
    from posesweep.errors import error_from_line
    from posesweep.host_memory import oom_kill_count

    child = [sys.executable, "-c", "import os, time; print(os.getpid(), flush=True); time.sleep(120)"]
    runner = ("import logging, sys\n"
              "from posesweep.errors import PosesweepError\n"
              "from posesweep.runner import run_watched\n"
              "logging.basicConfig(level=logging.INFO, format='%(message)s', stream=sys.stdout)\n"
              "try:\n"
              f"    run_watched({child!r}, 60)\n"
              "except PosesweepError as error:\n"
              "    print(error.to_line(), flush=True)\n")
    training = subprocess.Popen(_in_cgroup(worker_cgroup, runner), stdout=subprocess.PIPE, text=True)
    try:
        lines = [training.stdout.readline().strip(), training.stdout.readline().strip()]
        assert lines[0].startswith("running:") and lines[1].isdigit(), lines
        machine_kills_before = oom_kill_count()
        elsewhere = subprocess.run(_in_cgroup(memory_cgroup, "held = b'x' * (2 << 30)"), timeout=60)
        assert elsewhere.returncode == -9 and oom_kill_count() > machine_kills_before  # the kill happened
        os.kill(int(lines[1]), 9)
        out, _ = training.communicate(timeout=60)
    finally:
        training.kill()
    errors = [e for e in map(error_from_line, out.splitlines()) if e is not None]
    assert len(errors) == 1, out
    assert errors[0].kind == "TrainerCommandError" and errors[0].retryable
    assert "no out-of-memory kill in its cgroup" in str(errors[0])


def test_an_input_error_reported_by_the_child_comes_back_with_its_paragraph_and_no_retry():
    child = ("import sys; from posesweep.training import TrainingDivergedError\n"
             "e = TrainingDivergedError('frame set 10: the loss became nan at iteration 30', found='loss nan', "
             "allowed='a finite loss', fix='check the labels')\n"
             "print(e.to_line()); sys.exit(e.exit_code)")
    with pytest.raises(PosesweepError) as raised:
        run_watched([sys.executable, "-c", child], 30)
    error = raised.value
    assert not error.retryable and error.kind == "TrainingDivergedError"
    paragraph = error.explain()
    assert "training diverged: frame set 10: the loss became nan at iteration 30" in paragraph
    assert "Found: loss nan" in paragraph and "What to do: check the labels" in paragraph
    assert "A retry cannot help" in paragraph


def test_a_tensorflow_network_diverging_from_random_weights_names_the_pytorch_engine_as_the_new_runs_parameter():
    """From pretrained weights the fix is the labels or the learning rate; from random ones DeepLabCut's TensorFlow
    ResNet (batch norm fixed) can blow up where the PyTorch engine learns: that comes first, as a parameter that
    reaches the parent (the command line's suggested new run)."""
    child = ("import sys; from posesweep.errors import TrainingDivergedError\n"
             "e = TrainingDivergedError.of_network(10, 'nan at iteration 6', 'loss nan at iteration 6', "
             "'pose_cfg.yaml', tensorflow_from_random_weights={random})\n"
             "print(e.to_line()); sys.exit(e.exit_code)")
    explained = {}
    for random in (False, True):
        with pytest.raises(PosesweepError) as raised:
            run_watched([sys.executable, "-c", child.format(random=random)], 30)
        assert not raised.value.retryable
        explained[random] = (raised.value.explain(), raised.value.parameters)
    assert "engine=pytorch" not in explained[False][0] and explained[False][1] == {}
    assert "What to do: check the labels" in explained[False][0]
    paragraph, parameters = explained[True]
    assert "Found: loss nan at iteration 6, from random weights" in paragraph
    assert "What to do: trigger with engine=pytorch" in paragraph and "lower the learning rate in" in paragraph
    assert parameters == {"engine": "pytorch"}


def test_a_stalled_child_is_killed_by_the_watchdog():
    started = time.monotonic()
    with pytest.raises(TrainerCommandError, match="stalled") as raised:
        run_watched([sys.executable, "-c", "print('started', flush=True); import time; time.sleep(120)"], 2)
    assert time.monotonic() - started < 30 and raised.value.retryable


def test_a_child_dies_with_its_parent_even_when_the_parent_is_sigkilled(tmp_path):
    """The OOM killer takes the task's process: its trainer must not keep writing beside the retry."""
    import os
    import signal
    import subprocess

    import psutil

    parent = subprocess.Popen([sys.executable, "-c",
                               "import sys; from posesweep.runner import run_watched; "
                               "run_watched([sys.executable, '-c', 'import time; print(1, flush=True); "
                               "time.sleep(600)'], 900)"])
    deadline = time.monotonic() + 60
    while not psutil.Process(parent.pid).children():
        assert parent.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    child = psutil.Process(parent.pid).children()[0]
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    child.wait(timeout=10)  # raises if the child outlives its parent by 10 s
    assert not psutil.pid_exists(child.pid) or child.status() == psutil.STATUS_ZOMBIE
    # the child's temporary folder, which the killed parent could not remove: the next watched child's parent does
    from posesweep.runner import SCRATCH_PREFIX, run_watched

    [left] = Path(tempfile.gettempdir()).glob(f"{SCRATCH_PREFIX}{parent.pid}-*")
    run_watched([sys.executable, "-c", "import os, tempfile; print(tempfile.gettempdir())"], 60,
                logging.getLogger("test"), None)
    assert not left.exists()
    assert not list(Path(tempfile.gettempdir()).glob(f"{SCRATCH_PREFIX}{os.getpid()}-*"))  # its own, removed


def test_a_second_writer_of_a_training_folder_is_refused_naming_the_holder(tmp_path):
    import subprocess

    from posesweep.errors import WriterBusyError
    from posesweep.locks import exclusive_writer

    holder = subprocess.Popen([sys.executable, "-c",
                               "import sys, time; from posesweep.locks import exclusive_writer\n"
                               f"with exclusive_writer({str(tmp_path)!r}, 'frame set 10'):\n"
                               "    print('held', flush=True); time.sleep(600)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(WriterBusyError) as refused:
            with exclusive_writer(tmp_path, "the network of frame set 10"):
                pass
        assert f"held by pid {holder.pid} on " in str(refused.value) and refused.value.retryable
    finally:
        holder.kill()
        holder.wait()
    with exclusive_writer(tmp_path, "the network of frame set 10"):  # the kernel released the dead holder's lock
        pass


def test_a_writer_told_to_wait_waits_for_the_holder_to_end_saying_so_once(tmp_path):
    """A task's retry and the training its killed try left saving a resume point: the retry waits, then writes."""
    import subprocess

    from posesweep.errors import WriterBusyError
    from posesweep.locks import exclusive_writer

    holder = subprocess.Popen([sys.executable, "-c",
                               "import sys, time; from posesweep.locks import exclusive_writer\n"
                               f"with exclusive_writer({str(tmp_path)!r}, 'frame set 10'):\n"
                               "    print('held', flush=True); sys.stdin.readline()\n"
                               f"    open({str(tmp_path / 'released')!r}, 'w').close()"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(WriterBusyError):  # a short wait runs out
        with exclusive_writer(tmp_path, "the network of frame set 10", wait_s=1, waiting=lambda _: None):
            pass
    notes: list[str] = []
    threading.Timer(2.0, lambda: holder.communicate("go\n")).start()  # the holder ends while the writer waits
    with exclusive_writer(tmp_path, "the network of frame set 10", wait_s=120, waiting=notes.append):
        assert (tmp_path / "released").exists()  # the lock came when the holder let it go, not before
    [note] = notes
    assert f"the network of frame set 10 is being written by another process (pid {holder.pid} on " in note
    assert "waiting up to 120 s" in note


def test_posesweep_watch_reports_the_inner_commands_input_error_with_its_exit_status(tmp_path):
    """What a training pod runs: the watchdog around the command; an input error keeps its kind and status."""
    import subprocess

    from posesweep.errors import InputError, error_from_line

    result = subprocess.run([sys.executable, "-m", "posesweep.cli", "watch", "train", f"--data-root={tmp_path}",
                             "--cohort=lab", "--run-name=-starts-with-a-dash", "--frame-set-size=10"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == InputError.exit_code, result.stdout + result.stderr
    errors = [e for e in map(error_from_line, result.stdout.splitlines()) if e is not None]
    assert len(errors) == 1 and errors[0].kind == "RunNotFoundError" and not errors[0].retryable
    assert "-starts-with-a-dash" in errors[0].explain()  # a run name starting with '-' stays a value


def test_a_person_running_posesweep_at_a_terminal_reads_the_errors_paragraph_not_the_runners_line(tmp_path):
    """`posesweep evaluate ...` by hand (re-scoring a run, as the README says) printed `POSESWEEP_ERROR {json}`."""
    import os
    import pty
    import subprocess

    from posesweep.errors import InputError

    terminal, its_other_end = pty.openpty()
    child = subprocess.Popen([sys.executable, "-m", "posesweep.cli", "evaluate", f"--data-root={tmp_path}",
                              "--cohort=lab", "--run-name=nosuch"], stdout=its_other_end, stderr=its_other_end)
    os.close(its_other_end)
    output = b""
    while True:
        try:
            chunk = os.read(terminal, 4096)
        except OSError:  # the child ended: the terminal has no other end any more
            break
        if not chunk:
            break
        output += chunk
    os.close(terminal)
    assert child.wait(timeout=120) == InputError.exit_code
    text = output.decode().replace("\r\n", "\n")
    assert "POSESWEEP_ERROR" not in text, text
    assert f"no such run: no study run nosuch of cohort lab\n  File: {tmp_path}/runs/lab/nosuch/study_config.json" \
        in text, text


def test_a_child_ending_by_os_exit_leaves_no_tensorflow_autograph_files_in_the_temporary_folder(tmp_path, monkeypatch,
                                                                                                  caplog):
    """TensorFlow's autograph writes a source file per converted function to the temporary folder and removes them
    only at a normal exit; a posesweep child that fails ends by ``os._exit`` (``cli.main``), and every failed
    training left them behind in /tmp. The child's temporary folder is its own and goes with it."""
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setenv("TMPDIR", str(temporary))
    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR, as a fresh worker process would
    script = tmp_path / "child.py"  # autograph converts only functions whose source file it can read
    script.write_text("import os, tempfile, tensorflow as tf\n"
                      "@tf.function\n"
                      "def clipped(x):\n"
                      "    if x > 0:\n"
                      "        return x\n"
                      "    return -x\n"
                      "clipped(tf.constant(1.0))\n"
                      "folder = tempfile.gettempdir()\n"
                      "print('autograph wrote', len([n for n in os.listdir(folder) if n.startswith('__autograph')]),"
                      " 'files in', folder, flush=True)\n"
                      "os._exit(3)\n")
    with caplog.at_level(logging.INFO), pytest.raises(TrainerCommandError, match="exited with status 3"):
        run_watched([sys.executable, str(script)], 120)
    lines = [record.getMessage() for record in caplog.records]
    wrote = [line.split() for line in lines if line.startswith("autograph wrote")]
    assert wrote and int(wrote[0][2]) > 0, lines  # the child really wrote autograph files
    child_folder = wrote[0][-1]
    assert child_folder.startswith(str(temporary)) and child_folder != str(temporary)  # its own folder
    assert not os.path.exists(child_folder)
    assert list(temporary.iterdir()) == []


def test_libraries_own_info_lines_stay_out_of_the_tasks_that_run_in_airflows_process():
    """prepare_run, validate_labels and the others run in the task's own process, where every library's INFO
    line reaches the task log: numexpr's thread count, GX's two hundred lines about its own registry."""
    child = ("import logging, os, sys\n"
             "logging.basicConfig(level=logging.INFO, stream=sys.stdout, format='%(name)s: %(message)s')\n"
             "os.environ.pop('NUMEXPR_MAX_THREADS', None); os.environ.pop('NUMEXPR_NUM_THREADS', None)\n"
             "from posesweep import stages\n"
             "import numexpr\n"
             "from posesweep.validation import _gx\n"
             "_gx().get_context(mode='ephemeral')\n"
             "logging.getLogger('posesweep.stages').info('own line')\n"
             "logging.getLogger('great_expectations.data_context').warning('a warning of theirs')\n")
    out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "posesweep.stages: own line" in lines and "great_expectations.data_context: a warning of theirs" in lines
    assert [line for line in lines if line.startswith(("numexpr", "great_expectations"))] == [
        "great_expectations.data_context: a warning of theirs"]


def _until(condition, what: str, limit_s: float = 60.0) -> None:
    """Wait for an event another process causes; the limit only turns a hang into a failure."""
    deadline = time.monotonic() + limit_s
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.05)


def test_networks_trained_at_once_get_a_gpu_each_and_one_more_waits_for_a_gpu_to_be_free(tmp_path):
    """Two GPUs, three children: each of the first two sees only its own GPU; the third starts once one of them
    has ended, on the GPU it left, and its task log says whom it waited for."""
    import threading

    from posesweep.gpus import one_gpu

    def child(name: str) -> list[str]:  # says which GPU it sees, then runs until the test lets it end
        code = (f"import os, pathlib, time\n"
                f"pathlib.Path({str(tmp_path / name)!r}).write_text(os.environ['CUDA_VISIBLE_DEVICES'])\n"
                f"while not pathlib.Path({str(tmp_path / (name + '.end'))!r}).exists(): time.sleep(0.05)\n")
        return [sys.executable, "-c", code]

    logs: dict[str, list[str]] = {}

    def task(name: str) -> None:
        logger = logging.getLogger(f"test.gpus.{name}")
        logger.setLevel(logging.INFO)
        records = logs.setdefault(name, [])
        handler = logging.Handler()
        handler.emit = lambda record: records.append(record.getMessage())
        logger.addHandler(handler)
        with one_gpu(("0", "1"), f"training {name}", logger, lock_dir=tmp_path / "locks", poll_s=0.05) as env:
            run_watched(child(name), 60, logger, env)

    tasks = {name: threading.Thread(target=task, args=(name,)) for name in ("a", "b", "c")}
    try:
        tasks["a"].start()
        tasks["b"].start()
        _until(lambda: (tmp_path / "a").exists() and (tmp_path / "b").exists(), "the first two children started")
        seen = {name: (tmp_path / name).read_text() for name in ("a", "b")}
        assert sorted(seen.values()) == ["0", "1"]  # each its own GPU, only it
        tasks["c"].start()
        _until(lambda: any("waiting for a free GPU" in m for m in logs.get("c", [])), "the third task waits")
        waiting = next(m for m in logs["c"] if "waiting for a free GPU" in m)
        assert "GPU 0: training" in waiting and "GPU 1: training" in waiting and not (tmp_path / "c").exists()
        (tmp_path / "a.end").touch()
        _until(lambda: (tmp_path / "c").exists(), "the third child started")
        assert (tmp_path / "c").read_text() == seen["a"]
    finally:  # every child may end, whatever failed
        for name in tasks:
            (tmp_path / f"{name}.end").touch()
        for thread in tasks.values():
            if thread.is_alive():
                thread.join(timeout=60)
    assert any(f"GPU {seen['a']} is free" in m for m in logs["c"])


def test_the_gpus_children_get_are_the_operators_else_the_workers_own(monkeypatch):
    from posesweep.gpus import machine_gpus
    from posesweep.settings import Settings, SettingsError

    assert Settings.from_env({"POSESWEEP_GPUS": "0, 2"}).gpus == ("0", "2")
    assert Settings.from_env({"POSESWEEP_GPUS": "none"}).gpus == ()
    assert Settings.from_env({}).gpus is None
    for wrong in ("0,,1", "1,1"):
        with pytest.raises(SettingsError, match="POSESWEEP_GPUS"):
            Settings.from_env({"POSESWEEP_GPUS": wrong})
    assert machine_gpus(("3",), {"CUDA_VISIBLE_DEVICES": "0,1"}) == ("3",)
    assert machine_gpus(None, {"CUDA_VISIBLE_DEVICES": "GPU-8f2e,GPU-11aa"}) == ("GPU-8f2e", "GPU-11aa")
    assert machine_gpus(None, {"CUDA_VISIBLE_DEVICES": ""}) == ()  # the worker may use none
    assert machine_gpus(None, {"CUDA_VISIBLE_DEVICES": "-1"}) == ()  # TensorFlow's way of saying none
    assert machine_gpus(None, {"CUDA_VISIBLE_DEVICES": "1,-1,0"}) == ("1",)  # as CUDA reads it


def test_a_gpu_split_into_mig_instances_gives_each_instance_not_the_gpu():
    """``nvidia-smi -L`` as NVIDIA's MIG user guide shows it: GPU 0 split in two instances, GPU 1 whole (CUDA runs
    on a MIG instance only when CUDA_VISIBLE_DEVICES names its UUID); the R450 drivers' older UUID form too."""
    from posesweep.gpus import cuda_devices_listed

    listing = """GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a77)
  MIG 3g.20gb     Device  0: (UUID: MIG-c6d4f1ef-42e4-5de3-91c7-45d71c87eb3f)
  MIG 3g.20gb     Device  1: (UUID: MIG-cba663e8-9bed-5b25-b243-5985ef7c9beb)
GPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-4f0b5e0e-9e83-ca1d-5bf3-0c3e0e2c53ad)
"""
    assert cuda_devices_listed(listing) == ("MIG-c6d4f1ef-42e4-5de3-91c7-45d71c87eb3f",
                                            "MIG-cba663e8-9bed-5b25-b243-5985ef7c9beb", "1")
    older = """GPU 0: A100-SXM4-40GB (UUID: GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a77)
  MIG 1g.5gb Device 0: (UUID: MIG-GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a77/7/0)
"""
    assert cuda_devices_listed(older) == ("MIG-GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a77/7/0",)
    assert cuda_devices_listed("GPU 0: NVIDIA GeForce RTX 3090 (UUID: GPU-1)\nGPU 1: NVIDIA GeForce RTX 3090 "
                               "(UUID: GPU-2)\n") == ("0", "1")
    assert cuda_devices_listed("No devices were found\n") == ()


def test_the_training_pool_has_a_slot_per_gpu_unless_the_operator_says_otherwise():
    from posesweep.gpus import pool_slots
    from posesweep.settings import Settings

    assert pool_slots(Settings.from_env({"POSESWEEP_GPUS": "0,1,2"})) == 3  # a network training on each
    assert pool_slots(Settings.from_env({"POSESWEEP_GPUS": "0,1,2", "POSESWEEP_GPU_POOL_SLOTS": "2"})) == 2
    assert pool_slots(Settings.from_env({"POSESWEEP_GPUS": "none"})) == 1  # a CPU: one at a time, as before
    assert pool_slots(Settings.from_env({"POSESWEEP_GPUS": "0,1", "POSESWEEP_TRAINING_BACKEND": "kubernetes",
                                         "POSESWEEP_K8S_IMAGE": "trainer"})) == 1  # the cluster's GPUs, not these
