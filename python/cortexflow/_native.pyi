"""Type stubs of the Rust extension (python/src/lib.rs)."""

from typing import Any

__version__: str

class CortexflowError(Exception):
    """A cortexflow command failed; the message is the command line's one-line error."""

class UsageError(ValueError):
    """Options a command does not take, or values it refuses (clap's message)."""

def main(argv: list[str]) -> int:
    """Runs the command line on argv (program name first); returns the exit status."""

def command(argv: list[str]) -> list[str]:
    """Runs one command (argv without the program name); returns the lines it prints."""

def store_files(store: str) -> dict[str, Any]:
    """The files the readers open, after the store's manifest is checked."""

def store_voxel_fits(store: str, out: str) -> int:
    """Writes the store's voxel_fits table to out; returns its number of rows."""
