"""DAG integrity: it imports fast without heavy libraries, has no cycles, and its params are the study's."""

import json
import os
import subprocess
import sys

from conftest import REPO

HEAVY = ("tensorflow", "deeplabcut", "great_expectations", "matplotlib", "torch", "cv2")


def test_parsing_the_dag_file_imports_no_heavy_library():
    probe = (
        "import importlib.util, json, sys, time\n"
        f"spec = importlib.util.spec_from_file_location('d', {str(REPO / 'dags' / 'dlc_training_study.py')!r})\n"
        "module = importlib.util.module_from_spec(spec); started = time.perf_counter()\n"
        "spec.loader.exec_module(module)\n"
        f"heavy = sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))\n"
        "print(json.dumps({'heavy': heavy, 'seconds': time.perf_counter() - started}))\n"
    )
    result = json.loads(subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True,
                                       text=True).stdout.strip().splitlines()[-1])
    assert result["heavy"] == []


def test_dagbag_has_the_study_dag_without_import_errors(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    dag = bag.get_dag("dlc_training_study")
    assert dag is not None
    ids = set(dag.task_ids)
    assert {"extract_frames", "label_frames", "validate_labels", "build_frame_sets", "prepare_training",
            "train_network", "evaluate_snapshots", "statistics_and_report"} <= ids
    order = [t.task_id for t in dag.topological_sort()]  # raises on a cycle
    assert order.index("validate_labels") < order.index("train_network") < order.index("statistics_and_report")
    sensor = dag.get_task("wait_for_labels")
    assert sensor.mode == "reschedule" and sensor.timeout > 0  # waits for labels without holding a slot
    assert order.index("extract_frames") < order.index("wait_for_labels") < order.index("label_frames")
    assert dag.timetable.asset_condition is not None  # scheduled on new cohort versions


def test_the_task_list_reads_like_the_methods_and_networks_are_mapped_over_frame_set_sizes():
    sys.path.insert(0, str(REPO / "dags"))
    import dlc_training_study

    dag = dlc_training_study.study_dag
    assert [t.task_id for t in dag.topological_sort()] == [
        "prepare_run", "pass_on_waiting_cohorts", "extract_frames", "wait_for_labels", "label_frames",
        "validate_labels", "build_frame_sets", "prepare_training", "train_network", "evaluate_snapshots",
        "statistics_and_report"]
    for task_id in ("train_network", "evaluate_snapshots"):  # the local backend's mapped tasks
        mapped = dag.get_task(task_id)
        expanded = mapped._get_specified_expand_input().value
        assert sorted(expanded) == ["frame_set_size"]
        assert expanded["frame_set_size"].operator.task_id == "build_frame_sets"
        assert mapped.partial_kwargs["op_kwargs"]["run"].operator.task_id == "prepare_run"
        assert mapped.partial_kwargs["pool"] == "posesweep_gpu"  # concurrent training bounded by a pool
    assert dag.max_active_runs > 1  # a cohort waiting for labels does not block another cohort's study


def test_dag_params_are_derived_from_the_study_config():
    from posesweep.config import StudyConfig, param_specs

    sys.path.insert(0, str(REPO / "dags"))
    import dlc_training_study

    params = dlc_training_study.study_dag.params
    assert set(params.keys()) == set(param_specs())
    resolved = params.validate()
    StudyConfig.from_mapping(resolved)  # the defaults form a valid study
    assert params.get_param("max_iterations").schema["minimum"] == 1


def test_the_trigger_forms_cohort_field_proposes_the_cohort_folders_there_are(tmp_path):
    """A lab picks its cohort from a drop-down (still free to type another): the folders under <data root>/cohorts
    when the DAG file was parsed, not hidden ones, files, or names the form would refuse."""
    probe = (
        "import importlib.util, json\n"
        f"spec = importlib.util.spec_from_file_location('d', {str(REPO / 'dags' / 'dlc_training_study.py')!r})\n"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        "print(json.dumps(module.study_dag.params.get_param('cohort').schema.get('examples')))\n"
    )
    cohorts = tmp_path / "cohorts"
    for name in ("drop_landing_2026", "pilot", ".snapshot", "has space"):
        (cohorts / name).mkdir(parents=True)
    (cohorts / "notes.txt").write_text("not a cohort")
    env = {**os.environ, "POSESWEEP_DATA_ROOT": str(tmp_path)}
    shown = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True, env=env)
    assert json.loads(shown.stdout.strip().splitlines()[-1]) == ["drop_landing_2026", "pilot"]


def test_an_unreadable_data_root_leaves_the_cohort_field_without_proposals_and_the_dag_file_parses(tmp_path):
    """A data root the DAG processor cannot list (a share mounted only on the workers, no permission) must not
    turn the DAG file into an import error."""
    from posesweep.layout import cohort_names

    (tmp_path / "cohorts" / "pilot").mkdir(parents=True)
    assert cohort_names(tmp_path) == ["pilot"]
    (tmp_path / "cohorts").chmod(0)
    read, write = os.pipe()
    child = os.fork()  # root lists any folder: where the tests run as root, ask as nobody, in a child
    if child == 0:
        try:
            if os.geteuid() == 0:
                os.setuid(65534)
            os.write(write, json.dumps(cohort_names(tmp_path)).encode())
            os._exit(0)
        except BaseException as error:  # noqa: BLE001 -- reported to the parent, which asserts
            os.write(write, json.dumps(f"{type(error).__name__}: {error}").encode())
            os._exit(1)
    os.close(write)
    _, status = os.waitpid(child, 0)
    said = json.loads(os.read(read, 65536).decode())
    (tmp_path / "cohorts").chmod(0o700)
    assert os.waitstatus_to_exitcode(status) == 0 and said == [], said
