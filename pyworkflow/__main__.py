"""``python -m pyworkflow``: the same as the ``pyworkflow`` command."""

from pyworkflow.cli import main

main()
