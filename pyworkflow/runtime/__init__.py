"""Runtimes: where workflow code executes. ``local`` (default) runs in-process."""

from __future__ import annotations

import importlib

from pyworkflow.core.exceptions import ConfigurationError
from pyworkflow.runtime.base import Runtime

_FACTORIES: dict[str, str] = {
    "local": "pyworkflow.runtime.local:LocalRuntime",
    "celery": "pyworkflow.celery.runtime:CeleryRuntime",  # needs the [celery] extra
}
_INSTANCES: dict[str, Runtime] = {}


def register_runtime(name: str, runtime: Runtime | str) -> None:
    """Make a runtime selectable by ``name`` (an instance, or a lazy ``module:Class`` path)."""
    if isinstance(runtime, str):
        _FACTORIES[name] = runtime
        _INSTANCES.pop(name, None)
    else:
        _INSTANCES[name] = runtime


def get_runtime(name: str = "local") -> Runtime:
    """The process-wide runtime called ``name``.

    Raises:
        ConfigurationError: no runtime of that name is registered.
    """
    runtime = _INSTANCES.get(name)
    if runtime is None:
        path = _FACTORIES.get(name)
        if path is None:
            known = ", ".join(sorted(set(_FACTORIES) | set(_INSTANCES)))
            raise ConfigurationError(f"unknown runtime {name!r}; available: {known}")
        module_name, _, attr = path.partition(":")
        runtime = getattr(importlib.import_module(module_name), attr)()
        _INSTANCES[name] = runtime
    return runtime


__all__ = ["Runtime", "get_runtime", "register_runtime"]
