"""`cortexflow.demo` from Python: the README's second way of running the main job."""

import os
from pathlib import Path

import pytest

import cortexflow

MODEL = Path(__file__).resolve().parents[2] / "models" / "all-MiniLM-L6-v2"


def test_demo_runs_and_its_store_reads(tmp_path, capsys):
    if not MODEL.is_dir():
        if os.environ.get("CORTEXFLOW_REQUIRE_MODELS") == "1":
            pytest.fail(f"{MODEL} is missing: run `bash scripts/fetch-models`")
        pytest.skip("MiniLM checkpoint not fetched (bash scripts/fetch-models)")
    store = cortexflow.demo(tmp_path / "demo", subjects=2)
    printed = capsys.readouterr().out
    assert "atoms → networks: 16 atoms against 7 networks of yeo7" in printed
    assert store.path == tmp_path / "demo" / "store"
    assert (tmp_path / "demo" / "report.html").stat().st_size > 100_000
    neurons = store.neurons()
    assert len(neurons) == 2304 and set(neurons.model) == {"all-MiniLM-L6-v2"}
    atom_fbn = store.atom_fbn()
    assert sorted(atom_fbn.atom.unique()) == list(range(16))
    assert store.group_map("z").shape[3] == 16
