"""Deployment settings: how this installation of posesweep is run, read from the environment in one place.

Study parameters (what a lab chooses per run) are ``config.StudyConfig``; these are the operator's, set once for
the Airflow deployment, never by a run's parameters (so a run cannot point pods at another image):

    POSESWEEP_DATA_ROOT              cohorts/ and runs/ below it (default: data/ in the repository)
    POSESWEEP_TRAINING_BACKEND       local (a watched child process, default) | kubernetes (a GPU pod)
    POSESWEEP_STALL_TIMEOUT_S        a training child silent this long is killed (default 900)
    POSESWEEP_INTAKE_INTERVAL_S      how often cohort_intake looks for new cohorts (default 300)
    POSESWEEP_INTAKE_QUIET_S         a cohort changed more recently is still being copied in (default 60)
    POSESWEEP_PRETRAINED_CHECKPOINT  a TensorFlow checkpoint prefix of the ImageNet-pretrained backbone
    POSESWEEP_CPU_SPEEDUP            how many times faster this machine's CPU trains than the 2-core one of
                                     posesweep.budget (default 1; benchmarks/cpu_training_cost.py measures it)
    POSESWEEP_GPU_POOL               the Airflow pool training and scoring tasks run in (default posesweep_gpu;
                                     create it: airflow pools set posesweep_gpu <slots> "GPU training")
    POSESWEEP_GPU_POOL_SLOTS         how many networks train at once, for the tools that create the pool (default:
                                     the local backend's GPUs, gpus.pool_slots; 1 without GPUs or on kubernetes)
    POSESWEEP_GPUS                   the local backend's GPUs, one per training or scoring child (comma-separated
                                     indices or UUIDs; "none": no assignment; default: the worker's
                                     CUDA_VISIBLE_DEVICES, else every GPU nvidia-smi lists; gpus.py)
    POSESWEEP_MAX_ACTIVE_RUNS        study runs active at once, e.g. one waiting for labels beside others (default 8)
    POSESWEEP_K8S_*                  the training pod (kubernetes.py lists them)

Pure standard library: the DAG files read it at parse time.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

DEFAULT_DATA_ROOT = Path(__file__).resolve().parents[2] / "data"
BACKENDS = ("local", "kubernetes")
GPU_RESOURCE = "nvidia.com/gpu"
DEFAULT_TOLERATIONS = ({"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"},)


class SettingsError(ValueError):
    """A deployment setting is malformed: the operator must fix the environment, no run can."""


@dataclass(frozen=True)
class PodSettings:
    """The GPU pod ``posesweep train|evaluate`` runs in on the kubernetes backend."""

    image: str | None = None  # the TensorFlow engine's trainer (docker/trainer)
    pytorch_image: str | None = None  # the PyTorch engine's trainer (docker/trainer-pytorch)
    namespace: str = "posesweep"
    data_pvc: str = "posesweep-data"
    gpus: int = 1
    cpu: str = "4"
    memory: str = "16Gi"
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, Any]] = field(default_factory=lambda: [dict(t) for t in DEFAULT_TOLERATIONS])
    service_account: str = "posesweep-trainer"
    ephemeral_storage: str = "20Gi"
    # expected training speed on the cluster's GPUs; the pod's deadline is derived from it
    seconds_per_iteration: float = 0.25
    # a GPU node may have to be provisioned first: wait long before calling the pod stuck
    startup_timeout_s: int = 1800

    def image_for(self, engine: str) -> str:
        """The trainer image of a study's engine."""
        image = self.pytorch_image if engine == "pytorch" else self.image
        if not image:
            name = "POSESWEEP_K8S_PYTORCH_IMAGE" if engine == "pytorch" else "POSESWEEP_K8S_IMAGE"
            raise SettingsError(f"{name} must name the {engine} trainer image to run engine={engine!r} studies on "
                                f"the kubernetes backend")
        return image


@dataclass(frozen=True)
class Settings:
    data_root: Path = DEFAULT_DATA_ROOT
    training_backend: str = "local"
    stall_timeout_s: float = 900.0
    intake_interval_s: int = 300
    intake_quiet_s: float = 60.0
    pretrained_checkpoint: str | None = None
    gpu_pool: str = "posesweep_gpu"
    gpu_pool_slots: int | None = None  # None: gpus.pool_slots decides
    max_active_runs: int = 8
    cpu_speedup: float = 1.0
    gpus: tuple[str, ...] | None = None  # None: found at run time (gpus.machine_gpus)
    pod: PodSettings = field(default_factory=PodSettings)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env

        def number(name: str, default: float, kind=float):
            try:
                return kind(env.get(name, default))
            except ValueError:
                raise SettingsError(f"{name}={env[name]!r} is not a {kind.__name__}") from None

        def json_value(name: str, default: Any) -> Any:
            try:
                return json.loads(env[name]) if name in env else default
            except ValueError as error:
                raise SettingsError(f"{name} is not valid JSON: {error}") from None

        cpu_speedup = number("POSESWEEP_CPU_SPEEDUP", 1.0)
        if not 0 < cpu_speedup < float("inf"):
            raise SettingsError(f"POSESWEEP_CPU_SPEEDUP={env['POSESWEEP_CPU_SPEEDUP']!r}: a positive number (how many "
                                f"times faster this CPU trains than the one posesweep's estimate was measured on)")
        pool_slots = number("POSESWEEP_GPU_POOL_SLOTS", 0, int)
        if pool_slots < 0:
            raise SettingsError(f"POSESWEEP_GPU_POOL_SLOTS={pool_slots}: how many networks train at once, 1 or more")
        backend = env.get("POSESWEEP_TRAINING_BACKEND", "local")
        if backend not in BACKENDS:
            raise SettingsError(f"POSESWEEP_TRAINING_BACKEND={backend!r}: choose one of {BACKENDS}")
        pod = PodSettings(
            image=env.get("POSESWEEP_K8S_IMAGE") or None,
            pytorch_image=env.get("POSESWEEP_K8S_PYTORCH_IMAGE") or None,
            namespace=env.get("POSESWEEP_K8S_NAMESPACE", "posesweep"),
            data_pvc=env.get("POSESWEEP_K8S_DATA_PVC", "posesweep-data"),
            gpus=number("POSESWEEP_K8S_GPUS", 1, int),
            cpu=env.get("POSESWEEP_K8S_CPU", "4"),
            memory=env.get("POSESWEEP_K8S_MEMORY", "16Gi"),
            node_selector=json_value("POSESWEEP_K8S_NODE_SELECTOR", {}),
            tolerations=json_value("POSESWEEP_K8S_TOLERATIONS", [dict(t) for t in DEFAULT_TOLERATIONS]),
            service_account=env.get("POSESWEEP_K8S_SERVICE_ACCOUNT", "posesweep-trainer"),
            ephemeral_storage=env.get("POSESWEEP_K8S_EPHEMERAL_STORAGE", "20Gi"),
            seconds_per_iteration=number("POSESWEEP_K8S_SECONDS_PER_ITERATION", 0.25),
        )
        if backend == "kubernetes" and not pod.image:
            raise SettingsError("POSESWEEP_K8S_IMAGE must name the trainer image when the kubernetes backend is used")
        return cls(
            # "~/posesweep" as an Airflow deployment's environment or a systemd unit gives it: no shell expands it
            data_root=Path(env.get("POSESWEEP_DATA_ROOT") or DEFAULT_DATA_ROOT).expanduser().resolve(),
            training_backend=backend,
            stall_timeout_s=number("POSESWEEP_STALL_TIMEOUT_S", 900.0),
            intake_interval_s=number("POSESWEEP_INTAKE_INTERVAL_S", 300, int),
            intake_quiet_s=number("POSESWEEP_INTAKE_QUIET_S", 60.0),
            pretrained_checkpoint=os.path.expanduser(env.get("POSESWEEP_PRETRAINED_CHECKPOINT") or "") or None,
            gpu_pool=env.get("POSESWEEP_GPU_POOL", "posesweep_gpu"),
            gpu_pool_slots=pool_slots or None,
            max_active_runs=number("POSESWEEP_MAX_ACTIVE_RUNS", 8, int),
            cpu_speedup=cpu_speedup,
            gpus=_gpu_list(env.get("POSESWEEP_GPUS")),
            pod=pod,
        )


def _gpu_list(value: str | None) -> tuple[str, ...] | None:
    """``POSESWEEP_GPUS``: None where unset (found at run time), () for "none", else the GPUs listed."""
    if value is None or not value.strip():
        return None
    if value.strip().lower() == "none":
        return ()
    gpus = tuple(gpu.strip() for gpu in value.split(","))
    if not all(gpus) or len(set(gpus)) != len(gpus):
        raise SettingsError(f"POSESWEEP_GPUS={value!r}: GPU indices or UUIDs separated by commas, each once "
                            f"(e.g. 0,1,2,3), or none")
    return gpus
