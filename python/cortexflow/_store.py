"""A store: the analysis of one dataset with one recipe, and readers of its results."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from . import _native
from ._commands import PathLike, command

if TYPE_CHECKING:
    import nibabel
    import pandas


class Store:
    """A cortexflow store directory (``cortexflow status STORE`` describes one).

    Computing methods run the command of the same name and return the lines it prints;
    ``workers``, ``memory_limit`` and the other cluster options are the command line's.
    Readers return pandas DataFrames (columns as in ``cortexflow schema``) and nibabel
    images; they check the store's manifest first, so a folder that is not a store, or
    one written by another version of the format, is refused with the reason.
    """

    def __init__(self, path: PathLike):
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"Store(path): a path (str or os.PathLike), not {type(path).__name__}")
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    # -- computing ---------------------------------------------------------------------

    def run(self, recipes: PathLike | Sequence[PathLike], data: PathLike, **options: Any) -> list[str]:
        """The whole analysis of the dataset ``data`` into this (new) store (``cortexflow
        run``): ``space``, ``responses``, ``mask_threshold``, ``no_ceiling``, ``workers``, …
        With several recipes this path is the folder of their stores (one per recipe
        stem, and ``compare/``)."""
        listed = [recipes] if isinstance(recipes, (str, os.PathLike)) else list(recipes)
        return command("run", *listed, data=data, out=self.path, **options)

    def ingest(self, **options: Any) -> list[str]:
        """Stories, BOLD runs or a whole dataset into the store (``cortexflow ingest``):
        ``bold=[...]``, ``bids=root``, ``responses=[...]`` with ``neurons=``,
        ``stimulus=[...]`` with ``tr=`` and ``n_scans=``, ``space``, ``mask``, …"""
        return command("ingest", self.path, **options)

    def retract(self, run: str, **options: Any) -> list[str]:
        """A run out of the store, as if it had never been ingested (``cortexflow
        retract``); ``run`` is ``sub-S/task-T/run-R`` as :meth:`status` lists it."""
        return command("retract", self.path, run=run, **options)

    def status(self, refresh: bool = False, **options: Any) -> str:
        """What the store holds, whether its results are up to date and every file intact
        (``cortexflow status``); ``refresh`` brings stale results up to date first. Raises
        CortexflowError when a file is damaged: its message lists each damaged file and
        what repairs it, its ``lines`` hold the whole status."""
        try:
            return "\n".join(command("status", self.path, refresh=refresh, **options))
        except _native.CortexflowError as failed:
            lines = getattr(failed, "lines", [])
            damaged = [line for line in lines if "repair" in line or "rebuil" in line or "damaged" in line]
            error = _native.CortexflowError("\n".join([str(failed).replace("; see above for what repairs each", ":"), *damaged]))
            error.lines = lines
            raise error from None

    def report(self, out: PathLike | None = None) -> Path:
        """The store's HTML report (``STORE/report.html`` unless ``out``)."""
        from ._commands import report

        return report(self.path, out)

    # -- readers -----------------------------------------------------------------------

    def _files(self) -> dict[str, Any]:
        return _native.store_files(str(self.path))

    def _table(self, name: str) -> "pandas.DataFrame":
        import pandas as pd

        path = Path(self._files()[name])
        if not path.is_file():
            raise _native.CortexflowError(f"{path}: not written yet (the store's results are made by `run`, or `status --refresh`)")
        return pd.read_parquet(path)

    def subjects(self) -> list[str]:
        """The subjects with runs in the store (labels without ``sub-``)."""
        return list(self._files()["subjects"])

    def stories(self) -> list[str]:
        """The stories with atoms."""
        return list(self._files()["atoms"])

    def neurons(self) -> "pandas.DataFrame":
        """One row per artificial neuron: an_id, model, layer, tap, unit."""
        return self._table("neurons")

    def atoms(self, story: str | None = None) -> "pandas.DataFrame":
        """The basis on each story's scan clock: basis_version, atom, story, values; all
        stories, or one."""
        import pandas as pd

        if story is not None and not isinstance(story, str):
            raise TypeError(f"atoms(story): a story name (str), not {type(story).__name__}")
        files = self._files()["atoms"]
        if story is not None and story not in files:
            raise _native.CortexflowError(f"{self.path}: no story {story!r} (the store has {', '.join(files) or 'none'})")
        chosen = [story] if story is not None else list(files)
        return pd.concat([pd.read_parquet(files[s]) for s in chosen], ignore_index=True)

    def codes(self) -> "pandas.DataFrame":
        """Each AN's sparse code (non-zero weights): an_id, atom, weight."""
        return self._table("codes")

    def subgroups(self) -> "pandas.DataFrame":
        """Each AN's dominant atom and that atom's network: an_id, atom, fbn, share."""
        return self._table("subgroups")

    def an_fbn(self) -> "pandas.DataFrame":
        """Each AN tied to a network: an_id, fbn, r, r_split, tied, stability."""
        return self._table("an_fbn")

    def atom_fbn(self) -> "pandas.DataFrame":
        """Each atom's group map against each network: overlap, Dice, IoU, … assigned."""
        return self._table("atom_fbn")

    def metrics(self) -> "pandas.DataFrame":
        """Organisation metrics by model and layer: model, layer, metric, value."""
        return self._table("metrics")

    def voxel_fits(self) -> "pandas.DataFrame":
        """One row per subject and fitted voxel: subject, voxel, i, j, k, alpha, cv_r,
        cv_r2 (the table ``cortexflow encode`` writes)."""
        import pandas as pd

        with tempfile.TemporaryDirectory(prefix="cortexflow-") as tmp:
            path = Path(tmp) / "voxel_fits.parquet"
            _native.store_voxel_fits(str(self.path), str(path))
            return pd.read_parquet(path)

    def mask(self) -> "nibabel.Nifti1Image":
        """The analysis mask (nibabel image)."""
        return _image(Path(self._files()["mask"]))

    def subject_map(self, subject: str, name: str = "z") -> "nibabel.Nifti1Image":
        """A subject's map (nibabel image): ``beta``, ``t``, ``z`` (one volume per atom),
        ``cv_r``, ``cv_r2``, ``alpha``."""
        name = _map_name(name)
        if not isinstance(subject, str):
            raise TypeError(f"subject_map(subject): a subject label (str, e.g. '01'), not {type(subject).__name__}")
        subjects = self._files()["subjects"]
        label = subject.removeprefix("sub-")
        if label not in subjects:
            raise _native.CortexflowError(f"{self.path}: no subject {subject!r} (the store has {', '.join(subjects) or 'none'})")
        folder = Path(subjects[label])
        if not folder.is_dir():
            raise _native.CortexflowError(f"{folder}: missing, though the store holds runs of subject {label} (`cortexflow status --refresh` refits it)")
        return _image(folder / f"{name}.nii.gz")

    def group_map(self, name: str = "z") -> "nibabel.Nifti1Image":
        """A group map (nibabel image): ``z``, ``t``, ``p``, ``thresholded_z``,
        ``mean_beta`` (one volume per atom), ``n``, ``mask``."""
        name = _map_name(name)
        return _image(Path(self._files()["group"]) / f"{name}.nii.gz")


def _map_name(name: str) -> str:
    # A map's name becomes a file name: one plain word, never a path.
    if not isinstance(name, str):
        raise TypeError(f"map name: a str such as 'z' or 'cv_r', not {type(name).__name__}")
    if not name or not all(c.isalnum() or c == "_" for c in name):
        raise ValueError(f"map name {name!r}: letters, digits and _ only (e.g. 'z', 'cv_r')")
    return name


def _image(path: Path) -> "nibabel.Nifti1Image":
    import nibabel as nib

    if not path.is_file():
        raise _native.CortexflowError(f"{path}: no such map in the store")
    try:
        image = nib.load(path)  # the header; the data stay on disk until used
    except Exception as e:  # nibabel raises several kinds; the message names the file
        raise _native.CortexflowError(f"{path}: not a readable NIfTI image ({e}); `cortexflow status` checks the store's files") from None
    return image
