import pytest

from posesweep.layout import OutsideDataRootError, RunLayout, atomic_path, resolve_inside, write_json_atomic


def test_paths_outside_the_data_root_are_refused(tmp_path):
    with pytest.raises(OutsideDataRootError, match="outside the data root"):
        resolve_inside(tmp_path, "../elsewhere")
    with pytest.raises(OutsideDataRootError):
        RunLayout.create(tmp_path, "../../etc", "run")
    (tmp_path / "cohorts").mkdir()
    (tmp_path / "cohorts" / "link").symlink_to("/tmp")
    with pytest.raises(OutsideDataRootError):
        RunLayout.create(tmp_path, "link", "run").cohort_dir


def test_run_names_from_airflow_run_ids_become_folder_names(tmp_path):
    layout = RunLayout.create(tmp_path, "demo", "manual__2026-11-24T05:34:13+00:00")
    assert layout.run_dir == tmp_path.resolve() / "runs" / "demo" / "manual__2026-11-24T05_34_13_00_00"
    assert layout.summary_file.parent == layout.report_dir


def test_atomic_write_leaves_nothing_when_the_writer_fails(tmp_path):
    target = tmp_path / "out" / "table.csv"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert not target.exists()
    assert list(target.parent.iterdir()) == []
    write_json_atomic(target, {"a": 1})
    assert target.read_text().strip().startswith("{")
