"""The observers a process has unless told otherwise: Prometheus metrics, when
``prometheus_client`` is installed and the ``metrics_enabled`` setting is on.

Installed before the engine's first report in the process (see
:func:`pyworkflow.observability.lifecycle.set_defaults`), or earlier by a process that
must have them from its start (a Celery worker before it forks its pool).
"""

from __future__ import annotations

import importlib.util

from pyworkflow.core.config import get_config
from pyworkflow.observability import lifecycle


def set_up_default_observers() -> bool:
    """Enable metrics in the default registry unless disabled or not installed; whether
    they are on."""
    if not get_config().metrics_enabled or importlib.util.find_spec("prometheus_client") is None:
        return False
    from pyworkflow.observability.metrics import enable_metrics, installed

    if installed() is None:
        enable_metrics()
    return True


lifecycle.set_defaults(set_up_default_observers)
