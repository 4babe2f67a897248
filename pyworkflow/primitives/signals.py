"""Signals: messages a running workflow receives, as many as are sent, in order.

``await wait_for_signal("add_item", model=Item)`` returns the next ``add_item`` signal
the run has not taken yet, waiting (suspended, no worker held) until one is sent with
``send_signal(run_id, "add_item", payload)``. Signals sent before the workflow waits are
buffered in the run's inbox; each is taken by exactly one wait, in the order they were
sent. A hook is one payload for one token; a signal name is a stream.

Payloads are JSON values. ``define_signal(name, Model)`` makes a process that sends the
signal validate the payload with the model first (a refused payload is never stored);
``model=`` at the wait also turns the payload into a ``Model`` instance.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, TypeVar, overload

from pydantic import BaseModel

from pyworkflow.context.base import current_context, current_step_info
from pyworkflow.core.exceptions import DefinitionError
from pyworkflow.utils.duration import duration_seconds
from pyworkflow.utils.names import check_name

M = TypeVar("M", bound=BaseModel)

# Signal models by name: how a sending process validates a payload before storing it.
_MODELS: dict[str, type[BaseModel]] = {}


def check_signal_name(name: object) -> str:
    """``name`` if it is a valid signal name.

    Raises:
        ValueError: it is not 1-100 letters, digits, ``_ . : -``.
    """
    return check_name(name, "signal name")


def signal_model(name: str) -> type[BaseModel] | None:
    """The Pydantic model registered for signal ``name``, if any."""
    return _MODELS.get(name)


def define_signal(name: str, model: type[M]) -> type[M]:
    """Register ``model`` as the payload type of signal ``name`` and return it.

    Call it at import time in the workflow's module: a process that imports the module
    (a worker, the server, ``pyworkflow runs signal`` with the configured modules)
    validates payloads before they are sent.

    Raises:
        TypeError: ``model`` is not a Pydantic model class.
        DefinitionError: ``name`` is already typed with another model.
    """
    check_signal_name(name)
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise TypeError(f"define_signal needs a Pydantic model class, not {model!r}")
    existing = _MODELS.get(name)
    if existing is not None and existing is not model:
        raise DefinitionError(
            f"signal {name!r} is already typed with {existing.__name__}, not {model.__name__}"
        )
    _MODELS[name] = model
    return model


@overload
async def wait_for_signal(
    name: str,
    model: None = None,
    *,
    timeout: str | int | float | timedelta | None = None,  # noqa: ASYNC109
) -> Any: ...


@overload
async def wait_for_signal(
    name: str,
    model: type[M],
    *,
    timeout: str | int | float | timedelta | None = None,  # noqa: ASYNC109
) -> M: ...


async def wait_for_signal(
    name: str,
    model: type[BaseModel] | None = None,
    *,
    timeout: str | int | float | timedelta | None = None,  # noqa: ASYNC109 - public API
) -> Any:
    """Return the next signal ``name`` this run has not taken, waiting for one if needed.

    Args:
        name: the signal's name (its operation id is ``signal:<name>#n``).
        model: a Pydantic model: the payload is validated and returned as an instance
            (and senders in processes that know it validate first, as ``define_signal``).
        timeout: how long to wait (a duration); then ``SignalTimeoutError`` (a
            ``TimeoutError``) is raised here, and a signal that comes later is left for
            the next wait.

    Raises:
        SignalTimeoutError: the timeout passed first.
        pydantic.ValidationError: the payload does not match ``model`` (it was sent by a
            process that did not know the model); the signal counts as taken.
        ConfigurationError: the storage keeps no signal inboxes.
        RuntimeError: called outside a workflow or inside a step.
    """
    check_signal_name(name)
    ctx = current_context()
    if ctx is None or current_step_info() is not None:
        raise RuntimeError("wait_for_signal() can only be awaited in workflow code")
    if model is not None:
        define_signal(name, model)
    seconds = None if timeout is None else duration_seconds(timeout)
    payload = await ctx.wait_signal(name, seconds)
    return payload if model is None else model.model_validate(payload)


__all__ = ["check_signal_name", "define_signal", "signal_model", "wait_for_signal"]
