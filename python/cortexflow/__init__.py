"""cortexflow: groups of artificial neurons in language models, mapped onto functional
brain networks from fMRI of people hearing the same story.

The same Rust library as the ``cortexflow`` command, in-process::

    import cortexflow
    store = cortexflow.demo("cortexflow-demo")       # simulate, analyse, report
    store.atom_fbn()                                  # pandas DataFrame
    store.group_map("z")                              # nibabel image

    cortexflow.simulate("data", subjects=4)
    store = cortexflow.Store("store")
    store.run("dataflows/paper.toml", data="data")    # the whole analysis
    store.retract("sub-01/task-lpp/run-1")            # exactly as if never ingested

Options are the command line's (``cortexflow <command> --help``), with ``_`` for ``-``.
A failed command raises :class:`CortexflowError` with the command line's one-line
message; options a command does not take raise :class:`UsageError`. Long work shows a
progress bar on stderr, and the GIL is released while Rust computes.
"""

from ._native import CortexflowError, UsageError, __version__
from ._commands import command, demo, report, simulate
from ._store import Store

__all__ = [
    "CortexflowError",
    "Store",
    "UsageError",
    "__version__",
    "command",
    "demo",
    "report",
    "simulate",
]
