"""The Kubernetes training backend: how a GPU pod for ``posesweep train|evaluate`` is specified.

The pod's settings are deployment settings (``settings.PodSettings``, from ``POSESWEEP_K8S_*``):

    POSESWEEP_K8S_IMAGE          trainer image (docker/trainer), e.g. registry/posesweep-trainer:0.1.0
    POSESWEEP_K8S_PYTORCH_IMAGE  the PyTorch engine's trainer image (docker/trainer-pytorch); a study with
                                 engine=pytorch runs its pods on it
    POSESWEEP_K8S_NAMESPACE      default "posesweep"
    POSESWEEP_K8S_DATA_PVC       PersistentVolumeClaim holding the data root, default "posesweep-data"
    POSESWEEP_K8S_GPUS           nvidia.com/gpu per pod, default 1
    POSESWEEP_K8S_CPU            CPU request, default "4"
    POSESWEEP_K8S_MEMORY         memory request and limit, default "16Gi"
    POSESWEEP_K8S_NODE_SELECTOR  JSON object, default {}
    POSESWEEP_K8S_TOLERATIONS    JSON list of tolerations, default: tolerate nvidia.com/gpu taints
    POSESWEEP_K8S_SERVICE_ACCOUNT  default "posesweep-trainer"
    POSESWEEP_K8S_EPHEMERAL_STORAGE  ephemeral-storage request and limit, default "20Gi"
    POSESWEEP_K8S_SECONDS_PER_ITERATION  expected training speed, seconds per iteration at batch 1, default
                                 0.25 (batch b: b times as long): the pod's deadline is twice max_iterations x
                                 batch_size x this, plus an hour (prepare_run's estimate, for pods and for a
                                 local backend with GPUs, uses the same); where an earlier training measured
                                 the GPUs slower, the run's estimate is that speed, and the deadline follows it

The pod runs the same ``posesweep`` arguments as the local backend; the PVC is
mounted at the same data root path the Airflow workers use.
"""

from __future__ import annotations

import os
from typing import Any

from .errors import InputError
from .resume_points import STOP_GRACE_SECONDS
from .settings import GPU_RESOURCE, PodSettings


TRAINER_UID = 50000  # the posesweep user of docker/trainer/Dockerfile
STARTUP_MARGIN_S = 3600  # image pull, imports, dataset decode and the last snapshot's scoring


def deadline_s(command: str, max_iterations: int, batch_size: int, settings: PodSettings,
               run_seconds_per_iteration: float | None = None) -> int:
    """How long a pod may run before Kubernetes stops it (``activeDeadlineSeconds``): twice the expected training
    time plus an hour; a hung trainer cannot hold a GPU for longer. Expected as ``prepare_run`` states it
    (``budget.estimate``): ``seconds_per_iteration`` per image of a batch, so a batch-8 study's pods are not stopped
    at a batch-1 study's deadline; where the run's own estimate (``run_seconds_per_iteration``: an earlier
    training's measured speed) is slower, that one."""
    per_iteration = max(batch_size * settings.seconds_per_iteration, run_seconds_per_iteration or 0.0)
    expected = max_iterations * per_iteration if command == "train" else 0
    return int(2 * expected + STARTUP_MARGIN_S)


# The trainer's own settings a pod gets from the Airflow deployment when set there (preemptible GPU nodes are
# where a shorter resume-point interval pays)
FORWARDED_ENV = ("POSESWEEP_RESUME_POINT_SECONDS",)


def pod_operator_kwargs(settings: PodSettings, data_root: str, stall_timeout_s: float = 900) -> dict[str, Any]:
    """Keyword arguments for ``KubernetesPodOperator.partial(...)`` (everything but the arguments and deadline).

    The pod runs ``posesweep watch <arguments>``: the same stall watchdog as the local backend, inside the pod.
    It follows Kubernetes' restricted pod security profile.
    """
    from kubernetes.client import models as k8s

    requests = {"cpu": settings.cpu, "memory": settings.memory, "ephemeral-storage": settings.ephemeral_storage}
    limits = {"memory": settings.memory, "ephemeral-storage": settings.ephemeral_storage}
    if settings.gpus:
        limits[GPU_RESOURCE] = str(settings.gpus)
    return {
        "image": settings.image,
        "namespace": settings.namespace,
        "cmds": ["posesweep", "watch"],
        "env_vars": [k8s.V1EnvVar(name="GX_ANALYTICS_ENABLED", value="false"),
                     k8s.V1EnvVar(name="PYTHONUNBUFFERED", value="1"),
                     k8s.V1EnvVar(name="TF_CPP_MIN_LOG_LEVEL", value="2"),
                     k8s.V1EnvVar(name="POSESWEEP_STALL_TIMEOUT_S", value=str(stall_timeout_s)),
                     *(k8s.V1EnvVar(name=name, value=os.environ[name]) for name in FORWARDED_ENV
                       if os.environ.get(name))],
        "security_context": k8s.V1PodSecurityContext(
            run_as_non_root=True, run_as_user=TRAINER_UID, run_as_group=TRAINER_UID, fs_group=TRAINER_UID,
            seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault")),
        "container_security_context": k8s.V1SecurityContext(
            run_as_non_root=True, allow_privilege_escalation=False,
            capabilities=k8s.V1Capabilities(drop=["ALL"]), seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault")),
        "container_resources": k8s.V1ResourceRequirements(requests=requests, limits=limits),
        "volumes": [k8s.V1Volume(name="data", persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(
            claim_name=settings.data_pvc))],
        "volume_mounts": [k8s.V1VolumeMount(name="data", mount_path=data_root)],
        "node_selector": dict(settings.node_selector),
        "tolerations": [k8s.V1Toleration(**t) for t in settings.tolerations],
        "service_account_name": settings.service_account,
        "labels": {"app.kubernetes.io/name": "posesweep-trainer"},
        "get_logs": True,
        "log_events_on_failure": True,
        "on_finish_action": "delete_succeeded_pod",  # failed pods stay for inspection
        "startup_timeout_seconds": settings.startup_timeout_s,
        "schedule_timeout_seconds": settings.startup_timeout_s,
        "reattach_on_restart": True,  # a retried task finds the running pod instead of starting a second one
        # a pod preempted or evicted gets SIGTERM: its training saves a resume point before this runs out
        "termination_grace_period": int(STOP_GRACE_SECONDS) + 15,
        "image_pull_policy": "IfNotPresent",
    }


def why_no_retry_helps(remote_pod: Any, settings: PodSettings, container: str = "base") -> str | None:
    """Why the pod's failure is the input's, so that the task fails at once instead of starting another pod with
    the same input; None where a retry may help (a pod evicted, a node lost, a transient error).

    The posesweep container exited with ``InputError.exit_code`` (its paragraph is the termination message), or
    Kubernetes killed it for going over its memory limit (``OOMKilled``): the same limit kills it again."""
    statuses = (remote_pod.status.container_statuses if remote_pod is not None and remote_pod.status else None) or []
    for status in statuses:
        if status.name == container and status.state and status.state.terminated:
            ended = status.state.terminated
            if ended.exit_code == InputError.exit_code:
                return ("The trainer reported a failure no retry can help with (an input error, or a full disk): "
                        "what to fix is the paragraph above.")
            if ended.reason == "OOMKilled":
                return (f"The pod went over its memory limit and Kubernetes killed it (OOMKilled): a retry with the "
                        f"same limit cannot help. Raise POSESWEEP_K8S_MEMORY (now {settings.memory}), or lower "
                        f"batch_size.")
    return None
