"""The Python API against the command line: the same analysis both ways gives the same
tables and maps, readers agree with the NIfTI files, updates are exact, errors are
exceptions with the command line's message."""

import subprocess
import sys

import nibabel as nib
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import cortexflow
from conftest import bold_runs

TABLES = ["neurons", "codes", "subgroups", "an_fbn", "atom_fbn", "metrics", "atoms", "voxel_fits"]


def tables(store):
    return {name: getattr(store, name)() for name in TABLES}


def test_console_script_and_module_run_the_command_line():
    for argv in (["cortexflow", "--version"], [sys.executable, "-m", "cortexflow", "--version"]):
        done = subprocess.run(argv, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"cortexflow {cortexflow.__version__}"
    bad = subprocess.run(["cortexflow", "status", "/nonexistent/store"], capture_output=True, text=True)
    assert bad.returncode == 1
    assert bad.stderr.strip() == "error: /nonexistent/store: not a cortexflow store (no manifest.json; create one with `cortexflow init`)"


def test_errors_are_exceptions_with_the_command_lines_message(tmp_path):
    with pytest.raises(cortexflow.CortexflowError) as failed:
        cortexflow.Store(tmp_path / "nowhere").status()
    message = str(failed.value)
    assert "nowhere: not a cortexflow store" in message and "\n" not in message
    with pytest.raises(cortexflow.UsageError, match="invalid value 'many' for '--subjects"):
        cortexflow.simulate(tmp_path / "sim", subjects="many")
    with pytest.raises(cortexflow.UsageError, match="unexpected argument '--colour'"):
        cortexflow.simulate(tmp_path / "sim", colour="blue")
    with pytest.raises(cortexflow.UsageError, match=r"^the following required arguments were not provided: --data <DATA>$"):
        cortexflow.Store(tmp_path / "s").run("recipe.toml", data=None)
    with pytest.raises(cortexflow.UsageError, match="-1"):
        cortexflow.Store(tmp_path / "s").status(workers=-1)
    assert cortexflow.command("--version") == [f"cortexflow {cortexflow.__version__}"]
    with pytest.raises(cortexflow.CortexflowError, match="not a cortexflow store"):
        cortexflow.Store(tmp_path).neurons()
    with pytest.raises(TypeError, match="a subject label"):
        cortexflow.Store(tmp_path).subject_map(1)
    with pytest.raises(ValueError, match="letters, digits and _ only"):
        cortexflow.Store(tmp_path).group_map("../../etc/passwd")


def test_the_api_and_the_command_line_write_the_same_results(analysis):
    api, cli = analysis["api"], analysis["cli"]
    assert api.subjects() == cli.subjects() == ["01", "02", "03"]
    assert api.stories() == ["task-lpp_run-1", "task-lpp_run-2"]
    mine, theirs = tables(api), tables(cli)
    for name in TABLES:
        # A small simulation ties no single AN to a network (an_fbn may be empty).
        assert len(mine[name]) > 0 or name == "an_fbn", name
        pd.testing.assert_frame_equal(mine[name], theirs[name], check_exact=True, obj=name)
    # The readers return the files as another reader sees them.
    pd.testing.assert_frame_equal(mine["atom_fbn"], pq.read_table(api.path / "map" / "atom_fbn.parquet").to_pandas())
    for s in api.subjects():
        for name in ["beta", "z", "cv_r", "alpha"]:
            a, b = api.subject_map(s, name), cli.subject_map(f"sub-{s}", name)
            np.testing.assert_array_equal(np.asarray(a.dataobj), np.asarray(b.dataobj), err_msg=f"sub-{s} {name}")
            np.testing.assert_array_equal(a.affine, b.affine)
    for name in ["z", "thresholded_z", "mean_beta"]:
        np.testing.assert_array_equal(np.asarray(api.group_map(name).dataobj), np.asarray(cli.group_map(name).dataobj), err_msg=name)
    status = api.status()
    assert "6 runs of 3 subjects" in status and "damaged" not in status


def test_voxel_fits_are_the_subjects_maps(analysis):
    store = analysis["api"]
    fits = store.voxel_fits()
    assert list(fits.columns) == ["subject", "voxel", "i", "j", "k", "alpha", "cv_r", "cv_r2"]
    mask = np.asarray(store.mask().dataobj) != 0
    for s in store.subjects():
        rows = fits[fits.subject == s]
        cv_r = np.asarray(store.subject_map(s, "cv_r").dataobj)
        alpha = np.asarray(store.subject_map(s, "alpha").dataobj)
        assert len(rows) == np.isfinite(cv_r[mask]).sum() > 0
        ijk = (rows.i.to_numpy(), rows.j.to_numpy(), rows.k.to_numpy())
        assert mask[ijk].all()
        np.testing.assert_array_equal(rows.cv_r.to_numpy(), cv_r[ijk])
        np.testing.assert_array_equal(rows.alpha.to_numpy(), alpha[ijk])


def test_retract_then_ingest_restores_the_results(analysis, store_copy):
    run = "sub-02/task-lpp/run-2"
    before = tables(store_copy)
    store_copy.retract(run)
    status = store_copy.status()
    assert "5 runs of 3 subjects" in status and run not in status
    changed = tables(store_copy)
    assert not changed["voxel_fits"].equals(before["voxel_fits"])
    bold = [b for b in bold_runs(analysis["data"]) if "sub-02_task-lpp_run-2_" in b.name]
    assert len(bold) == 1
    store_copy.ingest(bold=bold)
    after = tables(store_copy)
    for name in TABLES:
        pd.testing.assert_frame_equal(after[name], before[name], check_exact=True, obj=name)
    assert "6 runs of 3 subjects" in store_copy.status()


def test_a_damaged_store_says_which_file_and_what_repairs_it(store_copy):
    (store_copy.path / "map" / "atom_fbn.parquet").unlink()
    with pytest.raises(cortexflow.CortexflowError) as failed:
        store_copy.status()
    message = str(failed.value)
    assert "1 damaged file(s)" in message and "map/atom_fbn.parquet: missing" in message, message
    assert any("map/atom_fbn.parquet" in line for line in failed.value.lines)
    store_copy.status(refresh=True)
    assert len(store_copy.atom_fbn()) > 0
    (store_copy.path / "group" / "z.nii.gz").write_bytes(b"not a NIfTI")
    with pytest.raises(cortexflow.CortexflowError, match="z.nii.gz: not a readable NIfTI image"):
        store_copy.group_map("z")


def test_threads_run_commands_one_at_a_time(store_copy):
    """The store's lock is per process: two threads retracting at once must not both write."""
    import threading

    errors = []

    def retract(run):
        try:
            store_copy.retract(run)
        except cortexflow.CortexflowError as e:
            errors.append(str(e))

    threads = [threading.Thread(target=retract, args=(f"sub-0{s}/task-lpp/run-2",)) for s in (1, 2, 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads) and errors == []
    assert "3 runs of 3 subjects" in store_copy.status()


def test_report_of_a_store(store_copy):
    path = store_copy.report()
    assert path == store_copy.path / "report.html"
    assert path.stat().st_size > 10_000


def test_the_gil_is_released_while_rust_computes(tmp_path):
    """Another Python thread keeps running during a command: it would stop for the whole
    call if the extension held the GIL."""
    import threading
    import time

    done = threading.Event()
    ticks = 0

    def count():
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            time.sleep(0.001)

    counter = threading.Thread(target=count)
    counter.start()
    started = time.perf_counter()
    try:
        cortexflow.simulate(tmp_path / "sim", subjects=2, runs=1, scans=200)
    finally:
        done.set()
        counter.join()
    seconds = time.perf_counter() - started
    # At most one tick a millisecond (~500 a second here, with the command on the other
    # core); with the GIL held, none during the call.
    print(f"{ticks} ticks in {seconds:.2f} s")
    assert seconds > 0.2 and ticks > 50 * seconds, (ticks, seconds)
