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

import argparse
import json
from datetime import datetime, timedelta
from pathlib import Path

from airflow.sdk import Asset, Param, dag, get_current_context, task

from posesweep.cli import stage_args
from posesweep.config import param_specs
from posesweep.kubernetes import training_backend
from posesweep.intake import COHORTS_ASSET_NAME, COHORTS_ASSET_URI, cohorts_waiting
from posesweep.layout import data_root_from_env

DATA_ROOT = data_root_from_env(Path(__file__).resolve().parents[1] / "data")
BACKEND = training_backend()
COHORTS = Asset(name=COHORTS_ASSET_NAME, uri=COHORTS_ASSET_URI)  # announced by cohort_intake


def posesweep_stage(task_id: str, doc: str):
    """One network per frame-set size, as a GPU pod or as a watched local child process."""
    if BACKEND == "kubernetes":
        from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

        from posesweep.kubernetes import PodSettings, pod_operator_kwargs

        pod = pod_operator_kwargs(PodSettings.from_env(str(DATA_ROOT)))
        return lambda commands: KubernetesPodOperator.partial(
            task_id=task_id, name=f"posesweep-{task_id.replace('_', '-')}", doc=doc,
            map_index_template="frame set {{ task.arguments[-1] }}", **pod).expand(arguments=commands)

    @task(task_id=task_id, doc=doc, map_index_template="frame set {{ frame_set_size }}")
    def local(arguments: list[str]) -> None:
        from posesweep.runner import run_posesweep

        get_current_context()["frame_set_size"] = arguments[-1]
        run_posesweep(arguments)

    return lambda commands: local.expand(arguments=commands)


train_network = posesweep_stage("train_network", "Train one network per frame-set size (DeepLabCut, TensorFlow); "
                                "each snapshot is scored as soon as it is written.")
evaluate_snapshots = posesweep_stage("evaluate_snapshots",
                                     "Score the snapshots training did not score; assemble the network's error table.")


@dag(
    dag_id="dlc_training_study",
    schedule=COHORTS,  # new cohort versions (cohort_intake); manual triggers work as well
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    params={name: Param(**spec) for name, spec in param_specs().items()},
    default_args={"retries": 1, "retry_delay": timedelta(seconds=30)},
    tags=["posesweep", "deeplabcut"],
    doc_md=__doc__,
)
def dlc_training_study():
    @task
    def prepare_run() -> dict:
        """Check the parameters and the cohort; create the run folder."""
        from posesweep import stages

        context = get_current_context()
        params = dict(context["params"])
        waiting = cohorts_waiting([event.extra for event in context["triggering_asset_events"].get(COHORTS, [])])
        if waiting:  # started by a cohort announcement: the first cohort in line
            params["cohort"] = waiting[0]["cohort"]
        return stages.prepare_run(DATA_ROOT, params, context["run_id"])

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
    def list_videos(run: dict) -> list[str]:
        return run["videos"]

    @task(map_index_template="{{ video_name }}")
    def extract_frames(run: dict, video: str) -> dict:
        """k-means frame selection, one video per mapped task."""
        from posesweep import stages

        get_current_context()["video_name"] = Path(video).name
        return stages.extract_video_frames(run, video)

    @task
    def check_extraction(run: dict, extracted: list[dict]) -> dict:
        """Every bad video named at once; fail the run or exclude them (bad_video_policy)."""
        from posesweep import stages

        return stages.check_extraction(run, list(extracted))

    @task.sensor(poke_interval=300, timeout=14 * 24 * 3600, mode="reschedule")
    def wait_for_labels(run: dict, extraction: dict) -> bool:
        """Human labels for every extracted frame; between looks the task holds no worker slot."""
        from posesweep import stages

        missing = stages.unlabeled_frames(run)
        for video, count in sorted(missing.items()):
            print(f"{video}: {count} frames still unlabeled")
        return not missing

    @task
    def label_frames(run: dict, extraction: dict) -> dict:
        """Existing labels, or the simulated labeler for a synthetic cohort."""
        from posesweep import stages

        return stages.label_frames(run)

    @task
    def validate_labels(run: dict, labeled: dict) -> dict:
        """Great Expectations suite over the tidy label table."""
        from posesweep import stages

        return stages.validate_label_table(run)

    @task
    def build_frame_sets(run: dict, validation: dict) -> list[int]:
        """Nested frame sets, each split into train and test frames."""
        from posesweep import stages

        return [fs["frame_set_size"] for fs in stages.make_frame_sets(run)]

    @task
    def prepare_training(run: dict, frame_set_sizes: list[int]) -> list[int]:
        """Initial weights and one DeepLabCut training dataset (shuffle) per frame set."""
        from posesweep.runner import run_posesweep

        run_posesweep(stage_args("prepare-training", run))
        return frame_set_sizes

    @task
    def stage_commands(run: dict, frame_set_sizes: list[int], command: str) -> list[list[str]]:
        """`posesweep <command>` arguments per frame set: the same for both training backends."""
        return [stage_args(command, run, size) for size in frame_set_sizes]

    @task
    def statistics_and_report(run: dict) -> str:
        """Repeated-measures ANOVA over iteration levels, Bonferroni post-hoc, figures, summary.json."""
        from posesweep import stages

        return stages.analyse_and_report(run)

    run = prepare_run()
    pass_on_waiting_cohorts()
    extracted = extract_frames.partial(run=run).expand(video=list_videos(run))
    extraction = check_extraction(run, extracted)
    labeled = label_frames(run, extraction)
    wait_for_labels(run, extraction) >> labeled
    validation = validate_labels(run, labeled)
    sizes = prepare_training(run, build_frame_sets(run, validation))
    train_commands = stage_commands.override(task_id="training_commands")(run, sizes, "train")
    evaluation_commands = stage_commands.override(task_id="evaluation_commands")(run, sizes, "evaluate")
    trained = train_network(train_commands)
    evaluated = evaluate_snapshots(evaluation_commands)
    trained >> evaluation_commands
    evaluated >> statistics_and_report(run)


study_dag = dlc_training_study()


if __name__ == "__main__":
    from posesweep.layout import RunLayout

    parser = argparse.ArgumentParser(description="Run the study once in-process (dag.test).")
    parser.add_argument("--conf", default="{}", help="JSON run configuration (parameter overrides)")
    conf = json.loads(parser.parse_args().conf)
    dag_run = study_dag.test(run_conf=conf)
    report = RunLayout.create(DATA_ROOT, conf.get("cohort", "demo"), dag_run.run_id).report_dir / "index.html"
    print(f"\nstudy run {dag_run.run_id}: {dag_run.state}")
    if str(dag_run.state) != "success" or not report.exists():
        raise SystemExit("the study run failed: see the task logs above")
    print(f"report: {report}")
