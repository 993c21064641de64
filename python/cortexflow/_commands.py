"""Commands as functions: keyword options become the command line's flags."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Union

from . import _native

if TYPE_CHECKING:
    from ._store import Store

PathLike = Union[str, "os.PathLike[str]"]


def text(value: Any) -> str:
    """An argument as the command line reads it (a path, a Store, a number)."""
    return os.fspath(value) if isinstance(value, os.PathLike) else str(value)


def flags(options: dict[str, Any]) -> list[str]:
    """``--name=value`` for each option that is set (so a value may start with ``-``):
    ``True`` is a bare flag, ``False`` and ``None`` leave the option out (its default), a
    list is comma-separated."""
    out: list[str] = []
    for name, value in options.items():
        if value is None or value is False:
            continue
        flag = "--" + name.replace("_", "-")
        if value is True:
            out.append(flag)
        elif isinstance(value, (list, tuple)):
            out.append(f"{flag}={','.join(text(v) for v in value)}")
        else:
            out.append(f"{flag}={text(value)}")
    return out


def command(name: str, *args: PathLike, **options: Any) -> list[str]:
    """Runs ``cortexflow <name> <args> <options>`` in this process and returns the lines it
    prints. Any command of ``cortexflow --help``; e.g. ``command("status", "store")``."""
    return _native.command([name, *(text(a) for a in args), *flags(options)])


def simulate(out: PathLike, **options: Any) -> list[str]:
    """Writes a BIDS-like dataset with planted structure and its truth under ``out``
    (``cortexflow simulate``): ``subjects``, ``runs``, ``seed``, ``snr``, ``grid``
    ("4mm", "2mm"), ``scans``, ``networks``, ``layout`` ("bids", "fmriprep"), …"""
    return command("simulate", out=out, **options)


def demo(out: PathLike = "cortexflow-demo", *, model: str = "minilm", subjects: int | None = None, seed: int | None = None, quiet: bool = False) -> "Store":
    """The main job on the embedded default (``cortexflow demo``): simulate, analyse,
    report (``out/report.html``) and score against the planted truth. Prints its summary
    unless ``quiet`` and returns the :class:`Store` (``out/store``)."""
    from ._store import Store

    lines = command("demo", out=out, model=model, subjects=subjects, seed=seed)
    if not quiet:
        print("\n".join(lines))
    return Store(Path(out) / "store")


def report(stores: Iterable[PathLike] | PathLike, out: PathLike | None = None) -> Path:
    """One self-contained HTML report of one or more stores (``cortexflow report``);
    returns its path (``STORE/report.html`` unless ``out``)."""
    listed = [stores] if isinstance(stores, (str, os.PathLike)) else list(stores)
    lines = command("report", *listed, out=out)
    wrote = [line for line in lines if line.startswith("wrote ")]
    return Path(wrote[-1][len("wrote "):].rsplit(" (", 1)[0])
