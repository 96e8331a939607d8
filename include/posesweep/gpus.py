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
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping

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
UNSEEN_GPU_FIX = {
    "tensorflow": "TensorFlow 2.15 uses a GPU only with CUDA 12.2 and cuDNN 8.9 beside it (pip install "
                  "'tensorflow[and-cuda]==2.15.0.post1' in the environment, or train in the trainer image, "
                  "docker/trainer), or train with engine pytorch",
    "pytorch": "torch finds no usable GPU (torch.cuda.is_available() is False): the NVIDIA driver is older than "
               "this torch's CUDA build needs (compare nvidia-smi's CUDA version with torch.version.cuda), or torch "
               "is a CPU-only build; install the torch of requirements.txt on a current driver",
}


def gpu_given_but_unseen(engine: str, engine_sees_a_gpu: bool) -> str | None:
    """A warning where this training was given a GPU (``CUDA_VISIBLE_DEVICES``: the local backend's assignment, or
    a GPU pod's) but its engine sees none and would train on the CPU, a hundred times slower, without a word."""
    given = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
    if engine_sees_a_gpu or not given or given.startswith("-"):
        return None
    return (f"this training was given GPU {given} (CUDA_VISIBLE_DEVICES) but {engine} sees no GPU: it trains on "
            f"the CPU, about a hundred times slower. {UNSEEN_GPU_FIX[engine]}")
