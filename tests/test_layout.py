import pytest

from posesweep.layout import OutsideDataRootError, RunLayout, atomic_path, resolve_inside, write_json_atomic


def test_paths_outside_the_data_root_are_refused(tmp_path):
    with pytest.raises(OutsideDataRootError, match="outside the data root"):
        resolve_inside(tmp_path, "../elsewhere")
    with pytest.raises(OutsideDataRootError):
        RunLayout.create(tmp_path, "../../etc", "run")
    (tmp_path / "cohorts").mkdir()
    kept_elsewhere = tmp_path / "lab share" / "knee study"
    kept_elsewhere.mkdir(parents=True)
    (tmp_path / "cohorts" / "link").symlink_to(kept_elsewhere)
    with pytest.raises(OutsideDataRootError) as failure:  # a lab linked its project in: told to copy it in
        RunLayout.create(tmp_path, "link", "run").cohort_dir
    link = tmp_path.resolve() / "cohorts" / "link"
    assert f"File: {link}\n" in str(failure.value) and not failure.value.retryable
    assert f"What to do: remove the link and copy the folder in: rm '{link}' && cp -r '{kept_elsewhere}' '{link}'" \
        in str(failure.value)


def test_run_names_from_airflow_run_ids_become_folder_names(tmp_path):
    layout = RunLayout.create(tmp_path, "demo", "manual__2026-11-24T05:34:13+00:00")
    assert layout.run_dir.parent == tmp_path.resolve() / "runs" / "demo"
    prefix = "manual__2026-11-24T05_34_13_00_00-"
    assert layout.run_name.startswith(prefix) and len(layout.run_name) == len(prefix) + 8
    assert layout.summary_file.parent == layout.report_dir
    # opening a run by its folder name finds the same folder
    assert RunLayout.create(tmp_path, "demo", layout.run_name).run_dir == layout.run_dir
    assert RunLayout.create(tmp_path, "demo", "plain-name_1.2").run_name == "plain-name_1.2"


def test_two_run_ids_never_share_a_folder(tmp_path):
    names = {RunLayout.create(tmp_path, "demo", run_id).run_name
             for run_id in ("a:b", "a_b", "a+b", "a b", "_a_b", "a_b\n")}
    assert len(names) == 6


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
