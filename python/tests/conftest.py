"""Shared data of the Python tests: one small simulated dataset, analysed once through the
API and once through the `cortexflow` command (the wheel's console script)."""

import shutil
import subprocess
from pathlib import Path

import pytest

import cortexflow

# 3 subjects × 2 runs of 100 scans on the 4 mm grid, 8 atoms: seconds, and every stage
# (cross-validated ridge needs 2 runs a subject, the group test 3 subjects).
SIMULATION = dict(subjects=3, runs=2, scans=100, seed=7)
RECIPE = "[basis]\natoms = 8\n"


@pytest.fixture(scope="session")
def analysis(tmp_path_factory):
    root = tmp_path_factory.mktemp("analysis")
    data = root / "data"
    cortexflow.simulate(data, **SIMULATION)
    recipe = root / "recipe.toml"
    recipe.write_text(RECIPE)
    api = cortexflow.Store(root / "api")
    api.run(recipe, data=data, workers=2)
    cli = root / "cli"
    subprocess.run(["cortexflow", "run", str(recipe), "--data", str(data), "--out", str(cli), "-w", "2"], check=True, capture_output=True)
    return {"root": root, "data": data, "recipe": recipe, "api": api, "cli": cortexflow.Store(cli)}


@pytest.fixture
def store_copy(analysis, tmp_path):
    """A copy of the API's store that a test may change."""
    copy = tmp_path / "store"
    shutil.copytree(analysis["api"].path, copy)
    return cortexflow.Store(copy)


def bold_runs(data: Path) -> list[Path]:
    return sorted(data.glob("sub-*/func/*_bold.nii.gz"))
