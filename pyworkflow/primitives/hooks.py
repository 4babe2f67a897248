"""Hooks: a run waits for a payload from outside (an approval, a webhook, a human).

``await hook("approval", timeout="2d", on_created=send_link)`` suspends the run until
``resume_hook(token, payload)`` delivers a payload (or the timeout passes:
:class:`~pyworkflow.core.exceptions.HookExpiredError` is raised at the await). The token
is handed to ``on_created`` when the hook is created; it is derived from the hook's
identity under the deployment's secret key (192 bits, see :mod:`.hook_tokens`), single
use, never stored: only its hash is kept (hook record, event log) and used for lookups.

``define_hook(name, Model)`` gives a typed hook: payloads are validated with the Pydantic
model before they are accepted (a bad payload is refused with the validation errors, the
hook stays open), and the workflow receives a ``Model`` instance. The model's JSON Schema
is stored with the hook, so a process without the model (no workflow code) validates
against that instead (:func:`schema_violations`). Payloads are JSON, never pickled.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Generator
from datetime import datetime, time, timedelta
from typing import Any, Generic, TypeVar

from jsonschema import FormatChecker
from jsonschema.exceptions import SchemaError
from jsonschema.validators import validator_for
from pydantic import BaseModel

from pyworkflow.context.base import current_context, current_step_info
from pyworkflow.core.exceptions import DefinitionError
from pyworkflow.utils.duration import duration_seconds

M = TypeVar("M", bound=BaseModel)

OnCreated = Callable[[str], Awaitable[Any]]

# Typed hook models by hook name: how a process delivering a payload validates it.
_MODELS: dict[str, type[BaseModel]] = {}


def hook_model(name: str) -> type[BaseModel] | None:
    """The Pydantic model registered for hook ``name`` by :func:`define_hook`, if any."""
    return _MODELS.get(name)


async def hook(
    name: str,
    *,
    timeout: str | int | float | timedelta | None = None,  # noqa: ASYNC109 - public API
    on_created: OnCreated | None = None,
    payload_schema: type[BaseModel] | None = None,
) -> Any:
    """Suspend the run until a payload is delivered for this hook; return the payload.

    Args:
        name: the hook's name (its operation id is ``hook:<name>#n``).
        timeout: how long to wait (a duration); then ``HookExpiredError`` is raised here.
        on_created: awaited with the token when the hook is first created (again only if
            the process crashed before the hook was recorded).
        payload_schema: a Pydantic model to validate payloads with (as ``define_hook``).

    Raises:
        HookExpiredError: the timeout passed first.
        RuntimeError: called outside a workflow or inside a step.
    """
    ctx = current_context()
    if ctx is None or current_step_info() is not None:
        raise RuntimeError("hook() can only be awaited in workflow code")
    seconds = None if timeout is None else duration_seconds(timeout)
    schema = None
    if payload_schema is not None:
        _register(name, payload_schema)
        schema = json.dumps(payload_schema.model_json_schema())
    payload = await ctx.wait_hook(name, seconds, on_created, schema)
    return payload if payload_schema is None else payload_schema.model_validate(payload)


def _register(name: str, model: type[BaseModel]) -> None:
    existing = _MODELS.get(name)
    if existing is not None and existing is not model:
        raise DefinitionError(f"hook {name!r} is already typed with {existing.__name__}")
    _MODELS[name] = model


class TypedHook(Generic[M]):
    """A hook whose payloads are validated as ``model``; await it (or call it with
    options) inside a workflow to get a ``model`` instance."""

    def __init__(self, name: str, model: type[M]) -> None:
        self.name = name
        self.model = model
        _register(name, model)

    def __call__(
        self,
        *,
        timeout: str | int | float | timedelta | None = None,
        on_created: OnCreated | None = None,
    ) -> Awaitable[M]:
        return self._wait(timeout, on_created)

    def __await__(self) -> Generator[Any, None, M]:
        return self._wait(None, None).__await__()

    async def _wait(
        self, expires_in: str | int | float | timedelta | None, on_created: OnCreated | None
    ) -> M:
        result: M = await hook(
            self.name, timeout=expires_in, on_created=on_created, payload_schema=self.model
        )
        return result


def define_hook(name: str, model: type[M]) -> TypedHook[M]:
    """A typed hook named ``name`` whose payloads must validate as ``model``.

    Raises:
        TypeError: ``model`` is not a Pydantic model class.
        DefinitionError: ``name`` is already typed with another model.
    """
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise TypeError(f"define_hook needs a Pydantic model class, not {model!r}")
    return TypedHook(name, model)


def schema_violations(schema_text: str, value: Any) -> list[dict[str, str]]:
    """What in ``value`` (a decoded JSON payload) breaks the hook's stored JSON Schema:
    one ``{"path", "message"}`` per violation, in payload order; empty when it matches.

    This is how a process without the hook's model (it does not have the workflow's code)
    checks a payload: the schema was stored from the model when the hook was created.
    Formats are checked too (``date-time``, ``date``, ``time``, ``uuid``, ``email``...), so a
    payload accepted here also validates as the model at the workflow's ``await``.

    An unreadable stored schema is itself reported as a violation (at path ``""``): a
    payload that cannot be checked is not accepted blind.
    """
    try:
        schema = json.loads(schema_text)
        validator_class = validator_for(schema)
        validator_class.check_schema(schema)
    except (ValueError, SchemaError) as exc:
        reason = exc.message if isinstance(exc, SchemaError) else str(exc)
        return [{"path": "", "message": f"the hook's stored schema is unreadable: {reason}"}]
    validator = validator_class(schema, format_checker=_format_checker())
    found = sorted(validator.iter_errors(value), key=lambda error: error.json_path)
    return [
        {"path": "/".join(str(p) for p in error.absolute_path), "message": error.message}
        for error in found
    ]


def _format_checker() -> FormatChecker:
    # jsonschema checks date-time and time only with an optional extra installed; the
    # standard library's ISO 8601 parsers accept what Pydantic's models are built from.
    checker = FormatChecker()
    checker.checks("date-time", raises=ValueError)(_is_datetime)
    checker.checks("time", raises=ValueError)(_is_time)
    return checker


def _is_datetime(value: object) -> bool:
    if isinstance(value, str):
        datetime.fromisoformat(value)
    return True


def _is_time(value: object) -> bool:
    if isinstance(value, str):
        time.fromisoformat(value)
    return True
