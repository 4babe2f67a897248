"""``python -m pyworkflow.cli``: the same as the ``pyworkflow`` command."""

from pyworkflow.cli import main

main()
