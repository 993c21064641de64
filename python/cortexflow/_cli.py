"""The ``cortexflow`` console script: the Rust command line, in this process."""

import signal
import sys

from ._native import main as _main


def main() -> None:
    # As the binary: Ctrl-C stops the command (Python's handler would wait for Rust to
    # return) and a closed pipe ends it quietly (`cortexflow … | head`).
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    sys.exit(_main(["cortexflow", *sys.argv[1:]]))
