"""The Kubernetes backend: the pod request a real cluster would receive, built and schema-validated."""

import re
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from conftest import REPO
from posesweep.run import stage_args
from posesweep.kubernetes import deadline_s, pod_operator_kwargs
from posesweep.settings import Settings

K8S_VERSION = "1.30.0"
RUN = {"data_root": "/data", "cohort": "cohort-a", "run_name": "manual__2026-11-24T05_34_13"}


@pytest.fixture
def pod_env(monkeypatch):
    monkeypatch.setenv("POSESWEEP_K8S_IMAGE", "registry.example/posesweep-trainer:0.1.0")
    monkeypatch.setenv("POSESWEEP_K8S_NODE_SELECTOR", '{"cloud.google.com/gke-accelerator": "nvidia-l4"}')
    monkeypatch.setenv("POSESWEEP_K8S_GPUS", "1")


def _pod_dict(arguments, max_iterations=250_000, engine="tensorflow", batch_size=1):
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from kubernetes.client import ApiClient

    settings = Settings.from_env()
    kwargs = {**pod_operator_kwargs(settings.pod, "/data", settings.stall_timeout_s),
              "image": settings.pod.image_for(engine)}  # what the DAG's FrameSetPod sets from the run's engine
    operator = KubernetesPodOperator(task_id="train_network", name="posesweep-train-network", arguments=arguments,
                                     active_deadline_seconds=deadline_s(arguments[0], max_iterations, batch_size,
                                                                              settings.pod),
                                     **kwargs)
    pod = operator.build_pod_request_obj(dry_run=True)
    return ApiClient().sanitize_for_serialization(pod)


def test_training_pod_has_gpu_volume_env_and_the_local_backends_command(pod_env):
    arguments = stage_args("train", RUN, 400)
    pod = _pod_dict(arguments)
    container = pod["spec"]["containers"][0]
    assert container["image"] == "registry.example/posesweep-trainer:0.1.0"
    # the pod runs the local backend's command under the same stall watchdog
    assert container["command"] == ["posesweep", "watch"] and container["args"] == arguments
    assert {"name": "POSESWEEP_STALL_TIMEOUT_S", "value": "900.0"} in container["env"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container["resources"]["requests"]["memory"] == "16Gi"
    assert {"name": "data", "mountPath": "/data"} in container["volumeMounts"]
    assert pod["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] == "posesweep-data"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["GX_ANALYTICS_ENABLED"] == "false" and "POSESWEEP_RESUME_POINT_SECONDS" not in env  # the default
    assert pod["spec"]["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    assert pod["spec"]["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert pod["spec"]["serviceAccountName"] == "posesweep-trainer"
    # the local backend runs `python -m posesweep.cli <same arguments>`
    from posesweep.cli import build_parser

    parsed = build_parser().parse_args(arguments)
    assert (parsed.command, parsed.frame_set_size, parsed.cohort) == ("train", 400, "cohort-a")
    watched = build_parser().parse_args(["watch", *arguments])
    assert watched.command == "watch" and watched.arguments == arguments


def test_a_training_pod_gets_the_deployments_resume_point_interval(pod_env, monkeypatch):
    """Preemptible GPU nodes: the interval set for the deployment reaches the trainer in its pod, and a pod told
    to stop has the time to save one."""
    from posesweep.resume_points import STOP_GRACE_SECONDS

    monkeypatch.setenv("POSESWEEP_RESUME_POINT_SECONDS", "120")
    pod = _pod_dict(stage_args("train", RUN, 400))
    assert {"name": "POSESWEEP_RESUME_POINT_SECONDS", "value": "120"} in pod["spec"]["containers"][0]["env"]
    # preempted: SIGTERM, then the time to save a resume point (the watcher waits STOP_GRACE_SECONDS) before SIGKILL
    assert pod["spec"]["terminationGracePeriodSeconds"] == int(STOP_GRACE_SECONDS) + 15


def test_pods_are_bounded_and_follow_the_restricted_security_profile(pod_env, monkeypatch):
    monkeypatch.setenv("POSESWEEP_K8S_SECONDS_PER_ITERATION", "0.2")
    pod = _pod_dict(stage_args("train", RUN, 400), max_iterations=250_000)
    # twice the expected 250k x 0.2 s, plus an hour: a hung trainer releases the GPU
    assert pod["spec"]["activeDeadlineSeconds"] == 2 * 50_000 + 3600
    assert _pod_dict(stage_args("evaluate", RUN, 400))["spec"]["activeDeadlineSeconds"] == 3600
    # a batch-8 study: each iteration 8 images, as prepare_run's estimate states it; its pods are not stopped
    # before twice the time that estimate gives one network
    from posesweep.budget import estimate
    from posesweep.config import StudyConfig

    study = StudyConfig.from_mapping({"cohort": "c", "batch_size": 8, "frame_set_sizes": [200]})
    hours = estimate(study, (1920, 1080), 200, "kubernetes", 0.2).training_hours
    batch_8 = _pod_dict(stage_args("train", RUN, 200), max_iterations=study.max_iterations, batch_size=8)
    assert batch_8["spec"]["activeDeadlineSeconds"] == 2 * 8 * 50_000 + 3600 >= 2 * hours * 3600
    context = pod["spec"]["securityContext"]
    assert context["runAsNonRoot"] is True and context["runAsUser"] == 50000
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    container = pod["spec"]["containers"][0]
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False and security["capabilities"] == {"drop": ["ALL"]}
    assert security["runAsNonRoot"] is True and security["seccompProfile"] == {"type": "RuntimeDefault"}
    resources = container["resources"]
    assert resources["requests"]["ephemeral-storage"] == resources["limits"]["ephemeral-storage"] == "20Gi"
    kubernetes_validate.validate(pod, K8S_VERSION, strict=True)


def test_a_pods_deadline_follows_the_runs_own_expected_speed_where_it_is_slower(pod_env, monkeypatch):
    """An earlier training measured the deployment's GPUs slower than POSESWEEP_K8S_SECONDS_PER_ITERATION says:
    the run's estimate is that speed (prepare_run keeps it with the run: tests/test_frames.py -k
    machines_own_earlier), and its pods are not stopped at the setting's deadline while they train as fast as they
    can; a faster measurement never shortens it."""
    monkeypatch.setenv("POSESWEEP_K8S_SECONDS_PER_ITERATION", "0.2")
    settings = Settings.from_env().pod
    assert deadline_s("train", 250_000, 1, settings, 0.5) == 2 * 125_000 + 3600
    assert deadline_s("train", 250_000, 1, settings, 0.1) == deadline_s("train", 250_000, 1, settings) \
        == 2 * 50_000 + 3600
    assert deadline_s("train", 250_000, 8, settings, 2.0) == 2 * 500_000 + 3600  # the run's, at its batch
    assert deadline_s("evaluate", 250_000, 1, settings, 0.5) == 3600


def test_the_pod_launcher_role_cannot_exec_into_pods():
    documents = list(yaml.safe_load_all((REPO / "docker" / "kubernetes" / "rbac.yaml").read_text()))
    role = next(d for d in documents if d["kind"] == "Role")
    resources = {r for rule in role["rules"] for r in rule["resources"]}
    assert "pods/exec" not in resources and {"pods", "pods/log"} <= resources


def test_pod_requests_validate_against_the_kubernetes_schema(pod_env):
    for command in ("train", "evaluate"):
        kubernetes_validate.validate(_pod_dict(stage_args(command, RUN, 200)), K8S_VERSION, strict=True)
    bad = _pod_dict(stage_args("train", RUN, 200))
    bad["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] = {"count": 1}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


def test_cluster_manifests_validate():
    for manifest in sorted((REPO / "docker" / "kubernetes").glob("*.yaml")):
        for document in yaml.safe_load_all(manifest.read_text()):
            kubernetes_validate.validate(document, K8S_VERSION, strict=True)


def test_dag_uses_pod_operators_when_the_kubernetes_backend_is_configured(tmp_path):
    probe = (
        "import importlib.util\n"
        f"spec = importlib.util.spec_from_file_location('d', {str(REPO / 'dags' / 'dlc_training_study.py')!r})\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "t = m.study_dag.get_task('train_network'); e = m.study_dag.get_task('evaluate_snapshots')\n"
        "from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator as K\n"
        "print(issubclass(t.operator_class, K), issubclass(e.operator_class, K), t.partial_kwargs['image'],\n"
        "      t.partial_kwargs['cmds'], sorted(t.expand_input.value), sorted(e.expand_input.value))\n"
    )
    env = {"POSESWEEP_TRAINING_BACKEND": "kubernetes", "POSESWEEP_K8S_IMAGE": "trainer:1",
           "POSESWEEP_DATA_ROOT": str(tmp_path), "PATH": str(Path(sys.executable).parent),
           "AIRFLOW_HOME": str(tmp_path / "airflow")}
    out = subprocess.run([sys.executable, "-c", probe], env=env, check=True, capture_output=True, text=True)
    # pods are mapped over the frame-set sizes themselves, as the local tasks are
    assert "True True trainer:1 ['posesweep', 'watch'] ['frame_set_size'] ['frame_set_size']" in out.stdout


def test_a_pytorch_study_runs_its_pods_on_the_pytorch_trainer_image(pod_env, monkeypatch):
    from posesweep.settings import SettingsError

    with pytest.raises(SettingsError, match="POSESWEEP_K8S_PYTORCH_IMAGE must name the pytorch trainer image"):
        Settings.from_env().pod.image_for("pytorch")
    monkeypatch.setenv("POSESWEEP_K8S_PYTORCH_IMAGE", "registry.example/posesweep-trainer-pytorch:0.1.0")
    pod = _pod_dict(stage_args("train", RUN, 400), engine="pytorch")
    container = pod["spec"]["containers"][0]
    assert container["image"] == "registry.example/posesweep-trainer-pytorch:0.1.0"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
    dockerfile = (REPO / "docker" / "trainer-pytorch" / "Dockerfile").read_text()
    # the image carries timm's weights of every backbone offered and never downloads at run time
    assert "HF_HUB_OFFLINE=1" in dockerfile and all(m in dockerfile for m in ("resnet50_gn", "resnet50", "resnet101"))
    # torch.compile's Triton builds its launchers with a C compiler and the Python headers at run time: a CUDA
    # runtime base image has neither, so the image must install both
    installed = " ".join(re.findall(r"apt-get install[^&]*", dockerfile))
    assert "runtime" in re.search(r"^FROM (\S+)", dockerfile, re.M).group(1)
    assert all(package in installed.split() for package in ("gcc", "libc6-dev", "${PYTHON}-dev"))


def test_a_pod_that_reports_an_input_error_is_recognised_and_says_why(tmp_path):
    """The trainer exits 3 on an input error and leaves its paragraph as the termination message, which the
    KubernetesPodOperator puts in the task's failure; the DAG's pod operator fails such a task without a retry."""
    from kubernetes.client import models as k8s

    from posesweep.kubernetes import why_no_retry_helps
    from posesweep.settings import PodSettings

    def pod(exit_code, reason="Error"):
        ended = k8s.V1ContainerStateTerminated(exit_code=exit_code, reason=reason)
        status = k8s.V1ContainerStatus(name="base", state=k8s.V1ContainerState(terminated=ended), image="trainer",
                                       image_id="", ready=False, restart_count=0)
        return k8s.V1Pod(status=k8s.V1PodStatus(phase="Failed", container_statuses=[status]))

    settings = PodSettings(image="trainer", memory="24Gi")
    assert "input error" in why_no_retry_helps(pod(3), settings)
    # killed for going over its memory limit: the same limit kills it again, and the setting to raise is named
    assert "POSESWEEP_K8S_MEMORY (now 24Gi)" in why_no_retry_helps(pod(137, "OOMKilled"), settings)
    for transient in (pod(75), pod(137)):  # a transient error, killed otherwise (evicted, node lost): retry
        assert why_no_retry_helps(transient, settings) is None
    assert why_no_retry_helps(k8s.V1Pod(status=k8s.V1PodStatus(phase="Pending")), settings) is None

    termination_log = tmp_path / "termination-log"
    termination_log.write_text("")
    out = subprocess.run([sys.executable, "-m", "posesweep.cli", *stage_args("train", {**RUN, "data_root":
                                                                                          str(tmp_path)}, 400)],
                         env={"PATH": str(Path(sys.executable).parent), "POSESWEEP_TERMINATION_LOG":
                              str(termination_log)}, capture_output=True, text=True)
    assert out.returncode == 3
    message = termination_log.read_text()
    assert message.startswith("no such run: no study run manual__2026-11-24T05_34_13 of cohort cohort-a")
    assert "A retry cannot help" in message
