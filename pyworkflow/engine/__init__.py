"""Event-sourced execution: history replay and the executor that drives workflow code."""

# The default observers (metrics) are installed before the engine's first report.
from pyworkflow.engine import observing as _observing  # noqa: F401
