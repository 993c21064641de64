"""``python -m cortexflow``: the command line."""

from ._cli import main

main()
