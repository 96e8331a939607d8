"""One GPU to each training or scoring child of the local backend, for as long as it runs.

A lab's workstation often has two to four GPUs. Every child saw all of them and DeepLabCut (either engine)
trains on the first, so networks trained at once (``POSESWEEP_GPU_POOL_SLOTS``) all shared GPU 0 while the others
idled; on the lent H100, four networks sharing one GPU gave no more images per second than one. Here each child
gets ``CUDA_VISIBLE_DEVICES`` naming one GPU that no other posesweep child on this machine holds: an advisory
``flock`` per GPU in the machine's temporary folder, held by the task's process while its child runs and released
by the kernel however the task ends. With every GPU held, the task waits for one, saying so in its log.

Which GPUs: ``POSESWEEP_GPUS`` (indices or UUIDs, comma-separated; ``none`` turns this off), else the worker's own
``CUDA_VISIBLE_DEVICES``, else every GPU ``nvidia-smi`` lists (a GPU split into MIG instances: each instance);
a machine without GPUs changes nothing.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping

from .errors import GpuCannotRunError, GpusNotSeenError, GpuTooOldError, PosesweepError, SomeGpusTooOldError
from .settings import Settings

log = logging.getLogger(__name__)
LOCK_DIR = Path(tempfile.gettempdir()) / "posesweep-gpus"


def machine_gpus(setting: tuple[str, ...] | None, env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The GPUs children may be given: the setting where the operator made one, else the worker's own
    ``CUDA_VISIBLE_DEVICES``, else what ``nvidia-smi`` lists, else none."""
    if setting is not None:
        return setting
    env = os.environ if env is None else env
    if "CUDA_VISIBLE_DEVICES" in env:  # CUDA reads the list up to its first invalid entry ("-1": none at all)
        visible = []
        for gpu in (entry.strip() for entry in env["CUDA_VISIBLE_DEVICES"].split(",")):
            if not gpu or gpu.startswith("-"):
                break
            visible.append(gpu)
        return tuple(visible)
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return ()
    return cuda_devices_listed(listed.stdout) if listed.returncode == 0 else ()


def cuda_devices_listed(listing: str) -> tuple[str, ...]:
    """The devices a CUDA process can be given, from ``nvidia-smi -L``: each GPU by its index, a GPU split into MIG
    instances (an A100's or H100's partitions) as those instances' UUIDs: CUDA runs on a MIG instance only when
    ``CUDA_VISIBLE_DEVICES`` names it, one per process, and not on the partitioned GPU itself."""
    gpus: list[list[str]] = []  # per GPU: its index, then its MIG instances' UUIDs
    for line in listing.splitlines():
        gpu = re.match(r"GPU (\d+):", line.strip())
        mig = re.search(r"\(UUID: (MIG-[^)\s]+)\)", line)
        if gpu:
            gpus.append([gpu.group(1)])
        elif mig and gpus and line.lstrip().startswith("MIG"):
            gpus[-1].append(mig.group(1))
    return tuple(device for gpu in gpus for device in (gpu[1:] or gpu[:1]))


def pool_slots(settings: Settings) -> int:
    """How many networks the Airflow pool lets train at once: ``POSESWEEP_GPU_POOL_SLOTS`` where set, else one per
    GPU of the local backend (at least one)."""
    if settings.gpu_pool_slots:
        return settings.gpu_pool_slots
    return max(1, len(machine_gpus(settings.gpus))) if settings.training_backend == "local" else 1


def _lock_file(lock_dir: Path, gpu: str) -> Path:
    return lock_dir / f"gpu-{''.join(c if c.isalnum() or c in '-_' else '_' for c in gpu)}.lock"


def _try_lock(path: Path) -> int | None:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError:  # made by another user's posesweep on this machine: locking needs no write
        fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


@contextmanager
def one_gpu(gpus: tuple[str, ...], holder: str, logger: logging.Logger = log, lock_dir: Path = LOCK_DIR,
            poll_s: float = 2.0) -> Iterator[dict[str, str]]:
    """The child's environment for one free GPU of ``gpus`` (``{"CUDA_VISIBLE_DEVICES": gpu}``), held until the
    block ends; waits while all are held. No GPUs: an empty environment, nothing held."""
    if not gpus:
        yield {}
        return
    if not lock_dir.is_dir():
        lock_dir.mkdir(parents=True, exist_ok=True)
        try:
            lock_dir.chmod(0o1777)  # every user's posesweep on the machine shares its GPUs
        except OSError:
            pass
    waiting_since = None
    while True:
        for gpu in gpus:
            fd = _try_lock(_lock_file(lock_dir, gpu))
            if fd is None:
                continue
            try:
                try:
                    os.ftruncate(fd, 0)
                    os.write(fd, f"{holder} (pid {os.getpid()} on {socket.gethostname()})\n".encode())
                except OSError:  # opened read-only: the waiting message then names no holder
                    pass
                if waiting_since is not None:
                    logger.info("GPU %s is free after %.0f s: %s runs on it", gpu, time.monotonic() - waiting_since,
                                holder)
                else:
                    logger.info("%s runs on GPU %s (CUDA_VISIBLE_DEVICES=%s)", holder, gpu, gpu)
                yield {"CUDA_VISIBLE_DEVICES": gpu}
            finally:
                os.close(fd)  # releases the lock
            return
        if waiting_since is None:
            waiting_since = time.monotonic()
            held = "; ".join(f"GPU {gpu}: {_holder(lock_dir, gpu)}" for gpu in gpus)
            logger.info("waiting for a free GPU: all %d are in use (%s); more networks at once than GPUs "
                        "(POSESWEEP_GPU_POOL_SLOTS > %d) wait like this", len(gpus), held, len(gpus))
        time.sleep(poll_s)


def _holder(lock_dir: Path, gpu: str) -> str:
    try:
        return _lock_file(lock_dir, gpu).read_text().strip() or "another process"
    except OSError:
        return "another process"


# why an engine may not see the GPU it was given, and what makes it see it
GPU_SETUP_FIX = {
    "tensorflow": "TensorFlow 2.15 uses a GPU only with CUDA 12.2 and cuDNN 8.9 beside it (pip install "
                  "'tensorflow[and-cuda]==2.15.0.post1' in the environment, or train in the trainer image, "
                  "docker/trainer)",
    "pytorch": "torch finds no usable GPU (torch.cuda.is_available() is False): the NVIDIA driver is older than "
               "this torch's CUDA build needs (compare nvidia-smi's CUDA version with torch.version.cuda), or torch "
               "is a CPU-only build; install the torch of requirements.txt on a current driver",
}
UNSEEN_GPU_FIX = {**GPU_SETUP_FIX, "tensorflow": GPU_SETUP_FIX["tensorflow"] + ", or train with engine pytorch"}
# torch sees a GPU older than the architectures its build was compiled for, and then fails every kernel there ("no
# kernel image is available"): requirements.txt's torch 2.14 is a CUDA 13 build, compiled for compute capability
# 7.5 and newer (torch.cuda.get_arch_list()), so a V100 (7.0) or a GTX 1080 Ti (6.1), common in labs, is seen and
# cannot be trained on. Its probe runs one kernel there (``torch_kernel_problem``).
TORCH_GPU_PROBE = "from posesweep.gpus import torch_gpu_probe_line; print(torch_gpu_probe_line())"


def torch_kernel_problem(device) -> list[str] | None:
    """None where torch runs a kernel on ``device`` (a CUDA ``torch.device``); else (``cannot run``, the GPU's
    name, its compute capability, torch's version, the architectures its build is for, the error)."""
    import torch

    try:
        torch.ones(8, device=device).mul(2).sum().item()
        return None
    except Exception as error:  # RuntimeError or torch.AcceleratorError: "no kernel image is available ..."
        major, minor = torch.cuda.get_device_capability(device)
        said = str(error).strip().splitlines()
        return ["cannot run", torch.cuda.get_device_name(device), f"{major}.{minor}", torch.__version__,
                " ".join(torch.cuda.get_arch_list()), said[0] if said else type(error).__name__]


def torch_gpu_probe_line() -> str:
    """What torch's probe child prints: the number of GPUs torch sees, or its kernel problem on the first,
    tab-separated."""
    import torch

    seen = torch.cuda.device_count() if torch.cuda.is_available() else 0
    problem = torch_kernel_problem(torch.device("cuda", 0)) if seen else None
    return "\t".join(problem) if problem else str(seen)


# what a training child of each engine runs to find its GPUs: the number it sees, printed
ENGINE_GPU_PROBES = {
    "tensorflow": "import tensorflow as tf; print(len(tf.config.list_physical_devices('GPU')))",
    "pytorch": TORCH_GPU_PROBE,
}
ENGINE_GPU_PROBE_TIMEOUT_S = 300.0


def probe_engine_gpu(engine: str, gpu: str, timeout_s: float = ENGINE_GPU_PROBE_TIMEOUT_S) -> list[str] | None:
    """What ``engine`` finds in a child process given ``gpu`` as a training child is (its ``CUDA_VISIBLE_DEVICES``),
    with this Python: the engine imported for real (TensorFlow: seconds), nothing else. The probe's last line,
    split at tabs: the number of GPUs it sees, or torch's ``cannot run`` and what it found. None where the probe
    itself fails or runs out of time: then nothing is known."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": gpu, "TF_CPP_MIN_LOG_LEVEL": "3"}
    try:
        done = subprocess.run([sys.executable, "-c", ENGINE_GPU_PROBES[engine]], env=env, capture_output=True,
                              text=True, timeout=timeout_s)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = done.stdout.strip().splitlines()
    return lines[-1].split("\t") if done.returncode == 0 and lines else None


def engine_sees_a_gpu(engine: str, gpu: str, timeout_s: float = ENGINE_GPU_PROBE_TIMEOUT_S) -> bool | None:
    """Whether ``engine`` sees a GPU it can run on, in a child given ``gpu`` (``probe_engine_gpu``); None where
    nothing is known."""
    return _sees(probe_engine_gpu(engine, gpu, timeout_s))


def _sees(found: list[str] | None) -> bool | None:
    if found is None or found[0] == "cannot run":
        return None if found is None else False
    try:
        return int(found[0]) > 0
    except ValueError:
        return None


def torch_cannot_run_on(gpu: str, found: list[str], error_class: type = GpuCannotRunError,
                        other_engine_sees: bool = False) -> PosesweepError:
    """torch's probe (or a training's first step) found GPU ``gpu`` but ran no kernel there: ``found`` is
    (``cannot run``, its name, its compute capability, torch's version, its build's architectures, the error)."""
    name, capability, version, arch_list, error = (found[1:] + [""] * 5)[:5]
    needed = f"sm_{capability.replace('.', '')}" if capability else "its architecture"
    return error_class(
        f"torch sees GPU {gpu} ({name}) but runs nothing on it: every training step would fail",
        found=f"GPU {gpu}: {name}, compute capability {capability}; torch {version} is built for "
              f"{arch_list or 'no GPU architecture'} ({error})",
        allowed="a GPU whose architecture this torch lists (torch.cuda.get_arch_list()), or the CPU",
        fix=f"install a torch build that lists {needed} (a build for an older CUDA: pytorch.org's 'previous "
            f"versions' names them) in this environment and the trainer image"
            + ("; or trigger with engine=tensorflow, which runs on this GPU here" if other_engine_sees else "")
            + ("; on a cluster, POSESWEEP_K8S_NODE_SELECTOR can send training pods to nodes of a newer GPU (GPU "
               "Feature Discovery labels each node's nvidia.com/gpu.product)" if error_class is GpuCannotRunError
               else "")
            + "; or set POSESWEEP_GPUS=none to train on this CPU",
        parameters={"engine": "tensorflow"} if other_engine_sees and error_class is GpuTooOldError else None)


def gpus_not_seen(engine: str, gpus: tuple[str, ...]) -> GpusNotSeenError | None:
    """Where the local backend has GPUs (``machine_gpus``) but ``engine`` sees none in a child given the first, as
    on a lab's workstation set up with requirements.txt alone (TensorFlow 2.15 without its CUDA 12.2 libraries,
    or a driver older than torch's CUDA build), or sees it and runs nothing there (a GPU older than torch's build:
    ``torch_cannot_run_on``): its networks would train on the CPU, about a hundred times slower, after an estimate
    of GPU hours, or fail at their first step. With the fix that makes it see one, and the other engine where that
    one does. torch is asked on every GPU, each in its own child: where it runs on some and not on others
    (``some_gpus_cannot_run``), a network given one of those would fail at its first step."""
    if not gpus:
        return None
    found = probe_engine_gpu(engine, gpus[0])
    # torch runs kernels on the first GPU, or sees it and runs none: a workstation may hold GPUs of two generations
    if engine == "pytorch" and len(gpus) > 1 and found and (found[0] == "cannot run" or _sees(found)):
        with ThreadPoolExecutor(max_workers=min(len(gpus) - 1, 8)) as probes:  # each child imports torch: seconds
            found_on = {gpus[0]: found, **dict(zip(gpus[1:], probes.map(lambda gpu: probe_engine_gpu(engine, gpu),
                                                                         gpus[1:])))}
        runs = tuple(gpu for gpu in gpus if _sees(found_on[gpu]))
        cannot = {gpu: seen for gpu, seen in found_on.items() if seen and seen[0] == "cannot run"}
        if runs and cannot:
            return some_gpus_cannot_run(cannot, runs)
    if _sees(found) is not False:  # it sees one, or nothing is known
        return None
    other = next(name for name in ENGINE_GPU_PROBES if name != engine)
    other_sees = engine_sees_a_gpu(other, gpus[0]) is True
    if found[0] == "cannot run":
        return torch_cannot_run_on(gpus[0], found, GpuTooOldError, other_sees)
    return GpusNotSeenError(
        f"engine {engine} sees no GPU in a training child given GPU {gpus[0]}; its networks would train on the CPU, "
        f"about a hundred times slower",
        found=f"{len(gpus)} GPU(s) for the local backend ({', '.join(gpus)}: POSESWEEP_GPUS, else "
              f"CUDA_VISIBLE_DEVICES, else nvidia-smi), none seen by {engine}" + (
                  f"; {other} sees GPU {gpus[0]}" if other_sees else f", nor by {other}"),
        allowed=f"a GPU that {engine} sees, or the CPU, told so with POSESWEEP_GPUS=none",
        fix=GPU_SETUP_FIX[engine] + (f"; or trigger with engine={other}, which sees the GPU here" if other_sees
                                     else "") + "; or set POSESWEEP_GPUS=none to train on this CPU",
        parameters={"engine": other} if other_sees else None)


def some_gpus_cannot_run(cannot: dict[str, list[str]], runs: tuple[str, ...]) -> SomeGpusTooOldError:
    """torch runs on the GPUs ``runs`` of the local backend and on none of ``cannot`` (each GPU: its probe's
    ``cannot run`` fields): a lab's workstation with a GPU older than torch's build beside a newer one. Each
    training is given whichever GPU is free, so a network given an older one would fail at its first step."""
    fields = {gpu: (found[1:] + [""] * 5)[:5] for gpu, found in cannot.items()}  # name, capability, torch's ...
    described = [f"GPU {gpu}: {name}, compute capability {capability}"
                 for gpu, (name, capability, *_) in fields.items()]
    _, _, version, arch_list, error = next(iter(fields.values()))
    needed = " ".join(sorted({f"sm_{capability.replace('.', '')}" for _, capability, *_ in fields.values()
                              if capability}))
    return SomeGpusTooOldError(
        f"torch runs on GPU {', '.join(runs)} but not on GPU {', '.join(cannot)}: a network given "
        f"{'that GPU' if len(cannot) == 1 else 'one of those'} would fail at its first training step",
        found="; ".join(described) + f"; torch {version} is built for {arch_list or 'no GPU architecture'} "
              f"({error})",
        allowed="GPUs whose architecture this torch lists (torch.cuda.get_arch_list())",
        fix=f"set POSESWEEP_GPUS={','.join(runs)} in the worker's environment (the local backend then gives "
            f"trainings only those GPUs; `POSESWEEP_GPUS={','.join(runs)} make study ...` for one run), or install "
            f"a torch build that lists {needed or 'their architecture'} (a build for an older CUDA: pytorch.org's "
            f"'previous versions' names them) in this environment",
        runs=runs)


def gpu_given_but_unseen(engine: str, engine_sees_a_gpu: bool) -> str | None:
    """A warning where this training was given a GPU (``CUDA_VISIBLE_DEVICES``: the local backend's assignment, or
    a GPU pod's) but its engine sees none and would train on the CPU, a hundred times slower, without a word."""
    given = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
    if engine_sees_a_gpu or not given or given.startswith("-"):
        return None
    return (f"this training was given GPU {given} (CUDA_VISIBLE_DEVICES) but {engine} sees no GPU: it trains on "
            f"the CPU, about a hundred times slower. {UNSEEN_GPU_FIX[engine]}")
