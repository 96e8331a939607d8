"""
### DeepLabCut training-parameter study

How many labeled frames and how many training iterations does a DeepLabCut
network need before its errors stop improving? (Johnson et al., frontal-plane
drop landings: 175k iterations, 400 frames.)

Frames are picked per video by k-means clustering and labeled; the labels are
validated with Great Expectations. Nested frame sets of increasing size are
split into train and test frames, and one ResNet network is trained per frame
set, with a snapshot at every interval. Every snapshot is scored as it is
written (Euclidean error to the labels, per frame and landmark). A repeated-measures ANOVA over
iteration levels with Bonferroni post-hoc tests finds where errors plateau; the
report shows error by iterations and by frame-set size per landmark.

Outputs: `<data root>/runs/<cohort>/<run id>/`, report in `report/index.html`.
"""

from __future__ import annotations

import functools
import warnings
from datetime import datetime, timedelta
from types import SimpleNamespace

from airflow.sdk import Asset, Param, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException

from posesweep.config import param_specs
from posesweep.disk import disk_full_from
from posesweep.errors import FailureParagraph, PosesweepError
from posesweep.intake import (COHORTS_ASSET_NAME, COHORTS_ASSET_URI, announced_run_parameters, cohorts_waiting,
                              with_the_announced_parameters)
from posesweep.layout import cohort_names
from posesweep.run import Run, stage_args
from posesweep.settings import Settings, SettingsError
from posesweep.terminal_run import sigterm_stops_a_terminal_run

# apache-airflow-providers-standard 1.21.0 (the newest) imports a helper Airflow 3.3 has deprecated, warning once
# per parse when @task.sensor is used: Airflow's own matter, nothing a lab can act on
warnings.filterwarnings("ignore", message=r".*airflow\.utils\.operator_helpers\.determine_kwargs")

SETTINGS = Settings.from_env()
DATA_ROOT = SETTINGS.data_root
COHORTS = Asset(name=COHORTS_ASSET_NAME, uri=COHORTS_ASSET_URI)  # announced by cohort_intake
LABELS_POKE_INTERVAL_S = 300  # wait_for_labels looks for human labels this often, holding no worker between looks
FAILURES: list[FailureParagraph] = []  # failed tasks, explained; `python dags/dlc_training_study.py` prints them


def explained(body):
    """A task body whose posesweep error ends the task with its paragraph: at once when no retry can help."""

    @functools.wraps(body)
    def call(*args, **kwargs):
        try:
            return body(*args, **kwargs)
        except PosesweepError as error:
            if error.retryable:
                raise
            failure = AirflowFailException(error.explain())
            failure.parameters = error.parameters  # a setting that gets past it, for `make study`'s last words
            failure.first_look_parameters = error.first_look_parameters
            raise failure from None
        except Exception as crash:  # a full disk, from any write: its paragraph, at once
            full = disk_full_from(crash, DATA_ROOT)
            if full is None:
                raise
            raise AirflowFailException(full.explain()) from crash

    return call


def remember_failure(context, retried: bool = False) -> None:
    ti, error = context["ti"], context.get("exception")
    if isinstance(error, KeyboardInterrupt):  # Ctrl-C at `make study`: nothing failed (terminal_run says so)
        return
    where = ti.task_id + (f" [{ti.map_index}]" if ti.map_index >= 0 else "")
    text = str(error) if isinstance(error, (PosesweepError, AirflowFailException)) else \
        f"{type(error).__name__}: {error}"
    FAILURES.append(FailureParagraph(f"task {where} failed (try {ti.try_number}){', retried' if retried else ''}:"
                                     f"\n{text}", retried=retried, parameters=getattr(error, "parameters", None),
                                     first_look_parameters=getattr(error, "first_look_parameters", None)))
    print(f"\n{FAILURES[-1]}\n", flush=True)  # the failed task's log ends with what to fix


def network_stage(task_id: str, command: str, doc: str):
    """``posesweep <command>`` for one frame-set size: a watched local child process, or a GPU pod.

    Either way the DAG reads ``stage.partial(run=run).expand(frame_set_size=sizes)``.
    """
    if SETTINGS.training_backend == "kubernetes":
        from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

        from posesweep.budget import expected_seconds_per_iteration
        from posesweep.kubernetes import deadline_s, pod_operator_kwargs, why_no_retry_helps

        class FrameSetPod(KubernetesPodOperator):
            """The pod's arguments are built from the run and the frame-set size, as for a local child."""

            template_fields = (*KubernetesPodOperator.template_fields, "run", "frame_set_size")

            def __init__(self, *, run: dict, frame_set_size: int, **kwargs):
                super().__init__(**kwargs)
                self.run, self.frame_set_size = run, frame_set_size

            def execute(self, context):
                run = Run.open(self.run)
                study = run.study
                self.arguments = stage_args(command, self.run, self.frame_set_size)
                try:
                    self.image = SETTINGS.pod.image_for(study.engine)
                except SettingsError as error:  # the deployment must change: no retry helps
                    raise AirflowFailException(str(error)) from None
                self.active_deadline_seconds = deadline_s(
                    command, study.max_iterations, study.batch_size, SETTINGS.pod,
                    expected_seconds_per_iteration(run.layout.expected_speed_file))
                return super().execute(context)

            def cleanup(self, pod, remote_pod, *args, **kwargs):
                """A pod whose command reported an input error, or that went over its memory limit, fails the task
                without a retry."""
                from airflow.sdk.exceptions import AirflowException

                try:
                    return super().cleanup(pod, remote_pod, *args, **kwargs)
                except AirflowException as failure:
                    why = why_no_retry_helps(remote_pod, SETTINGS.pod, self.base_container_name)
                    if why is None:
                        raise
                    raise AirflowFailException(f"{failure}\n{why}") from None

        pod = pod_operator_kwargs(SETTINGS.pod, str(DATA_ROOT), SETTINGS.stall_timeout_s)
        return SimpleNamespace(partial=functools.partial(
            FrameSetPod.partial, task_id=task_id, name=f"posesweep-{command}", doc=doc, pool=SETTINGS.gpu_pool,
            map_index_template="frame set {{ task.frame_set_size }}", **pod))

    @task(task_id=task_id, doc=doc, pool=SETTINGS.gpu_pool, map_index_template="frame set {{ frame_set_size }}")
    @explained
    def local(run: dict, frame_set_size: int) -> None:
        from posesweep.runner import run_posesweep

        get_current_context()["frame_set_size"] = frame_set_size
        run_posesweep(stage_args(command, run, frame_set_size), on_one_gpu=f"posesweep {command} of frame set "
                                                                            f"{frame_set_size}")

    return local


@dag(
    dag_id="dlc_training_study",
    schedule=COHORTS,  # new cohort versions (cohort_intake); manual triggers work as well
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=SETTINGS.max_active_runs,  # a cohort waiting for labels does not block the others
    # the cohort field proposes the cohort folders there are (the DAG file is parsed again every few minutes)
    params={name: Param(**spec) for name, spec in param_specs(cohorts=cohort_names(DATA_ROOT)).items()},
    # failures a retry can fix (a killed worker or child, an evicted pod) are retried; input errors fail at once
    default_args={"retries": 1, "retry_delay": timedelta(seconds=30), "on_failure_callback": remember_failure,
                  "on_retry_callback": functools.partial(remember_failure, retried=True),
                  "on_execute_callback": sigterm_stops_a_terminal_run},  # `make study` only: SIGTERM as Ctrl-C
    tags=["posesweep", "deeplabcut"],
    doc_md=__doc__,
)
def dlc_training_study():
    @task
    @explained
    def prepare_run() -> dict:
        """Check the parameters and the cohort; create the run folder."""
        from posesweep import stages

        context = get_current_context()
        params = dict(context["params"])
        waiting = cohorts_waiting([event.extra for event in context["triggering_asset_events"].get(COHORTS, [])])
        if not waiting:
            return stages.prepare_run(DATA_ROOT, params, context["run_id"]).handle
        # started by a cohort announcement: the first cohort in line, as the lab last studied it
        announced = announced_run_parameters(DATA_ROOT, waiting[0]["cohort"], params)
        try:
            return stages.prepare_run(DATA_ROOT, announced, context["run_id"]).handle
        except PosesweepError as error:
            raise with_the_announced_parameters(error, announced, params) from None

    @task(outlets=[COHORTS])
    def pass_on_waiting_cohorts(*, outlet_events=None) -> list[dict]:
        """Cohorts announced while another run was active arrive together; this run studies the first, and the
        others are announced again so that each gets a run of its own (after this one)."""
        from airflow.sdk.exceptions import AirflowSkipException

        events = get_current_context()["triggering_asset_events"].get(COHORTS, [])
        pending = cohorts_waiting([event.extra for event in events])[1:]
        if not pending:
            raise AirflowSkipException("one cohort or none announced: nothing to pass on")
        outlet_events[COHORTS].extra = {"pending": pending}
        return pending

    @task
    @explained
    def extract_frames(run: dict) -> dict:
        """k-means frame selection per video (a few videos at once); every bad video named together, the run
        failed or the videos excluded (bad_video_policy)."""
        from posesweep import stages

        return stages.extract_cohort_frames(Run.open(run))

    @task.sensor(poke_interval=LABELS_POKE_INTERVAL_S, timeout=14 * 24 * 3600, mode="reschedule")
    @explained
    def wait_for_labels(run: dict, extraction: dict) -> bool:
        """Human labels for every extracted frame; between looks the task holds no worker slot."""
        from posesweep import stages

        study_run = Run.open(run)
        stages.take_earlier_labels(study_run)  # labelled meanwhile in an earlier run of the cohort: not asked again
        missing = stages.unlabeled_frames(study_run)
        if missing:
            print("\n".join(stages.labeling_status(study_run, missing)))
        return not missing

    @task
    @explained
    def label_frames(run: dict, extraction: dict) -> dict:
        """Existing labels, or the simulated labeler for a synthetic cohort."""
        from posesweep import stages

        return stages.label_frames(Run.open(run))

    @task
    @explained
    def validate_labels(run: dict, labeled: dict) -> dict:
        """Great Expectations suite over the tidy label table."""
        from posesweep import stages

        return stages.validate_label_table(Run.open(run))

    @task
    @explained
    def build_frame_sets(run: dict, validation: dict) -> list[int]:
        """Nested frame sets, each split into train and test frames; their sizes, one network each."""
        from posesweep import stages

        return [frame_set["frame_set_size"] for frame_set in stages.make_frame_sets(Run.open(run))]

    @task
    @explained
    def prepare_training(run: dict) -> None:
        """Initial weights and one DeepLabCut training dataset (shuffle) per frame set."""
        from posesweep.runner import run_posesweep

        run_posesweep(stage_args("prepare-training", run), cpu_only=True)  # datasets and initial weights

    train_network = network_stage("train_network", "train", "Train one network per frame-set size: DeepLabCut's "
                                  "TensorFlow engine, or its PyTorch engine with posesweep's on-device data path.")
    evaluate_snapshots = network_stage("evaluate_snapshots", "evaluate", "Score the snapshots training did not "
                                       "score; assemble the network's error table.")

    @task
    @explained
    def statistics_and_report(run: dict) -> str:
        """Repeated-measures ANOVA over iteration levels, Bonferroni post-hoc, figures, summary.json."""
        from posesweep import stages

        return stages.analyse_and_report(Run.open(run))

    run = prepare_run()
    pass_on_waiting_cohorts()
    extraction = extract_frames(run)
    labeled = label_frames(run, extraction)
    wait_for_labels(run, extraction) >> labeled
    sizes = build_frame_sets(run, validate_labels(run, labeled))
    trained = train_network.partial(run=run).expand(frame_set_size=sizes)
    sizes >> prepare_training(run) >> trained
    evaluated = evaluate_snapshots.partial(run=run).expand(frame_set_size=sizes)
    trained >> evaluated >> statistics_and_report(run)


study_dag = dlc_training_study()


if __name__ == "__main__":  # make study: the study run once from a terminal (posesweep.terminal_run)
    from posesweep.terminal_run import main

    main(study_dag, DATA_ROOT, FAILURES, LABELS_POKE_INTERVAL_S)
